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
import json
import os
import sys
import time

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
    return {"pid": pid, "ppid": int(fields[1]), "uid": int(uid), "cmdline": cmdline, "cwd": cwd,
            "exe": link(f"/proc/{pid}/exe"), "started": boot + int(fields[19]) / ticks,
            "release": release(cmdline, where)}


def all_pids():
    return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())


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
                found.setdefault(int(fields[1].rpartition(":")[2], 16), set()).add(fields[9])
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
        report[port] = {"pids": pids, "processes": processes,
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
    return {"pid": pid, "alive": alive(pid, info), "process": info}


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


print(json.dumps({
    "ports": ports(),
    "pidfiles": {name: pidfile(path) for name, path in spec.get("pidfiles", {}).items()},
    "managers": managers(),
    "pids": {name: process(int(pid)) if pid else None for name, pid in (spec.get("pids") or {}).items()},
    "now": time.time(),
    "boot": boot,
}))
