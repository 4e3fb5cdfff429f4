"""The host itself: bootstrap-host's facts and plan, users, packages, firewall, swap, upgrades, log rotation."""
