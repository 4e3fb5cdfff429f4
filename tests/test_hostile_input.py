"""Unit tests: hostile or clumsy arguments that end up in a file or pick data (new-site's name and
``--versions``, a restore date, ``status --limit``) are refused before anything is written or chosen."""
from __future__ import annotations

import pytest

from fabfile.sites import newsite


@pytest.fixture
def configs(tmp_path):
    (tmp_path / "hostconfigs").mkdir()
    (tmp_path / "hostconfigs" / "sandbox.cfg").write_text("[host]\naddress = 127.0.0.1\n")
    return tmp_path / "hostconfigs"


@pytest.mark.parametrize("name", ["mysite\n", "mysite\n[evil]", "my site", "Mysite", "-x", "a" * 32, "my/site",
                                  "mysite\r", "\u0661site"])
def test_new_site_refuses_a_name_that_is_not_a_plain_name(configs, name):
    with pytest.raises(newsite.NewSiteError, match="a site's name is a lowercase letter"):
        newsite.plan(name, "plain", (), configs)


@pytest.mark.parametrize("versions", [
    "https://dist.plone.org/release/6.2.2/versions.cfg\n[buildout]\nextends = https://evil.example/v.cfg",
    "https://dist.plone.org/release/6.2.2/versions.cfg\r\n[buildout]",
    "https://dist.plone.org/versions.cfg https://evil.example/v.cfg",
    "https://dist.plone.org/${buildout:directory}/versions.cfg",
    "https://dist.plone.org/versions.cfg\t",
    "https:///versions.cfg",
    "https://dist.plone.org:99999/versions.cfg",
    "ftp://dist.plone.org/versions.cfg",
])
def test_new_site_refuses_versions_that_are_not_one_plain_url(configs, versions):
    with pytest.raises(newsite.NewSiteError, match="--versions"):
        newsite.plan("mysite", "plone", (), configs, versions=versions)


def test_new_site_takes_a_plain_versions_url(configs):
    site = newsite.plan("mysite", "plone", (), configs, versions="https://dist.plone.org/release/6.1.1/versions.cfg")
    assert site.versions == "https://dist.plone.org/release/6.1.1/versions.cfg"


def test_run_and_instance_run_output_is_redacted_like_a_hooks(capsys):
    from types import SimpleNamespace
    from invoke import Context
    from fabfile.config.model import HostConfig
    from fabfile.data import sitecommands
    secret = "s3cret-t0ken-xyz"
    config = HostConfig(name="site", path=None, address="h", root="/srv/site", buildout_dir=None,
                        secrets=frozenset({secret}))
    site = SimpleNamespace(dry=False, config=config, commands_run=0, connection=Context())
    exited = sitecommands.stream(site, f"echo 'out {secret}'; echo 'err {secret}' >&2; printf 'tail {secret}'; exit 3")
    said = capsys.readouterr()
    assert exited == 3
    assert secret not in said.out + said.err
    assert "out ***" in said.out and "tail ***" in said.out and "err ***" in said.err


@pytest.mark.parametrize("date", ["\u0662\u0660\u0662\u0666-\u0661\u0661-\u0662\u0660",   # Arabic-Indic 2026-11-20
                                  "\uff12\uff10\uff12\uff16-\uff11\uff11-\uff12\uff10",   # fullwidth
                                  "2026-11-\u0662\u0660", "2026-11-20-\u0660\u0663", "2026-11-20\n"])
def test_a_restore_date_in_other_digits_is_refused_not_taken_for_another_date(date):
    from fabfile.backups import repozo
    with pytest.raises(repozo.BackupError, match="is not yyyy-mm-dd"):
        repozo.parse_date(date)


@pytest.mark.parametrize("name", ["\u0662\u0660\u0662\u0666-11-20-03-15-00.fs", "2026-11-20-03-15-00.fs\n",
                                  "\uff12026-11-20-03-15-00.deltafs"])
def test_only_repozo_names_in_ascii_digits_are_backups(name):
    from fabfile.backups import repozo
    assert repozo.data_files([name]) == {}
    assert repozo.stamp_of(name) is None or name.endswith("\n")  # a prefix: STAMP.fs, STAMP.dat, STAMP/


@pytest.mark.parametrize("release", ["\u0662\u0660\u0662\u0666\u0661\u0661\u0662\u0662T031500Z-3f2a9c1d",
                                     "20261122T031500Z-3f2a9c1d\n"])
def test_a_release_id_in_other_digits_is_refused(release):
    from invoke import Exit
    from fabfile.tasks import releases
    with pytest.raises(Exit) as caught:
        releases.rollback.body(None, to=release)
    assert caught.value.code == 2 and "rollback --to takes a release id" in str(caught.value.message)


@pytest.mark.parametrize("lines", ["\u00b2", "\u0665", "\uff15", "5\n"])
def test_logs_lines_in_other_digits_is_refused_with_exit_2(lines):
    from invoke import Exit
    from fabfile.tasks import services
    with pytest.raises(Exit) as caught:
        services.logs.body(None, lines=lines)
    assert caught.value.code == 2 and "--lines" in str(caught.value.message)


@pytest.mark.parametrize("address, port", [("127.0.0.1:\u0668\u0660\u0668\u0661", None), ("127.0.0.1:8081", "8081"),
                                           ("h:\u00b2", None)])
def test_a_port_is_ascii_digits(address, port):
    from fabfile.config.model import port_of
    assert port_of(address) == port


@pytest.mark.parametrize("value", ["inf", "1e400", "\u0663", "\uff13", "3_0", " 3", "NaN", "-0.5", "99999999"])
def test_cleanup_days_are_ascii_digits_within_a_century(value):
    from invoke import Exit
    from fabfile.tasks import releases
    with pytest.raises(Exit) as caught:
        releases._days(value)
    assert caught.value.code == 2 and "--before-restore-older-than" in str(caught.value.message)


@pytest.mark.parametrize("value", ["\u0667", "\uff17", "7_0", "99999999999999999999999", "-1", "x"])
def test_pack_days_are_ascii_digits_within_a_century(value):
    from invoke import Exit
    from fabfile.data import sitecommands
    with pytest.raises(Exit) as caught:
        sitecommands.pack_days(value, None)
    assert caught.value.code == 2 and "pack --days" in str(caught.value.message)


def test_plain_days_still_work():
    from fabfile.data import sitecommands
    from fabfile.tasks import releases
    assert releases._days("1.5") == 1.5 and releases._days("0") == 0 and sitecommands.pack_days("7", None) == 7


@pytest.mark.parametrize("port", ["abc", "\u0662\u0662", "\u00b2", "70000", "0"])
def test_init_refuses_a_port_that_is_not_one_with_exit_2(tmp_path, port):
    import tasks
    from invoke import Exit
    with pytest.raises(Exit) as caught:
        tasks.init.body(None, str(tmp_path), "newhost", "h.example.org", port=port)
    assert caught.value.code == 2 and "init --port" in str(caught.value.message)


@pytest.mark.parametrize("keep", ["\u0662", "x", "-1", "10001"])
def test_invoke_backup_refuses_a_keep_that_is_not_a_count_with_exit_2(keep):
    from types import SimpleNamespace
    import tasks
    from invoke import Exit
    with pytest.raises(Exit) as caught:
        tasks._here(SimpleNamespace(config=SimpleNamespace(run=SimpleNamespace(dry=False))), ".", None, keep)
    assert caught.value.code == 2 and "--keep" in str(caught.value.message)


@pytest.mark.parametrize("health_url, value", [("http://127.0.0.1:8081/", "8081"), ("http://127.0.0.1:\u00b2/", "\u00b2")])
def test_the_ports_of_a_site_ignore_numbers_in_other_digits(tmp_path, health_url, value):
    from fabfile.config.model import HostConfig
    from fabfile.sites import hostsites
    config = HostConfig(name="s", path=tmp_path / "s.cfg", address="h", root="/srv/s", buildout_dir=tmp_path,
                        overrides=(("ports", "instance1", value),))
    assert set(hostsites.listen_ports(config)) == ({8081} if value == "8081" else set())


@pytest.mark.parametrize("argument, value, words", [
    ("name", "../../evil", "init --host"),
    ("name", "prod\n", "init --host"),
    ("name", "-x", "init --host"),
    ("address", "h.example.org\n[evil]", "init --address"),
    ("address", "h.example.org ;port = 2222", "init --address"),
    ("root", "/srv/site #x", "init --root"),
    ("profile", "production.cfg\n[host]", "init --profile"),
    ("user", "deploy\t", "init --user"),
])
def test_init_refuses_arguments_a_host_config_line_cannot_hold(tmp_path, argument, value, words):
    from fabfile.buildout.parts import InitError
    from fabfile.sites import init
    arguments = {"name": "prod", "address": "h.example.org", "root": None, "profile": None, "user": None,
                 argument: value}
    name, address = arguments.pop("name"), arguments.pop("address")
    with pytest.raises(InitError, match=words):
        init.init_config(tmp_path / "buildout", name, address, tmp_path / "hostconfigs", **arguments)
    assert not (tmp_path / "hostconfigs").exists() or not any((tmp_path / "hostconfigs").iterdir())
    assert not (tmp_path / "evil.cfg").exists()
