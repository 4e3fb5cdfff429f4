"""A new site from the profiles in ``profiles/``: its buildout, its own git repository, its hostconfigs.

``invoke new-site NAME --kind plain|zope|plone --modules a,b`` writes ``sites/NAME/`` (beside
``hostconfigs/``) in the layering Plone buildouts grew: ``base.cfg`` (the framework),
``settings.cfg`` (the modules it uses and its own add-ons), ``versions.cfg`` (the known-good set),
``production.cfg``, ``staging.cfg``, ``development.cfg`` (and ``standalone.cfg``), and
``modules/`` (a few eggs and their pins each); then ``hostconfigs/NAME-base.cfg`` (what the stages
share) and ``NAME-sandbox.cfg``, ``NAME-staging.cfg``, ``NAME-production.cfg`` extending it. Its
ports collide with no other site that ``hostconfigs/`` puts on the same host. The Zope admin
password goes into ``.env``, never into a file that is committed.
"""
from __future__ import annotations

import re
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..config import hostconfig
from . import hostsites
from ..paths import EXAMPLE, PROFILES

KINDS = ("plain", "zope", "plone")
NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")  # fullmatch: "$" would let a final line break through
FIRST_PORT = 8200
PORTS = {"plain": 3, "zope": 2, "plone": 2}  # zeo, then the instances
# What each kind's sandbox stage runs, and where each instance answers (the first port is ZEO's).
PROGRAMS = {"plain": ("zeoserver", "instance1", "instance2"), "zope": ("zeoserver", "instance"),
            "plone": ("zeoserver", "instance")}
COMMANDS = {kind: {"zeoserver": "bin/zeoserver fg", "instance": "bin/instance console"} for kind in ("zope", "plone")}
IN_SITE = {"gitignore": ".gitignore", "github-deploy.yml": ".github/workflows/deploy.yml"}  # profiles' names
HEALTH_TIMEOUT = {"plain": 60, "zope": 60, "plone": 180}  # seconds: Plone loads hundreds of packages' ZCML
HEALTH = {"plain": "health", "zope": "++resource++logo/Zope.svg", "plone": "++resource++logo/Zope.svg"}
PLONE_VERSIONS = "https://dist.plone.org/release/6.2.2/versions.cfg"  # the plone kind's known-good set


class NewSiteError(Exception):
    """A site that cannot be made as asked: nothing was written."""


@dataclass(frozen=True)
class Plan:
    name: str
    kind: str
    modules: tuple[str, ...]
    buildout: Path                  # sites/NAME
    configs: Path                   # hostconfigs/
    ports: tuple[int, ...]
    sandbox_host: dict[str, str]    # the [host] keys of hostconfigs/sandbox.cfg
    versions: str = PLONE_VERSIONS  # the remote known-good set a plone site's versions.cfg extends

    @property
    def env_key(self) -> str:
        return self.name.upper().replace("-", "_") + "_ADMIN_PASSWORD"

    def config(self, stage: str) -> Path:
        return self.configs / f"{self.name}-{stage}.cfg"


def available_modules() -> dict[str, tuple[str, ...]]:
    """``{module: the kinds it fits}``, from each module file's ``# kinds:`` line."""
    found = {}
    for path in sorted((PROFILES / "modules").glob("*.cfg")):
        kinds = next((line.split(":", 1)[1].split() for line in path.read_text().splitlines()
                      if line.startswith("# kinds:")), list(KINDS))
        found[path.stem] = tuple(kinds)
    return found


def plan(name: str, kind: str, modules: tuple[str, ...], configs: Path = hostconfig.CONFIG_DIR,
         versions: str | None = None) -> Plan:
    """Check the request and choose the ports; nothing is written."""
    if not NAME.fullmatch(name):
        raise NewSiteError(f"{name!r}: a site's name is a lowercase letter, then letters, digits or '-' "
                           f"(at most 31), as it names files, users and a directory on the host")
    if kind not in KINDS:
        raise NewSiteError(f"--kind {kind}: one of {', '.join(KINDS)}")
    if versions is not None and kind != "plone":
        raise NewSiteError(f"--versions: only a plone site extends a remote known-good set, not {kind}")
    if versions is not None and not _plain_url(versions):
        raise NewSiteError(f"--versions {versions!r}: one http:// or https:// URL of a versions file, with a host "
                           f"(and a port 1-65535, if any), on one line, without spaces or '$' (it is written "
                           f"into versions.cfg's extends)")
    known = available_modules()
    for module in modules:
        if module not in known:
            raise NewSiteError(f"--modules {module}: no profiles/modules/{module}.cfg "
                               f"(there are: {', '.join(known) or 'none'})")
        if kind not in known[module]:
            raise NewSiteError(f"--modules {module}: made for {' and '.join(known[module])} sites, not {kind}")
    buildout = configs.parent / "sites" / name
    taken = [str(p) for p in (buildout, *(configs / f"{name}-{s}.cfg" for s in ("base", "sandbox", "staging",
                                                                              "production"))) if p.exists()]
    if taken:
        raise NewSiteError(f"{name} exists already ({', '.join(taken)}): nothing changed")
    sandbox = sandbox_host(configs)
    used = ports_in_use(configs, sandbox.get("address", "127.0.0.1"), int(sandbox.get("port", 22)))
    return Plan(name, kind, modules, buildout, configs, free_ports(PORTS[kind], used), sandbox,
                versions or PLONE_VERSIONS)


def _plain_url(url: str) -> bool:
    """Whether ``url`` is one http(s) URL that buildout's ``extends`` reads as written: no space, line
    break or control character (a second value, a new section), no ``$`` (buildout's ``${...}``)."""
    if any(character.isspace() or not character.isprintable() or character == "$" for character in url):
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number or out of range
        return False


def sandbox_host(configs: Path) -> dict[str, str]:
    """The ``[host]`` of ``hostconfigs/sandbox.cfg`` (as written: relative paths stay relative to it)."""
    import configparser
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(configs / "sandbox.cfg")
    if not parser.has_section("host"):
        raise NewSiteError(f"{configs / 'sandbox.cfg'}: no [host] section to copy for the sandbox stage")
    return {key: value for key, value in parser["host"].items() if key != "root"}


def ports_in_use(configs: Path, address: str, port: int) -> set[int]:
    """Every port the sites that ``configs`` puts on ``address:port`` use (see ``hostsites.ports_of``)."""
    used: set[int] = set()
    for name in hostconfig.available(configs):
        try:
            config = hostconfig.load(configs / f"{name}.cfg")
        except hostconfig.ConfigError:
            continue  # a config that does not load deploys nothing
        if (config.address, config.port) == (address, port):
            used |= hostsites.ports_of(config)
    return used


def free_ports(count: int, used: set[int], first: int = FIRST_PORT) -> tuple[int, ...]:
    """``count`` ports from ``first`` on, in none of ``used`` and free on this machine now."""
    chosen: list[int] = []
    candidate = first
    while len(chosen) < count and candidate < 65536:
        if candidate not in used and _bindable(candidate):
            chosen.append(candidate)
        candidate += 1
    return tuple(chosen)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def write(site: Plan) -> list[Path]:
    """Write the site's buildout (its own git repository), its hostconfigs and its secret; the paths."""
    written = []
    try:
        written += _buildout(site)
        written += _hostconfigs(site)
        _repository(site.buildout)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        shutil.rmtree(site.buildout, ignore_errors=True)
        raise
    _secret(site)
    return written


def _fill(text: str, site: Plan) -> str:
    modules = "".join(f"\n    modules/{m}.cfg" for m in site.modules)
    text = text.replace("@@NAME@@", site.name).replace("@@MODULES@@", modules).replace("@@VERSIONS@@", site.versions)
    for index, port in enumerate(site.ports, 1):
        text = text.replace(f"@@PORT{index}@@", str(port))
    return text


def _buildout(site: Plan) -> list[Path]:
    sources = {p.name: p for p in (PROFILES / "common").iterdir()}
    sources.update({p.name: p for p in (PROFILES / site.kind).iterdir()})
    site.buildout.mkdir(parents=True)
    written = []
    for name, source in sorted(sources.items()):
        target = site.buildout / IN_SITE.get(name, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_fill(source.read_text(), site))
        written.append(target)
    if site.kind == "plain":  # the example's app and its known-good set
        shutil.copytree(EXAMPLE / "src" / "demoapp", site.buildout / "src" / "demoapp",
                        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "build"))
        (site.buildout / "versions.cfg").write_text(
            f"# {site.name}'s known-good set: every distribution production.cfg uses, pinned (invoke pin rewrites it).\n"
            + (EXAMPLE / "versions.cfg").read_text().split("\n\n", 1)[1])
    if site.modules:
        (site.buildout / "modules").mkdir()
        for module in site.modules:
            shutil.copy(PROFILES / "modules" / f"{module}.cfg", site.buildout / "modules" / f"{module}.cfg")
    return written


def _hostconfigs(site: Plan) -> list[Path]:
    programs = PROGRAMS[site.kind]
    instances = programs[1:]
    sections = "".join(
        f"\n[program:{program}]\n"
        + (f"command = {COMMANDS[site.kind][program]}\n" if program in COMMANDS.get(site.kind, {}) else "")
        + (f"health_url = http://127.0.0.1:{port}/{HEALTH[site.kind]}\n" if program in instances else "")
        for program, port in zip(programs, site.ports))
    secret = (f"\n# The Zope admin password, from .env ({site.env_key}): kept on the host in secrets.cfg (0600).\n"
              f"[overrides]\ninstance:user = admin:${{env:{site.env_key}}}\n") if site.kind != "plain" else ""
    profile = "zope" if site.kind != "plain" else "plain"
    texts = {
        "base": f"# {site.name}: what every stage shares (its buildout, programs, backups); the stages extend it.\n"
                f"[buildout]\ndirectory = ../sites/{site.name}\nconfig = production.cfg\n\n"
                f"[services]\nmanager = supervisor\nprograms = {' '.join(programs)}\n{sections}\n"
                f"[deploy]\nkeep_releases = 5\nhealth_timeout = {HEALTH_TIMEOUT[site.kind]}\n\n"
                f"[backup]\nkeep = 2\nkeep_blob_days = 14\nbefore_deploy = true\n{secret}",
        "sandbox": f"# {site.name} on the sandbox host (invoke sandbox): fab -H {site.name}-sandbox deploy.\n"
                   f"[hostconfig]\nextends = {site.name}-base.cfg\n\n[host]\n"
                   + "".join(f"{key} = {value}\n" for key, value in site.sandbox_host.items())
                   + f"root = ${{here}}/../.sandbox/sites/{site.name}\n"
                   + "store = ${here}/../.sandbox/sites/.store\n",
        "staging": f"# {site.name} on its staging host: set the address, bootstrap it, then deploy.\n"
                   f"[hostconfig]\nextends = {site.name}-base.cfg\n\n"
                   f"[host]\naddress = staging.{site.name}.example.org\nuser = deploy\napp_user = {site.name}\n"
                   f"root = /srv/{site.name}\nstore = /srv/.deploy-store\n\n[buildout]\nconfig = staging.cfg\n\n"
                   f"[front]\ndomains = staging.{site.name}.example.org\ntls = acme\n"
                   f"email = admin@{site.name}.example.org\n",
        "production": f"# {site.name} in production: set the address, bootstrap it, then deploy.\n"
                      f"[hostconfig]\nextends = {site.name}-base.cfg\n\n"
                      f"[host]\naddress = {site.name}.example.org\nuser = deploy\napp_user = {site.name}\n"
                      f"root = /srv/{site.name}\nstore = /srv/.deploy-store\n\n[deploy]\nallow_dirty = false\n\n"
                      f"[front]\ndomains = {site.name}.example.org\ntls = acme\n"
                      f"email = admin@{site.name}.example.org\n",
    }
    if profile == "zope":
        texts["staging"] += "site_path = /\n"
        texts["production"] += "site_path = /\n"
    written = []
    for stage, text in texts.items():
        path = site.config(stage)
        path.write_text(text)
        written.append(path)
    return written


def _repository(directory: Path) -> None:
    """The site as its own git repository, its first commit made: the deploy releases committed code."""
    if shutil.which("git") is None:
        return
    configured = subprocess.run(["git", "config", "user.email"], capture_output=True).returncode == 0
    identity = [] if configured else ["-c", "user.name=invoke new-site", "-c", "user.email=new-site@localhost"]
    for command in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "A new site from invoke new-site"]):
        subprocess.run(["git", "-C", str(directory), *command], check=True, capture_output=True)


def _secret(site: Plan) -> None:
    """The admin password in ``.env`` beside ``hostconfigs/`` (0600), unless it is there already."""
    if site.kind == "plain":
        return
    env = site.configs.parent / ".env"
    text = env.read_text() if env.is_file() else ""
    if re.search(rf"^{site.env_key}=", text, re.M):
        return
    env.write_text(text + ("" if not text or text.endswith("\n") else "\n")
                   + f"{site.env_key}={secrets.token_urlsafe(18)}\n")
    env.chmod(0o600)
