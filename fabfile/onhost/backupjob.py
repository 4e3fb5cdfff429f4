"""The scheduled backup on the host: ``python3 run.py [--full] [--quiet]``, run by cron.

Shipped by ``schedule.install_schedule`` into ``<release>/.deploy/backup-job/`` as
``run.py``, beside ``deploybackup/`` (our backup engine and the stdlib-only modules it
uses: the same code ``fab backup`` runs) and ``settings.json`` (the hostconfig's
``[backup]``). Standard library only: the host has no Fabric.

It backs up as ``fab backup`` does (same lock, verification, retention and records,
tagged with the release ``current`` points at), packs the ZEO storage first when
asked to before a full backup, appends a line to ``deploy.log`` and one to syslog,
prints nothing with ``--quiet`` unless something fails, and exits non-zero when the
backup failed or did not verify (cron mails what it printed).
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

from deploybackup.backupengine import Hooks, make_backup  # noqa: E402
from deploybackup.repozo import BackupError, layout  # noqa: E402


class Result:
    def __init__(self, command, completed):
        self.command, self.exited = command, completed.returncode
        self.stdout, self.stderr = completed.stdout, completed.stderr


class CommandFailed(Exception):
    pass


class Shell:
    """What the engine needs of an invoke Context: ``run`` a shell command, capture its output."""

    def run(self, command, hide=True, warn=False, in_stream=False, dry=False):
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="a full backup (packed first when configured)")
    parser.add_argument("--quiet", action="store_true", help="print nothing unless something fails")
    args = parser.parse_args(argv)
    with open(os.path.join(HERE, "settings.json")) as handle:
        job = json.load(handle)
    root = job["root"]
    current = os.path.realpath(os.path.join(root, "current"))
    say = (lambda message: None) if args.quiet else print
    problems = []
    shell = Shell()
    started = time.monotonic()
    if args.full and job.get("zeopack_before_full"):
        problem = pack(job, shell)
        if problem:
            problems.append(problem)
        else:
            say(f"packed, keeping {job['pack_days']} days of history")
    try:
        settings = layout(job["data"], job["backups"], job["repozo"], job["python"],
                          release=os.path.basename(current), log=job["log"], **job["options"])
        hooks = Hooks(quiet=args.quiet, show=say, log=lambda event, record: log_line(job["log"], event, record))
        record = make_backup(shell, settings, hooks, full=args.full)
        outcome = (f"{record['kind']} backup {record['stamp']} verified" if record
                   else "no changes since the last backup: nothing to back up")
    except (BackupError, CommandFailed) as error:
        problems.append(str(error))
        outcome = "backup failed"
    seconds = round(time.monotonic() - started, 1)
    message = f"{root}: {outcome} in {seconds}s" + (f"; {'; '.join(problems)}" if problems else "")
    syslog(job.get("syslog") or "user", message)
    if problems:
        print(message, file=sys.stderr)
        return 1
    say(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
