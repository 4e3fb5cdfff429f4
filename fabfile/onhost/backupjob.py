"""The backup job on the host: ``python3 run.py [--full] [--quiet]`` (cron), or ``run.py PLAN.json`` (fab).

Shipped by ``schedule.install_schedule`` into ``<release>/.deploy/backup-job/`` as
``run.py``, beside ``deploybackup/`` (our backup engine and the stdlib-only modules it
uses: the same code ``fab backup`` runs) and ``settings.json`` (the hostconfig's
``[backup]``). Standard library only: the host has no Fabric.

It backs up as ``fab backup`` does (same lock, verification, retention and records,
tagged with the release ``current`` points at), packs the ZEO storage first when
asked to before a full backup, appends a line to ``deploy.log`` and one to syslog,
prints nothing with ``--quiet`` unless something fails, and exits non-zero when the
backup failed or did not verify (cron mails what it printed).

``fab backup``, the deploy's backup before the switch and ``fab restore`` start it
detached with a plan (``fabfile/datajob.py``): a backup or a restore, its settings, and
for a restore the commands that stop and start the site and its health URLs. It
writes its verdict beside the plan, so that a client that dies changes nothing: the
job finishes (or undoes what it wrote) by itself, holding the backup lock, which names
its pid, so that a lock whose job is gone is known to be stale.
"""
import argparse
import getpass
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from deploybackup.backups.engine import Hooks, make_backup  # noqa: E402
from deploybackup.backups.offsite import copy_backups, from_settings, restore_from_offsite  # noqa: E402
from deploybackup.backups.repozo import BackupError, job_layout, variant  # noqa: E402
from deploybackup.backups.restore import restore_backup  # noqa: E402


class Result:
    def __init__(self, command, completed):
        self.command, self.exited = command, completed.returncode
        self.stdout, self.stderr = completed.stdout, completed.stderr


class CommandFailed(Exception):
    pass


class Shell:
    """What the engine needs of an invoke Context: ``run`` a shell command, capture its output.
    Locks it takes name this process. With ``as_user`` (a separate ``app_user``, who owns the data),
    each command runs as that user through sudo and ``/bin/sh``, as the rule bootstrap-host writes allows."""

    owner_pid = os.getpid()

    def __init__(self, as_user=None):
        self.as_user = as_user

    def run(self, command, hide=True, warn=False, in_stream=False, dry=False):
        if self.as_user:
            command = " ".join(shlex.quote(word) for word in ("sudo", "-n", "-u", self.as_user, "--", "/bin/sh", "-c",
                                                              command))
        completed = subprocess.run(command, shell=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        result = Result(command, completed)
        if result.exited and not warn:
            raise CommandFailed(f"{command[:200]} exited {result.exited}: {result.stderr.strip()[-500:]}")
        return result


def syslog(facility, message):
    if shutil.which("logger"):
        subprocess.run(["logger", "-p", f"{facility}.info", "-t", "buildout-deploy-backup", "--", message],
                       capture_output=True)


def log_line(path, event, record):
    """One JSON line in deploy.log, as ``fab`` writes them; skipped where we may not write."""
    line = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "event": event,
            "who": f"{getpass.getuser()}@{socket.gethostname()} (scheduled)", **record}
    try:
        with open(path, "a") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
    except OSError:
        pass


def pack(job, shell):
    """zeopack before a full backup: the command from ``[backup] zeopack``, ``-d pack_days``."""
    command = job["zeopack"] + ["-d", str(job["pack_days"])]
    result = shell.run(shlex.join(command), warn=True)
    if result.exited:
        return f"zeopack failed (exit {result.exited}): {(result.stderr or result.stdout).strip()[-300:]}"
    return None


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def redactor(pattern):
    """Secrets out of what we print and keep, in clear or escaped (``hostconfig.secret_pattern``)."""
    import re
    return (lambda text: re.sub(pattern, "***", text)) if pattern else (lambda text: text)


class Steps:
    """``▸ name`` when a step starts, ``✓ name (1.2s)`` when it ends: what ``fab`` prints for its own."""

    def __init__(self, say):
        self.say = say

    def __call__(self, name):
        return _Step(self.say, name)


class _Step:
    def __init__(self, say, name):
        self.say, self.name = say, name

    def __enter__(self):
        self.started = time.monotonic()
        self.say(f"▸ {self.name}")

    def __exit__(self, kind, error, trace):
        took = time.monotonic() - self.started
        self.say(f"{'✓' if kind is None else '✗'} {self.name} ({took:.1f}s)")


def site_hooks(plan, shell, say):
    """Stop the site (maintenance page first) and start it again, checked, for a restore."""
    def stop():
        for command in plan["stop"]:
            shell.run(command)

    def start():
        if plan.get("leave_stopped"):
            return {}
        for command in plan["start"]:
            shell.run(command)
        failed = healthy(plan, shell)
        if not failed:
            for command in plan.get("finally", []):  # the maintenance page off, once it serves
                shell.run(command, warn=True)
        return failed

    return stop, start


def healthy(plan, shell):
    """The health URLs answered and every program runs; or what failed."""
    health = plan["health"]
    urls = "".join(f"{url}\n" for url in health["urls"])
    checked = subprocess.run([plan["python"], os.path.join(HERE, "deploybackup", "onhost", "health.py"),
                              str(health["timeout"])], input=urls, capture_output=True, text=True)
    try:
        failed = json.loads(checked.stdout)["failed"]
    except (ValueError, KeyError):
        failed = {url: "no answer" for url in health["urls"]}
    running = shell.run(health["status"], warn=True)
    if running.exited:
        failed["programs"] = " ".join(running.stdout.split())
    return failed


def with_free_space(message, *directories):
    """``message``, opening with "disk full" when a directory we write to has (almost) no room left: a full
    disk shows as many things ("I/O error" from printf, a short write), not always as ENOSPC."""
    if "disk full" in message:
        return message
    for directory in directories:
        try:
            free = shutil.disk_usage(directory).free
        except OSError:
            continue
        if free < 1024 * 1024:
            return f"disk full ({free} bytes free in {directory}): {message}"
    return message


def copy_offsite(shell, settings, job, hooks, redact):
    """The offsite copy after a backup (``[backup] offsite``): {"result": "ok", "said"} or {"result": "failed",
    "error"}. Its failure is reported, never taken for the backup's: the backup here counts."""
    offsite = from_settings(job["offsite"])
    try:
        said = copy_backups(shell, settings, offsite, hooks)
    except (BackupError, CommandFailed) as error:
        return {"result": "failed", "error": redact(f"offsite copy to {offsite}: {error}")}
    except Exception as error:  # a bug of ours: said, and the backup here still counts
        import traceback
        traceback.print_exc()
        return {"result": "failed", "error": redact(f"offsite copy to {offsite}: {type(error).__name__}: {error}")}
    hooks.say(said)
    return {"result": "ok", "said": said}


def run_plan(path):
    """The job ``fab`` started: a backup or a restore as the plan says; its verdict in ``<job>.result.json``."""
    with open(path) as handle:
        plan = json.load(handle)
    redact = redactor(plan.get("secret_pattern"))

    def say(message):
        print(redact(message), flush=True)

    shell, plain = Shell(plan.get("as_user")), Shell()  # the data's commands; the site's stop and start
    job = plan["settings"]
    settings = variant(job_layout(job, plan.get("release")), zip=plan.get("zip", False), source=plan.get("source"))
    hooks = Hooks(quiet=plan.get("quiet", False), show=say, timed=Steps(say),
                  log=lambda event, record: log_line(job["log"], event, record))
    verdict = {"result": "failed", "started": now()}
    stopped = []  # "stop", then "start", as the restore calls them
    try:
        if plan["action"] == "backup":
            record = make_backup(shell, settings, hooks, full=plan.get("full", False) or job.get("full", False),
                                 snapshot=plan.get("snapshot", False) or plan.get("zip", False),
                                 force_unlock=plan.get("force_unlock", False))
            verdict.update(result="ok", record=record)
            if job.get("offsite") and not plan.get("snapshot"):
                verdict["offsite"] = copy_offsite(shell, settings, job, hooks, redact)
        else:
            stop, start = site_hooks(plan, plain, say)
            hooks.stop = lambda: (stopped.append("stop"), stop())
            hooks.start = lambda: (stopped.append("start"), start())[1]
            if plan.get("from_offsite"):
                record = restore_from_offsite(shell, settings, from_settings(job["offsite"]), hooks,
                                              date=plan["date"], force_unlock=plan.get("force_unlock", False))
            else:
                record = restore_backup(shell, settings, hooks, date=plan["date"],
                                        snapshot=plan.get("snapshot", False) or plan.get("zip", False),
                                        force_unlock=plan.get("force_unlock", False))
            verdict.update(result="ok", record=record)
    except (BackupError, CommandFailed) as error:
        verdict["error"] = redact(with_free_space(str(error), job["backups"], job["data"]))
    except Exception as error:  # a bug of ours: said in one line, the traceback in the log
        import traceback
        traceback.print_exc()
        verdict["error"] = redact(f"{type(error).__name__}: {error}")
    finally:
        if plan["action"] == "restore":
            if stopped and "start" not in stopped and verdict["result"] != "ok":
                for command in plan["start"]:  # stopped, then failed: serve again before giving up
                    plain.run(command, warn=True)
            for command in plan.get("finally", []):
                plain.run(command, warn=True)
        verdict["finished"] = now()
        with open(plan["result"] + ".new", "w") as handle:
            json.dump(verdict, handle, sort_keys=True)
        os.replace(plan["result"] + ".new", plan["result"])
    return 0 if verdict["result"] == "ok" else 1


def alert(job, release, error, seconds, event="backup-failed"):
    """A failed scheduled backup (``backup-failed``, which ``fab status`` reads; or its offsite copy:
    ``offsite-failed``): a line in deploy.log and the ``[notify]`` webhook, with the JSON ``fab`` sends
    (``fabfile/notify.py``), secrets redacted."""
    redact = redactor(job.get("secret_pattern"))
    error = redact(error)
    log_line(job["log"], event, {"release": release, "error": error, "seconds": seconds})
    notify = job.get("notify") or {}
    if not notify.get("webhook"):
        return
    import urllib.request
    who = f"{getpass.getuser()}@{socket.gethostname()} (scheduled)"
    data = {"event": event, "host": notify.get("host"), "address": notify.get("address"),
            "release": release, "who": who, "duration": seconds, "error": error}
    data = {key: redact(value) if isinstance(value, str) else value for key, value in data.items()}
    request = urllib.request.Request(notify["webhook"], data=json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except Exception as problem:  # said, never fatal: cron mails what we print
        print(redact(f"webhook failed: {problem}"), file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="a full backup (packed first when configured)")
    parser.add_argument("--quiet", action="store_true", help="print nothing unless something fails")
    parser.add_argument("plan", nargs="?", help="the plan of a job fab started (a backup or a restore)")
    args = parser.parse_args(argv)
    if os.getpgrp() != os.getpid():
        os.setpgrp()  # lead a process group: who finds our lock stale stops what we left running
    if args.plan:
        return run_plan(args.plan)
    with open(os.path.join(HERE, "settings.json")) as handle:
        job = json.load(handle)
    root = job["root"]
    current = os.path.realpath(os.path.join(root, "current"))
    say = (lambda message: None) if args.quiet else print
    problems, offsite_error = [], None
    shell = Shell()
    started = time.monotonic()
    if args.full and job.get("zeopack_before_full"):
        problem = pack(job, shell)
        if problem:
            problems.append(problem)
        else:
            say(f"packed, keeping {job['pack_days']} days of history")
    try:
        settings = job_layout(job, os.path.basename(current))
        hooks = Hooks(quiet=args.quiet, show=say, log=lambda event, record: log_line(job["log"], event, record))
        record = make_backup(shell, settings, hooks, full=args.full or job.get("full", False))
        outcome = (f"{record['kind']} backup {record['stamp']} verified" if record
                   else "no changes since the last backup: nothing to back up")
        if job.get("offsite"):
            offsite_error = copy_offsite(shell, settings, job, hooks, redactor(job.get("secret_pattern"))).get("error")
    except (BackupError, CommandFailed) as error:
        problems.append(with_free_space(str(error), job["backups"], job["data"]))
        outcome = "backup failed"
    except Exception as error:  # a bug of ours still fails the backup loudly, and alerts
        problems.append(f"{type(error).__name__}: {error}")
        outcome = "backup failed"
    seconds = round(time.monotonic() - started, 1)
    message = f"{root}: {outcome} in {seconds}s" + (f"; {'; '.join(problems)}" if problems else "")
    message += f"; the offsite copy failed: {offsite_error}" if offsite_error else ""
    message = redactor(job.get("secret_pattern"))(message)
    syslog(job.get("syslog") or "user", message)
    if problems:
        alert(job, os.path.basename(current), "; ".join(problems), seconds)
        print(message, file=sys.stderr)
        return 1
    if offsite_error:  # the backup here counts; the copy is reported, and tried again by the next backup
        alert(job, os.path.basename(current), offsite_error, seconds, event="offsite-failed")
        print(message, file=sys.stderr)
        return 3
    say(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
