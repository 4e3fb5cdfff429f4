"""Print what really runs for a site, read from /proc: who listens on its ports, its pid files, its managers.

Usage: python3 -c SOURCE SPEC_JSON.  Read-only, Linux only.  SPEC_JSON is an object:
{"root": ROOT, "ports": {PORT: WHO}, "pidfiles": {NAME: PATH}, "manager_config": PATH, "pids": {NAME: PID}}
(manager_config and pids optional).  Prints one JSON document:
{"ports": {PORT: null (nothing listens) or {"pids", "processes", "visible"}},
 "pidfiles": {NAME: null (missing/unreadable) or {"pid", "alive", "process"}},
 "managers": [process of every supervisord whose command line names a path under ROOT],
 "pids": {NAME: process or null}, "now": time.time(), "boot": btime}
where a process is {"pid", "ppid", "uid", "cmdline", "cwd", "exe", "started", "release"}: cwd and exe
are null when unreadable (another user's process), started is in epoch seconds, release is the id <ID>
when its cwd (even deleted) or an argument naming a path lies under ROOT/releases/<ID>.  A zombie
counts as gone.  A port is "visible": false when one of its listening sockets (IPv4 or IPv6, any
address) is held by no process we may look into.  A supervisord is a process with an argument
.../supervisord (not supervisorctl); manager_config is not needed: each manager's cmdline says its config.
"""
import csv
import fcntl
import hashlib
import io
import json
import os
import pwd
import socket
import subprocess
import sys
import time
import http.client
import xmlrpc.client

spec = json.loads(sys.argv[1])
root = os.path.realpath(spec["root"])
releases = os.path.join(os.path.realpath(os.path.join(root, "releases")), "")
GONE = (FileNotFoundError, ProcessLookupError)


def read(path, mode="r"):
    with open(path, mode) as handle:
        return handle.read()


def link(path):
    """Where a /proc symlink points, or None (no permission, or the process is gone)."""
    try:
        return os.readlink(path)
    except OSError:
        return None


boot = next(int(line.split()[1]) for line in read("/proc/stat").splitlines() if line.startswith("btime "))
ticks = os.sysconf("SC_CLK_TCK")


def paths(cmdline, cwd):
    """The arguments that name paths (also after '='), resolved, the relative ones against ``cwd``."""
    for argument in cmdline:
        for value in (argument, argument.partition("=")[2]):
            if "/" in value and not value.startswith("-") and (value.startswith("/") or cwd):
                yield os.path.realpath(os.path.join(cwd or "/", value))


def release(cmdline, cwd):
    for path in ([cwd] if cwd else []) + list(paths(cmdline, cwd)):
        if path.startswith(releases):
            return path[len(releases):].split("/")[0]
    return None


def process(pid):
    """What /proc says of ``pid``, or None when it is gone (or a zombie)."""
    try:
        fields = read(f"/proc/{pid}/stat").rpartition(")")[2].split()  # fields[0] is field 3 (state)
        if fields[0] in "ZX":
            return None
        cmdline = read(f"/proc/{pid}/cmdline", "rb").decode(errors="replace").split("\0")
        uid = next(line.split()[1] for line in read(f"/proc/{pid}/status").splitlines() if line.startswith("Uid:"))
    except GONE:
        return None
    cwd = link(f"/proc/{pid}/cwd")
    where = cwd.removesuffix(" (deleted)") if cwd else None  # a release removed under a running process
    cmdline = cmdline[:-1] if cmdline[-1:] == [""] else cmdline
    named = ([where] if where else []) + list(paths(cmdline, cwd))
    return {"pid": pid, "ppid": int(fields[1]), "uid": int(uid), "cmdline": cmdline, "cwd": cwd,
            "exe": link(f"/proc/{pid}/exe"), "started": boot + int(fields[19]) / ticks,
            "release": release(cmdline, where),
            "under_root": any(path == root or path.startswith(root + "/") for path in named)}


def all_pids():
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())


owners = {}  # listening socket inode -> the uid that opened it (readable by anyone, unlike its process)
addresses = {}  # listening socket inode -> the address it listens on


def ip_of(hexed):
    """/proc/net/tcp's address (each 32-bit word in host order, little-endian here) as text."""
    raw = bytes.fromhex(hexed)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def listening():
    """{port: {inode, ...}} of the TCP sockets in LISTEN, IPv4 and IPv6."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = read(table).splitlines()[1:]
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] != "0":
                address, _, port = fields[1].rpartition(":")
                found.setdefault(int(port, 16), set()).add(fields[9])
                owners[fields[9]] = int(fields[7])
                addresses[fields[9]] = ip_of(address)
    return found


def holders(inodes):
    """{inode: {pid, ...}} of the processes with an open fd on one of the sockets ``inodes``."""
    found = {}
    for pid in all_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except (PermissionError, *GONE):
            continue
        for fd in fds:
            target = link(f"/proc/{pid}/fd/{fd}") or ""
            if target.startswith("socket:[") and target[8:-1] in inodes:
                found.setdefault(target[8:-1], set()).add(pid)
    return found


def ports():
    sockets = listening()
    wanted = {port: sockets.get(int(port), set()) for port in spec.get("ports", {})}
    held = holders(set().union(*wanted.values()))
    report = {}
    for port, inodes in wanted.items():
        pids = sorted(set().union(*(held.get(inode, set()) for inode in inodes)))
        processes = [info for info in map(process, pids) if info]
        report[port] = {"who": spec["ports"][port], "site_address": (spec.get("addresses") or {}).get(port), "pids": pids, "processes": processes,
                        "uids": sorted({owners[i] for i in inodes}),
                        "listeners": [{"address": addresses[i], "uid": owners[i], "pids": sorted(held.get(i, ()))}
                                      for i in sorted(inodes)],
                        "visible": all(inode in held for inode in inodes)} if inodes else None
    return report


def alive(pid, info):
    """Whether ``pid`` runs: a zombie does not; one that /proc hides (hidepid, another user's) does."""
    if info or pid <= 0 or os.path.exists(f"/proc/{pid}"):
        return bool(info)
    try:
        os.kill(pid, 0)  # signal 0 only asks whether it exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def pidfile(path):
    try:
        pid = int(read(path).strip())
    except (OSError, ValueError):
        return None
    info = process(pid) if pid > 0 else None
    children = [c for c in map(process, all_pids()) if c and c["ppid"] == pid] if info else []
    return {"pid": pid, "alive": alive(pid, info), "process": info,
            "newest_child": max((c["started"] for c in children), default=None)}


def managers():
    """Every supervisord (an argument named so) whose command line names a path under ROOT."""
    found = []
    for pid in all_pids():
        try:
            cmdline = read(f"/proc/{pid}/cmdline", "rb").decode(errors="replace").split("\0")
        except GONE:
            continue
        if not any(os.path.basename(arg) == "supervisord" or arg == "supervisor.supervisord" for arg in cmdline):
            continue
        info = process(pid)
        if info and any(path == root or path.startswith(root + "/") for path in paths(info["cmdline"], info["cwd"])):
            found.append(info)
    return found


def programs():
    """What the process manager says of each program (``spec["programs_command"]`` prints ``NAME STATE
    PID`` lines), and what /proc says of each pid it names."""
    asked = ask_supervisord(spec.get("supervisor_socket"))
    if asked is not None:
        return asked
    command = spec.get("programs_command")
    if not command:
        return None
    result = subprocess.run(command, shell=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    found = {}
    for line in result.stdout.splitlines():
        words = line.split()
        if len(words) == 3 and words[2].isdigit():
            found[words[0]] = {"state": words[1], "pid": int(words[2]),
                               "process": process(int(words[2])) if int(words[2]) > 0 else None}
    return {"exit": result.returncode, "said": (result.stdout + result.stderr)[-2000:], "programs": found}


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def make_connection(self, host):
        return UnixConnection(self.path)


def ask_supervisord(path):
    """supervisord's own answer over its socket (XML-RPC: no supervisorctl to start), or None where this
    login may not reach the socket (another ``app_user``'s; then ``programs_command`` asks through sudo)."""
    if not path:
        return None
    try:
        infos = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(path)).supervisor.getAllProcessInfo()
    except PermissionError:
        return None
    except (OSError, xmlrpc.client.Error) as error:
        return {"exit": 1, "said": str(error), "programs": {}}
    found = {}
    for info in infos:
        name = info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}"
        pid = info["pid"] if info["statename"] == "RUNNING" else 0
        found[name] = {"state": info["statename"], "pid": pid, "process": process(pid) if pid else None}
    return {"exit": 0, "said": "", "programs": found}


def files():
    """sha256, mtime and (small ones) text of ``spec["files"]``; null for a missing file."""
    found = {}
    for name, path in (spec.get("files") or {}).items():
        try:
            data = read(path, "rb")
            found[name] = {"sha256": hashlib.sha256(data).hexdigest(), "mtime": os.stat(path).st_mtime,
                           "text": data.decode(errors="replace") if len(data) <= 512 else None}
        except OSError:
            found[name] = None
    return found


def haproxy():
    """The servers of ``spec["haproxy"]["backend"]`` as HAProxy's runtime API shows them: {server: status}."""
    wanted = spec.get("haproxy")
    if not wanted:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(wanted["socket"])
            sock.sendall(b"show stat\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as error:
        return {"error": str(error)}
    rows = csv.DictReader(io.StringIO(b"".join(chunks).decode().lstrip("# ")))
    return {"servers": {row["svname"]: row.get("status", "") for row in rows
                        if row.get("pxname") == wanted["backend"] and row.get("svname") not in ("FRONTEND", "BACKEND")}}


def switch_job():
    """The newest switch job in ``spec["switch_dir"]``: its id, whether it left a verdict, whether it runs."""
    directory = spec.get("switch_dir")
    try:
        jobs = sorted(name[:-5] for name in os.listdir(directory) if name[:1].isdigit() and name.endswith(".json")
                      and not name.endswith(".result.json"))
    except (OSError, TypeError):
        return None
    if not jobs:
        return None
    newest = jobs[-1]
    try:
        with open(os.path.join(directory, newest + ".json")) as handle:
            plan = json.load(handle)
    except (OSError, ValueError):
        plan = {}
    try:
        with open(os.path.join(directory, "lock")) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a running job holds it exclusively
                running = False
            except BlockingIOError:
                running = True
    except OSError:
        running = False
    try:
        with open(os.path.join(directory, newest + ".result.json")) as handle:
            verdict = json.load(handle)
    except (OSError, ValueError):
        verdict = None
    return {"job": newest, "verdict": verdict is not None, "running": running, "release": plan.get("release"),
            "leaving": plan.get("leaving"),
            "proven": (verdict.get("proven") or {}) if verdict and verdict.get("result") == "ok" else {}}


def uids():
    """{user: uid} of ``spec["users"]`` that exist."""
    found = {}
    for name in spec.get("users") or ():
        try:
            found[name] = pwd.getpwnam(name).pw_uid
        except KeyError:
            pass
    return found


print(json.dumps({
    "uids": uids(),
    "programs": programs(),
    "files": files(),
    "haproxy": haproxy(),
    "switch_job": switch_job(),
    "ports": ports(),
    "pidfiles": {name: pidfile(path) for name, path in spec.get("pidfiles", {}).items()},
    "managers": managers(),
    "pids": {name: process(int(pid)) if pid else None for name, pid in (spec.get("pids") or {}).items()},
    "now": time.time(),
    "boot": boot,
}))
