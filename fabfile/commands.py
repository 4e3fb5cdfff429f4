"""Shell commands for the host, built from tokens; every token is quoted once here.

Each function is pure: it returns the command string, so a table of tests can
check it without a host. Nothing else in the project puts a value into a shell.
"""
from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping


def join(*tokens: str) -> str:
    """One command from ``tokens``, each quoted."""
    return shlex.join(tokens)


def and_then(*commands: str) -> str:
    """Commands run one after the other, stopping at the first failure."""
    return " && ".join(commands)


def in_directory(directory: str, command: str, env: Mapping[str, str] | None = None) -> str:
    """``command`` run in ``directory`` with ``env`` set."""
    assignments = [f"{name}={shlex.quote(value)}" for name, value in (env or {}).items()]
    return and_then(join("cd", directory), " ".join([*assignments, command]))


def python(interpreter: str, script: str, *args: str) -> str:
    """Run a Python ``script`` (its source text) on the host with ``args``."""
    return join(interpreter, "-c", script, *args)


def make_directories(*paths: str, mode: str | None = None) -> str:
    """Create ``paths`` with their parents; existing ones are fine."""
    return join("mkdir", "-p", *(("-m", mode) if mode else ()), *paths)


def take_lock(lock_dir: str, holder: str) -> str:
    """Take the lock, atomically by ``mkdir``; fails when someone holds it."""
    return and_then(join("mkdir", lock_dir), f"printf '%s\\n' {shlex.quote(holder)} > {shlex.quote(lock_dir + '/holder')}")


def release_lock(lock_dir: str) -> str:
    """Drop the lock."""
    return join("rm", "-rf", lock_dir)


def switch_link(link: str, target: str) -> str:
    """Point ``link`` at ``target`` atomically: a new link, then rename over the old."""
    temporary = f"{link}.new"
    return and_then(join("ln", "-sfn", target, temporary), join("mv", "-T", temporary, link))


def unpack(archive: str, directory: str) -> str:
    """Unpack a tarball into a fresh ``directory`` (removing a half-made one first)."""
    return and_then(
        join("rm", "-rf", directory), join("mkdir", "-p", directory),
        join("tar", "-xzf", archive, "-C", directory), join("rm", "-f", archive),
    )


def link_shared(release_dir: str, root: str, shared: Iterable[str]) -> str:
    """Give a release links to the data shared by all releases (``var`` and friends)."""
    steps = []
    for path in shared:
        steps += [
            join("mkdir", "-p", f"{root}/{path}", f"{release_dir}/{path}".rsplit("/", 1)[0]),
            join("rm", "-rf", f"{release_dir}/{path}"),
            join("ln", "-s", f"{root}/{path}", f"{release_dir}/{path}"),
        ]
    return and_then(*steps)


def verify_checksums(directory: str, checksums: Mapping[str, str]) -> str:
    """Check the sha256 of files in ``directory``; fails naming the ones that differ."""
    lines = "".join(f"{digest}  {name}\n" for name, digest in sorted(checksums.items()))
    return and_then(join("cd", directory), f"printf %s {shlex.quote(lines)} | sha256sum --quiet --check --strict -")



def with_pid_file(pid_file: str, *command: str, env: Mapping[str, str] | None = None) -> str:
    """Run ``command`` writing its pid to ``pid_file`` first, so it can be stopped."""
    assignments = [f"{name}={value}" for name, value in (env or {}).items()]
    return join("sh", "-c", 'echo $$ > "$1"; shift; exec env "$@"', "sh", pid_file, *assignments, *command)


def kill_from_pid_file(pid_file: str) -> str:
    """Stop the process whose pid is in ``pid_file``, if it still runs."""
    return join("sh", "-c", 'test -f "$1" && kill "$(cat "$1")" 2>/dev/null; rm -f "$1"', "sh", pid_file)


def append_line(path: str, line: str) -> str:
    """Append ``line`` to the file at ``path``."""
    return f"printf '%s\\n' {shlex.quote(line)} >> {shlex.quote(path)}"


def append_text(path: str, text: str) -> str:
    """Append ``text`` as it is to the file at ``path``."""
    return f"printf %s {shlex.quote(text)} >> {shlex.quote(path)}"


def write_file(path: str, text: str) -> str:
    """Write ``text`` to ``path`` (replacing it atomically)."""
    return and_then(f"printf %s {shlex.quote(text)} > {shlex.quote(path + '.new')}", join("mv", "-f", path + ".new", path))


def as_user(user: str | None, command: str) -> str:
    """``command`` run as ``user`` through sudo and ``/bin/sh`` (the data's owner, a separate ``app_user``:
    the rule bootstrap-host writes allows it); ``command`` itself when ``user`` is None."""
    return join("sudo", "-n", "-u", user, "--", "/bin/sh", "-c", command) if user else command


def remove(*paths: str) -> str:
    """Remove ``paths`` and everything under them."""
    return join("rm", "-rf", "--", *paths)


def syslog(facility: str, tag: str, message: str) -> str:
    """A line to the host's syslog."""
    return join("logger", "-p", f"{facility}.info", "-t", tag, "--", message)
