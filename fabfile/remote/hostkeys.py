"""The project's known-hosts file: a host's key is shown and kept on first contact,
and a changed key stops the connection.

``hostconfigs/known_hosts`` sits beside the configs (``[host] known_hosts`` names
another), so a team shares (and commits) the keys it has checked.
"""
from __future__ import annotations

import threading
from pathlib import Path

import paramiko
from fabric import Connection



class RecordOnFirstContact(paramiko.MissingHostKeyPolicy):
    """Show the fingerprint of a host never seen before, and keep its key."""

    def __init__(self, path: Path, say):
        self.path, self.say = path, say

    def missing_host_key(self, client, hostname, key):
        self.say(f"first contact with {hostname}: {key.get_name()} key {key.fingerprint}; "
                 f"recorded in {self.path}")
        client.get_host_keys().add(hostname, key.get_name(), key)
        with _WRITING:  # a fleet meets its hosts at once: each key is added to the file as it is now
            known = paramiko.HostKeys()
            if self.path.is_file():
                known.load(str(self.path))
            known.add(hostname, key.get_name(), key)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            known.save(str(self.path))


_WRITING = threading.Lock()


def check_host_keys(connection: Connection, path: Path, say) -> None:
    """Make ``connection`` check the host's key against the known hosts in ``path``."""
    if path.is_file():
        connection.client.load_host_keys(str(path))
    connection.client.set_missing_host_key_policy(RecordOnFirstContact(path, say))


def changed_key_message(error: paramiko.BadHostKeyException, path: Path) -> str:
    return (f"the host key of {error.hostname} has changed: it offers {error.key.get_name()} "
            f"{error.key.fingerprint}, but {path} has {error.expected_key.fingerprint}. "
            f"This may be an attack, or a reinstalled host: check with its provider, then remove "
            f"its line from {path}.")
