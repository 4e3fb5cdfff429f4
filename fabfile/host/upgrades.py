"""Security updates (``[host] security_upgrades``): Debian's unattended-upgrades, turned on.

The package's own ``50unattended-upgrades`` takes the security archive only (Debian's
and Ubuntu's defaults); ``/etc/apt/apt.conf.d/20auto-upgrades`` makes apt's daily
timers (``apt-daily.timer``, ``apt-daily-upgrade.timer``) refresh the lists and run it.
"""
from __future__ import annotations

from .. import commands
from ..config.hostconfig import HostConfig
from .plan import Plan

PACKAGE = "unattended-upgrades"
CONFIG_PATH = "/etc/apt/apt.conf.d/20auto-upgrades"
CONFIG_TEXT = 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'


def plan_security_upgrades(config: HostConfig, facts: dict, plan: Plan) -> None:
    if not config.security_upgrades:
        return
    plan.check(facts["files"].get(CONFIG_PATH) == CONFIG_TEXT,
               f"security updates installed daily ({PACKAGE}, {CONFIG_PATH})",
               f"install security updates daily ({PACKAGE}, {CONFIG_PATH})",
               commands.write_file(CONFIG_PATH, CONFIG_TEXT), commands.join("chmod", "0644", CONFIG_PATH))
    if not facts["systemd"]:
        plan.checked.append("no systemd: apt's daily job runs from cron (/etc/cron.daily/apt-compat) where cron is "
                            "installed")
