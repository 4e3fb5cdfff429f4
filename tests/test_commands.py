"""Unit tests: commands for the host are built from quoted tokens."""
import subprocess

import pytest

from fabfile import commands

ROOT = "/srv/my site $HOME"


@pytest.mark.parametrize("command, expected", [
    (commands.join("mkdir", "-p", ROOT), "mkdir -p '/srv/my site $HOME'"),
    (commands.switch_link(f"{ROOT}/current", "releases/20261122T031500Z-3f2a9c1d"),
     "ln -sfn releases/20261122T031500Z-3f2a9c1d '/srv/my site $HOME/current.new' && "
     "mv -T '/srv/my site $HOME/current.new' '/srv/my site $HOME/current'"),
    (commands.take_lock(f"{ROOT}/.lock", "ann at 2026-11-22"),
     "mkdir '/srv/my site $HOME/.lock' && printf '%s\\n' 'ann at 2026-11-22' > '/srv/my site $HOME/.lock/holder'"),
    (commands.in_directory(ROOT, "bin/buildout", {"PIP_NO_INDEX": "1"}),
     "cd '/srv/my site $HOME' && PIP_NO_INDEX=1 bin/buildout"),
    (commands.syslog("local3", "deploy", "it's done"), "logger -p local3.info -t deploy -- 'it'\"'\"'s done'"),
    (commands.remove(f"{ROOT}/releases/x"), "rm -rf -- '/srv/my site $HOME/releases/x'"),
])
def test_values_are_quoted(command, expected):
    assert command == expected


def test_commands_work_in_a_directory_with_space_and_dollar(tmp_path):
    root = tmp_path / "my site $HOME"
    run = lambda command: subprocess.run(["sh", "-c", command], check=True, capture_output=True, text=True)
    run(commands.make_directories(f"{root}/releases/a", f"{root}/releases/b"))
    run(commands.switch_link(f"{root}/current", "releases/a"))
    run(commands.switch_link(f"{root}/current", "releases/b"))
    assert (root / "current").readlink().as_posix() == "releases/b"
    run(commands.link_shared(f"{root}/releases/b", str(root), ["var", "other/dir"]))
    assert (root / "releases/b/var").resolve() == (root / "var").resolve()
    assert (root / "releases/b/other/dir").resolve() == (root / "other/dir").resolve()
    run(commands.append_line(f"{root}/deploy.log", '{"event": "deploy $x"}'))
    assert (root / "deploy.log").read_text() == '{"event": "deploy $x"}\n'
    run(commands.write_file(f"{root}/note", "a 'quoted' $value\n"))
    assert (root / "note").read_text() == "a 'quoted' $value\n"
    run(commands.take_lock(f"{root}/.lock", "me"))
    with pytest.raises(subprocess.CalledProcessError):
        run(commands.take_lock(f"{root}/.lock", "you"))
    assert (root / ".lock/holder").read_text() == "me\n"


def test_verify_checksums_names_a_corrupt_upload(tmp_path):
    import hashlib
    (tmp_path / "a.whl").write_bytes(b"good")
    (tmp_path / "b.whl").write_bytes(b"bad")
    good = hashlib.sha256(b"good").hexdigest()
    ok = subprocess.run(["sh", "-c", commands.verify_checksums(str(tmp_path), {"a.whl": good})])
    assert ok.returncode == 0
    bad = subprocess.run(["sh", "-c", commands.verify_checksums(str(tmp_path), {"a.whl": good, "b.whl": good})],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "b.whl: FAILED" in bad.stdout
