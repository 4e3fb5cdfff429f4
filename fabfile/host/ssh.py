"""SSH for bootstrap-host: root's login, the deploy key's, and ``[host] harden`` (sshd takes no password and
no root login once the key got in), undone where the key cannot get in again."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import paramiko
from fabric import Connection
from invoke import Exit

from .. import commands, output
from ..config.hostconfig import HostConfig
from ..remote import hostkeys
from ..remote.site import PROJECT_KEY, connect, deploy_key
from .plan import Change, Plan


HARDEN_DROPIN = "/etc/ssh/sshd_config.d/00-bootstrap-host-harden.conf"
SSHD_CONFIG = "/etc/ssh/sshd_config"


HARDEN_MARK = "# bootstrap-host: harden"
HARDEN_SETTINGS = (("PasswordAuthentication", "no"), ("KbdInteractiveAuthentication", "no"),
                   ("PermitRootLogin", "no"))


def hardening_text() -> str:
    return "\n".join([HARDEN_MARK + " (run bootstrap-host again rather than editing this)",
                      *(f"{key} {value}" for key, value in HARDEN_SETTINGS), ""])


def hardened(facts: dict) -> bool:
    """Whether the running sshd config already refuses passwords and root."""
    sshd = facts.get("sshd") or {}
    return all(sshd.get(key.lower()) == value for key, value in HARDEN_SETTINGS)


def reload_sshd(facts: dict) -> str:
    """Make the listening sshd read its config again; sessions already open stay."""
    if facts["systemd"]:
        return commands.join("systemctl", "try-reload-or-restart", "ssh.service")
    pidfile = (facts.get("sshd") or {}).get("pidfile") or "/run/sshd.pid"
    return commands.join("sh", "-c", 'kill -HUP "$(cat "$1")"', "sh", pidfile)


def undo_hardening(facts: dict) -> str:
    """Take the hardening out again: the drop-in, or sshd_config as it was before."""
    if (facts.get("sshd") or {}).get("includes_d"):
        return commands.and_then(commands.join("rm", "-f", HARDEN_DROPIN), reload_sshd(facts))
    return commands.and_then(commands.join("mv", "-f", SSHD_CONFIG + ".before-harden", SSHD_CONFIG),
                             reload_sshd(facts))


def plan_hardening(config: HostConfig, facts: dict, plan: Plan) -> None:
    """With ``harden``: no passwords and no root over SSH, checked by sshd before it takes effect."""
    if not config.harden:
        return
    sshd = facts.get("sshd")
    if not sshd or not sshd["valid"]:
        raise Exit(f"{config.address}: cannot read sshd's config (sshd -T: {(sshd or {}).get('error') or 'no sshd'}); "
                   f"fix it, or set harden = false in {config.path} [host]", 1)
    if hardened(facts):
        plan.checked.append("sshd refuses passwords and root's login")
        return
    binary, text = sshd["binary"], hardening_text()
    if sshd["includes_d"]:
        failed = commands.and_then(commands.join("rm", "-f", HARDEN_DROPIN),
                                   "echo 'sshd rejects the hardening (or an earlier setting wins): left as it was' >&2",
                                   "false")
        command = commands.and_then(
            commands.write_file(HARDEN_DROPIN, text), commands.join("chmod", "0644", HARDEN_DROPIN),
            f"{{ {commands.and_then(commands.join(binary, '-t'), effective_check(binary))} || {{ {failed}; }}; }}")
    else:  # an old or hand-made sshd_config: the block goes first, where its values win
        candidate = SSHD_CONFIG + ".bootstrap-host"
        command = commands.and_then(
            f"{{ printf %s {commands.join(text)}; cat {commands.join(SSHD_CONFIG)}; }} > {commands.join(candidate)}",
            commands.join(binary, "-t", "-f", candidate), effective_check(binary, "-f", candidate),
            commands.join("cp", "-p", SSHD_CONFIG, SSHD_CONFIG + ".before-harden"),
            commands.join("chmod", "0644", candidate), commands.join("mv", "-f", candidate, SSHD_CONFIG))
    where = HARDEN_DROPIN if sshd["includes_d"] else SSHD_CONFIG
    plan.changes.append(Change(f"turn off password and root logins in sshd ({where})",
                               commands.and_then(command, reload_sshd(facts)), needs_key_login=True))


def deploy_public_key(config: HostConfig, dry: bool) -> str:
    """The public half of ``site.deploy_key``; this project's key pair is made when it is the one and missing."""
    key = deploy_key(config)
    public = Path(f"{key}.pub")
    if public.is_file():
        return public.read_text().strip()
    if key != PROJECT_KEY:
        raise Exit(f"{config.path}: [host] identity = {config.identity}: no public key {public}", 2)
    if dry:
        return "ssh-ed25519 (a key pair this run would make) dry-run"
    PROJECT_KEY.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"deploy key for {config.name}",
                    "-f", str(PROJECT_KEY)], check=True)
    output.say(f"made a key pair for this project: {PROJECT_KEY} (every login as {config.user} uses it)")
    return public.read_text().strip()


def connect_as_root(c, config: HostConfig) -> Connection:
    try:
        return connect(c, config, config.root_user,
                       f"(fab --prompt-for-login-password -H {config.name} bootstrap-host)")
    except Exit as refused:
        if "refused the login" not in str(refused.message):
            raise
        how = hardened_by_us(c, config)
        if not how:
            raise
        raise Exit(f"{config.root_user} may not log in to {config.address}: bootstrap-host turned off root and "
                   f"password logins there ({how}); deploys go on as {config.user} with its "
                   f"key. To run bootstrap-host again, from the provider's console: "
                   f"{HARDEN_UNDO_HINT.get(how, '')}, then run it again (it hardens again at the end). "
                   f"Nothing was changed.", 1) from None


HARDEN_UNDO_HINT = {
    HARDEN_DROPIN: f"rm {HARDEN_DROPIN} && systemctl reload ssh (without systemd: kill -HUP $(cat /run/sshd.pid))",
    SSHD_CONFIG: f"cp -p {SSHD_CONFIG}.before-harden {SSHD_CONFIG} && systemctl reload ssh",
}


def key_login(c, config: HostConfig, attempts: int = 1) -> Connection:
    """A new connection as ``user`` with the deploy key and nothing else (no password, no root);
    up to ``attempts`` tries while sshd does not answer or closes the connection before it says yes or
    no (paramiko calls that an authentication failure too: "transport shut down or saw EOF"); a refused
    key is final."""
    key = deploy_key(config)
    kwargs = {name: value for name, value in (c.connect_kwargs or {}).items() if name != "password"}
    if key.is_file():
        kwargs["key_filename"] = str(key)
    kwargs.update(look_for_keys=False, timeout=20)
    attempt = 1
    while True:
        connection = Connection(config.address, user=config.user, port=config.port, connect_kwargs=kwargs,
                                config=c.config.clone())  # its own: threads connect at once
        hostkeys.check_host_keys(connection, config.known_hosts, output.say)
        try:
            connection.open()
            return connection
        except (paramiko.SSHException, OSError) as error:
            connection.close()
            refused = isinstance(error, paramiko.AuthenticationException) and "saw EOF" not in str(error)
            if refused or attempt >= attempts:
                raise
        attempt += 1
        time.sleep(0.5)  # sshd re-reading its config closes its listener for a moment


def check_key_login(c, config: HostConfig, attempts: int = 1) -> str | None:
    """None when ``user`` gets in with the deploy key alone, else why not."""
    try:
        connection = key_login(c, config, attempts)
    except (paramiko.SSHException, OSError) as error:
        return f"{type(error).__name__}: {error}"
    try:
        result = connection.run("true", hide=True, warn=True, dry=False, in_stream=False)
        return None if result.ok else f"'true' exited {result.exited}"
    finally:
        connection.close()


def hardened_by_us(c, config: HostConfig) -> str | None:
    """Where bootstrap-host hardened sshd on the host, seen as ``user`` with the key; None if not."""
    try:
        connection = key_login(c, config)
    except (paramiko.SSHException, OSError):
        return None
    try:
        script = (f"if test -e {commands.join(HARDEN_DROPIN)}; then echo {commands.join(HARDEN_DROPIN)}; "
                  f"elif grep -qs {commands.join('^' + HARDEN_MARK)} {commands.join(SSHD_CONFIG)}; "
                  f"then echo {commands.join(SSHD_CONFIG)}; fi")
        found = connection.run(script, hide=True, warn=True, dry=False, in_stream=False).stdout.strip()
        return found or None
    finally:
        connection.close()


def effective_check(sshd: str, *options: str) -> str:
    """Fails unless ``sshd -T`` (with ``options``) shows every hardening setting."""
    wanted = "|".join(f"{key.lower()} {value}" for key, value in HARDEN_SETTINGS)
    return (f"test \"$({commands.join(sshd, '-T', *options)} | grep -cxE {commands.join(wanted)})\" "
            f"= {len(HARDEN_SETTINGS)}")
