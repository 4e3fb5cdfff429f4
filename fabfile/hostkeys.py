"""The project's known-hosts file: a host's key is shown and kept on first contact,
and a changed key stops the connection.

``hostconfigs/known_hosts`` sits beside the configs, so a team shares (and commits)
the keys it has checked.
"""
from __future__ import annotations

from pathlib import Path

import paramiko
from fabric import Connection

from . import hostconfig


def known_hosts_file() -> Path:
    return hostconfig.CONFIG_DIR / "known_hosts"


class RecordOnFirstContact(paramiko.MissingHostKeyPolicy):
    """Show the fingerprint of a host never seen before, and keep its key."""

    def __init__(self, say):
        self.say = say

    def missing_host_key(self, client, hostname, key):
        self.say(f"first contact with {hostname}: {key.get_name()} key {key.fingerprint}; "
                 f"recorded in {known_hosts_file()}")
        client.get_host_keys().add(hostname, key.get_name(), key)
        path = known_hosts_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        client.save_host_keys(str(path))


def check_host_keys(connection: Connection, say) -> None:
    """Make ``connection`` check the host's key against the project's known hosts."""
    path = known_hosts_file()
    if path.is_file():
        connection.client.load_host_keys(str(path))
    connection.client.set_missing_host_key_policy(RecordOnFirstContact(say))


def changed_key_message(error: paramiko.BadHostKeyException) -> str:
    return (f"the host key of {error.hostname} has changed: it offers {error.key.get_name()} "
            f"{error.key.fingerprint}, but {known_hosts_file()} has {error.expected_key.fingerprint}. "
            f"This may be an attack, or a reinstalled host: check with its provider, then remove "
            f"its line from {known_hosts_file()}.")
