"""Unit tests: loading, layering and checking host configs."""
from pathlib import Path

import pytest

from fabfile.config import hostconfig
from fabfile.config.hostconfig import ConfigError

GOOD = """
[host]
address = plone.example.org
user = deploy
app_user = plone
root = /srv/mysite
[buildout]
directory = ../example
[services]
programs = zeoserver instance1
[program:instance1]
health_url = http://127.0.0.1:8081/
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_config_has_its_values_and_defaults(tmp_path):
    config = hostconfig.load(write(tmp_path, "production.cfg", GOOD), environ={})
    assert config.address == "plone.example.org"
    assert config.port == 22
    assert config.app_user == "plone"
    assert config.root == "/srv/mysite"
    assert config.buildout_dir == (tmp_path.parent / "example").resolve()
    assert [p.name for p in config.programs] == ["zeoserver", "instance1"]
    assert config.programs[0].command == "bin/zeoserver"
    assert config.programs[1].health_url == "http://127.0.0.1:8081/"
    assert config.keep_releases == 5
    assert config.manager == "supervisor"


def test_extends_layers_bases_and_later_files_win(tmp_path):
    write(tmp_path, "base.cfg", GOOD)
    staging = write(tmp_path, "staging.cfg", "[hostconfig]\nextends = base.cfg\n[host]\nport = 2200\n")
    config = hostconfig.load(staging, environ={})
    assert (config.address, config.port, config.name) == ("plone.example.org", 2200, "staging")


def test_env_values_are_read_and_redacted(tmp_path):
    path = write(tmp_path, "p.cfg", GOOD + "[notify]\nwebhook = https://hooks.example/${env:TOKEN}\n")
    config = hostconfig.load(path, environ={"TOKEN": "s3cret"})
    assert config.webhook == "https://hooks.example/s3cret"
    assert config.redact("posting to " + config.webhook) == "posting to https://hooks.example/***"


def test_dotenv_file_beside_hostconfigs_provides_secrets(tmp_path, monkeypatch):
    monkeypatch.delenv("TOKEN", raising=False)
    (tmp_path / "hostconfigs").mkdir()
    (tmp_path / ".env").write_text("TOKEN=fromdotenv\n")
    path = write(tmp_path / "hostconfigs", "p.cfg", GOOD + "[notify]\nwebhook = ${env:TOKEN}\n")
    assert hostconfig.load(path).webhook == "fromdotenv"


def test_a_doubled_dollar_is_a_dollar(tmp_path):
    text = GOOD + "[notify]\nwebhook = https://x.invalid/$$HOME\n"
    config = hostconfig.load(write(tmp_path, "p.cfg", text), environ={})
    assert config.webhook == "https://x.invalid/$HOME"


def test_here_is_the_directory_of_the_file(tmp_path):
    text = GOOD.replace("root = /srv/mysite", "root = ${here}/site")
    assert hostconfig.load(write(tmp_path, "p.cfg", text), environ={}).root == f"{tmp_path}/site"


@pytest.mark.parametrize("change, message", [
    (("[host]", "[host]\ncolour = blue"), r"\[host\] colour: unknown key"),
    (("[buildout]", "[bogus]\nx = 1\n[buildout]"), r"\[bogus\] x: unknown section"),
    (("address = plone.example.org", ""), r"\[host\] address is required"),
    (("user = deploy", "user = deploy\nport = twenty-two"), r"\[host\] port: 'twenty-two' is not a whole number"),
    (("root = /srv/mysite", "root = srv/mysite"), r"\[host\] root: 'srv/mysite' must be an absolute path"),
    (("root = /srv/mysite", "root = /srv/my site"), r"\[host\] root: '/srv/my site' has a space"),
    (("root = /srv/mysite", "root = /srv/it's"), r"\[host\] root: .* has a space, a quote or a \$"),
    (("root = /srv/mysite", "root = /srv/$$HOME"), r"\[host\] root: .* has a space, a quote or a \$"),
    (("[services]", "[notify]\nwebhook = ${env:MISSING_TOKEN}\n[services]"),
     r"\[notify\] webhook: \$\{env:MISSING_TOKEN\} is not set"),
    (("programs = zeoserver instance1", "programs = zeoserver instance1\nmanager = runit"),
     r"\[services\] manager: 'runit' is not one of"),
    (("programs = zeoserver instance1", "programs = zeoserver"), r"\[program:instance1\] names a program missing"),
    (("[services]", "[backup]\nbefore_deploy = maybe\n[services]"), r"\[backup\] before_deploy: 'maybe' is not true"),
])
def test_bad_configs_name_file_section_and_key(tmp_path, change, message):
    path = write(tmp_path, "bad.cfg", GOOD.replace(*change))
    with pytest.raises(ConfigError, match=message) as caught:
        hostconfig.load(path, environ={})
    assert str(path) in str(caught.value)


def test_an_extends_loop_is_named(tmp_path):
    write(tmp_path, "a.cfg", "[hostconfig]\nextends = b.cfg\n" + GOOD)
    write(tmp_path, "b.cfg", "[hostconfig]\nextends = a.cfg\n")
    with pytest.raises(ConfigError, match=r"\[hostconfig\] extends loops: .*a.cfg -> .*b.cfg -> .*a.cfg"):
        hostconfig.load(tmp_path / "a.cfg", environ={})


def test_resolve_finds_by_name_then_by_address_else_lists_configs(tmp_path):
    write(tmp_path, "production.cfg", GOOD)
    assert hostconfig.resolve("production", tmp_path, environ={}).name == "production"
    assert hostconfig.resolve("plone.example.org", tmp_path, environ={}).name == "production"
    with pytest.raises(ConfigError, match=r"no host config for 'nowhere'.*there are: production"):
        hostconfig.resolve("nowhere", tmp_path, environ={})


def test_overrides_are_section_option_pairs(tmp_path):
    path = write(tmp_path, "p.cfg", GOOD + "[overrides]\nports:instance1 = 18081\n")
    assert hostconfig.load(path, environ={}).overrides == (("ports", "instance1", "18081"),)


def test_shipped_configs_load():
    for name in hostconfig.available():
        config = hostconfig.resolve(name, environ={"DEPLOY_WEBHOOK": "https://x.invalid/t"})
        assert config.root.startswith("/")


def test_a_name_with_no_config_lists_the_configs_even_when_one_is_broken(tmp_path):
    write(tmp_path, "good.cfg", GOOD)
    write(tmp_path, "broken.cfg", GOOD + "[nonsense]\nkey = value\n")
    with pytest.raises(ConfigError) as error:
        hostconfig.resolve("typo", tmp_path, environ={})
    message = str(error.value)
    assert "no host config for 'typo'" in message and "there are: broken, good" in message
    assert "skipped, they do not load: broken (broken.cfg: [nonsense]" in message
    assert hostconfig.resolve("plone.example.org", tmp_path, environ={}).name == "good"


def test_min_uptime_reaches_the_switch_jobs_plan_and_is_bounded_by_the_health_timeout(tmp_path):
    from fabfile.switch.job import build_plan
    default = hostconfig.load(write(tmp_path, "a.cfg", GOOD), environ={})
    assert default.min_uptime == 3 and build_plan(default, "r2", "r1", "job")["min_uptime"] == 3
    longer = hostconfig.load(write(tmp_path, "b.cfg", GOOD + "[deploy]\nmin_uptime = 10\n"), environ={})
    assert build_plan(longer, "r2", "r1", "job")["min_uptime"] == 10
    with pytest.raises(ConfigError, match=r"\[deploy\] min_uptime = 90: longer than health_timeout \(60 s\)"):
        hostconfig.load(write(tmp_path, "c.cfg", GOOD + "[deploy]\nmin_uptime = 90\n"), environ={})
    with pytest.raises(ConfigError, match="min_uptime"):
        hostconfig.load(write(tmp_path, "d.cfg", GOOD + "[deploy]\nmin_uptime = 0\n"), environ={})
