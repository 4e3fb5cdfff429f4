"""``<root>/deploy.log``: one JSON line per deploy, failed deploy, rollback, backup and restore."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from .. import commands
from .site import Site, who


def log_event(site: Site, event: str, **details) -> None:
    """Append one JSON line to ``<root>/deploy.log``, secrets redacted."""
    record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "event": event,
              "who": who(), **details}
    site.run(commands.append_line(site.path("deploy.log"), site.config.redact(json.dumps(record, sort_keys=True))))


def last_backup_command(config) -> str:
    """The newest backup line of ``deploy.log`` (a verified backup, or a scheduled one that failed)."""
    return (commands.join("grep", "-E", '"event": "backup(-failed)?"', config.path_on_host("deploy.log"))
            + " 2>/dev/null | " + commands.join("tail", "-n", "1"))
