"""An OpenSSH server on 127.0.0.1, run as the current user, for demos and tests.

Everything it owns lives in one state directory (``.sandbox/`` by default)::

    host_ed25519_key[.pub]     the server's host key
    client_ed25519_key[.pub]   the key to log in with
    authorized_keys            the client's public key
    known_hosts                the host key, for [127.0.0.1]:PORT
    sshd_config  sshd.pid  sshd.log

The server runs as whoever starts it. As root it accepts root; as a normal user it
accepts only that user (an unprivileged sshd cannot switch users), which is all a
deploy to 127.0.0.1 needs. Only the current user may log in, with the client key.

    python -m sandbox.sshd start|stop|status [--dir D] [--port P]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
DEFAULT_PORT = 2222
DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".sandbox"

MISSING_SSHD = "sshd not found: install openssh-server (apt-get install openssh-server)"
MISSING_KEYGEN = "ssh-keygen not found: install openssh-client (apt-get install openssh-client)"

SFTP_SERVERS = (
    "/usr/lib/openssh/sftp-server",  # Debian, Ubuntu
    "/usr/libexec/openssh/sftp-server",  # Fedora, RHEL
    "/usr/lib/ssh/sftp-server",  # Arch
    "/usr/libexec/sftp-server",  # macOS, BSDs
)
# Debian's compiled-in privilege separation directory; sshd refuses to start as
# root without it, and it lives on a tmpfs that a container may never have set up.
PRIVSEP_DIR = Path("/run/sshd")

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

HOST_KEY = "host_ed25519_key"
CLIENT_KEY = "client_ed25519_key"
AUTHORIZED_KEYS = "authorized_keys"
KNOWN_HOSTS = "known_hosts"
CONFIG = "sshd_config"
PID_FILE = "sshd.pid"
LOG_FILE = "sshd.log"


class SandboxError(RuntimeError):
    """The sandbox sshd could not be found, started or stopped."""


@dataclass(frozen=True)
class Sandbox:
    """A running sandbox sshd and what a client needs to log in to it."""

    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    state_dir: Path
    pid: int


def find_sshd() -> str | None:
    """Return the absolute path of sshd, or None when OpenSSH's server is missing.

    ``$SANDBOX_SSHD`` replaces the search (point it at a missing file to hide
    sshd). Otherwise PATH, then /usr/sbin, which a normal user's PATH may lack.
    """
    override = os.environ.get("SANDBOX_SSHD")
    if override is not None:
        return os.path.abspath(override) if os.access(override, os.X_OK) else None
    found = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin")
    # sshd re-executes itself for every connection, which needs an absolute path.
    return os.path.abspath(found) if found else None


def find_sftp_server() -> str:
    """Return the sftp-server program, or sshd's built-in one when none is found."""
    for candidate in SFTP_SERVERS:
        if os.access(candidate, os.X_OK):
            return candidate
    return "internal-sftp"


def current_user() -> str:
    """Return the name of the account this process runs as.

    Not getpass.getuser(): it trusts $USER and $LOGNAME, which ``sudo -E`` or
    ``runuser`` can leave pointing at another account, and an unprivileged sshd
    can only ever let in the account it runs as.
    """
    return pwd.getpwuid(os.geteuid()).pw_name


def running_pid(state_dir: Path) -> int | None:
    """Return the pid of the sandbox sshd in ``state_dir`` if it is alive."""
    pid = _read_pid(Path(state_dir) / PID_FILE)
    if pid is None or not _is_alive_sshd(pid):
        return None
    return pid


def configured_port(state_dir: Path) -> int | None:
    """Return the port the sshd_config in ``state_dir`` listens on, if there is one."""
    try:
        lines = (Path(state_dir) / CONFIG).read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        words = line.split()
        if len(words) == 2 and words[0] == "Port" and words[1].isdigit():
            return int(words[1])
    return None


def start(state_dir: Path, port: int = DEFAULT_PORT) -> Sandbox:
    """Start the sandbox sshd on 127.0.0.1:``port``, or reuse the one running.

    Keys are made once and kept; the config and known_hosts are rewritten on
    every real start, so that a new port takes effect.
    """
    state_dir = Path(state_dir).resolve()
    pid = running_pid(state_dir)
    if pid is not None:
        if configured_port(state_dir) == port and _answers_ssh(port):
            return _sandbox(state_dir, port, pid)
        stop(state_dir)  # another port, or wedged: start afresh

    sshd = find_sshd()
    if sshd is None:
        raise SandboxError(MISSING_SSHD)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    user = current_user()
    _ensure_key(state_dir / HOST_KEY, "sandbox host key")
    _ensure_key(state_dir / CLIENT_KEY, f"sandbox client key for {user}")
    (state_dir / AUTHORIZED_KEYS).write_text(_public_key(state_dir / CLIENT_KEY))
    (state_dir / KNOWN_HOSTS).write_text(_known_hosts_line(state_dir / HOST_KEY, port))
    (state_dir / CONFIG).write_text(sshd_config(state_dir, port, user, find_sftp_server()))
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        if _shadow_password(user).startswith("!"):
            # Without PAM, sshd itself refuses a locked account, keys or not.
            raise SandboxError(
                f"the {user} account is locked ('!' in /etc/shadow), so sshd refuses it; "
                f"allow key logins with: usermod -p '*' {user}"
            )

    pid_file = state_dir / PID_FILE
    pid_file.unlink(missing_ok=True)
    log = state_dir / LOG_FILE
    log_start = log.stat().st_size if log.exists() else 0
    # The parent exits non-zero on a bad config. It daemonizes before binding,
    # so a taken port shows only in the log, and the pid file comes after the bind.
    result = subprocess.run(
        [sshd, "-f", str(state_dir / CONFIG), "-E", str(log)],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    if result.returncode != 0:
        raise SandboxError(
            f"sshd exited with {result.returncode} on 127.0.0.1:{port}:\n"
            f"{result.stderr.strip()}\n{_log_since(log, log_start)}".rstrip()
        )
    _wait_until(
        lambda: running_pid(state_dir) is not None or _gave_up(_log_since(log, log_start)),
        START_TIMEOUT,
    )
    pid = running_pid(state_dir)
    if pid is None:
        raise SandboxError(
            f"sshd did not stay up on 127.0.0.1:{port}:\n{_log_since(log, log_start)}".rstrip()
        )
    if not _wait_until(lambda: _answers_ssh(port), START_TIMEOUT):
        _stop_pid(pid)
        raise SandboxError(
            f"sshd (pid {pid}) does not answer on 127.0.0.1:{port}:\n"
            f"{_log_since(log, log_start)}".rstrip()
        )
    return _sandbox(state_dir, port, pid)


def stop(state_dir: Path) -> bool:
    """Stop the sandbox sshd and its open sessions; return whether one was running."""
    state_dir = Path(state_dir).resolve()
    pid = running_pid(state_dir)
    if pid is not None:
        _stop_pid(pid)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    return pid is not None


def sshd_config(state_dir: Path, port: int, user: str, sftp_server: str) -> str:
    """Return the sshd_config text for a sandbox in ``state_dir``."""
    authorized_keys = str(state_dir / AUTHORIZED_KEYS).replace("%", "%%")  # % starts a token
    lines = [
        "# Written by sandbox/sshd.py on every start; edits are lost.",
        f"ListenAddress {HOST}",
        f"Port {port}",
        f"HostKey {_quote(state_dir / HOST_KEY)}",
        f"PidFile {_quote(state_dir / PID_FILE)}",
        f"AuthorizedKeysFile {_quote(authorized_keys)}",
        f"AllowUsers {user}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        # The state directory may sit in /tmp or a group-writable home.
        "StrictModes no",
        # PAM needs root and, in containers, a working loginuid; keys need none of it.
        "UsePAM no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        f"Subsystem sftp {sftp_server}",
        "LogLevel VERBOSE",
    ]
    if user == "root":
        lines.append("PermitRootLogin prohibit-password")
    return "\n".join(lines) + "\n"


def _sandbox(state_dir: Path, port: int, pid: int) -> Sandbox:
    return Sandbox(
        host=HOST,
        port=port,
        user=current_user(),
        key_file=state_dir / CLIENT_KEY,
        known_hosts=state_dir / KNOWN_HOSTS,
        state_dir=state_dir,
        pid=pid,
    )


def _ensure_key(path: Path, comment: str) -> None:
    """Make an ed25519 key pair at ``path`` unless there is one already."""
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise SandboxError(MISSING_KEYGEN)
    public = path.with_name(path.name + ".pub")
    if path.exists() and public.exists():
        return
    if path.exists():
        public_key = subprocess.run(
            [keygen, "-y", "-f", str(path)], check=True, capture_output=True, text=True
        ).stdout
        public.write_text(public_key)
        return
    public.unlink(missing_ok=True)
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _shadow_password(user: str) -> str:
    """Return ``user``'s password field from /etc/shadow ('' when unreadable)."""
    try:
        lines = Path("/etc/shadow").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        name, _, rest = line.partition(":")
        if name == user:
            return rest.partition(":")[0]
    return ""


def _public_key(private_key: Path) -> str:
    return private_key.with_name(private_key.name + ".pub").read_text()


def _known_hosts_line(host_key: Path, port: int) -> str:
    key_type, key_data = _public_key(host_key).split()[:2]
    pattern = HOST if port == 22 else f"[{HOST}]:{port}"
    return f"{pattern} {key_type} {key_data}\n"


def _quote(value: Path | str) -> str:
    """Quote a value for sshd_config, which splits words like a shell does."""
    text = str(value)
    if any(char in text for char in '"\\\n'):
        raise SandboxError(f"sshd_config cannot hold this path: {text!r}")
    return f'"{text}"'


def _read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def _is_alive_sshd(pid: int) -> bool:
    """Tell whether ``pid`` is a live sshd this user may signal.

    A killed daemon whose parent (init in a container) does not reap it lingers as
    a zombie, which kill(pid, 0) still reports; /proc tells them apart on Linux.
    """
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not Path("/proc/self").exists():
        return True  # no /proc (macOS): trust the pid file
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        command = (proc / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and b"sshd" in command


def _children(pid: int) -> list[int]:
    """Return the pids whose parent is ``pid`` (Linux only; empty elsewhere)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _stop_pid(pid: int) -> None:
    """Terminate the listener and the sessions it forked, escalating to SIGKILL."""
    # Each session calls setsid(), so the listener's process group misses them.
    pids = [pid, *_children(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for each in pids:
            try:
                os.kill(each, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if _wait_until(lambda: not any(_is_alive_sshd(p) for p in pids), STOP_TIMEOUT):
            return
    raise SandboxError(f"sshd (pid {pid}) survived SIGKILL")


def _answers_ssh(port: int) -> bool:
    """Tell whether an SSH server greets on 127.0.0.1:``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            # Hang up without a banner of our own: after a complete exchange sshd
            # forks its privilege-separated child, which the hang-up leaves to init.
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _log_since(log: Path, offset: int) -> str:
    """Return what sshd logged after ``offset``: this start's messages only."""
    try:
        with log.open("rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _gave_up(log_text: str) -> bool:
    """Tell whether a daemonized sshd logged that it is exiting."""
    return any(
        line.startswith("fatal:") or line.startswith("Cannot bind any address")
        for line in log_text.splitlines()
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line: start, stop or show the sandbox sshd."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.sshd",
        description="An OpenSSH server on 127.0.0.1 run as the current user.",
        epilog="status exits 0 when the sandbox runs, 3 when it does not.",
    )
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("SANDBOX_DIR", DEFAULT_DIR)),
        help="state directory: keys, config, pid file, log (default: $SANDBOX_DIR or %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("SANDBOX_PORT", DEFAULT_PORT)),
        help="port on 127.0.0.1 (default: $SANDBOX_PORT or %(default)s)",
    )
    args = parser.parse_args(argv)
    state_dir = args.dir.resolve()
    try:
        if args.action == "start":
            before = running_pid(state_dir)
            sandbox = start(state_dir, args.port)
            verb = "reusing" if sandbox.pid == before else "started"
            where = f"{sandbox.host}:{sandbox.port}"
            print(f"{verb} sshd (pid {sandbox.pid}) on {where} in {state_dir}")
            print("log in with: " + shlex.join(_ssh_command(sandbox)))
        elif args.action == "stop":
            pid = running_pid(state_dir)
            if stop(state_dir):
                print(f"stopped sshd (pid {pid}) in {state_dir}")
            else:
                print(f"sshd was not running in {state_dir}")
        else:
            pid = running_pid(state_dir)
            if pid is None:
                print(f"sshd is not running in {state_dir}")
                return 3
            port = configured_port(state_dir)
            answers = "answers" if port and _answers_ssh(port) else "does not answer"
            print(f"sshd running (pid {pid}) on {HOST}:{port} and {answers}, in {state_dir}")
    except SandboxError as error:
        print(f"sandbox: {error}", file=sys.stderr)
        return 1
    return 0


def _ssh_command(sandbox: Sandbox) -> list[str]:
    return [
        "ssh",
        "-p", str(sandbox.port),
        "-i", str(sandbox.key_file),
        "-o", f"UserKnownHostsFile={sandbox.known_hosts}",
        "-o", "IdentitiesOnly=yes",
        f"{sandbox.user}@{sandbox.host}",
    ]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
