"""Integration: hostile or clumsy task arguments, against a deployed site on the sandbox host.

Each is refused with exit 2, a message that names the argument and what would be right,
no traceback, the site still serving and nothing changed on the host.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from sites import FAB, REPO, make_site

ARGUMENTS = [
    (("logs", "--lines", "abc"), "--lines"),
    (("logs", "--lines", "-5"), "--lines"),
    (("logs", "--lines", "0"), "--lines"),
    (("logs", "--lines", "1;id"), "--lines"),
    (("logs", "--lines", "99999999999"), "--lines"),
    (("restore", "yesterday", "--no-prompt"), "is not yyyy-mm-dd"),
    (("restore", "2026-13-45", "--no-prompt"), "2026-13-45"),
    (("restore", "$(id)", "--no-prompt"), "is not yyyy-mm-dd"),
    (("restore", "2026-11-20; rm -rf /", "--no-prompt"), "is not yyyy-mm-dd"),
    (("restore", "--from", "backups", "--no-prompt"), "restore --from: 'backups' is neither offsite nor an absolute path"),
    (("restore", "--from", "/srv/../etc", "--no-prompt"), "restore --from: '/srv/../etc' is neither offsite nor an absolute path"),
    (("restore", "--alternative", "--no-prompt"), "no [backup] alternative_restore_source"),
    (("restore", "--from", "/tmp", "--alternative", "--no-prompt"), "not both"),
    (("rollback", "--to", "../../etc"), "rollback --to takes a release id"),
    (("rollback", "--to", "x;rm -rf ~"), "rollback --to takes a release id"),
    (("rollback", "--to", "20261122T031500Z-3f2a9c1d/../.."), "rollback --to takes a release id"),
    (("maintenance", "sideways"), "on or off"),
    (("cleanup", "--before-restore-older-than", "abc"), "--before-restore-older-than"),
    (("cleanup", "--before-restore-older-than", "-1"), "--before-restore-older-than"),
    (("copy-data",), "name the site that gets the data"),
    (("copy-data", "--to", "nosuchsite", "--no-prompt"), "nosuchsite"),
    (("copy-data", "--to", "test", "--no-prompt"), "is test itself"),
]


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    test_site = make_site(tmp_path_factory.mktemp("arguments"), sandbox_host)
    test_site.fab("deploy")
    test_site.add("before the arguments", "kept")
    yield test_site
    test_site.stop_everything()


def tree(root) -> dict[str, float]:
    """Every path under ``root`` with its modification time (logs and job state apart)."""
    listed = {}
    for directory, names, files in os.walk(root):
        names[:] = [n for n in names if n not in (".jobs", ".switch", "run", "log")]
        for name in files:
            path = os.path.join(directory, name)
            if not name.endswith((".log", ".lock", ".pid", ".sock")):
                listed[path] = os.lstat(path).st_mtime
    return listed


@pytest.mark.parametrize("arguments, words", ARGUMENTS, ids=[" ".join(a) for a, _ in ARGUMENTS])
def test_a_bad_argument_is_refused_naming_it_and_changes_nothing(site, arguments, words):
    before = tree(site.workdir)
    result = site.fab(*arguments, check=False)
    said = result.stdout + result.stderr
    assert result.returncode == 2, said
    assert words in said, said
    assert "Traceback" not in said
    assert tree(site.workdir) == before
    assert site.answers("instance1") and "before the arguments" in [o["title"] for o in site.objects()]


def test_a_host_that_has_no_config_is_named_with_the_configs_there_are(site):
    result = subprocess.run([FAB, "-H", "tset", "status"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, **site.env})
    assert result.returncode == 2, result.stderr
    assert "tset" in result.stderr and "test" in result.stderr and "Traceback" not in result.stderr
