"""Fault injection: the host's disk full during a deploy's build and during its backup.

The site's root is a small tmpfs of its own (mounting one needs root), filled to the last
byte when the tool's output shows the step starting, and emptied again once the deploy
has ended. For ``fab restore`` and ``fab backup``, whose steps can end before a fill
lands, the disk is filled before they start, leaving room for their logs and not for
their data. After each: the deploy failed saying the disk is full, the old release still
serves through the front and on every health URL, the data is what it was, and the next
plain deploy succeeds.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time

import pytest

from sites import make_site
from support import fill_disk, free_port, pids_running, require
from test_faults import assert_serving_with_the_data, deploys_plainly, fab_acting_at, no_release_marked_bad
from test_front import front_extra, stop_front

DISK_SIZE = "300m"  # a deployed example site takes some 60 MB


def unmount(directory) -> None:
    """Unmount ``directory``, once the processes that run from it are gone (lazily at worst)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for pid in pids_running(str(directory)):  # what the site left running, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not subprocess.run(["umount", str(directory)], capture_output=True).returncode:
            return
        time.sleep(0.5)
    subprocess.run(["umount", "-l", str(directory)], check=True)


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    require(os.geteuid() == 0, "the disk-full points mount a tmpfs as the site's root, which needs root")
    require(shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy"), "haproxy not found: apt-get install haproxy")
    workdir = tmp_path_factory.mktemp("faults-disk")
    root = workdir / "site"  # make_site's root
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0755", "tmpfs", str(root)],
                             capture_output=True, text=True)
    require(mounted.returncode == 0, f"cannot mount a tmpfs on {root}: {mounted.stderr.strip()}")
    test_site = None
    try:
        ports = free_port(), free_port()
        test_site = make_site(workdir, sandbox_host, front_extra(*ports))
        test_site.front_ports = ports
        test_site.fab("deploy")
        test_site.add("before the faults", "kept")
        yield test_site
    finally:
        if test_site is not None:
            test_site.stop_everything()
            stop_front(test_site)
        unmount(root)


def deploy_filling_the_disk_at(site, marker: str) -> tuple[str, int]:
    """``fab deploy``, the disk filled when ``marker`` shows and emptied when the deploy ends."""
    fillers = []
    try:
        output, code = fab_acting_at(site, marker, lambda process: fillers.append(fill_disk(str(site.root))),
                                     "deploy")
    finally:
        for path in fillers:
            os.unlink(path)
    return output, code


def says_the_disk_is_full(output: str) -> bool:
    return any(words in output.lower() for words in ("no space left on device", "disk full", "disk is full"))


def test_a_disk_filled_during_buildout_fails_the_deploy_and_the_old_release_serves_until_the_next_deploy(site):
    site.change_code("# fault: the disk full during buildout")
    data, leaving = site.objects(), site.current()
    output, code = deploy_filling_the_disk_at(site, "▸ buildout")
    assert code == 1, output
    assert site.current() == leaving
    assert_serving_with_the_data(site, data)
    deploys_plainly(site)
    assert site.current() != leaving
    assert_serving_with_the_data(site, data)
    assert no_release_marked_bad(site)
    assert says_the_disk_is_full(output), output


def test_a_disk_filled_during_the_backup_before_the_switch_fails_the_deploy_and_the_next_deploy_works(site):
    site.change_code("# fault: the disk full during the backup")
    site.add("new since the last backup", "kept")  # so that repozo has work
    data, leaving = site.objects(), site.current()
    output, code = deploy_filling_the_disk_at(site, "▸ repozo backup")
    assert code == 1, output
    assert site.current() == leaving
    assert_serving_with_the_data(site, data)
    deploys_plainly(site)
    assert site.current() != leaving
    assert_serving_with_the_data(site, data)
    assert says_the_disk_is_full(output), output


def test_a_disk_filled_during_the_push_fails_the_deploy_and_the_next_deploy_works(site):
    site.change_code("# fault: the disk full during the push")
    data, leaving = site.objects(), site.current()
    output, code = deploy_filling_the_disk_at(site, "▸ push")
    assert code == 1, output
    assert site.current() == leaving
    assert_serving_with_the_data(site, data)
    deploys_plainly(site)
    assert site.current() != leaving
    assert_serving_with_the_data(site, data)
    assert says_the_disk_is_full(output), output


LEFT = 256 * 1024  # what a disk "too full" keeps free: room for the job's log and verdict, not for the data


def outgrow_the_space_left(site, title: str) -> None:
    """Objects of about 1 MB in all in the filestorage, half of it after gzip: more than the disk keeps free."""
    for n in range(20):
        site.add(f"{title} {n} {secrets.token_hex(25_000)}", "kept")


def fab_on_a_disk_too_full(site, *args: str) -> tuple[str, int]:
    """``fab ARGS`` with the site's disk filled but for ``LEFT`` bytes; its output and exit code."""
    filler = fill_disk(str(site.root), leave=LEFT)  # before it starts: its repozo meets it, not by a race
    try:
        result = site.fab(*args, check=False)
    finally:
        os.unlink(filler)
    return result.stdout + result.stderr, result.returncode


def test_a_disk_too_full_for_a_restore_fails_it_without_touching_the_data_and_the_next_restore_works(site):
    outgrow_the_space_left(site, "big before the restore")
    site.fab("backup")  # the latest backup holds the data as it is: a restore changes nothing
    data = site.objects()
    output, code = fab_on_a_disk_too_full(site, "restore", "latest", "--no-prompt")
    assert code == 1, output
    assert_serving_with_the_data(site, data)
    assert not list((site.root / "var" / "filestorage").glob("*.restoring*"))
    site.fab("restore", "latest", "--no-prompt")
    assert_serving_with_the_data(site, data)
    assert says_the_disk_is_full(output), output


def test_a_disk_too_full_for_a_backup_fails_it_saying_so_and_the_next_backup_works(site):
    outgrow_the_space_left(site, "new since the last backup: disk full in fab backup")  # repozo has 1 MB to write
    data = site.objects()
    output, code = fab_on_a_disk_too_full(site, "backup")
    assert code == 1, output
    assert_serving_with_the_data(site, data)
    site.fab("backup")
    assert_serving_with_the_data(site, data)
    assert says_the_disk_is_full(output), output
