"""Fixtures for the integration tests, and the rule that CI skips nothing."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator

import pytest

from sandbox import sshd
from support import free_port, in_ci, require


@pytest.fixture(scope="session")
def sandbox_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.Sandbox]:
    """An OpenSSH server on 127.0.0.1, run as the current user, for the whole session."""
    require(sshd.find_sshd(), sshd.MISSING_SSHD)
    state_dir = tmp_path_factory.mktemp("sandbox")
    sandbox = sshd.start(state_dir, port=free_port())
    try:
        yield sandbox
    finally:
        sshd.stop(state_dir)


# Modules that share something outside their own temporary directories take turns, whichever
# pytest-xdist worker runs them (``make test``: ``-n 2 --dist loadfile``, each module on one worker):
# the test hosts (network namespaces, the debootstrap cache), the crontab of this login.
SHARED = {"test_bootstrap": "test-hosts", "test_bootstrap_systemd": "test-hosts", "test_bootstrap_keys": "test-hosts",
          "test_bootstrap_vps": "test-hosts", "test_fleet_rig": "test-hosts", "test_front_sites": "test-hosts",
          "test_fleet_hosts": "test-hosts",
          "test_backup_schedule": "crontab", "test_alerts": "crontab", "test_offsite": "crontab"}


@pytest.fixture(scope="module", autouse=True)
def take_turns(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hold the module's ``SHARED`` lock (a flock beside the workers' temporary directories) while it runs."""
    name = SHARED.get(request.module.__name__.rsplit(".", 1)[-1])
    if name is None:
        yield
        return
    path = tmp_path_factory.getbasetemp().parent / f"turn-{name}.lock"
    with open(path, "a") as handle:
        deadline = time.monotonic() + 3600
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _skipped(config: pytest.Config) -> list[pytest.TestReport]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return reporter.stats.get("skipped", []) if reporter else []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI, a session that skipped anything fails."""
    if in_ci() and exitstatus == pytest.ExitCode.OK and _skipped(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Say why a CI session with skipped tests fails."""
    skipped = _skipped(config)
    if in_ci() and skipped:
        terminalreporter.write_line(
            f"CI=true: {len(skipped)} test(s) skipped; CI must run every test, "
            "so this session fails.",
            red=True,
            bold=True,
        )
