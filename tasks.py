"""Tasks on this machine: the demo, the sandbox host, tests and benchmarks (``invoke --list``)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from invoke import Collection, Exit, task

from fabfile.data import backup as backups
from fabfile.build import bundle as bundles
from fabfile.data import restore as restores
from fabfile.config import hostconfig
from fabfile.build import pin as pins, platforms
from fabfile.sites import init as inits
from fabfile.sites import newsite
from fabfile.arguments import optional_positional
from fabfile.data.helptexts import BACKUP_HELP, RESTORE_HELP
from fabfile.buildout.profile import ProfileError
from fabfile.build.dists import DistError
from fabfile.backups.repozo import BackupError
from fabfile.build.eggs import EggBuildError
from fabfile.remote import site
from fabfile.paths import CACHE
from sandbox import sshd
from sandbox.load import Load

HERE = Path(__file__).resolve().parent
SANDBOX = HERE / ".sandbox"
DEMO = SANDBOX / "demo"
FAB = str(Path(sys.executable).parent / "fab")


def demo_configs() -> Path:
    """A hostconfig for the demo: the sandbox, with a copy of the example site to change."""
    configs, site = DEMO / "hostconfigs", DEMO / "example"
    configs.mkdir(parents=True, exist_ok=True)
    if site.exists():
        shutil.rmtree(site)
    shutil.copytree(HERE / "example", site, ignore=shutil.ignore_patterns(
        "bin", "parts", "eggs", "develop-eggs", "var", ".installed.cfg", "*.egg-info", "__pycache__", "build"))
    (configs / "sandbox.cfg").write_text(
        "# The demo: the sandbox host, deploying a copy of the example site.\n"
        f"[hostconfig]\nextends = {HERE / 'hostconfigs' / 'sandbox.cfg'}\n\n"
        "[buildout]\ndirectory = ../example\n")
    return configs


def show(url: str, form: dict | None = None) -> None:
    """GET (or POST ``form`` to) a page of the demo site and print the answer."""
    data = urllib.parse.urlencode(form).encode() if form else None
    with urllib.request.urlopen(url, data=data, timeout=10) as response:
        print(f"{url} -> {response.status}: {response.read().decode()[:300]}")


@task
def sandbox(c):
    """Start the sandbox host: an sshd on 127.0.0.1 run as you."""
    try:
        host = sshd.start(SANDBOX)
    except sshd.SandboxError as error:
        raise Exit(str(error), 1)
    print(f"sandbox sshd: {host.user}@{host.host}:{host.port} (pid {host.pid})")


def stop_demo_site(c) -> None:
    """Stop the demo site's programs (through the sandbox) and its front (by its pid)."""
    if sshd.running_pid(SANDBOX) and (SANDBOX / "site" / "current").exists():
        env = {"DEPLOY_HOSTCONFIGS": str(DEMO / "hostconfigs")} if (DEMO / "hostconfigs").exists() else {}
        c.run(f"{FAB} -H sandbox stop", env=env, warn=True)
    front_pid = SANDBOX / "site" / "front" / "run" / "haproxy.pid"
    if front_pid.exists():
        try:
            os.kill(int(front_pid.read_text().split()[0]), signal.SIGTERM)
            print("front (haproxy) stopped")
        except (ProcessLookupError, ValueError):
            pass


@task
def demo(c):
    """Deploy the example site to the sandbox, change it, roll back: each step shown."""
    sandbox(c)
    if (SANDBOX / "site").exists():  # a demo before this one: start from an empty host again
        stop_demo_site(c)
        shutil.rmtree(SANDBOX / "site")
    configs = demo_configs()
    env = {"DEPLOY_HOSTCONFIGS": str(configs)}
    fab = lambda *args, **kw: c.run(" ".join([FAB, "-H", "sandbox", *args]), env=env, pty=False, **kw)
    page = "http://127.0.0.1:8081/"
    print(f"\n== 1. deploy the example site (hostconfig: {configs / 'sandbox.cfg'})")
    fab("deploy")
    print(f"\n== the site answers on {page} and http://127.0.0.1:8082/")
    show(f"{page}version")
    show(f"{page}add", {"title": "demo-object", "data": "hello"})
    fab("releases")
    print("\n== 2. deploy again: same content, nothing happens")
    fab("deploy")
    print("\n== 3. change the app's code and deploy the change, under a load through the front")
    app = configs.parent / "example" / "src" / "demoapp" / "demoapp" / "__init__.py"
    app.write_text(app.read_text() + "\n# changed by `invoke demo`\n")
    with Load(8443, "localhost", clients=2, max_seconds=120) as load:
        fab("deploy")
    print(f"   load through https://localhost:8443/ during the deploy: {load.total} requests, "
          f"{len(load.failures)} failed")
    show(f"{page}version")
    print("\n== 4. roll back to the previous release (rolling, through the front): the old code, the same data")
    with Load(8443, "localhost", clients=2, max_seconds=120) as load:
        fab("rollback")
    print(f"   load through https://localhost:8443/ during the rollback: {load.total} requests, "
          f"{len(load.failures)} failed")
    show(f"{page}version")
    show(f"{page}objects.json")
    fab("releases")
    fab("status")
    print(f"\nThe demo site serves on https://localhost:8443/ (the front: HAProxy, a certificate made on the "
          f"sandbox) and {page}; `make demo-stop` stops it and the sandbox.")


@task(name="demo-stop")
def demo_stop(c):
    """Stop the demo site's programs, its front and the sandbox sshd."""
    stop_demo_site(c)
    print("sandbox sshd stopped" if sshd.stop(SANDBOX) else "sandbox sshd was not running")


@task
def bench(c):
    """Measure deploys, bootstraps and backups: times, downtime, bytes, disk, SSH connections."""
    c.run(f"{sys.executable} -m benchmarks.startup", pty=False)
    c.run(f"{sys.executable} -m benchmarks.deploy", pty=False)
    c.run(f"{sys.executable} -m benchmarks.switch", pty=False)
    c.run(f"{sys.executable} -m benchmarks.backup", pty=False)
    c.run(f"{sys.executable} -m benchmarks.sites", pty=False)
    c.run(f"{sys.executable} -m benchmarks.plonebuild", pty=False)
    if os.geteuid() == 0:
        c.run(f"{sys.executable} -m benchmarks.bootstrap", pty=False)
        c.run(f"{sys.executable} -m benchmarks.fleet", pty=False)
    else:
        print("benchmarks.bootstrap and benchmarks.fleet need root (debootstrap, network namespaces): skipped")


RELEASE_ERRORS = (hostconfig.ConfigError, ProfileError, EggBuildError, DistError, bundles.DirtyCheckout,
                  pins.PinError)


def _config(host: str) -> hostconfig.HostConfig:
    try:
        config = hostconfig.resolve(host)
    except hostconfig.ConfigError as error:
        raise Exit(str(error), 2)
    site.warn(config)
    return config


@task(name="release-eggs", help={"host": "the hostconfig whose buildout to release (default: sandbox)",
                                 "allow_dirty": "release eggs with uncommitted files"})
def release_eggs(c, host="sandbox", allow_dirty=False):
    """Build every develop egg whose source changed, with a new version."""
    config = _config(host)
    try:
        wheels = bundles.release_eggs(config, allow_dirty=allow_dirty)
    except RELEASE_ERRORS as error:
        raise Exit(str(error), 1)
    for wheel in wheels:
        print(f"{wheel.name}  ({wheel.stat().st_size} bytes, {wheel.parent})")


@task(help={"host": "the hostconfig whose buildout to pin (default: sandbox)",
            "allow_dirty": "pin eggs with uncommitted files"})
def pin(c, host="sandbox", allow_dirty=False):
    """Write versions.cfg with every distribution the production profile uses."""
    config = _config(host)
    try:
        wheels = bundles.release_eggs(config, allow_dirty=allow_dirty)
        resolved = pins.resolve(config, wheels)
    except RELEASE_ERRORS as error:
        raise Exit(str(error), 1)
    path = config.buildout_dir / "versions.cfg"
    path.write_text(pins.render(resolved, config.buildout_config, path.read_text() if path.is_file() else ""))
    print(f"pinned {len(resolved)} distributions in {path}")


@task(help={"host": "the hostconfig to bundle for (default: sandbox)",
            "allow_dirty": "bundle eggs with uncommitted files"})
def bundle(c, host="sandbox", allow_dirty=False):
    """Make the release tarball for a host: buildout files, pins, distributions, manifest."""
    config = _config(host)
    target = platforms.remembered(config.name, CACHE) or platforms.this_machine()
    try:
        made = bundles.make(config, target, bundles.release_eggs(config, allow_dirty=allow_dirty))
    except RELEASE_ERRORS as error:
        raise Exit(str(error), 1)
    print(f"release {made.release_id} for {target.key}: {made.archive} "
          f"({made.archive.stat().st_size} bytes, {len(made.dists)} distributions)")


@task(help={"buildout": "the buildout directory to read", "host": "the name of the host config to write",
            "address": "the host's address", "root": "the site's root on the host (default: /srv/NAME)",
            "profile": "the profile the host runs (default: production.cfg, else buildout.cfg)",
            "port": "the SSH port (default: 22)", "user": "who deploys (default: you)"})
def init(c, buildout, host, address, root=None, profile=None, port=None, user=None):
    """Write hostconfigs/NAME.cfg from an existing buildout, saying what it guessed."""
    if port is not None and not (re.fullmatch(r"[0-9]{1,5}", str(port)) and 0 < int(port) < 65536):
        raise Exit(f"init --port {port}: a TCP port, 1-65535 (digits 0-9)", 2)
    try:
        path, said = inits.init_config(Path(buildout), host, address, hostconfig.CONFIG_DIR, root=root,
                                       profile=profile, port=int(port) if port else None, user=user)
    except FileExistsError as error:
        raise Exit(f"{error} exists: init writes only a new config (remove it, or choose another --host)", 2)
    except inits.InitError as error:
        raise Exit(str(error), 2)
    print("\n".join(f"guessed: {line}" for line in said))
    print(f"wrote {path}: check it, then fab -H {host} deploy")


@task(name="new-site", help={"name": "the site's name: sites/NAME, hostconfigs/NAME-*.cfg",
                             "kind": "plain (the example's app), zope or plone (default: plain)",
                             "modules": "profiles/modules to use, comma-separated (e.g. mailhost)",
                             "versions": f"plone: the versions file to extend (default: {newsite.PLONE_VERSIONS})"})
def new_site(c, name, kind="plain", modules="", versions=None):
    """Make a new site: a layered buildout in sites/NAME and hostconfigs for its stages."""
    try:
        site = newsite.plan(name, kind, tuple(filter(None, (m.strip() for m in modules.split(",")))),
                            versions=versions)
        written = newsite.write(site)
    except newsite.NewSiteError as error:
        raise Exit(str(error), 2)
    for path in written:
        print(f"wrote {path}")
    if kind != "plain":
        print(f"the Zope admin password is {site.env_key} in {site.configs.parent / '.env'}")
    pin = f"invoke pin --host {name}-sandbox (Plone's versions file pins far more than the site uses), then " \
        if kind == "plone" else ""
    print(f"ports {', '.join(map(str, site.ports))}; next: {pin}fab -H {name}-sandbox deploy")


HERE_HELP = {"directory": "a site's root (the settings its deploy left there) or a buildout directory",
             "host": "the hostconfig whose site (deployed on this machine) to use; default: sandbox's, or the "
                     "settings its deploy left there", "keep": "full backups to keep (0: all)"}


def _here(c, directory, host, keep):
    """The settings and the hooks of invoke backup/restore; the lock names this process."""
    c.owner_pid = os.getpid()
    if keep is not None and not (re.fullmatch(r"[0-9]{1,5}", str(keep)) and int(keep) <= 10000):
        raise Exit(f"--keep {keep}: a whole number of full backups, 0 (all) to 10000 (digits 0-9)", 2)
    return backups.here_settings(directory, host, dry=bool(c.config.run.dry),
                                 **({"keep": int(keep)} if keep is not None else {}))


@task(help={**HERE_HELP, **BACKUP_HELP})
def backup(c, directory=None, host=None, full=False, snapshot=False, zip=False, quiet=False, keep=None):
    """Back up a site's data on this machine, as fab backup does: repozo and blobs, verified."""
    try:
        settings = backups.variant(_here(c, directory, host, keep), zip=zip)
        backups.make_backup(c, settings, backups.local_hooks(c, settings, quiet), full=full, snapshot=snapshot or zip)
    except BackupError as error:
        raise Exit(str(error), 1)


@task(positional=["date"], help={**HERE_HELP, **RESTORE_HELP})
def restore(c, date=None, directory=None, host=None, snapshot=False, zip=False, from_=None, alternative=False,
            no_prompt=False, keep=None):
    """Restore a backup of a site's data on this machine (stop its processes first); the newest without a date."""
    try:
        source = restores.source_of(_config(host or "sandbox"), from_, alternative) if alternative else from_
        settings = backups.variant(_here(c, directory, host, keep), zip=zip, source=source)
        hooks = backups.local_hooks(c, settings)
        hooks.confirm = (lambda text: True) if no_prompt else restores.ask
        restores.restore_backup(c, settings, hooks, date=date, snapshot=snapshot or zip)
    except BackupError as error:
        raise Exit(str(error), 1)


optional_positional(restore, "date")


ns = Collection(sandbox, demo, demo_stop, bench, release_eggs, pin, bundle, init, new_site, backup, restore)
