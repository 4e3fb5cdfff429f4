"""The example app on other hosts than its ZEO server: a listen address of its own, blobs through ZEO.

Three buildouts of ``example/`` (its production profile, offline, as a host builds it), one per
"host" on the loopback network (Linux routes all of 127/8 to lo): the ZEO host (the defaults,
127.0.0.1) runs ``bin/zeoserver``; two web hosts (127.0.0.2, 127.0.0.3) set the overrides a
fleet host sets (``ports:host``, ``ports:zeo-host``, ``data:blob-cache``) and run
``bin/instance1``, each with a blob cache of its own. Real processes, killed by pid.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from sites import BUILD_JUNK, REPO
from support import free_port, require

BIN = Path(sys.executable).parent
ZEO_HOST, WEB_HOST, OTHER_WEB_HOST = "127.0.0.1", "127.0.0.2", "127.0.0.3"
WAIT = 60  # seconds, for a process to answer


def loopback_works(address: str) -> bool:
    try:
        with socket.socket() as sock:
            sock.bind((address, 0))
        return True
    except OSError:
        return False


def build(tmp_path: Path, name: str, dists: Path, overrides: str) -> Path:
    """A copy of example/ built with its production profile and ``overrides``, like a host's deploy.cfg."""
    site = tmp_path / name
    shutil.copytree(REPO / "example", site, ignore=BUILD_JUNK)
    (site / "host.cfg").write_text(
        "[buildout]\nextends = production.cfg\n"
        f"eggs-directory = {tmp_path / 'eggs'}\nindex = {dists}\n"
        f"find-links = {dists} {REPO / '.cache' / 'dists'}\n"
        "allow-picked-versions = false\nnewest = false\nshow-picked-versions = false\n\n" + overrides)
    result = subprocess.run([str(BIN / "buildout"), "-c", "host.cfg"], cwd=site, capture_output=True, text=True,
                            env={**os.environ, "PIP_NO_INDEX": "1"}, timeout=300)
    assert result.returncode == 0, f"buildout of {name}:\n{result.stdout}\n{result.stderr}"
    return site


@contextmanager
def running(*commands: tuple[list[str], Path]) -> Iterator[list[subprocess.Popen]]:
    """Start each command (its output to a log beside it); in the end, stop each by its pid."""
    processes: list[subprocess.Popen] = []
    try:
        for command, log in commands:
            with open(log, "wb") as output:
                processes.append(subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL, start_new_session=True))
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=15)


def request(host: str, port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_until(check, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    shown = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs if log.exists())
    pytest.fail(f"{what} within {WAIT} s\n{shown}")


def healthy(host: str, port: int) -> bool:
    return request(host, port, "GET", "/health") == (200, b"ok")


def blob_files(directory: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in directory.rglob("*.blob")} if directory.exists() else {}


def test_instances_on_other_hosts_listen_on_their_address_and_get_blobs_through_zeo(tmp_path: Path) -> None:
    require(loopback_works(WEB_HOST) and loopback_works(OTHER_WEB_HOST),
            f"{WEB_HOST} and {OTHER_WEB_HOST} cannot be bound here (Linux routes 127/8 to lo)")
    dists = tmp_path / "dists"
    wheel = subprocess.run([str(BIN / "pip"), "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                            "-w", str(dists), str(REPO / "example" / "src" / "demoapp")],
                           capture_output=True, text=True, timeout=300)
    assert wheel.returncode == 0, wheel.stderr

    zeo_port, web_port, other_port = free_port(), free_port(), free_port()
    unused = "instance1 = %d\ninstance2 = %d\n" % (free_port(), free_port())
    zeo_site = build(tmp_path, "zeohost", dists, f"[ports]\nzeo = {zeo_port}\n{unused}")
    cache, other_cache = tmp_path / "cache-web", tmp_path / "cache-other"
    web_sites = [
        build(tmp_path, name, dists,
              f"[ports]\nhost = {host}\nzeo-host = {ZEO_HOST}\nzeo = {zeo_port}\n"
              f"instance1 = {port}\ninstance2 = {free_port()}\n\n[data]\nblob-cache = {blob_cache}\n")
        for name, host, port, blob_cache in (("webhost", WEB_HOST, web_port, cache),
                                             ("otherhost", OTHER_WEB_HOST, other_port, other_cache))]

    # The ZEO host's own instances keep today's shared directory; the web hosts' use their caches.
    server_blobs = zeo_site / "var" / "blobstorage"
    assert f"'--blobstorage', '{server_blobs}'" in (zeo_site / "bin" / "instance1").read_text()
    for site, blob_cache in zip(web_sites, (cache, other_cache)):
        script = (site / "bin" / "instance1").read_text()
        assert f"'--zeo-address', '{ZEO_HOST}:{zeo_port}'" in script
        assert f"'--blob-cache', '{blob_cache}'" in script

    logs = [tmp_path / "zeoserver.log", tmp_path / "webhost.log", tmp_path / "otherhost.log"]
    with ExitStack() as processes:
        # The server first: a ZEO client that finds no server tries again only after a while.
        processes.enter_context(running(([str(zeo_site / "bin" / "zeoserver"), "fg"], logs[0])))
        wait_until(lambda: socket.create_connection((ZEO_HOST, zeo_port), timeout=2).close() is None,
                   "the ZEO server did not listen", logs)
        processes.enter_context(running(([str(web_sites[0] / "bin" / "instance1"), "console"], logs[1]),
                                        ([str(web_sites[1] / "bin" / "instance1"), "console"], logs[2])))
        wait_until(lambda: healthy(WEB_HOST, web_port), f"the instance on {WEB_HOST} was not healthy", logs)
        wait_until(lambda: healthy(OTHER_WEB_HOST, other_port),
                   f"the instance on {OTHER_WEB_HOST} was not healthy", logs)

        # Each instance listens on its host's address only.
        for port in (web_port, other_port):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((ZEO_HOST, port), timeout=2).close()

        # Several of ZEO's 59000-byte chunks, every byte value.
        data = os.urandom(150_000) + bytes(range(256))
        body = urllib.parse.urlencode({"title": "remote blob", "data": data}).encode()
        status, _ = request(WEB_HOST, web_port, "POST", "/add", body,
                            {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303

        assert not blob_files(other_cache), "the other instance had the blob before it read it"
        status, listing = request(OTHER_WEB_HOST, other_port, "GET", "/objects.json")
        assert status == 200
        assert json.loads(listing) == [{"title": "remote blob", "blob_sha256": hashlib.sha256(data).hexdigest()}]

    # The server stored the blob in its own directory; each client has a copy in its own cache, which
    # ZEO laid out as a cache; no web host has a blobstorage of its own.
    assert list(blob_files(server_blobs).values()) == [data]
    assert (server_blobs / ".layout").read_text().strip() == "bushy"
    for blob_cache in (cache, other_cache):
        assert list(blob_files(blob_cache).values()) == [data]
        assert (blob_cache / ".layout").read_text().strip() == "zeocache"
    for site in web_sites:
        assert not blob_files(site / "var"), f"{site.name} wrote blobs outside its cache"
