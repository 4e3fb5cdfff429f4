"""Helpers shared by the tests: what may be skipped locally must run in CI."""

from __future__ import annotations

import os
import socket

import pytest


def in_ci() -> bool:
    """Tell whether the tests run in CI, where nothing may be skipped."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require(condition: object, reason: str) -> None:
    """Skip the test with ``reason`` unless ``condition`` holds; in CI, fail instead.

    A laptop may lack sshd, root or debootstrap; CI installs them all, so a
    missing one there is a broken runner, not a test to leave out.
    """
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true and a requirement is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
