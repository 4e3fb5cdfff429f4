"""The programs' logs: their last lines, or followed live until Ctrl-C."""
from __future__ import annotations

import signal
import threading

from .. import commands, output
from ..programs import supervisor, systemd
from ..remote import jobs
from ..remote.site import Site
from .services import process_manager, live


class UntilInterrupted:
    """The remote command's stdin: nothing, then its end once Ctrl-C is pressed here.

    Invoke, without a pty, answers Ctrl-C by waiting for output that a follow never
    stops sending; closing the remote stdin instead lets the remote side end itself."""

    def __init__(self):
        self.interrupted = threading.Event()

    def interrupt(self, signum=None, frame=None) -> None:
        self.interrupted.set()

    def read(self, size: int = 1) -> str | None:
        return "" if self.interrupted.is_set() else None  # None: nothing yet; "": the end


def follow_command(config, names: list[str], lines: int) -> str:
    """Stream the programs' logs as they grow, until our SSH session ends.

    Nothing is forwarded to the remote stdin, so it reaches its end only when the
    session closes (Ctrl-C here): then ``kill 0`` ends the whole process group (sshd makes
    the shell its leader), so no ``tail`` is left behind on the host."""
    if config.manager == "systemd":
        streams = [commands.join("journalctl", "--no-pager", "-f", "-n", str(lines),
                                 *(token for name in names for token in ("-u", systemd.unit_name(config, name))))]
    else:  # supervisord reads the files as app_user, who may read var/; one stream per program, each line named
        streams = [f"{supervisor.follow(config, name)} | {commands.join('sed', '-u', f's|^|{name} |')}"
                   for name in names]
    return "".join(f"{stream} & " for stream in streams) + "cat >/dev/null; kill 0"


def show_logs(site: Site, lines: int) -> None:
    for name, _ in live(site):
        result = site.run(process_manager(site).logs(site.config, name, lines), changes=False, warn=True)
        output.say(f"[bold]== {name}[/]\n{(result.stdout + result.stderr).rstrip()}")


def follow_logs(site: Site, lines: int) -> None:
    """Print what the serving programs log as they log it, until Ctrl-C here."""
    names = [name for name, _ in live(site)]
    output.say(f"following the logs of {' '.join(names)} (Ctrl-C to stop)")
    until = UntilInterrupted()
    previous = signal.signal(signal.SIGINT, until.interrupt)
    try:
        site.connection.run(follow_command(site.config, names, lines), hide=False, warn=True,
                            in_stream=until, out_stream=jobs.LineRedacted(site.config),
                            err_stream=jobs.LineRedacted(site.config))
    finally:
        signal.signal(signal.SIGINT, previous)
    output.say("stopped following the logs")
