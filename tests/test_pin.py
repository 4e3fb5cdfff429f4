"""Integration: `invoke pin` resolves the example's production profile with a real buildout."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sites import BUILD_JUNK, REPO

INVOKE = str(Path(sys.executable).parent / "invoke")


@pytest.fixture
def buildout(tmp_path):
    import shutil
    shutil.copytree(REPO / "example", tmp_path / "example", ignore=BUILD_JUNK)
    (tmp_path / "hostconfigs").mkdir()
    (tmp_path / "hostconfigs" / "p.cfg").write_text(
        "[host]\naddress = 127.0.0.1\nroot = /srv/p\n[buildout]\ndirectory = ../example\n")
    return tmp_path


def pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"(?m)^([A-Za-z][\w.-]*) = (\S+)$", path.read_text()))


def invoke(buildout: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([INVOKE, *args, "--host", "p"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "DEPLOY_HOSTCONFIGS": str(buildout / "hostconfigs")})


def test_pin_writes_every_distribution_production_uses(buildout):
    versions = buildout / "example" / "versions.cfg"
    before = pins(versions)
    result = invoke(buildout, "pin")
    assert result.returncode == 0, result.stderr
    after = pins(versions)
    assert re.fullmatch(r"1\.0\.post\d{14}\+src\.[0-9a-f]{8}", after.pop("demoapp"))
    before.pop("demoapp")
    assert after == before  # the hand-made pins of example/ are exactly what buildout uses
    assert "# required by: BTrees, demoapp, ZEO, ZODB\npersistent = 6.9" in versions.read_text()
    assert list(after) == sorted(after, key=str.lower)


def test_pin_refuses_a_production_profile_that_picks_versions(buildout):
    production = buildout / "example" / "production.cfg"
    production.write_text(production.read_text().replace("allow-picked-versions = false",
                                                         "allow-picked-versions = true"))
    result = invoke(buildout, "pin")
    assert result.returncode == 1
    assert "production.cfg: a production profile needs 'allow-picked-versions = false'" in result.stderr


def test_a_develop_egg_that_does_not_build_is_named(buildout):
    (buildout / "example" / "src" / "demoapp" / "pyproject.toml").write_text("[project]\nname = \n")
    result = invoke(buildout, "release-eggs")
    assert result.returncode == 1
    assert "develop egg" in result.stderr and "src/demoapp does not build" in result.stderr
