"""Fresh Debian hosts for the bootstrap tests: a debootstrap root filesystem, one per test.

The root filesystem (Debian 12, ``--variant=minbase`` plus what a VPS image has:
sshd, python3, sudo, systemd) is built once and kept under ``.cache/rootfs``; it is
built again when missing or when the package list below changes. Every host gets
an overlay on it, so each test starts from a fresh VPS, and its own network
namespace joined to this machine by a veth pair with a /30 of its own: the host
sees this machine and nothing else. apt on the host reaches the Debian mirror
through a small caching proxy on this machine's end of the pair, as a provider's
mirror would be.

A fleet shares a ``Bridge`` instead: each host's end of its pair is a port of one
Linux bridge on this machine, with an address in the bridge's /24, so the hosts
reach each other directly and this machine (the apt proxy, their default route) at
the bridge's ``.1``. ``create_many`` makes several hosts at once.

Two kinds:

- ``chroot``: sshd runs chrooted in the overlay, in the namespace, in a pid
  namespace of its own (killing its first process ends everything the tests started
  there). Quick; no systemd.
- ``booted``: ``systemd-nspawn --boot --register=no --keep-unit`` on the overlay, in
  the namespace: systemd runs, units can be enabled, and the host can be rebooted.
  It keeps ``CAP_NET_ADMIN`` (nspawn drops it where it did not make the network
  itself), so its root can load a firewall (nftables) into its own namespace.

Root logs in with a password (``root_password``), as on a VPS just handed over.
Everything here needs root; ``problems()`` says what is missing.
"""
from __future__ import annotations

import fcntl
import hashlib
import http.server
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

REPO = Path(__file__).resolve().parent.parent
ROOTFS_CACHE = REPO / ".cache" / "rootfs"
APT_CACHE = REPO / ".cache" / "apt-archives"
SUITE = "bookworm"
# What a freshly handed-over VPS image has; not what bootstrap-host installs (rsync, python3-dev, ...).
PACKAGES = ("openssh-server", "python3", "python3-venv", "sudo", "ca-certificates", "iproute2", "procps",
            "less", "netbase", "iputils-ping", "systemd", "systemd-sysv", "dbus", "libpam-systemd")
DEBOOTSTRAP_TIMEOUT = 900
BOOT_TIMEOUT = 60
STOP_TIMEOUT = 20
SSH_TIMEOUT = 30
PROXY_PORT = 3142
# 10.231.N.0/30 per host: N from this range, skipping any /30 this machine already uses.
SUBNET = "10.231"
# 10.232.N.0/24 per bridge: this machine is .1, its hosts .2 to .254.
BRIDGE_SUBNET = "10.232"
# Held while a free index is picked and taken (its namespace or bridge made): one per machine.
ALLOCATION_LOCK = Path("/run/lock/fabhosts.lock")
CREATE_WORKERS = 8
# The host keys a host makes on first start, as ``ssh-keygen -A`` would. RSA's takes most of a
# host's start (about a second of CPU): fleets that do not need one may leave it out.
HOST_KEYS = ("rsa", "ecdsa", "ed25519")
TOOLS = ("debootstrap", "ip", "unshare", "chroot", "mount", "umount", "nsenter")


class HostError(RuntimeError):
    """A test host could not be built, started or removed."""


def problems(booted: bool = False) -> list[str]:
    """Why test hosts cannot be made here (empty when they can)."""
    found = []
    if os.geteuid() != 0:
        found.append("test hosts need root (debootstrap, network namespaces, mounts)")
    for tool in (*TOOLS, *(("systemd-nspawn",) if booted else ())):
        if not shutil.which(tool):
            package = {"debootstrap": "debootstrap", "systemd-nspawn": "systemd-container",
                       "ip": "iproute2"}.get(tool, "util-linux")
            found.append(f"{tool} not found: apt-get install {package}")
    if "overlay" not in Path("/proc/filesystems").read_text():
        found.append("the kernel has no overlay filesystem")
    return found


def mirror() -> str:
    """The Debian mirror this machine's apt uses (deb.debian.org when none is named)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        found = re.search(r"^URIs:\s*(http\S*/debian)\s*$", text, re.M) or \
            re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(http\S*/debian)\s+" + SUITE, text, re.M)
        if found:
            return found.group(1)
    return "http://deb.debian.org/debian"


def rootfs() -> Path:
    """The cached root filesystem, built with debootstrap when missing (about a minute)."""
    key = hashlib.sha256(" ".join((SUITE, *PACKAGES, _PREPARE)).encode()).hexdigest()[:12]
    target = ROOTFS_CACHE / f"{SUITE}-{key}"
    ROOTFS_CACHE.mkdir(parents=True, exist_ok=True)
    with open(ROOTFS_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions never build it at once
        if (target / ".complete").exists():
            return target
        building = ROOTFS_CACHE / f".building-{key}"
        shutil.rmtree(building, ignore_errors=True)
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                   str(building), mirror()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=DEBOOTSTRAP_TIMEOUT)
        if result.returncode:
            raise HostError(f"debootstrap failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        subprocess.run(["chroot", str(building), "sh", "-c", _PREPARE], check=True, capture_output=True,
                       timeout=120)
        (building / ".complete").write_text(" ".join(command) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
        return target


# Make the image look like a VPS just handed over: root logs in with a password, no
# host keys yet (each host makes its own on first start), apt's caches empty.
_PREPARE = r"""
set -e
printf '%s\n' 'PermitRootLogin yes' 'PasswordAuthentication yes' 'UseDNS no' > /etc/ssh/sshd_config.d/vps.conf
# pam_loginuid cannot write the audit login uid inside a container; providers' images do the same
sed -i 's/^session\s\+required\s\+pam_loginuid.so/session optional pam_loginuid.so/' /etc/pam.d/sshd
rm -f /etc/ssh/ssh_host_*
apt-get clean
rm -rf /var/lib/apt/lists/*
echo vps > /etc/hostname
"""


@dataclass
class TestHost:
    """One fresh host: where its files are, how to reach it, and its processes."""

    __test__ = False
    name: str
    booted: bool
    workdir: Path
    index: int
    root_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    leader: int | None = None          # the first process: unshare (chroot) or systemd-nspawn
    proxy: "AptProxy | None" = None    # its own; on a bridge, the bridge's serves it
    process: subprocess.Popen | None = field(default=None, repr=False)
    bridge: "Bridge | None" = field(default=None, repr=False, compare=False)
    slot: int | None = None            # on a bridge: the last byte of its address

    @property
    def netns(self) -> str:
        return self.name

    @property
    def address(self) -> str:
        """The host's address: from this machine, and from the hosts on its bridge."""
        if self.bridge:
            return f"{self.bridge.subnet}.{self.slot}"
        return f"{SUBNET}.{self.index}.2"

    @property
    def gateway(self) -> str:
        """This machine's address as the host sees it: its end of the veth pair, or the bridge's."""
        if self.bridge:
            return self.bridge.address
        return f"{SUBNET}.{self.index}.1"

    @property
    def prefix_length(self) -> int:
        return 24 if self.bridge else 30

    @property
    def merged(self) -> Path:
        return self.workdir / "merged"

    def path(self, path: str) -> Path:
        """A path on the host, seen from this machine."""
        return self.merged / path.lstrip("/")

    def run(self, *command: str, user: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``command`` on the host (as ``user``), in its namespaces."""
        if user:
            command = ("runuser", "-u", user, "--", *command)
        if self.booted:
            inner = self._init_pid()
            argv = ["nsenter", "-t", str(inner), "-m", "-u", "-i", "-n", "-p", "-r", "-w", *command]
        else:
            argv = ["nsenter", "-t", str(self._init_pid()), "-m", "-n", "-p", "-r", "-w", *command]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode:
            raise HostError(f"{' '.join(command)} exited {result.returncode} on {self.name}:\n"
                            f"{result.stdout}{result.stderr}")
        return result

    def http_get(self, url: str, timeout: float = 10) -> str:
        """GET ``url`` from inside the host (the site listens on its 127.0.0.1)."""
        script = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
        return self.run("python3", "-c", script, url, timeout=timeout + 5).stdout.rstrip("\n")

    def processes(self) -> list[int]:
        """The host's first process and every process below it (none when it is not running)."""
        found, queue = [], [self.leader] if self.leader else []
        for _ in range(10_000):  # bounded: a test host runs a few dozen at most
            if not queue:
                break
            pid = queue.pop()
            found.append(pid)
            queue.extend(_children(pid))
        return found

    def _init_pid(self) -> int:
        """The host's pid 1 (as this machine numbers it): systemd, or the chroot's shell."""
        if self.leader is None:
            raise HostError(f"{self.name} is not running")
        children = _children(self.leader)
        if not children:
            raise HostError(f"{self.name}: its first process {self.leader} has no child")
        return children[0]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(each) for each in text.split()]


@contextmanager
def _allocating() -> Iterator[None]:
    """Hold this machine's lock for picking a free index and taking it (threads and processes)."""
    with open(ALLOCATION_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # an open file of its own per caller: threads wait too
        yield


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, left to this machine's init to reap, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _free_subnet(prefix: str, lowest: int, span: int, ours: str) -> int:
    """An index in ``lowest .. lowest + span - 1`` whose ``prefix.INDEX.`` no interface or route uses and
    whose ``ours`` path (our namespace or bridge, ``{}`` for the index) does not exist."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    for offset in range(span):
        index = lowest + (os.getpid() + offset) % span
        subnet = f"{prefix}.{index}."
        if subnet not in used and subnet not in routes and not Path(ours.format(index)).exists():
            return index
    raise HostError(f"no free subnet left in {prefix}.0.0/16")


def _free_index() -> int:
    """A /30 in 10.231.0.0/16 that no interface and no namespace of ours uses."""
    return _free_subnet(SUBNET, 20, 230, "/run/netns/fabhost{}")


def _free_bridge_index() -> int:
    """A /24 in 10.232.0.0/16 that no interface, route or bridge of ours uses."""
    return _free_subnet(BRIDGE_SUBNET, 1, 250, "/sys/class/net/fabbr{}")


def _sh(*command: str, timeout: float = 30) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise HostError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()}")


def create(workdir: Path, booted: bool = False, bridge: Bridge | None = None,
           host_keys: tuple[str, ...] = HOST_KEYS) -> TestHost:
    """A fresh host, running and answering SSH on its address; ``destroy`` removes it.

    On ``bridge``, it reaches the other hosts there; without, this machine only."""
    if not host_keys or not set(host_keys) <= set(HOST_KEYS):
        raise ValueError(f"host_keys: some of {HOST_KEYS}, not {host_keys}")
    lower = rootfs()
    with _allocating():
        index = _free_index()
        _sh("ip", "netns", "add", f"fabhost{index}")  # takes the index
    host = TestHost(f"fabhost{index}", booted, workdir, index, bridge=bridge)
    try:
        if bridge:
            bridge.join(host)
        for each in ("upper", "work", "merged"):
            (workdir / each).mkdir(parents=True, exist_ok=True)
        _sh("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={lower},upperdir={workdir / 'upper'},workdir={workdir / 'work'}", str(host.merged))
        _network(host)
        _configure(host, host_keys)
        if not bridge:
            host.proxy = AptProxy(host.gateway, PROXY_PORT)
        start(host)
    except BaseException:
        destroy(host)
        raise
    return host


def create_many(workdir: Path, count: int, booted: bool = False, bridge: Bridge | None = None,
                workers: int = CREATE_WORKERS, host_keys: tuple[str, ...] = HOST_KEYS) -> list[TestHost]:
    """``count`` fresh hosts in ``workdir/host-<n>``, made ``workers`` at a time; all of them or none.

    When one cannot be made, the others are destroyed and its error raised."""
    rootfs()  # built once, before the threads want it
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, count)), thread_name_prefix="create-host")
    futures = [pool.submit(create, workdir / f"host-{n}", booted, bridge, host_keys) for n in range(count)]
    try:
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            future.cancel()
        wait(futures)  # each create is bounded by its own timeouts
        destroy_many([future.result() for future in futures
                      if not future.cancelled() and future.exception() is None])
        raise
    finally:
        pool.shutdown(wait=True)


def _network(host: TestHost) -> None:
    """The host's end of a veth pair in its namespace; this machine's end on the bridge or addressed."""
    outside, inside = f"fh{host.index}o", f"fh{host.index}i"
    _sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
    _sh("ip", "link", "set", inside, "netns", host.netns)
    if host.bridge:
        _sh("ip", "link", "set", outside, "master", host.bridge.name)
    else:
        _sh("ip", "addr", "add", f"{host.gateway}/30", "dev", outside)
    _sh("ip", "link", "set", outside, "up")
    inns = ("ip", "netns", "exec", host.netns)
    _sh(*inns, "ip", "link", "set", "lo", "up")
    _sh(*inns, "ip", "link", "set", inside, "name", "eth0")
    _sh(*inns, "ip", "addr", "add", f"{host.address}/{host.prefix_length}", "dev", "eth0")
    _sh(*inns, "ip", "link", "set", "eth0", "up")
    if host.bridge:
        _sh(*inns, "ip", "route", "add", "default", "via", host.gateway)


def _configure(host: TestHost, host_keys: tuple[str, ...] = HOST_KEYS) -> None:
    """What the provider sets up: root's password, host keys of its own, the apt proxy, a name."""
    _sh("chroot", str(host.merged), "sh", "-c", 'printf "root:%s\\n" "$1" | chpasswd && shift && for type; do '
        'ssh-keygen -q -t "$type" -N "" -f "/etc/ssh/ssh_host_${type}_key"; done',
        "sh", host.root_password, *host_keys)
    host.path("/etc/apt/apt.conf.d/00provider-proxy").write_text(
        f'Acquire::http::Proxy "http://{host.gateway}:{PROXY_PORT}/";\n')
    host.path("/etc/hostname").write_text(host.name + "\n")
    host.path("/etc/hosts").write_text(f"127.0.0.1 localhost\n{host.address} {host.name}\n")


# In the chroot: its own pid and mount namespaces, so its processes end with its first one
# and its /proc, /dev and /run mounts vanish with them.
_CHROOT_INIT = r"""
set -e
root=$1
hostname "$(cat "$root/etc/hostname")"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=755 tmpfs "$root/dev"
for node in null zero full random urandom tty; do touch "$root/dev/$node"; mount --bind "/dev/$node" "$root/dev/$node"; done
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
ln -sf pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
mkdir -p "$root/run/sshd" "$root/run/lock"
exec chroot "$root" /bin/sh -c '/usr/sbin/sshd -E /var/log/sshd.log && exec sleep infinity'
"""


def start(host: TestHost) -> None:
    """Start the host: sshd in the chroot, or boot it; wait until SSH answers."""
    log = open(host.workdir / "console.log", "ab")
    if host.booted:
        # CAP_NET_ADMIN: nspawn drops it unless it makes the network itself; the namespace is the
        # host's own, so its root may set its firewall (nftables), as on a VPS
        argv = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--console=pipe",
                "--capability=CAP_NET_ADMIN",
                f"--network-namespace-path=/run/netns/{host.netns}", f"--machine={host.name}",
                "-D", str(host.merged)]
    else:
        argv = ["ip", "netns", "exec", host.netns, "unshare", "--pid", "--fork", "--mount", "--uts",
                "--propagation", "private", "--kill-child", "sh", "-c", _CHROOT_INIT, "sh", str(host.merged)]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    host.leader, host.process = process.pid, process
    deadline = time.monotonic() + (BOOT_TIMEOUT if host.booted else SSH_TIMEOUT)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HostError(f"{host.name} exited {process.returncode}:\n{_tail(host.workdir / 'console.log')}")
        if _answers_ssh(host.address):
            return
        time.sleep(0.2)
    raise HostError(f"{host.name} did not answer SSH on {host.address}:22 within the time:\n"
                    f"{_tail(host.workdir / 'console.log')}")


def stop(host: TestHost) -> None:
    """Stop the host's processes (booted: a clean poweroff first), by pid, bounded."""
    process = host.process
    if process is None or process.poll() is not None:
        host.leader = None
        return
    # systemd-nspawn turns SIGTERM into a poweroff of the container; unshare ignores SIGTERM
    # while it waits, and when killed takes its child (--kill-child), the pid namespace's
    # first process, and with it every process there
    init = _children(process.pid)
    os.kill(process.pid, signal.SIGTERM if host.booted else signal.SIGKILL)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)
    host.leader = None
    # the namespace's first process outlives its killed parent a moment, ending the others first; a
    # booted one whose poweroff did not end in time (nspawn killed) is killed too, and with it its namespace
    deadline, killed = time.monotonic() + STOP_TIMEOUT, False
    while any(running(pid) for pid in init):
        if time.monotonic() > deadline and killed:
            raise HostError(f"{host.name}: its processes {init} did not end")
        if time.monotonic() > deadline:
            for pid in init:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline, killed = time.monotonic() + STOP_TIMEOUT, True
        time.sleep(0.02)


def reboot(host: TestHost) -> None:
    """Power the host off and boot it again on the same disk and address."""
    stop(host)
    start(host)


def destroy(host: TestHost) -> None:
    """Remove everything ``create`` made: processes, mounts, namespace, veth, files."""
    problems_seen = []
    try:
        stop(host)
    except Exception as error:  # keep removing the rest
        problems_seen.append(str(error))
    if host.proxy:
        host.proxy.close()
        host.proxy = None
    if os.path.ismount(host.merged):
        for _ in range(50):
            if subprocess.run(["umount", str(host.merged)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "--lazy", str(host.merged)], capture_output=True)
            problems_seen.append(f"{host.merged} was busy: unmounted lazily")
    subprocess.run(["ip", "link", "del", f"fh{host.index}o"], capture_output=True)
    subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
    shutil.rmtree(host.workdir, ignore_errors=True)
    if host.bridge:
        host.bridge.leave(host)
    if problems_seen:
        raise HostError("; ".join(problems_seen))


def destroy_many(hosts: list[TestHost]) -> None:
    """Destroy every one of ``hosts``, even when some fail; then raise what failed."""
    failed = []
    for host in hosts:
        try:
            destroy(host)
        except Exception as error:  # keep removing the others
            failed.append(f"{host.name}: {error}")
    if failed:
        raise HostError("; ".join(failed))


@dataclass(eq=False)
class Bridge:
    """A Linux bridge on this machine for test hosts that must reach each other."""

    index: int
    proxy: "AptProxy | None" = None
    hosts: list[TestHost] = field(default_factory=list, repr=False)
    removed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return f"fabbr{self.index}"

    @property
    def subnet(self) -> str:
        """The first three bytes of the bridge's /24."""
        return f"{BRIDGE_SUBNET}.{self.index}"

    @property
    def address(self) -> str:
        """This machine's address on the bridge: its hosts' gateway and apt proxy."""
        return f"{self.subnet}.1"

    @classmethod
    def create(cls) -> Bridge:
        """A bridge on a free /24 with this machine at ``.1``; ``destroy`` removes it."""
        with _allocating():
            index = _free_bridge_index()
            # no STP: a port forwards as soon as it is up
            _sh("ip", "link", "add", f"fabbr{index}", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        bridge = cls(index)
        try:
            _sh("ip", "addr", "add", f"{bridge.address}/24", "dev", bridge.name)
            _sh("ip", "link", "set", bridge.name, "up")
            bridge.proxy = AptProxy(bridge.address, PROXY_PORT)
        except BaseException:
            bridge.destroy()
            raise
        return bridge

    def join(self, host: TestHost) -> None:
        """Give ``host`` the lowest free address on the bridge."""
        with self._lock:
            if self.removed:
                raise HostError(f"{self.name} was removed")
            taken = {each.slot for each in self.hosts}
            free = [slot for slot in range(2, 255) if slot not in taken]
            if not free:
                raise HostError(f"{self.name} has no free address left")
            host.slot = free[0]
            self.hosts.append(host)

    def leave(self, host: TestHost) -> None:
        with self._lock:
            self.hosts = [each for each in self.hosts if each is not host]

    def destroy(self) -> None:
        """Destroy the hosts still on the bridge, then the bridge and its apt proxy; once."""
        with self._lock:
            if self.removed:
                return
            self.removed = True
            hosts = list(self.hosts)
        try:
            destroy_many(hosts)
        finally:
            if self.proxy:
                self.proxy.close()
                self.proxy = None
            subprocess.run(["ip", "link", "del", self.name], capture_output=True)

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc_info) -> None:
        self.destroy()


def _answers_ssh(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=1) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class AptProxy:
    """An HTTP proxy for apt on one address: Debian's mirrors only; packages cached on disk."""

    ALLOWED = re.compile(r"^http://(deb\.debian\.org|security\.debian\.org)/")

    def __init__(self, address: str, port: int):
        handler = type("Handler", (_ProxyHandler,), {"allowed": self.ALLOWED})
        self.server = http.server.ThreadingHTTPServer((address, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    allowed: re.Pattern

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = self.path
        if not self.allowed.match(url):
            self._answer(403, b"only Debian's mirrors\n")
            return
        cached = APT_CACHE / url.split("://", 1)[1] if "/pool/" in url else None
        if cached and cached.is_file():
            self._answer(200, cached.read_bytes())
            return
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            self._answer(error.code, b"")
            return
        except OSError as error:
            self._answer(502, str(error).encode())
            return
        if cached:  # packages never change under their name: keep them
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(cached.name + f".{threading.get_ident()}")
            partial.write_bytes(body)
            partial.rename(cached)
        self._answer(200, body)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@dataclass
class HostSite:
    """The example site, configured for a test host, driven with the real ``fab`` command line."""

    __test__ = False
    host: TestHost
    workdir: Path
    configs: Path
    key: Path | None               # None: the hostconfig names no identity
    root: str = "/srv/site"
    env: dict[str, str] = field(default_factory=dict)  # fab's environment: HOME, say
    name: str = "test"             # the hostconfig's name, for fab -H

    def fab(self, *args: str, password: str | None = None, check: bool = True,
            timeout: float = 900) -> subprocess.CompletedProcess:
        """``fab -H test ARGS``; with ``password``, typed at fab's login password prompt."""
        prompt = ("--prompt-for-login-password",) if password is not None else ()
        # a new session has no terminal, so getpass reads the password from stdin
        result = subprocess.run([FAB, *prompt, "-H", self.name, *args], cwd=REPO, capture_output=True, text=True,
                                input=f"{password}\n" if password is not None else "", timeout=timeout,
                                env={**os.environ, "DEPLOY_HOSTCONFIGS": str(self.configs), **self.env},
                                start_new_session=True)
        if check and result.returncode:
            raise AssertionError(f"fab {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def get(self, port: int, path: str = "health") -> str:
        return self.host.http_get(f"http://127.0.0.1:{port}/{path}")

    def set_host_option(self, key: str, value: str) -> None:
        """Add (or change) ``key = value`` in the hostconfig's ``[host]``."""
        path = self.configs / f"{self.name}.cfg"
        lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{key} =")]
        at = lines.index("[host]") + 1
        path.write_text("\n".join([*lines[:at], f"{key} = {value}", *lines[at:]]) + "\n")


def password_login_works(host: TestHost, user: str, password: str) -> bool:
    """Whether sshd on ``host`` lets ``user`` in with ``password`` (and nothing else).

    Waits a little while sshd does not answer: it re-executes itself after a reload."""
    for attempt in range(20):
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(host.address, username=user, password=password, look_for_keys=False,
                           allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
            return True
        except paramiko.AuthenticationException:
            return False
        except (paramiko.SSHException, OSError):
            if attempt == 19:
                raise
            time.sleep(0.25)
        finally:
            client.close()
    raise HostError("unreachable")


FAB = str(Path(os.environ.get("VIRTUAL_ENV") or Path(__import__("sys").executable).parent.parent) / "bin" / "fab")
BUILD_JUNK = shutil.ignore_patterns("bin", "parts", "eggs", "develop-eggs", "var", ".installed.cfg",
                                    "*.egg-info", "__pycache__", "build")


def host_site(host: TestHost, workdir: Path, manager: str = "supervisor", app_user: str | None = None,
              extra: str = "", *, name: str = "test", root: str = "/srv/site", configs: Path | None = None,
              key: Path | None = None, ports: tuple[int, int, int] | None = None) -> HostSite:
    """A hostconfig ``name`` (in ``configs``, beside other sites of the host) for the example site on ``host``
    in ``root``, deployed as ``deploy`` with ``key`` (default: one of its own); ``ports``: the ZEO server's
    and the two instances' (default: the example's 8100, 8081, 8082)."""
    workdir.mkdir(parents=True, exist_ok=True)
    buildout = workdir / "buildout"
    shutil.copytree(REPO / "example", buildout, ignore=BUILD_JUNK)
    if key is None:
        key = workdir / "deploy_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test deployer", "-f", str(key)],
                       check=True)
    configs = configs or workdir / "hostconfigs"
    configs.mkdir(exist_ok=True)
    app = f"app_user = {app_user}\n" if app_user else ""
    zeo, first, second = ports or (8100, 8081, 8082)
    overrides = (f"[overrides]\nports:zeo = {zeo}\nports:instance1 = {first}\nports:instance2 = {second}\n"
                 if ports else "")
    (configs / f"{name}.cfg").write_text(f"""
[host]
address = {host.address}
user = deploy
{app}identity = {key}
root = {root}
[buildout]
directory = {buildout}
[services]
manager = {manager}
programs = zeoserver instance1 instance2
[program:instance1]
health_url = http://127.0.0.1:{first}/health
[program:instance2]
health_url = http://127.0.0.1:{second}/health
[deploy]
health_timeout = 60
{overrides}{extra}
""")
    return HostSite(host, workdir, configs, key, root=root, name=name)
