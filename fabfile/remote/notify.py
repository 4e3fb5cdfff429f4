"""Tell the world about deploys: a JSON webhook and the host's syslog, both optional.

Every text is redacted with the config's secrets first; a failing webhook is
reported, never fatal (the site matters more than the message).
"""
from __future__ import annotations

import json
import urllib.request

from .. import commands, output


def payload(config, event: str, release: str | None, who: str, duration: float | None = None,
            error: str | None = None) -> dict:
    """The event as sent: host, release, who, duration, error; secrets redacted."""
    data = {"event": event, "host": config.name, "address": config.address, "release": release,
            "who": who, "duration": round(duration, 2) if duration is not None else None, "error": error}
    # each text on its own: redacting the JSON document could meet a secret's quote as \" and miss it
    return {key: config.redact(value) if isinstance(value, str) else value for key, value in data.items()}


def send(site, event: str, release: str | None, who: str, duration: float | None = None,
         error: str | None = None) -> None:
    """Post to the webhook and write a syslog line on the host, where configured."""
    config = site.config
    data = payload(config, event, release, who, duration, error)
    if config.syslog:
        message = " ".join(f"{k}={v}" for k, v in data.items() if v is not None)
        site.run(commands.syslog(config.syslog, "buildout-deploy", message), warn=True)
    if config.webhook and not site.dry:
        request = urllib.request.Request(config.webhook, data=json.dumps(data).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except Exception as problem:  # the deploy's outcome does not hang on a webhook
            output.say(f"[yellow]webhook failed: {config.redact(str(problem))}[/]")
