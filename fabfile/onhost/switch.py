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
health URL and puts it back before the next.
"""
import csv
import fcntl
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

plan = json.load(open(sys.argv[1]))
state_dir = plan["state_dir"]
started_at = time.monotonic()


class Failure(Exception):
    """A step failed; ``bad`` when the new release is to blame."""

    def __init__(self, message, bad=True):
        super().__init__(message)
        self.bad = bad


def redact(text):
    for secret in sorted(plan.get("secrets", ()), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def say(message):
    print(redact(f"[{time.monotonic() - started_at:5.1f}s] {message}"), flush=True)


def shell(command, what):
    """Run one command the client built from quoted tokens; its output on failure."""
    result = subprocess.run(command, shell=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode:
        output = (result.stdout + result.stderr).strip().splitlines()[-10:]
        raise Failure(f"{what} failed (exit {result.returncode}): {' / '.join(output)}")
    return result.stdout


def link_current(release):
    """Point ``current`` at ``releases/<release>`` atomically, or remove it for None."""
    link = os.path.join(plan["root"], "current")
    if release is None:
        if os.path.islink(link):
            os.unlink(link)
        return
    temporary = link + ".new"
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(f"releases/{release}", temporary)
    os.replace(temporary, link)


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


# -- the front: HAProxy's runtime API on its admin socket -------------------------------------

def front(command):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(plan["front"]["socket"])
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks).decode()
            chunks.append(chunk)


def front_set(server, *words):
    answer = front(" ".join(("set", "server", f"{plan['front']['backend']}/{server}", *words))).strip()
    if answer:
        raise Failure(f"the front refused 'set server {server} {' '.join(words)}': {answer}", bad=False)


def front_server(server):
    """``{scur, status}`` of one server of the site's backend."""
    text = front("show stat").lstrip("# ")
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("pxname") == plan["front"]["backend"] and row.get("svname") == server:
            return row
    raise Failure(f"the front has no server {server} in backend {plan['front']['backend']}", bad=False)


def take_out(name):
    """No new requests for ``name``; wait (bounded) for the ones in flight."""
    front_set(name, "state", "maint")
    deadline = time.monotonic() + plan["front"]["drain_timeout"]
    while int(front_server(name).get("scur") or 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = int(front_server(name).get("scur") or 0)
    say(f"{name}: out of the front" + (f", {left} request(s) still in flight after "
                                       f"{plan['front']['drain_timeout']}s" if left else ", nothing in flight"))


def put_back(name):
    front_set(name, "state", "ready")
    front_set(name, "health", "up")
    deadline = time.monotonic() + 10
    while not front_server(name).get("status", "").startswith("UP"):
        if time.monotonic() > deadline:
            raise Failure(f"the front does not see {name} up", bad=False)
        time.sleep(0.05)
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
    parts = os.path.join(directory, "parts", program["name"])
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


def restart(program, release, label):
    shell(plan["commands"]["stop"][program["name"]], f"stopping {program['name']}")
    shell(plan["commands"]["start"][program["name"]], f"starting {program['name']} of {release}")
    healthy(program, label)


def stop_start(target, label):
    """Every program stopped (reverse order), ``current`` switched, every program started."""
    shell(plan["commands"]["stop_all"], "stopping the programs")
    link_current(target)
    if target is None:
        return
    shell(plan["commands"]["load"], "loading the process manager's config")
    for program in plan["programs"]:
        shell(plan["commands"]["start"][program["name"]], f"starting {program['name']}")
    for program in plan["programs"]:
        healthy(program, label)
    say(f"{target}: every program started and healthy")


def rolling(target, leaving, restarted, switched, label):
    """Programs outside the front restarted when changed, then each instance through the front."""
    instances = set(plan["front_instances"])
    link_current(target)
    shell(plan["commands"]["load"], "loading the process manager's config")
    running = set(shell(plan["commands"]["running"], "asking what runs").split())
    for program in plan["programs"]:
        if program["name"] in instances:
            continue
        before, after = fingerprint(leaving, program), fingerprint(target, program)
        if program["name"] in running and before == after and not plan.get("restart_all"):
            say(f"{program['name']}: unchanged, kept running")
            continue
        reason = ("not running" if program["name"] not in running else
                  "asked" if plan.get("restart_all") and before == after else "its files changed")
        restart(program, target, label)
        restarted[program["name"]] = reason
        say(f"{program['name']}: restarted ({reason})")
    for program in plan["programs"]:
        if program["name"] not in instances:
            continue
        take_out(program["name"])
        switched.append(program["name"])
        restart(program, target, label)
        restarted[program["name"]] = "rolling"
        put_back(program["name"])


def run():
    target, leaving, mode = plan["release"], plan["leaving"], plan["mode"]
    if mode == "rolling" and leaving is None:
        mode = "stopstart"  # nothing serves yet: nothing to keep up
    say(f"switch to {target} from {leaving or 'nothing'} ({mode})")
    restarted, switched = {}, []
    try:
        if mode == "rolling":
            rolling(target, leaving, restarted, switched, "new")
        else:
            stop_start(target, "new")
            restarted.update({p["name"]: "stop and start" for p in plan["programs"]})
        shell(plan["commands"]["status"], "checking that every program runs")
        return {"result": "ok", "restarted": restarted}
    except Failure as failure:
        say(f"FAILED: {failure}")
        problem = str(failure)
        bad = failure.bad
    say(f"going back to {leaving or 'nothing'}")
    try:
        if mode == "rolling":
            back_restarted = {}
            rolling_back(leaving, switched, restarted, back_restarted)
        else:
            stop_start(leaving, "going back")
    except Failure as failure:
        say(f"going back failed too: {failure}")
        return {"result": "failed", "error": f"{problem}; going back failed: {failure}", "bad": bad}
    return {"result": "rolled-back" if bad else "failed", "error": problem, "bad": bad, "restarted": restarted}


def rolling_back(leaving, switched, restarted, back):
    """Undo a rolling switch: ``current`` back, then what was restarted, with the old code."""
    link_current(leaving)
    shell(plan["commands"]["load"], "loading the process manager's config")
    for program in plan["programs"]:
        if program["name"] in restarted and program["name"] not in plan["front_instances"]:
            restart(program, leaving, "going back")
            say(f"{program['name']}: restarted with {leaving}")
    for program in plan["programs"]:
        if program["name"] in switched:
            take_out(program["name"])
            restart(program, leaving, "going back")
            put_back(program["name"])


def main():
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    lock = open(os.path.join(state_dir, "lock"), "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        print(f"another switch runs on this host: {lock.read().strip()}", flush=True)
        sys.exit(3)
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
    say(f"done: {verdict['result']}")


main()
