"""Jobs on the host that outlive the SSH session: started detached, followed, read back.

A job (the switch, a backup, a restore) gets a private plan file, runs in a session of
its own with no terminal (so the end of ours sends it no SIGHUP), writes its log and,
at the end, ``<job>.result.json``. The client prints the log as it grows; a client
that dies changes nothing for the job, and the next command reads what it left.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
import uuid
from datetime import datetime, timezone

from .. import commands, onhost
from .site import Site


class Interrupted(Exception):
    """The client stopped following; the job goes on on the host."""


def new_job_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


VERDICT = "--- verdict ---"  # on stderr, between the follow's end and the verdict


def run(site: Site, directory: str, job: str, plan: dict, *argv: str, prepare: str = "true",
        what: str = "job") -> dict:
    """The job in one remote command: ``prepare`` (a command: ship the script), the plan written 0600
    from our stdin (its URLs and secrets never show in the process list), ``python ARGV... PLAN``
    started detached in ``<root>``, its log printed as it grows, its verdict read back."""
    plan_path, log = f"{directory}/{job}.json", f"{directory}/{job}.log"
    result = f"{directory}/{job}.result.json"
    follower = commands.python(site.config.python, onhost.source("follow"), log, result) + ' "$pid"'
    # setsid: its own session; no terminal, no stdin. Only the setsid is in the background (not a
    # subshell with our output open, which would hold the session). $pid is the shell's, unquoted.
    command = "; ".join([
        commands.and_then("umask 077", commands.make_directories(directory, mode="0700"), prepare,
                          f"cat > {shlex.quote(plan_path + '.new')}", commands.join("mv", "-f", plan_path + ".new",
                                                                                       plan_path),
                          commands.join("cd", site.path())) + " || exit 1",
        f"setsid {commands.join(site.config.python, *argv, plan_path)} </dev/null >{shlex.quote(log)} 2>&1 & pid=$!",
        follower,
        f"printf '%s\\n' {shlex.quote(VERDICT)} >&2",
        f"cat {shlex.quote(result)} >&2 2>/dev/null || tail -n 5 {shlex.quote(log)} >&2"])
    site.connection.open()
    channel = site.connection.client.get_transport().open_session()
    site.commands_run += 1
    printed, errors = LineRedacted(site.config), []
    try:
        channel.exec_command(command)
        channel.sendall(json.dumps(plan).encode())
        channel.shutdown_write()
        while True:
            if channel.recv_ready():
                printed.write(channel.recv(65536).decode("utf-8", "replace"))
            elif channel.recv_stderr_ready():
                errors.append(channel.recv_stderr(65536).decode("utf-8", "replace"))
            elif channel.exit_status_ready():
                break
            else:
                time.sleep(0.02)
        printed.flush()
    except KeyboardInterrupt:
        raise Interrupted(job) from None
    finally:
        channel.close()
    said = "".join(errors)
    _, marker, verdict = said.partition(VERDICT + "\n")
    try:
        return json.loads(verdict) if marker else _no_verdict(said, what)
    except ValueError:
        return _no_verdict(verdict, what)


def _no_verdict(said: str, what: str = "job") -> dict:
    lines = " / ".join(line for line in said.strip().splitlines()[-5:])
    return {"result": "failed", "bad": False, "died": True, "went_back": False,
            "error": f"the {what} died without a verdict: {lines}"}


class LineRedacted:
    """A stream for our terminal that prints whole lines, secrets taken out (a secret never
    straddles two writes)."""

    def __init__(self, config, errors: bool = False):
        self.config, self.pending, self.errors = config, "", errors  # errors: to our stderr

    @property
    def terminal(self):
        return sys.stderr if self.errors else sys.stdout

    def write(self, text: str) -> None:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        for line in lines:
            self.terminal.write(self.config.redact(line) + "\n")
        self.terminal.flush()

    def flush(self) -> None:
        if self.pending:
            self.terminal.write(self.config.redact(self.pending))
            self.pending = ""
        self.terminal.flush()
