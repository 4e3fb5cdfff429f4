"""Helpers shared by the tests: what may be skipped locally must run in CI."""

from __future__ import annotations

import errno
import http.server
import os
import socket
import threading
from contextlib import contextmanager

import pytest


def in_ci() -> bool:
    """Tell whether the tests run in CI, where nothing may be skipped."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require(condition: object, reason: str) -> None:
    """Skip the test with ``reason`` unless ``condition`` holds; in CI, fail instead.

    A laptop may lack sshd, root or debootstrap; CI installs them all, so a
    missing one there is a broken runner, not a test to leave out.
    """
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true and a requirement is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- fault injection: processes on the (local) sandbox host, a full disk -------------------

def parent_of(pid: int) -> int:
    """The parent pid of ``pid`` (Linux /proc); 0 when it is gone."""
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def command_line(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pids_running(*words: str) -> list[int]:
    """The processes whose command line holds every one of ``words`` (not this one)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            line = command_line(int(entry))
            if line and all(word in line for word in words):
                found.append(int(entry))
    return found


def ssh_session_of(pid: int, listener: int) -> list[int]:
    """The sshd processes serving the SSH connection that runs ``pid``: its ancestors below the
    listening sshd (the privileged monitor and the user's session process). Empty when ``pid``
    does not descend from ``listener``."""
    chain = []
    for _ in range(64):  # bounded: a process tree is never this deep
        parent = parent_of(pid)
        if parent in (0, 1):
            return []
        if parent == listener:
            return [p for p in [*chain, pid] if "sshd" in command_line(p)]
        chain.append(pid)
        pid = parent
    return []


def fill_disk(directory: str, name: str = "filler", leave: int = 0) -> str:
    """Fill the file system holding ``directory`` until ``leave`` bytes are left (0: until a write fails
    with ENOSPC); the filler's path."""
    path = os.path.join(directory, name)
    stat = os.statvfs(directory)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, max(stat.f_bavail * stat.f_frsize - 65536 - leave, 4096))
            os.lseek(fd, 0, os.SEEK_END)
        except OSError:
            pass  # what fallocate could not take, the writes below take
        block = b"\0" * 4096
        for _ in range(1_000_000):  # bounded: 4 GB at most
            if leave and (lambda s: s.f_bavail * s.f_frsize)(os.statvfs(directory)) <= leave + len(block):
                break
            try:
                os.write(fd, block)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    return path


@contextmanager
def webhook_receiver():
    """A webhook receiver on 127.0.0.1 for as long as the block runs: ``(port, received)``, each POST
    kept as ``(request path, body bytes)``."""
    received: list[tuple[str, bytes]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()
