"""bootstrap-host's part for the process managers: systemd units or supervisord's unit, and the sudo rules
that let the deploy user run them (and make directories in var/) as ``app_user``."""
from __future__ import annotations

from .. import commands
from ..build import datadirs
from ..config.hostconfig import HostConfig
from ..programs import systemd
from .plan import Change, Plan


JOURNAL_GROUP = "systemd-journal"


def supervisord_unit(config: HostConfig) -> str:
    return f"{systemd.site_slug(config)}-supervisord.service"


def plan_services(config: HostConfig, facts: dict, plan: Plan) -> None:
    """systemd units and the sudo rule for them; or supervisord's unit where systemd runs."""
    if config.manager == "supervisor" and config.app_user != config.user:
        plan_supervisor_sudo(config, facts, plan)
    plan_data_sudo(config, facts, plan)
    if not facts["systemd"]:
        plan.checked.append("no systemd: the deploy starts supervisord (nothing starts it at boot)")
        return
    group = shared_group(config) if config.app_user == config.user else config.app_user
    if config.manager == "systemd":
        units = systemd.render_units(config, group)
        if not units:  # a fleet's front host: no program of the site runs here (an empty sudo rule is refused)
            plan.checked.append("no program of the site runs on this host: no units, no sudo rule for them")
            return
    else:
        units = {supervisord_unit(config): supervisord_unit_text(config, group)}
    written = []
    for name, text in units.items():
        path = f"{systemd.UNIT_DIR}/{name}"
        if facts["files"].get(path) == text:
            plan.checked.append(f"unit {name} is as wanted")
        else:
            written.append(name)
            plan.changes.append(Change(f"write unit {name}", commands.write_file(path, text)))
    if written:
        plan.changes.append(Change("reload systemd", commands.join("systemctl", "daemon-reload")))
    disabled = [n for n in units if not facts["paths"].get(f"{systemd.UNIT_DIR}/multi-user.target.wants/{n}")]
    plan.check(not disabled, f"units enabled: {' '.join(units)}", f"enable {' '.join(disabled)}",
               commands.join("systemctl", "enable", "--quiet", *disabled))
    sudoers = systemd.render_sudoers(config, list(units))
    path = systemd.sudoers_path(config)
    plan.check(facts["files"].get(path) == sudoers, f"{path} lets {config.user} start, stop, restart the units",
               f"let {config.user} start, stop and restart the units ({path})", *install_sudoers(path, sudoers))


def supervisor_sudoers(config: HostConfig) -> str:
    """Let the deploy user run supervisord and supervisorctl as ``app_user``, who owns the data.

    The deploy user owns the code app_user runs, so this gives it nothing it had not;
    it still cannot read var/ or backups/ itself."""
    tools = ", ".join(config.path_on_host("venv", "bin", tool) for tool in ("supervisord", "supervisorctl"))
    return (f"# Written by bootstrap-host: {config.user} runs supervisor for {config.root} as {config.app_user}.\n"
            f"{config.user} ALL=({config.app_user}) NOPASSWD: {tools}\n")


def plan_supervisor_sudo(config: HostConfig, facts: dict, plan: Plan) -> None:
    path = systemd.sudoers_path(config) + "-supervisor"
    text = supervisor_sudoers(config)
    plan.check(facts["files"].get(path) == text, f"{path} lets {config.user} run supervisor as {config.app_user}",
               f"let {config.user} run supervisor as {config.app_user} ({path})", *install_sudoers(path, text))


def data_sudoers_path(config: HostConfig) -> str:
    return systemd.sudoers_path(config) + "-data"


def plan_data_sudo(config: HostConfig, facts: dict, plan: Plan) -> None:
    """With a separate ``app_user``: the deploy user makes the directories a build wants in var/ as it."""
    if config.app_user == config.user:
        return
    path, text = data_sudoers_path(config), datadirs.sudoers(config)
    plan.check(facts["files"].get(path) == text,
               f"{path} lets {config.user} make directories in var/ and back up as {config.app_user}",
               f"let {config.user} make directories in var/ and back up as {config.app_user} ({path})",
               *install_sudoers(path, text))


def install_sudoers(path: str, text: str) -> tuple[str, ...]:
    """Commands that check a sudoers file with visudo before it takes effect."""
    return (commands.write_file(path + ".check", text), commands.join("visudo", "-q", "-c", "-f", path + ".check"),
            commands.join("chmod", "0440", path + ".check"), commands.join("mv", "-f", path + ".check", path))


def supervisord_unit_text(config: HostConfig, group: str) -> str:
    supervisord = config.path_on_host("venv", "bin", "supervisord")
    conf = config.path_on_host("current", "etc", "supervisord.conf")
    return "\n".join([
        "# Written by bootstrap-host; run it again rather than editing this file.",
        "[Unit]", f"Description=supervisord of the buildout site in {config.root.replace('%', '%%')}",
        "After=network.target", f"ConditionPathExists={conf.replace('%', '%%').replace('$', '$$')}", "",
        "[Service]", "Type=simple", f"User={config.app_user}", f"Group={group}",
        f"ExecStart={systemd._escape(commands.join(supervisord, '-n', '-c', conf))}",
        "Restart=on-failure", "", "[Install]", "WantedBy=multi-user.target", "",
    ])


def shared_group(config: HostConfig) -> str:
    """The group of the deploy user, which ``app_user`` joins to read the code."""
    return config.user
