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
