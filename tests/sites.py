"""A test site: a copy of a buildout, a hostconfig for the sandbox host, and ``fab`` to drive it."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from support import free_port

REPO = Path(__file__).resolve().parent.parent
FAB = str(Path(sys.executable).parent / "fab")
BUILD_JUNK = shutil.ignore_patterns("bin", "parts", "eggs", "develop-eggs", "var", ".installed.cfg",
                                    "*.egg-info", "__pycache__", "build")


@dataclass
class TestSite:
    """One site on the sandbox host, deployed with the real ``fab`` command line."""

    __test__ = False
    workdir: Path
    root: Path
    buildout: Path
    ports: dict[str, int]
    env: dict[str, str] = field(default_factory=dict)
    main: str = "instance1"  # the program url(), get() and objects() talk to by default

    def fab(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run ``fab -H test ARGS`` from the repository, as a user would."""
        result = subprocess.run([FAB, "-H", "test", *args], cwd=REPO, capture_output=True, text=True,
                                env={**os.environ, **self.env}, timeout=timeout)
        if check and result.returncode:
            raise AssertionError(f"fab {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def fab_in_background(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([FAB, "-H", "test", *args], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, **self.env})

    def url(self, path: str = "", instance: str | None = None) -> str:
        return f"http://127.0.0.1:{self.ports[instance or self.main]}/{path}"

    def get(self, path: str = "", instance: str | None = None) -> str:
        with urllib.request.urlopen(self.url(path, instance), timeout=10) as response:
            return response.read().decode()

    def add(self, title: str, data: str) -> None:
        body = urllib.parse.urlencode({"title": title, "data": data}).encode()
        urllib.request.urlopen(self.url("add"), data=body, timeout=10).close()

    def objects(self, instance: str | None = None) -> list[dict]:
        return json.loads(self.get("objects.json", instance))

    def answers(self, instance: str | None = None) -> bool:
        try:
            self.get("health", instance)
            return True
        except (urllib.error.URLError, ConnectionError):
            return False

    def current(self) -> str:
        """The release ``current`` points at."""
        return os.readlink(self.root / "current").split("/")[-1]

    def release_ids(self) -> list[str]:
        return sorted(p.name for p in (self.root / "releases").iterdir() if not p.name.startswith("."))

    def deploy_log(self) -> list[dict]:
        path = self.root / "deploy.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def change_code(self, line: str) -> None:
        """A change to the app's source: a new version, the same data."""
        module = self.buildout / "src" / "demoapp" / "demoapp" / "__init__.py"
        module.write_text(module.read_text() + f"\n{line}\n")

    def stop_everything(self) -> None:
        """Stop supervisord and its programs by the pid in its pid file."""
        pid_file = self.root / "var" / "run" / "supervisord.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().strip() or 0)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(300):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def make_site(workdir: Path, sandbox, extra: str = "", source: Path = REPO / "example",
              programs: tuple[str, ...] = ("zeoserver", "instance1", "instance2"),
              health: tuple[str, ...] = ("instance1", "instance2"), health_path: str = "health",
              commands: dict[str, str] | None = None, profile: str = "production.cfg",
              deploy: str = "", program_options: dict[str, str] | None = None) -> TestSite:
    """A copy of ``source`` and a hostconfig ``test`` deploying it to the sandbox."""
    buildout = workdir / "buildout"
    shutil.copytree(source, buildout, ignore=BUILD_JUNK)
    root = workdir / "site"
    ports = {name: free_port() for name in ("zeo", *programs)}
    configs = workdir / "hostconfigs"
    configs.mkdir()
    program_sections = "".join(
        f"[program:{name}]\n"
        + (f"health_url = http://127.0.0.1:{ports[name]}/{health_path}\n" if name in health else "")
        + (f"command = {commands[name]}\n" if name in (commands or {}) else "")
        + (program_options or {}).get(name, "")
        for name in programs if name in health or name in (commands or {}))
    overrides = "".join(f"ports:{name} = {port}\n" for name, port in ports.items() if name != "zeoserver")
    (configs / "test.cfg").write_text(f"""
[host]
address = 127.0.0.1
port = {sandbox.port}
identity = {sandbox.key_file}
known_hosts = {sandbox.known_hosts}
root = {root}
[buildout]
directory = {buildout}
config = {profile}
[services]
programs = {' '.join(programs)}
{program_sections}
[deploy]
health_timeout = 30
{deploy}
[overrides]
{overrides}
{extra}
""")
    return TestSite(workdir, root, buildout, ports, {"DEPLOY_HOSTCONFIGS": str(configs)}, health[0])
