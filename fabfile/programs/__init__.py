"""The process managers: supervisor's and systemd's configs and commands for the site's programs."""
