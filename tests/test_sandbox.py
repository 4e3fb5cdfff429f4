"""The sandbox host: a real sshd on 127.0.0.1 that Fabric can deploy to."""

from __future__ import annotations

import dataclasses
import io

import paramiko
import pytest
from fabric import Config, Connection

from sandbox import sshd


def connect(sandbox: sshd.Sandbox) -> Connection:
    """A Fabric connection that trusts only the host key in the sandbox's known_hosts."""
    connection = Connection(
        sandbox.host,
        port=sandbox.port,
        user=sandbox.user,
        connect_kwargs={"key_filename": str(sandbox.key_file), "look_for_keys": False},
        # Invoke mirrors our stdin to the remote; pytest's captured stdin raises on read.
        config=Config(overrides={"run": {"in_stream": False}}),
    )
    connection.client.load_system_host_keys(str(sandbox.known_hosts))
    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return connection


@pytest.mark.integration
def test_sandbox_runs_commands_over_ssh(sandbox_host):
    with connect(sandbox_host) as connection:
        result = connection.run("echo hello", hide=True)
    assert result.stdout.strip() == "hello"


@pytest.mark.integration
def test_sandbox_logs_in_as_the_current_user(sandbox_host):
    with connect(sandbox_host) as connection:
        result = connection.run("id -un", hide=True)
    assert result.stdout.strip() == sshd.current_user()


@pytest.mark.integration
def test_sandbox_accepts_sftp_uploads(sandbox_host):
    target = sandbox_host.state_dir / "uploaded.txt"
    with connect(sandbox_host) as connection:
        connection.put(io.BytesIO(b"over sftp\n"), str(target))
    assert target.read_text() == "over sftp\n"


@pytest.mark.integration
def test_starting_a_running_sandbox_reuses_its_sshd(sandbox_host):
    running = sshd.running_pid(sandbox_host.state_dir)  # a fault test may have restarted it since the session began
    again = sshd.start(sandbox_host.state_dir, port=sandbox_host.port)
    assert running is not None and again.pid == running
    assert dataclasses.replace(again, pid=sandbox_host.pid) == sandbox_host


def test_stopping_a_stopped_sandbox_says_nothing_ran(tmp_path):
    assert sshd.stop(tmp_path) is False


def test_starting_without_sshd_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_SSHD", str(tmp_path / "no-sshd"))
    try:
        sshd.start(tmp_path / "state", port=1)
    except sshd.SandboxError as error:
        assert "apt-get install openssh-server" in str(error)
    else:
        raise AssertionError("start() succeeded without sshd")
