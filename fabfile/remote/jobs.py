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
import uuid
from datetime import datetime, timezone

from invoke import UnexpectedExit

from .. import commands, onhost
from .site import Site


class Interrupted(Exception):
    """The client stopped following; the job goes on on the host."""


def new_job_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


class Redacted:
    """A stream for Fabric's output that takes secrets out before it prints."""

    def __init__(self, site: Site):
        self.config = site.config

    def write(self, text: str) -> None:
        sys.stdout.write(self.config.redact(text))

    def flush(self) -> None:
        sys.stdout.flush()


def start(site: Site, directory: str, job: str, plan: dict, *argv: str) -> str:
    """Write the plan (0600, over SFTP: its URLs and secrets never show in the process list) and start
    ``python ARGV... PLAN`` detached in ``<root>``; its pid."""
    site.write_private(f"{directory}/{job}.json", json.dumps(plan))
    # setsid: its own session; no terminal, no stdin. Only the setsid is in the background (not a
    # subshell with our output open, which would hold the session)
    command = commands.join(site.config.python, *argv, f"{directory}/{job}.json")
    return site.run(f"cd {shlex.quote(site.path())} || exit 1; setsid {command}"
                    f" </dev/null >{shlex.quote(f'{directory}/{job}.log')} 2>&1 & echo $!").stdout.strip()


def follow(site: Site, directory: str, job: str, pid: str, what: str = "job") -> dict:
    """Print the job's log as it grows, until it ends; its verdict."""
    try:
        follower = commands.python(site.config.python, onhost.source("follow"), f"{directory}/{job}.log",
                                   f"{directory}/{job}.result.json", pid)
        site.commands_run += 1  # streamed, so not through site.run: counted here
        site.connection.run(follower, hide=False, warn=True, in_stream=False,
                            out_stream=Redacted(site), err_stream=Redacted(site))
    except KeyboardInterrupt:
        raise Interrupted(job) from None
    return read_verdict(site, directory, job, what)


def read_verdict(site: Site, directory: str, job: str, what: str = "job") -> dict:
    try:
        text = site.run(commands.join("cat", f"{directory}/{job}.result.json"), changes=False).stdout
    except UnexpectedExit:
        log = site.run(commands.join("tail", "-n", "5", f"{directory}/{job}.log"), changes=False, warn=True)
        return {"result": "failed", "bad": False, "died": True, "went_back": False,
                "error": f"the {what} died without a verdict: {' / '.join(log.stdout.strip().splitlines())}"}
    return json.loads(text)
