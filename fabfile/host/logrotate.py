"""The logrotate rule for the files a site's programs write under ``<root>/var/log``.

``bootstrap-host`` writes it to ``/etc/logrotate.d/<site>``; the host's daily
logrotate run applies it. The files are copied, then truncated in place
(``copytruncate``) rather than moved: supervisord (the programs' output, its own
log) and Zope (event and access logs) both open their files for appending, so after
the truncation they go on writing at the start of the same path, with no signal to
send and nothing to restart. ``su`` makes logrotate act as ``app_user``, who owns
``var/`` (0700), so root never follows a link the site's user could have planted.
A dated suffix (``dateext``) keeps the rotated files apart from the numbered ones
supervisor keeps when a program log passes 10 MB.
"""
from __future__ import annotations

from ..config.hostconfig import HostConfig
from ..programs.systemd import site_slug

RULE_DIR = "/etc/logrotate.d"
KEEP_DAYS = 14


def rule_path(config: HostConfig) -> str:
    """Where bootstrap-host writes the site's rule: ``/etc/logrotate.d/srv-example``."""
    # logrotate skips files in logrotate.d whose name has a dot in some tabooext setups
    return f"{RULE_DIR}/{site_slug(config).replace('.', '_')}"


def _quoted(path: str) -> str:
    """A path as logrotate reads it: in double quotes, which it allows around a name with spaces."""
    if any(character in path for character in '"\n\\'):
        raise ValueError(f"a path logrotate cannot take: {path!r}")
    return f'"{path}"'


def render_rule(config: HostConfig, user: str | None = None, group: str | None = None,
                keep_days: int = KEEP_DAYS) -> str:
    """The rule for ``<root>/var/log/*.log``: daily, ``keep_days`` kept, compressed from the second on,
    copied then truncated, acting as ``user`` (default ``app_user``)."""
    user = user or config.app_user
    group = group or user
    return "\n".join([
        f"# Written by bootstrap-host for the buildout site in {config.root}; run it again rather than editing.",
        f"{_quoted(config.path_on_host('var', 'log') + '/*.log')} {{",
        f"    su {user} {group}",
        "    daily",
        f"    rotate {keep_days}",
        "    dateext",
        "    dateformat -%Y%m%d-%s",
        "    missingok",
        "    notifempty",
        "    compress",
        "    delaycompress",
        "    copytruncate",
        "}",
        "",
    ])
