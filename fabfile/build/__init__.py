"""A release made on this side: develop eggs, distributions, pins, the bundle, the host's venv and data links."""
