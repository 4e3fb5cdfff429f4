"""Modules that pin one distribution to different versions stop ``pin`` and ``deploy`` naming both
files (issue 10, item 2); a file that extends another may override its pins, as buildout layers them."""
from __future__ import annotations

from pathlib import Path

import pytest

from fabfile.buildout.profile import ProfileError, read_profile


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory / "production.cfg"


SITE = "[buildout]\nextends = versions.cfg modules/theme.cfg modules/ldap.cfg settings.cfg\n"


def test_two_modules_pinning_one_distribution_differently_are_named_both(tmp_path):
    profile = write(tmp_path, {"production.cfg": SITE, "versions.cfg": "[versions]\n", "settings.cfg": "",
                               "modules/theme.cfg": "[versions]\nplone.app.theming = 5.0.1\n",
                               "modules/ldap.cfg": "[versions]\nplone.app.theming = 5.0.4\npython-ldap = 3.4\n"})
    with pytest.raises(ProfileError) as error:
        read_profile(profile)
    message = str(error.value)
    assert str(tmp_path / "modules/theme.cfg") in message and str(tmp_path / "modules/ldap.cfg") in message
    assert "5.0.1" in message and "5.0.4" in message


def test_a_module_and_the_sites_settings_pinning_differently_are_named_both(tmp_path):
    profile = write(tmp_path, {"production.cfg": SITE, "versions.cfg": "", "modules/ldap.cfg": "",
                               "modules/theme.cfg": "[versions]\nplone.app.theming = 5.0.1\n",
                               "settings.cfg": "[versions]\nPlone.App.Theming = 5.0.2\n"})
    with pytest.raises(ProfileError, match="settings.cfg"):
        read_profile(profile)


def test_the_same_pin_in_two_modules_and_an_override_by_a_file_that_extends_them_are_fine(tmp_path):
    profile = write(tmp_path, {
        "production.cfg": SITE + "[versions]\npython-ldap = 3.5\n",
        "versions.cfg": "[versions]\npython-ldap = 3.0\n",  # what `invoke pin` wrote: layered under the rest
        "modules/theme.cfg": "[versions]\nplone.app.theming = 5.0.1\npython-ldap = 3.4\n",
        "modules/ldap.cfg": "[versions]\nplone.app.theming = 5.0.1\npython-ldap = 3.3\n",
        "settings.cfg": ""})
    read = read_profile(profile)
    assert read.versions["plone.app.theming"] == "5.0.1"
    assert read.versions["python-ldap"] == "3.5"  # production.cfg extends both modules: it decides


def test_a_modules_eggs_add_to_the_sites_as_buildout_layers_them(tmp_path):
    """A nested file's ``+=`` adds to everything merged before it (buildout flattens extends)."""
    profile = write(tmp_path, {
        "production.cfg": "[buildout]\nextends = base.cfg settings.cfg\n",
        "base.cfg": "[site]\neggs = Zope\n",
        "settings.cfg": "[buildout]\nextends = modules/mailhost.cfg\n[site]\neggs += collective.site\n",
        "modules/mailhost.cfg": "[site]\neggs += Products.MailHost\n"})
    assert read_profile(profile).option("site", "eggs").split() == ["Zope", "Products.MailHost", "collective.site"]
