"""The switch, as one job on the host: it finishes, or goes back, whatever happens to the SSH session.

Usage: python3 switch.py PLAN.json.  The deploy starts it detached (its own session, no
terminal) and follows its output; a client that dies changes nothing for the job.
The plan (written by ``fabfile/switch.py``, 0600, beside the job's log) says which
release to switch to, the process manager's commands for each program, the health
URLs and the front's admin socket. The job holds ``flock`` on ``<state>/lock`` while it
runs (a job that dies releases it: the kernel does), prints one line per step, and
writes its verdict to ``<state>/<job>.result.json``:

- ``ok``: the new release serves;
- ``rolled-back``: a program of the new release did not start or answer its health
  URL; the leaving release serves again and the new one is marked bad;
- ``failed``: something outside the release went wrong (the front unreachable, the
  process manager refusing); the job went back as far as it could and marks nothing.

Modes: ``stopstart`` stops every program, switches ``current`` and starts them all;
``rolling`` switches ``current`` first (running programs keep their code), restarts
the programs outside the front only when their own files changed, then takes each
instance out of the front, waits for its requests in flight, restarts it, checks its
health URL and puts it back before the next; ``bluegreen`` starts the new release's
instances (the other set: ``instance1-green`` beside ``instance1-blue``) while the old
ones serve, checks them, flips the front in one go and leaves the old set running for
``keep_warm`` seconds, so that a rollback then is a flip back (a detached ``cool-down``
stops it later, unless it serves again). A switch within one set is rolling.
"""
import collections
import csv
import fcntl
import hashlib
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from datetime import datetime, timezone

plan = json.load(open(sys.argv[1]))
LOCK_WAIT = 900  # seconds a job waits for one that runs
state_dir = plan["state_dir"]
started_at = time.monotonic()


class Failure(Exception):
    """A step failed; ``bad`` when the new release is to blame."""

    def __init__(self, message, bad=True):
        super().__init__(message)
        self.bad = bad


def redact(text):
    """``text`` with the secrets, in clear or escaped (the plan's ``secret_pattern``), as ``***``."""
    return re.sub(plan["secret_pattern"], "***", text) if plan.get("secret_pattern") else text


def say(message):
    print(redact(f"[{time.monotonic() - started_at:5.1f}s] {message}"), flush=True)


def shell(command, what, bad=False):
    """Run one command the client built from quoted tokens; its output on failure. A failure is
    the release's fault (``bad``) only where the release's own program does not start."""
    result = subprocess.run(command, shell=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode:
        output = (result.stdout + result.stderr).strip().splitlines()[-10:]
        raise Failure(f"{what} failed (exit {result.returncode}): {' / '.join(output)}", bad=bad)
    return result.stdout


def answers(url, deadline):
    """Poll ``url`` until it answers 2xx/3xx or ``deadline``; the last error, or None."""
    error = "no answer"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status < 400:
                    return None
                error = f"HTTP {response.status}"
        except urllib.error.HTTPError as failure:
            error = f"HTTP {failure.code}"
        except Exception as failure:  # refused, reset, timeout: keep polling
            error = str(getattr(failure, "reason", failure))
        if time.monotonic() >= deadline:
            return error
        time.sleep(0.1)


def healthy(program, label):
    """Wait for the program's health URL, bounded by the health timeout."""
    if not program.get("health_url"):
        return
    error = answers(program["health_url"], time.monotonic() + plan["health_timeout"])
    if error:
        raise Failure(f"health check failed: {program['name']} ({label}) did not answer its health URL: {error}")


# -- the front: HAProxy's runtime API, or nginx's upstream file and a graceful reload -----------

class HAProxy:
    """Servers go in and out by one line each on the admin socket; ``show stat`` counts their requests."""

    def command(self, command):
        try:
            where = plan["front"]["socket"]
            if plan["front"].get("tcp"):  # a fleet's front on another host: host:port
                host, port = where.rsplit(":", 1)
                where = (host, int(port))
            with socket.socket(socket.AF_INET if plan["front"].get("tcp") else socket.AF_UNIX,
                               socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(where)
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return b"".join(chunks).decode()
                    chunks.append(chunk)
        except OSError as error:
            raise Failure(f"the front's admin socket {plan['front']['socket']}: {error}", bad=False) from None

    def set(self, server, *words):
        server = plan["front"].get("prefix", "") + server  # a fleet's app host: <host>-<instance>
        answer = self.command(" ".join(("set", "server", f"{plan['front']['backend']}/{server}", *words))).strip()
        if answer:
            raise Failure(f"the front refused 'set server {server} {' '.join(words)}': {answer}", bad=False)

    def server(self, server):
        text = self.command("show stat").lstrip("# ")
        server = plan["front"].get("prefix", "") + server
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") == plan["front"]["backend"] and row.get("svname") == server:
                return row
        raise Failure(f"the front has no server {server} in backend {plan['front']['backend']}", bad=False)

    def switch(self, enable, disable):
        for name in enable:
            self.set(name, "state", "ready")
            self.set(name, "health", "up")
        for name in disable:
            self.set(name, "state", "maint")

    def drain(self, names, deadline):
        """Wait until ``names`` have no request in flight (or ``deadline``); how many are left."""
        while True:
            left = sum(int(self.server(name).get("scur") or 0) for name in names)
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.05)

    def wait_up(self, name):
        deadline = time.monotonic() + 10
        while not self.server(name).get("status", "").startswith("UP"):
            if time.monotonic() > deadline:
                raise Failure(f"the front does not see {name} up", bad=False)
            time.sleep(0.05)


class Nginx:
    """Servers go in and out by a new upstream file and a graceful reload; the old workers finish
    the requests they have, so a server is drained when they are gone."""

    def __init__(self):
        self.up = set(plan["front"]["enabled"])
        self.old_workers = set()

    def workers(self):
        try:
            with open(plan["front"]["pid_file"]) as handle:
                master = handle.read().strip()
        except OSError:
            raise Failure("the front (nginx) does not run: no pid file", bad=False)
        found = set()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    if handle.read().rsplit(")", 1)[1].split()[1] == master:
                        found.add(pid)
            except (OSError, IndexError):
                continue
        return found

    def switch(self, enable, disable):
        self.up = (self.up | set(enable)) - set(disable)
        servers = plan["front"]["servers"]
        lines = [f"upstream {plan['front']['backend']} {{"]
        lines += [f"    server {servers[name]}{'' if name in self.up else ' down'};  # {name}" for name in servers]
        path = plan["front"]["upstream_file"]
        try:
            with open(path + ".new", "w") as handle:
                handle.write("# Written by the switch job: which instances the front sends requests to.\n")
                handle.write("\n".join(lines + ["}", ""]))
            os.replace(path + ".new", path)
        except OSError as error:
            raise Failure(f"the front's upstream file {path}: {error}", bad=False) from None
        self.old_workers |= self.workers()
        shell(plan["front"]["reload"], "reloading the front")

    def drain(self, names, deadline):
        while True:
            self.old_workers &= self.workers()
            if not self.old_workers or time.monotonic() >= deadline:
                return len(self.old_workers)
            time.sleep(0.05)

    def wait_up(self, name):
        pass  # nginx checks nothing by itself: the job checked the health URL


front = (Nginx() if plan["front"] and plan["front"]["kind"] == "nginx" else HAProxy()) if plan["front"] else None


def take_out(name):
    """No new requests for ``name``; wait (bounded) for the ones in flight."""
    front.switch([], [name])
    left = front.drain([name], time.monotonic() + plan["front"]["drain_timeout"])
    say(f"{name}: out of the front" + (f", {left} request(s) still in flight after "
                                       f"{plan['front']['drain_timeout']}s" if left else ", nothing in flight"))


def put_back(name):
    front.switch([name], [])
    front.wait_up(name)
    say(f"{name}: back in the front")


# -- programs ----------------------------------------------------------------------------------

def fingerprint(release, program):
    """What makes a program restart: its command and its own files (bin script, parts/<name>),
    with the release's own path taken out and lines in any order."""
    if release is None:
        return None
    directory = os.path.join(plan["root"], "releases", release)
    digest = hashlib.sha256(program["command"].encode())
    paths = [os.path.join(directory, program["script"])]
    parts = os.path.join(directory, "parts", program["base"])
    for base, dirs, files in sorted(os.walk(parts)):
        dirs.sort()
        paths += [os.path.join(base, name) for name in sorted(files)]
    for path in paths:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            data = b"(missing)"
        digest.update(os.path.relpath(path, directory).encode() + b"\0")
        # lines sorted: buildout writes the same eggs into a script's sys.path in any order
        lines = sorted(data.replace(directory.encode(), b"<release>").splitlines())
        digest.update(b"\n".join(lines) + b"\0")
    return digest.hexdigest()


def color_of(release):
    """The set a release was built as (blue/green); blue when it does not say."""
    if release is None:
        return "blue"
    try:
        with open(os.path.join(plan["root"], "releases", release, ".deploy", "color")) as handle:
            return handle.read().strip() or "blue"
    except OSError:
        return "blue"


def link(name, release):
    """Point ``<root>/<name>`` at ``releases/<release>`` atomically, or remove it for None."""
    path = os.path.join(plan["root"], name)
    if release is None:
        if os.path.islink(path):
            os.unlink(path)
        return
    temporary = path + ".new"
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(f"releases/{release}", temporary)
    os.replace(temporary, path)


def linked(name):
    """The release ``<root>/<name>`` points at, or None."""
    try:
        return os.path.basename(os.readlink(os.path.join(plan["root"], name)))
    except OSError:
        return None


def others():
    """The programs outside the front (the ZEO server, workers), in order."""
    return [p for p in plan["programs"] if p["base"] not in plan["front_instances"]]


def instances(color):
    """The front's instances (of one set under blue/green), in order."""
    return [p for p in plan["programs"] if p["base"] in plan["front_instances"] and p["color"] == color]


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


class UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self.path = path

    def make_connection(self, host):
        return UnixConnection(self.path)


def supervisord_pids():
    """``{program: pid}`` (0: not RUNNING) straight from supervisord over its socket, in milliseconds; None
    where the plan names no socket this login may use, or none answers (the plan's commands then ask:
    supervisorctl costs a Python start each)."""
    path = plan.get("supervisor_socket")
    if not path:
        return None
    try:
        infos = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(path)).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error):
        return None
    return {(info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}"):
            (info["pid"] if info["statename"] == "RUNNING" else 0) for info in infos}


def running():
    pids = supervisord_pids()
    if pids is not None:
        return {name for name, pid in pids.items() if pid}
    return set(shell(plan["commands"]["running"], "asking what runs").split())


def load_config(target, leaving):
    """Have the process manager read the target's config, unless it is the leaving one's word for word
    (and the manager runs): supervisorctl costs a Python start each."""
    read = lambda release: open(os.path.join(plan["root"], "releases", release, plan["manager_config"]), "rb").read()
    try:
        same = leaving is not None and plan.get("manager_config") and read(target) == read(leaving)
    except OSError:
        same = False
    if same and running():
        return
    shell(plan["commands"]["load"], "loading the process manager's config")


def restart(program, release, label):
    shell(plan["commands"]["stop"][program["name"]], f"stopping {program['name']}")
    shell(plan["commands"]["start"][program["name"]], f"starting {program['name']} of {release}", bad=True)
    healthy(program, label)
    proven(program, release, label)


# -- a program counts as started when the process its manager names is the one we meant ------------

BOOT = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime "))


def pid_of(program):
    """The pid the process manager gives the program (0: none)."""
    pids = supervisord_pids()
    if pids is not None:
        return pids.get(program["name"], 0)
    answer = subprocess.run(plan["commands"]["pid"][program["name"]], shell=True, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL).stdout.strip()
    return int(answer) if answer.isdigit() else 0


def started_at_epoch(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in "ZX" else BOOT + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def listeners(port):
    """``(uids, pids)`` of the sockets that listen on TCP ``port`` (pids: those we may look into)."""
    inodes, uids = set(), set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == int(port):
                inodes.add(fields[9])
                uids.add(int(fields[7]))
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                pids.add(int(pid))
    return uids, pids


def parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rpartition(")")[2].split()[1])
    except OSError:
        return None


PROVEN = {}  # {program: pid} of the starts this job proved


def proven(program, release, label):
    """The process the manager names runs from ``release``, holds the program's port, and is still the same
    pid ``min_uptime`` seconds after it started: else the start does not count (a crash loop never does)."""
    name, settle = program["name"], plan.get("min_uptime", 3)
    pid = pid_of(program)
    began = started_at_epoch(pid) if pid else None
    if began is None:
        raise Failure(f"{name} ({label}) did not stay up: no process of it runs after its start")
    wait = began + settle - time.time()
    if wait > 0:
        time.sleep(wait)
    again = pid_of(program)
    if again != pid or started_at_epoch(pid) is None:
        raise Failure(f"{name} ({label}) did not stay up: pid {pid}, then {again or 'none'} within {settle}s "
                      f"of its start (a crash loop)")
    PROVEN[name] = pid  # stayed up: a later read that finds this pid need not watch it again
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = None  # another user's process: the port's owner is checked below
    home = os.path.join(plan["root"], "releases", release or "")
    if cwd and release and not (cwd == os.path.realpath(home) or cwd.startswith(os.path.realpath(home) + "/")):
        raise Failure(f"{name} ({label}) runs from {cwd}, not {release}")
    if not program.get("port"):
        return
    uids, pids = listeners(program["port"])
    if not uids:
        raise Failure(f"{name} ({label}, pid {pid}) does not listen on port {program['port']}")
    if pids and pid not in pids and not any(parent_of(holder) == pid for holder in pids):
        holders = " ".join(str(holder) for holder in sorted(pids))
        raise Failure(f"port {program['port']} is held by pid {holders}, not by {name} ({label}, pid {pid})",
                      bad=False)
    try:
        owner = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        owner = None
    if not pids and owner is not None and uids != {owner}:
        raise Failure(f"port {program['port']} is held by a process of uid {' '.join(map(str, sorted(uids)))}, "
                      f"not by {name} ({label}, pid {pid})", bad=False)


def restart_changed(target, leaving, restarted, label):
    """Restart the programs outside the front whose own files changed (or that do not run)."""
    up = running()
    for program in others():
        before, after = fingerprint(leaving, program), fingerprint(target, program)
        if program["name"] in up and before == after and not plan.get("restart_all"):
            say(f"{program['name']}: unchanged, kept running")
            continue
        reason = ("not running" if program["name"] not in up else
                  "asked" if plan.get("restart_all") and before == after else "its files changed")
        restarted[program["name"]] = reason  # before: one that fails to start is restarted going back
        restart(program, target, label)
        say(f"{program['name']}: restarted ({reason})")


def stop_start(target, label, color=None):
    """Every program stopped (reverse order), ``current`` switched, the programs started."""
    shell(plan["commands"]["stop_all"], "stopping the programs")
    link("current", target)
    if color:
        link(color, target)
    if target is None:
        return
    shell(plan["commands"]["load"], "loading the process manager's config")
    wanted = [p for p in plan["programs"] if p["color"] in (None, color)]
    for program in wanted:
        shell(plan["commands"]["start"][program["name"]], f"starting {program['name']}", bad=True)
    for program in wanted:
        healthy(program, label)
    for program in wanted:
        proven(program, target, label)
    if color:
        for program in instances(color):
            put_back(program["name"])
    say(f"{target}: every program started and healthy")


def rolling(target, leaving, restarted, switched, label, color=None):
    """Programs outside the front restarted when changed, then each instance through the front."""
    link("current", target)
    if color:
        link(color, target)
    load_config(target, leaving)
    restart_changed(target, leaving, restarted, label)
    for program in instances(color):
        switched.append(program["name"])
        take_out(program["name"])
        restarted[program["name"]] = "rolling"
        restart(program, target, label)
        put_back(program["name"])


def rolling_back(leaving, switched, restarted, color=None):
    """Undo a rolling switch: ``current`` back, then what was restarted, with the old code."""
    link("current", leaving)
    if color:
        link(color, leaving)
    shell(plan["commands"]["load"], "loading the process manager's config")
    for program in others():
        if program["name"] in restarted:
            restart(program, leaving, "going back")
            say(f"{program['name']}: restarted with {leaving}")
    for program in plan["programs"]:
        if program["name"] in switched:
            take_out(program["name"])
            restart(program, leaving, "going back")
            put_back(program["name"])


def flip(to, away):
    """The front sends new requests to the ``to`` set only; the ``away`` set finishes what it has."""
    began = time.monotonic()
    front.switch([p["name"] for p in instances(to)], [p["name"] for p in instances(away)])
    seconds = time.monotonic() - began
    remember_live(to)
    say(f"front flipped to the {to} set in {seconds:.3f}s")
    return seconds


def remember_live(color):
    """HAProxy's config file names the serving set (the other is ``disabled``): keep it true, so that a
    reload or a restart of the front sends requests where they go now."""
    configs = (plan["front"] or {}).get("configs")
    if not configs:
        return
    path = plan["front"]["config_path"]
    with open(path + ".new", "w") as handle:
        handle.write(configs[color])
    os.replace(path + ".new", path)


def blue_green(target, leaving, color, live, restarted, state):
    """Start (or find warm) the ``color`` set with the new release beside the ``live`` one, flip."""
    state["before"] = linked(color)
    link(color, target)
    link("current", target)
    load_config(target, leaving)
    restart_changed(target, leaving, restarted, "new")
    up = running()
    for program in instances(color):
        if program["name"] in up and state["before"] == target:
            healthy(program, "kept warm")  # it ran all along: it must still answer before it gets requests
            proven(program, target, "kept warm")
            say(f"{program['name']}: still runs {target} (kept warm): nothing to start")
            continue
        state["started"].append(program["name"])  # before it starts: a failed start is stopped too
        restart(program, target, "new")
        restarted[program["name"]] = f"started beside the {live} set"
        say(f"{program['name']}: started and healthy")
    state["flipped"] = True  # before: a flip that fails half-way is flipped back
    state["flip"] = flip(color, live)
    # requests the old set took before the flip finish there
    front.drain([p["name"] for p in instances(live)], time.monotonic() + plan["front"]["drain_timeout"])
    if plan["keep_warm"] >= 0:
        cool_down_later(live, leaving)


def blue_green_back(leaving, color, live, restarted, state):
    if state.get("flipped"):
        flip(live, color)
    for name in state["started"]:
        shell(plan["commands"]["stop"][name], f"stopping {name}")
    link(color, state["before"])
    link("current", leaving)
    shell(plan["commands"]["load"], "loading the process manager's config")
    for program in others():
        if program["name"] in restarted:
            restart(program, leaving, "going back")


def cool_down_later(color, release):
    """Stop the ``color`` set after ``keep_warm`` seconds, unless it serves again by then."""
    log = open(os.path.join(state_dir, "cool-down.log"), "a")
    subprocess.Popen([sys.executable, sys.argv[0], sys.argv[1], "cool-down", color, release or "",
                      str(plan["keep_warm"])], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                     start_new_session=True)
    say(f"the {color} set stays warm for {plan['keep_warm']}s (a rollback then only flips back)")


def cool_down(color, release, seconds):
    """The far end of ``cool_down_later``: stop the set if it still is the one left warm."""
    time.sleep(float(seconds))
    lock = take_lock(3600)  # held (by this reference) until the set is stopped
    if lock is None:
        return
    if color_of(linked("current")) == color or linked(color) != (release or None):
        say(f"cool-down: the {color} set serves or runs another release now: left running")
        return
    for program in instances(color):
        subprocess.run(plan["commands"]["stop"][program["name"]], shell=True, stdin=subprocess.DEVNULL)
    say(f"cool-down: stopped the {color} set ({release}) after {seconds}s warm")


# -- hooks ---------------------------------------------------------------------------------------

def log_event(event, **details):
    """One JSON line in ``<root>/deploy.log``, as the client writes them, secrets redacted."""
    record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "event": event,
              "who": plan["who"], **details}
    with open(os.path.join(plan["root"], "deploy.log"), "a") as handle:
        handle.write(redact(json.dumps(record, sort_keys=True)) + "\n")


HOOK_OUTPUT_KEPT = 64 * 1024  # bytes of a hook's output the log keeps from its start, and from its end


def capped_lines(stream):
    """Print each line of ``stream`` to our log, redacted, the first and the last ``HOOK_OUTPUT_KEPT``
    bytes of it; how many bytes in between were left out."""
    printed, tail, tail_bytes, left_out = 0, collections.deque(), 0, 0
    for line in stream:
        line = redact(line.rstrip("\n"))
        if printed < HOOK_OUTPUT_KEPT:
            print(line, flush=True)
            printed += len(line) + 1
            continue
        tail.append(line)
        tail_bytes += len(line) + 1
        while tail_bytes > HOOK_OUTPUT_KEPT:
            dropped = tail.popleft()
            tail_bytes -= len(dropped) + 1
            left_out += len(dropped) + 1
    if left_out:
        print(f"[... {left_out} bytes of output left out ...]", flush=True)
    for line in tail:
        print(line, flush=True)
    return left_out


def run_hook(name):
    """Run the plan's hook ``name`` (its line reaches ``sh`` through the environment, bounded by
    ``timeout``), its output in our log as it comes; what came of it, or None when there is none."""
    hook = (plan.get("hooks") or {}).get(name)
    if not hook:
        return None
    say(f"{name} hook in {hook['directory']}: {hook['line']}")
    started = time.monotonic()
    try:
        process = subprocess.Popen(hook["command"], shell=True, cwd=hook["directory"],
                                   env={**os.environ, "DEPLOY_HOOK": hook["line"]}, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        kept = capped_lines(process.stdout)
        code = process.wait()
        if kept:
            say(f"{name} hook: {kept} bytes of its output left out of this log (the first and last "
                f"{HOOK_OUTPUT_KEPT // 1024} kB are in it)")
    except OSError as error:  # its directory is gone
        say(f"{name} hook could not start: {error}")
        code = 127
    seconds = round(time.monotonic() - started, 1)
    timed_out = code in (124, 137) and seconds >= hook["timeout"]
    described = (f"{name} hook stopped after {hook['timeout']}s ([hooks] hook_timeout)" if timed_out else
                 f"{name} hook failed (exit {code})" if code else f"{name} hook ok")
    say(f"{described} in {seconds}s")
    log_event("hook", hook=name, exit=code, seconds=seconds, timed_out=timed_out, release=linked("current"))
    return {"name": name, "exit": code, "seconds": seconds, "timed_out": timed_out, "described": described}


def run():
    target, leaving, mode = plan["release"], plan["leaving"], plan["mode"]
    color = live = None
    if mode == "bluegreen":
        color, live = color_of(target), color_of(leaving)
        if leaving is not None and (color == live or target == leaving):
            mode = "rolling"  # the same set: one instance at a time
    if mode in ("rolling", "bluegreen") and leaving is None:
        mode = "stopstart"  # nothing serves yet: nothing to keep up
    say(f"switch to {target} from {leaving or 'nothing'} ({mode}{f', the {color} set' if color else ''})")
    restarted, switched, state = {}, [], {"started": []}
    try:
        if mode == "bluegreen":
            blue_green(target, leaving, color, live, restarted, state)
        elif mode == "rolling":
            rolling(target, leaving, restarted, switched, "new", color)
        else:
            stop_start(target, "new", color)
            restarted.update({p["name"]: "stop and start" for p in plan["programs"] if p["color"] in (None, color)})
        up = running()
        missing = [p["name"] for p in others() + instances(color) if p["name"] not in up]
        if missing:
            raise Failure(f"not running after the switch: {' '.join(missing)}")
        hook = run_hook("after_switch")
        if hook and hook["exit"]:
            raise Failure(hook["described"])  # as a failed health check: the release's fault
        return {"result": "ok", "restarted": restarted, "flip_seconds": state.get("flip"), "proven": PROVEN}
    except Exception as failure:  # a Failure, or the host itself: go back all the same
        say(f"FAILED: {failure}")
        problem = str(failure) if isinstance(failure, Failure) else f"{type(failure).__name__}: {failure}"
        bad = getattr(failure, "bad", False)
    say(f"going back to {leaving or 'nothing'}")
    try:
        if mode == "bluegreen":
            blue_green_back(leaving, color, live, restarted, state)
        elif mode == "rolling":
            rolling_back(leaving, switched, restarted, color)
        else:
            stop_start(leaving, "going back", color_of(leaving) if color else None)
    except Exception as failure:
        say(f"going back failed too: {failure}")
        return {"result": "failed", "error": f"{problem}; going back failed: {failure}", "bad": bad,
                "went_back": False}
    hook = run_hook("after_rollback") if leaving else None
    if hook and hook["exit"]:
        problem += f"; then {hook['described']}"
    return {"result": "rolled-back" if bad else "failed", "error": problem, "bad": bad, "restarted": restarted,
            "went_back": True}


KEEP_JOBS = 20


def prune_old_jobs():
    """Keep the plans, logs and verdicts of the newest ``KEEP_JOBS`` switches (job ids sort by time)."""
    jobs = sorted({name.split(".", 1)[0] for name in os.listdir(state_dir) if name[:1].isdigit()})
    for job in jobs[:-KEEP_JOBS]:
        for suffix in (".json", ".log", ".result.json"):
            try:
                os.unlink(os.path.join(state_dir, job + suffix))
            except FileNotFoundError:
                pass


def take_lock(seconds, waiting=None):
    """The switch lock (``flock``, released by the kernel when its holder dies), waiting at most
    ``seconds`` for the job that holds it; None when it did not come free."""
    lock = open(os.path.join(state_dir, "lock"), "a+")
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                return None
            if waiting and int(time.monotonic() - started_at) % 10 == 0:
                say(waiting)
            time.sleep(1)


def main():
    if sys.argv[2:3] == ["cool-down"]:
        cool_down(*sys.argv[3:6])
        return
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    lock = take_lock(LOCK_WAIT, "waiting for the switch job that runs (a client that left it goes on)")
    if lock is None:
        print(f"another switch still runs on this host after {LOCK_WAIT}s", flush=True)
        sys.exit(3)
    # a job before us (its client gone) may have moved current: go back to what serves, not to
    # what our client saw
    actual = linked("current")
    if plan["leaving"] != actual:
        if plan["release"] == plan["leaving"]:  # a restart: of what is current now
            plan["release"] = actual
        say(f"current is {actual} now, not {plan['leaving']}: leaving that")
        plan["leaving"] = actual
    lock.truncate(0)
    lock.write(f"job {plan['job']} pid {os.getpid()}\n")
    lock.flush()
    result_path = os.path.join(state_dir, f"{plan['job']}.result.json")
    try:
        verdict = run()
    except Exception as error:  # a bug or the host itself: say so, never leave without a record
        verdict = {"result": "failed", "error": f"{type(error).__name__}: {error}", "bad": False}
    if "error" in verdict:
        verdict["error"] = redact(verdict["error"])
    verdict.update(job=plan["job"], release=plan["release"], leaving=plan["leaving"],
                   seconds=round(time.monotonic() - started_at, 2),
                   finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if verdict.get("bad") and verdict["result"] == "rolled-back":
        bad_file = os.path.join(plan["root"], "releases", plan["release"], ".deploy", "bad.json")
        os.makedirs(os.path.dirname(bad_file), exist_ok=True)
        with open(bad_file + ".new", "w") as handle:
            json.dump({"when": verdict["finished"], "who": plan["who"], "reason": verdict["error"]}, handle)
        os.replace(bad_file + ".new", bad_file)
    with open(result_path + ".new", "w") as handle:
        json.dump(verdict, handle)
    os.replace(result_path + ".new", result_path)
    prune_old_jobs()
    say(f"done: {verdict['result']}")


main()
