"""Print what bootstrap-host needs to know about a host, as one JSON document.

Usage: python3 -c SOURCE SPEC_JSON, run as root.  SPEC names the users, groups,
packages, files and paths to look at and the site's root.  Read-only.
"""
import grp
import json
import os
import platform
import pwd
import shutil
import subprocess
import sys

spec = json.loads(sys.argv[1])


def os_release():
    fields = {}
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                key, _, value = line.strip().partition("=")
                if key:
                    fields[key] = value.strip('"')
    except FileNotFoundError:
        pass
    return {"id": fields.get("ID"), "version": fields.get("VERSION_ID"), "name": fields.get("PRETTY_NAME")}


def shadow():
    try:
        with open("/etc/shadow") as handle:
            return {line.split(":")[0]: line.split(":")[1] for line in handle if ":" in line}
    except OSError:
        return {}


def user(name, passwords):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = sorted(g.gr_name for g in grp.getgrall() if name in g.gr_mem)
    password = passwords.get(name, "")
    return {"home": entry.pw_dir, "uid": entry.pw_uid, "group": grp.getgrgid(entry.pw_gid).gr_name,
            "groups": groups, "locked": password.startswith("!")}


def installed(names):
    if not names or not shutil.which("dpkg-query"):
        return {}
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *names],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True)
    states = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    return {name: states.get(name) == "installed" for name in names}


def read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def stat(path):
    try:
        found = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        owner = pwd.getpwuid(found.st_uid).pw_name
    except KeyError:
        owner = str(found.st_uid)
    try:
        group = grp.getgrgid(found.st_gid).gr_name
    except KeyError:
        group = str(found.st_gid)
    kind = "link" if os.path.islink(path) else "dir" if os.path.isdir(path) else "file"
    return {"owner": owner, "group": group, "mode": "%04o" % (found.st_mode & 0o7777), "kind": kind,
            "size": found.st_size}


def nearest_existing(path):
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def sshd():
    """What sshd would use now (``sshd -T``) and whether its config includes sshd_config.d."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    try:
        result = subprocess.run([binary, "-T"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                universal_newlines=True)
    except OSError:
        return None
    effective = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    ports = [int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("port ")]
    includes = False
    try:
        with open("/etc/ssh/sshd_config") as handle:
            includes = any(line.split()[:2] == ["Include", "/etc/ssh/sshd_config.d/*.conf"] for line in handle)
    except OSError:
        pass
    keys = ("passwordauthentication", "kbdinteractiveauthentication", "permitrootlogin", "pidfile")
    return {"binary": binary, "valid": result.returncode == 0, "error": result.stderr.strip()[-500:],
            "includes_d": includes, "ports": ports, **{key: effective.get(key) for key in keys}}


def memory():
    """Memory and swap in bytes (``/proc/meminfo``), and the swap areas in use (``/proc/swaps``)."""
    found = {}
    with open("/proc/meminfo") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            found[key] = int(value.split()[0]) * 1024 if value.split() else 0
    with open("/proc/swaps") as handle:
        swaps = [line.split()[0] for line in handle.readlines()[1:] if line.strip()]
    return {"total": found.get("MemTotal", 0), "swap": found.get("SwapTotal", 0), "swaps": swaps}


def nft_table(name):
    """The listing of an nftables table (``inet NAME``), or None when there is none or no nft."""
    if not name or not shutil.which("nft"):
        return None
    result = subprocess.run(["nft", "list", "table", *name.split()], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, universal_newlines=True)
    return result.stdout if result.returncode == 0 else None


def space(path):
    found = os.statvfs(path)
    return {"path": path, "free": found.f_bavail * found.f_frsize, "writable": os.access(path, os.W_OK)}


passwords = shadow()
libc, libc_version = platform.libc_ver()
print(json.dumps({
    "os": os_release(),
    "apt": shutil.which("apt-get") is not None,
    "systemd": os.path.isdir("/run/systemd/system"),
    "python": platform.python_version(),
    "machine": platform.machine(),
    "glibc": libc_version if libc == "glibc" else None,
    "users": {name: user(name, passwords) for name in spec["users"]},
    "packages": installed(spec["packages"]),
    "files": {path: read(path) for path in spec["files"]},
    "paths": {path: stat(path) for path in spec["paths"]},
    "root_space": space(nearest_existing(spec["root"])),
    "apt_space": space(nearest_existing("/var/cache/apt/archives")),
    "sshd": sshd(),
    "memory": memory(),
    "swap_space": space("/"),
    "nft": nft_table(spec.get("nft_table")),
}))
