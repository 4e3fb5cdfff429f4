"""``[hooks]``: the site's own commands around a deploy, each bounded by ``hook_timeout``.

``before_deploy`` runs here, in the buildout directory, before anything is sent;
``before_switch`` on the host in the new release, before the switch; ``after_switch``
and the automatic ``after_rollback`` in the switch job on the host (the plan carries
them, so they run even when the client is gone); ``after_rollback`` of ``fab rollback``
over SSH in ``current`` once the rollback stands. Every hook's output is shown as it
comes, secrets redacted; its exit code and duration go to ``deploy.log``.

Hooks run as the deploy ``user``: the sudo rules bootstrap-host writes let it run
supervisor (and ``mkdir`` in ``var/``) as ``app_user``, not a shell. On the host a hook's command line is written to a
0600 file (it may hold a secret) and run with ``sh``, never put on a command line.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from invoke import Exit

from .. import commands
from ..remote.events import log_event
from ..remote.jobs import LineRedacted
from ..config.hostconfig import HostConfig
from ..remote.site import Site

KILL_AFTER = 10  # seconds a hook has to end after TERM before timeout sends KILL
TIMED_OUT = (124, 137)  # timeout's exit codes: TERM did it, KILL did it
ENV_LINE = "DEPLOY_HOOK"  # the switch job hands the line to sh in this variable
EVAL = 'eval "$DEPLOY_HOOK"'


@dataclass(frozen=True)
class HookResult:
    name: str
    exit: int
    seconds: float
    timeout: int

    @property
    def ok(self) -> bool:
        return self.exit == 0

    @property
    def timed_out(self) -> bool:
        return self.exit in TIMED_OUT and self.seconds >= self.timeout

    def describe(self) -> str:
        """``before_switch hook failed (exit 4)``, or ``... stopped after 600s (hook_timeout)``."""
        if self.timed_out:
            return f"{self.name} hook stopped after {self.timeout}s ([hooks] hook_timeout)"
        return f"{self.name} hook failed (exit {self.exit})" if self.exit else f"{self.name} hook ok"


# timeout runs the hook in a process group of its own (its pid); when the hook ends, what it left
# running in that group (a `cmd &` holding the output open) ends with it, so the hook's pipe closes
# (TERM or INT to this shell: passed on to the hook's group)
GROUP_ENDS_WITH_IT = ('trap \'kill -TERM "-$t" 2>/dev/null\' TERM INT; timeout "$@" & t=$!; wait "$t"; code=$?; '
                      'kill -KILL "-$t" 2>/dev/null; exit "$code"')


def bounded_argv(timeout: int, *command: str) -> list[str]:
    """``command`` stopped (TERM, then KILL) after ``timeout`` seconds with its children, and whatever
    it left running when it ends: the hook's output ends when the hook does."""
    return ["sh", "-c", GROUP_ENDS_WITH_IT, "sh", "-k", str(KILL_AFTER), str(timeout), *command]


def bounded(timeout: int, *command: str) -> str:
    """``bounded_argv`` as one quoted command line."""
    return commands.join(*bounded_argv(timeout, *command))


def script_path(config: HostConfig, name: str) -> str:
    """Where the host keeps the hook's command line, 0600."""
    return config.path_on_host(".hooks", f"{name}.sh")


def remote_command(config: HostConfig, name: str, directory: str) -> str:
    """The hook ``name`` run by ``sh`` from its file in ``directory``, bounded."""
    return commands.in_directory(directory, bounded(config.hook_timeout, "sh", script_path(config, name)))


def job_hook(config: HostConfig, name: str, directory: str) -> dict | None:
    """The hook as the switch job takes it from its plan: the command line rides in the plan
    (0600) and reaches ``sh`` through the environment, never the process list."""
    line = config.hook(name)
    if line is None:
        return None
    return {"name": name, "line": line, "directory": directory, "timeout": config.hook_timeout,
            "command": bounded(config.hook_timeout, "sh", "-c", EVAL)}


def run_local(site: Site, name: str) -> HookResult | None:
    """Run the hook here, in the buildout directory, its output shown as it comes."""
    config = site.config
    line = config.hook(name)
    if line is None:
        return None
    if shutil.which("timeout") is None:
        raise Exit(f"[hooks] {name}: needs coreutils' timeout on this machine", 2)
    print(f"{name} hook: {config.redact(line)}", flush=True)
    started = time.monotonic()
    # its own process group (timeout's): stdin closed, so a hook never stops on the terminal
    process = subprocess.Popen(bounded_argv(config.hook_timeout, "sh", "-c", line),
                               cwd=config.buildout_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        for output_line in process.stdout:
            sys.stdout.write(config.redact(output_line))
            sys.stdout.flush()
        process.wait()
    except BaseException:
        process.terminate()  # passed on to the hook's group
        process.wait()
        raise
    return _logged(site, HookResult(name, process.returncode, round(time.monotonic() - started, 1),
                                    config.hook_timeout))


def run_on_host(site: Site, name: str, directory: str, release: str | None = None) -> HookResult | None:
    """Run the hook on the host in ``directory``, its output shown as it comes."""
    config = site.config
    line = config.hook(name)
    if line is None:
        return None
    if site.dry:
        print(f"[dry] {name} hook in {directory}: {config.redact(line)}")
        return None
    print(f"{name} hook in {directory}: {config.redact(line)}", flush=True)
    site.run(commands.make_directories(config.path_on_host(".hooks"), mode="0700"))
    site.write_private(script_path(config, name), line + "\n")
    started = time.monotonic()
    site.commands_run += 1
    out = LineRedacted(config)
    result = site.connection.run(remote_command(config, name, directory), hide=False, warn=True, in_stream=False,
                                 out_stream=out, err_stream=out)
    out.flush()
    return _logged(site, HookResult(name, result.exited, round(time.monotonic() - started, 1),
                                    config.hook_timeout), release)


def _logged(site: Site, result: HookResult, release: str | None = None) -> HookResult:
    """Say how the hook ended and put it in ``deploy.log``."""
    print(f"{result.describe()} in {result.seconds}s", flush=True)
    log_event(site, "hook", hook=result.name, exit=result.exit, seconds=result.seconds,
              timed_out=result.timed_out, **({"release": release} if release else {}))
    return result
