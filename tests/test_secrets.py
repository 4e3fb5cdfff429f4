"""Secrets stay secret: redaction in every escaped form, the short-secret rule, overrides kept out of
the release, and one site deployed to the sandbox whose secrets show nowhere but in their 0600 files.

The unit tests check the pure parts (the pattern, the load-time rules, what the bundle holds);
the integration tests deploy a site with a secret in an override, in a health URL and in the
webhook URL, sample the process list while ``fab`` runs, and look for every form of each secret
in the output, the files under the site root, the local bundle, ``deploy.log`` and the payloads.
"""
from __future__ import annotations

import gzip
import html
import io
import json
import os
import re
import shlex
import stat
import subprocess
import tarfile
import threading
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path

import pytest

from fabfile.build import bundle
from fabfile.remote import notify
from fabfile.config.hostconfig import ConfigError, load, secret_pattern
from sites import FAB, REPO, make_site
from support import webhook_receiver

HOSTILE = 'pä"ss w\'ord'

GOOD = """
[host]
address = plone.example.org
root = /srv/mysite
[buildout]
directory = ../example
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.cfg"
    path.write_text(GOOD + text)
    return path


# -- redaction -------------------------------------------------------------------------------

@pytest.mark.parametrize("form", [
    HOSTILE, repr(HOSTILE), ascii(HOSTILE), json.dumps(HOSTILE), json.dumps(HOSTILE, ensure_ascii=False),
    json.dumps(repr(HOSTILE)), json.dumps(json.dumps(HOSTILE)), repr(json.dumps(HOSTILE)),
    shlex.quote(HOSTILE), shlex.quote(f"--token={HOSTILE}"), "'pä\"ss w'\\''ord'",
    urllib.parse.quote(HOSTILE), urllib.parse.quote_plus(HOSTILE), urllib.parse.quote(HOSTILE).lower(),
    urllib.parse.quote(HOSTILE.encode("latin-1")), html.escape(HOSTILE),
], ids=["clear", "repr", "ascii", "json", "json-utf8", "json-of-repr", "json-of-json", "repr-of-json",
        "shlex", "shlex-in-a-token", "shell-backslash", "url", "url-plus", "url-lower", "url-latin1", "html"])
def test_redact_finds_the_secret_in_every_escaped_form(tmp_path, form):
    config = load(write(tmp_path, "[notify]\nwebhook = https://hooks.example/?t=${env:T}\n"), environ={"T": HOSTILE})
    text = f"error: cannot open {form} (found at least ' ')"
    redacted = config.redact(text)
    assert redacted.startswith("error: cannot open ") and redacted.endswith(" (found at least ' ')")
    assert "***" in redacted and not re.search(r"ss|ord|p(?:ä|%|\\|&)", redacted), redacted
    assert len(redacted) <= len(text) - len(form) + len("'--token=***'")


def test_a_non_bmp_secret_is_found_as_a_json_surrogate_pair(tmp_path):
    pattern = secret_pattern(frozenset({"key-\U0001F511-1"}))
    assert pattern.sub("***", json.dumps({"e": "a key-\U0001F511-1 b"})) == '{"e": "a *** b"}'


def test_redaction_leaves_text_that_is_not_secret_alone(tmp_path):
    config = load(write(tmp_path, "[notify]\nwebhook = https://hooks.example/${env:T}\n"), environ={"T": "s3cr"})
    line = 'deploy of 20261122T031500Z-3f2a9c1d: "s3 cr" s3c r3 s%33 \\u0073 scr3 ok'
    assert config.redact(line) == line
    assert config.redact(f"{line} s3cr") == f"{line} ***"


def test_no_secret_means_nothing_is_redacted():
    assert secret_pattern(frozenset()).sub("***", "any text") == "any text"


@pytest.mark.parametrize("value", ["a", "ab", "abc"])
def test_a_secret_shorter_than_four_characters_is_refused_naming_file_section_and_key(tmp_path, value):
    path = write(tmp_path, "[notify]\nwebhook = https://hooks.example/${env:T}\n")
    with pytest.raises(ConfigError) as error:
        load(path, environ={"T": value})
    assert str(error.value).startswith(f"{path}: [notify] webhook: ${{env:T}} is {len(value)} character(s) long")
    assert "4 characters or more" in str(error.value)


def test_an_empty_env_value_is_no_secret_and_is_allowed(tmp_path):
    assert load(write(tmp_path, "[notify]\nwebhook = ${env:T}\n"), environ={"T": ""}).secrets == frozenset()


def test_a_secret_in_green_options_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"\[green\] ports:instance1: holds a \$\{env:\.\.\.\} value"):
        load(write(tmp_path, "[green]\nports:instance1 = ${env:T}\n"), environ={"T": "18081"})


def test_a_secret_with_a_buildout_reference_in_an_override_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"\[overrides\] a:b: a \$\{env:\.\.\.\} value holds '\$\{'"):
        load(write(tmp_path, "[overrides]\na:b = ${env:T}\n"), environ={"T": "x${y:z}"})


def test_webhook_payload_redacts_a_secret_with_quotes_in_every_field(tmp_path):
    config = load(write(tmp_path, "[notify]\nwebhook = https://hooks.example/${env:T}\n"), environ={"T": HOSTILE})
    data = notify.payload(config, "deploy-failed", "r1", "me", 1.0, f"failed: {json.dumps(HOSTILE)} {HOSTILE!r}")
    assert data["error"] == "failed: \"***\" '***'" and not secret_pattern(config.secrets).search(json.dumps(data))


# -- overrides that hold secrets ---------------------------------------------------------------

def override_config(tmp_path: Path, password: str):
    text = "[overrides]\nports:instance1 = 18081\ninstance1:password = ${env:PW}\n"
    return load(write(tmp_path, text), environ={"PW": password})


def test_an_override_with_a_secret_goes_to_the_secrets_file_which_deploy_cfg_extends(tmp_path):
    config = override_config(tmp_path, "zope-" + HOSTILE)
    deploy_cfg = bundle.host_buildout(config, "production.cfg", {"demoapp": "1.0"})
    assert "extends = production.cfg /srv/mysite/secrets.cfg" in deploy_cfg
    assert "ports = " not in deploy_cfg and "instance1 = 18081" in deploy_cfg
    assert not secret_pattern(config.secrets).search(deploy_cfg) and "password" not in deploy_cfg
    assert bundle.secrets_buildout(config).splitlines()[-2:] == ["[instance1]", f"password = zope-{HOSTILE}"]


def test_without_secret_overrides_deploy_cfg_extends_the_profile_only(tmp_path):
    config = load(write(tmp_path, "[overrides]\nports:instance1 = 18081\n"), environ={})
    assert bundle.secrets_buildout(config) is None
    assert "extends = production.cfg\n" in bundle.host_buildout(config, "production.cfg", {})


def test_a_changed_secret_changes_deploy_cfg_by_a_fingerprint_only(tmp_path):
    one, again, other = (bundle.host_buildout(override_config(tmp_path, pw), "production.cfg", {})
                         for pw in ("first-secret", "first-secret", "second-secret"))
    assert one == again and one != other
    fingerprint = re.search(r"# secrets\.cfg: scrypt:([0-9a-f]{24})\n", one)
    assert fingerprint and [a for a, b in zip(one.splitlines(), other.splitlines()) if a != b] == \
        [f"# secrets.cfg: scrypt:{fingerprint.group(1)}"]


def test_buildout_reads_the_secret_override_through_extends(tmp_path):
    from zc.buildout.buildout import Buildout
    root = tmp_path / "site"
    release = root / "releases" / "r1"
    release.mkdir(parents=True)
    (release / "production.cfg").write_text("[buildout]\nparts =\n[instance1]\nport = 1\n")
    path = tmp_path / "p.cfg"
    path.write_text(GOOD.replace("/srv/mysite", str(root)) +
                    "[overrides]\ninstance1:password = ${env:PW}\ninstance1:port = 2\n")
    config = load(path, environ={"PW": "zope-" + HOSTILE})
    (release / "deploy.cfg").write_text(bundle.host_buildout(config, "production.cfg", {}))
    (root / "secrets.cfg").write_text(bundle.secrets_buildout(config))
    cwd = os.getcwd()
    os.chdir(release)
    try:
        options = Buildout("deploy.cfg", [], use_user_defaults=False)["instance1"]
        assert (options["password"], options["port"]) == ("zope-" + HOSTILE, "2")
    finally:
        os.chdir(cwd)


# -- one site deployed to the sandbox ---------------------------------------------------------

SECRETS = {"ZOPE_PASSWORD": "zope-Pa55word-1", "HEALTH_TOKEN": "health-t0ken-2", "HOOK_TOKEN": "hook-t0ken-3"}


@pytest.fixture(scope="module")
def webhook():
    """A webhook receiver on 127.0.0.1 that keeps what it was sent, the request line too."""
    with webhook_receiver() as hook:
        yield hook


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory, webhook):
    port, _ = webhook
    extra = (f"instance1:api-token = ${{env:ZOPE_PASSWORD}}\n"
             f"[notify]\nwebhook = http://127.0.0.1:{port}/hook?token=${{env:HOOK_TOKEN}}\n")
    test_site = make_site(tmp_path_factory.mktemp("secrets"), sandbox_host, extra,
                          health_path="health?token=${env:HEALTH_TOKEN}")
    test_site.env.update(SECRETS)
    yield test_site
    test_site.stop_everything()


def forms_of(*secrets: str) -> re.Pattern:
    return secret_pattern(frozenset(secrets))


@contextmanager
def process_list_watch(pattern: re.Pattern, seconds: float = 600):
    """Sample ``ps -eo args`` until the block ends (at most ``seconds``); what matched, and how often."""
    seen = {"samples": 0, "leaks": []}
    done = threading.Event()

    def sample():
        deadline = time.monotonic() + seconds
        while not done.is_set() and time.monotonic() < deadline:
            listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            seen["samples"] += 1
            seen["leaks"] += [line for line in listing.splitlines() if pattern.search(line)]
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


def deploy_watched(site, pattern: re.Pattern, check: bool = True):
    with process_list_watch(pattern) as processes:
        result = site.fab("deploy", check=check)
    assert processes["samples"] > 50, processes["samples"]
    assert processes["leaks"] == []
    return result


def files_with_secret(root: Path, pattern: re.Pattern) -> dict[str, int]:
    """Every file under ``root`` in which a form of a secret shows: its path and its mode."""
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory, name)
            if path.is_symlink() or not path.is_file():
                continue
            if pattern.search(path.read_bytes().decode("utf-8", "surrogateescape")):
                found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


def bundle_texts(digest: str) -> dict[str, str]:
    """The local bundle of a release: its raw bytes and each member, as text."""
    (archive,) = (REPO / ".cache" / "bundles").glob(f"{digest}*.tar.gz")
    texts = {"(archive)": archive.read_bytes().decode("latin-1"),
             "(tar)": gzip.decompress(archive.read_bytes()).decode("utf-8", "surrogateescape")}
    with tarfile.open(fileobj=io.BytesIO(archive.read_bytes())) as tar:
        for member in tar.getmembers():
            texts[member.name] = tar.extractfile(member).read().decode("utf-8", "surrogateescape")
    return texts


def test_a_deploy_shows_no_secret_in_output_process_list_bundle_or_log(site, webhook):
    every = forms_of(*SECRETS.values())
    result = deploy_watched(site, every)
    release = site.current()
    assert f"deployed {release}" in result.stdout
    assert not every.search(result.stdout + result.stderr)
    texts = bundle_texts(release.rsplit("-", 1)[1])
    assert "secrets.cfg: scrypt:" in texts["deploy.cfg"]
    assert [name for name, text in texts.items() if every.search(text)] == []
    assert not every.search((site.root / "deploy.log").read_text())
    _, received = webhook
    assert [json.loads(body)["event"] for _, body in received] == ["deploy-started", "deploy-succeeded"]
    assert not every.search(" ".join(body.decode() for _, body in received))


def test_on_the_host_secrets_live_only_in_0600_files(site):
    release = site.current()
    found = files_with_secret(site.root, forms_of(*SECRETS.values()))
    # <root>/secrets.cfg: the override; .installed.cfg: buildout's record of the part's options;
    # .switch/<job>.json: the switch job's plan (health URLs, and the secrets to take out of its output);
    # .deploy/backup-job/settings.json: the backup job's settings (the pattern that takes the secrets out
    # of what it prints and posts), which every release carries for invoke backup and cron
    expected = {"secrets.cfg", f"releases/{release}/.installed.cfg", f"releases/{release}/.deploy/backup-job/settings.json"}
    plans = {path for path in found if re.fullmatch(r"\.switch/[0-9TZ]+-[0-9a-f]{6}\.json", path)}
    assert set(found) == expected | plans and plans, found
    assert set(found.values()) == {0o600}, found
    assert f"api-token = {SECRETS['ZOPE_PASSWORD']}" in (site.root / "secrets.cfg").read_text()
    assert f"extends = production.cfg {site.root}/secrets.cfg" in \
        (site.root / "releases" / release / "deploy.cfg").read_text()
    installed = (site.root / "releases" / release / ".installed.cfg").read_text()
    assert f"api-token = {SECRETS['ZOPE_PASSWORD']}" in installed  # buildout got it


def test_a_changed_secret_makes_a_new_release_built_with_it(site):
    before = site.current()
    site.env["ZOPE_PASSWORD"] = "zope-Pa55word-changed"
    try:
        deploy_watched(site, forms_of(*SECRETS.values(), "zope-Pa55word-changed"))
        release = site.current()
        assert release != before and release.rsplit("-", 1)[1] != before.rsplit("-", 1)[1]
        assert "api-token = zope-Pa55word-changed" in (site.root / "secrets.cfg").read_text()
        assert "api-token = zope-Pa55word-changed" in \
            (site.root / "releases" / release / ".installed.cfg").read_text()
        assert stat.S_IMODE((site.root / "secrets.cfg").stat().st_mode) == 0o600
        again = site.fab("deploy")
        assert "nothing to deploy" in again.stdout and site.current() == release
    finally:
        site.env["ZOPE_PASSWORD"] = SECRETS["ZOPE_PASSWORD"]


def test_a_failing_health_check_with_a_quoted_non_ascii_secret_prints_no_form_of_it(site, webhook):
    hostile = "tok-" + HOSTILE
    config = site.workdir / "hostconfigs" / "test.cfg"
    config.write_text(config.read_text().replace("health_timeout = 30", "health_timeout = 3"))
    site.env["HEALTH_TOKEN"] = hostile
    site.change_code("# a change whose health check fails")
    before, logged = site.current(), len(site.deploy_log())
    _, received = webhook
    heard = len(received)
    every = forms_of(*SECRETS.values(), hostile, "zope-Pa55word-changed")
    result = deploy_watched(site, every, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "health check failed" in output and "Traceback" not in output
    assert "***" in output and not every.search(output), output
    assert site.current() == before
    assert not every.search(json.dumps(site.deploy_log()[logged:]))
    assert [json.loads(body)["event"] for _, body in received[heard:]] == ["deploy-started", "deploy-failed"]
    assert not every.search(" ".join(body.decode() for _, body in received[heard:]))


def test_a_short_secret_stops_fab_with_exit_2_naming_the_key(site):
    result = subprocess.run([FAB, "-H", "test", "releases"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, **site.env, "HOOK_TOKEN": "ab1"}, timeout=120)
    assert result.returncode == 2
    assert "[notify] webhook: ${env:HOOK_TOKEN} is 3 character(s) long" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
