"""Fixtures for the integration tests, and the rule that CI skips nothing."""

from __future__ import annotations

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
