"""What the fleet tests share: the fleet's config (a front, a data host, two app hosts), ``fab -H fleet``,
a code change, and the check that no request through the front failed and every accepted POST is stored.

``tests/test_fleet.py`` runs the fleet on the sandbox sshd (four roots on four loopback addresses),
``tests/test_fleet_hosts.py`` on four test hosts on one bridge.
"""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from sites import REPO

FAB = str(Path(sys.executable).parent / "fab")
DOMAIN = "fleet.example.test"
# each host's roles, in the order of [fleet] hosts (the order the locks are taken)
ROLES = {"front": "front", "data": "zeo backup", "app1": "app", "app2": "app"}


def config_text(*, host: str, members: dict[str, str], buildout: Path, ports: dict[str, int], bind: str,
                zeo_role: str = "", health_timeout: int = 30, front: str = "control = self\n",
                services: str = "") -> str:
    """The fleet's hostconfig: ``host`` the lines of ``[host]`` (every host's defaults), ``members`` each
    host's own lines (its roles are added), ``ports`` zeo, instance1, instance2, front and admin;
    ``zeo_role`` more lines for ``[role:zeo]`` (its ``port``: the firewall's); ``front`` more lines for
    ``[front]`` (by default the front runs as the deploy login); ``services`` more lines for ``[services]``."""
    hosts = "".join(f"[host:{name}]\n{own}roles = {ROLES[name]}\n" for name, own in members.items())
    return f"""
[fleet]
hosts = {' '.join(members)}
[host]
{host}{hosts}
[role:zeo]
programs = zeoserver
{zeo_role}[role:app]
programs = instance1 instance2
[buildout]
directory = {buildout}
[services]
{services}programs = zeoserver instance1 instance2
[program:instance1]
health_url = http://${{host:private_address}}:{ports['instance1']}/health
[program:instance2]
health_url = http://${{host:private_address}}:{ports['instance2']}/health
[deploy]
health_timeout = {health_timeout}
[front]
{front}bind = {bind}
http_port = {ports['front']}
admin_port = {ports['admin']}
domains = {DOMAIN}
drain_timeout = 10
[overrides]
ports:host = ${{host:private_address}}
ports:zeo-host = ${{fleet:zeo_address}}
ports:zeo = {ports['zeo']}
ports:instance1 = {ports['instance1']}
ports:instance2 = {ports['instance2']}
data:blob-cache = ${{host:root}}/var/blobcache
"""


def fab(env: dict[str, str], *args: str, check: bool = True, password: str | None = None,
        timeout: float = 900) -> subprocess.CompletedProcess:
    """``fab -H fleet ARGS``; with ``password``, typed at fab's login password prompt (root's, on every host)."""
    prompt: dict = {}
    if password is not None:  # a new session has no terminal, so getpass reads the password from stdin
        args = ("--prompt-for-login-password", "-H", "fleet", *args)
        prompt = {"input": f"{password}\n", "start_new_session": True}
    else:
        args = ("-H", "fleet", *args)
    result = subprocess.run([FAB, *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout,
                            **prompt)
    if check and result.returncode:
        raise AssertionError(f"fab {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def change_code(buildout: Path, line: str) -> None:
    """A one-line change to the demo app: a new release for every host."""
    module = buildout / "src" / "demoapp" / "demoapp" / "__init__.py"
    module.write_text(module.read_text() + f"\n{line}\n")


def assert_no_request_failed(load, objects: list[dict]) -> None:
    """The load sent enough, none failed, and each accepted POST is among ``objects`` exactly once."""
    assert load.total > 20, f"the load sent only {load.total} requests"
    assert load.failures == [], f"{len(load.failures)} of {load.total} requests failed: {Counter(load.failures)}"
    titles = Counter(o["title"] for o in objects)
    missing = [t for t in load.stored if titles[t] != 1]
    assert not missing, f"{len(missing)} accepted POSTs are not stored exactly once: {missing[:5]}"
