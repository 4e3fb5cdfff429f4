"""The site's programs: the on-host switch job, starting, stopping, health, status, logs, hooks."""
