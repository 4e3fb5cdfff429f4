"""``make demo`` on a machine where another process holds one of the demo's ports: it stops before
anything is deployed and names the holder, instead of printing success over a foreign server."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

from sandbox import sshd
from support import require

REPO = Path(__file__).resolve().parent.parent
INVOKE = str(Path(sys.executable).parent / "invoke")
ZEO_PORT = 8100  # the example site's [ports] zeo, which the demo deploys as it is


def test_the_demo_stops_before_deploying_when_its_zeo_port_is_taken():
    require(sshd.find_sshd(), sshd.MISSING_SSHD)
    state = REPO / ".sandbox"
    was_running = sshd.running_pid(state)
    holder = subprocess.Popen([sys.executable, "-c", "import socket, sys, time\n"
                               f"s = socket.socket(); s.bind(('127.0.0.1', {ZEO_PORT})); s.listen()\n"
                               "print('listening', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "listening", f"port {ZEO_PORT} is taken on this machine already"
        result = subprocess.run([INVOKE, "demo"], cwd=REPO, capture_output=True, text=True, timeout=600)
        said = result.stdout + result.stderr
        assert result.returncode != 0, said
        assert f"port {ZEO_PORT}" in said and f"pid {holder.pid}" in said and "nothing was changed" in said, said
        assert not (state / "site" / "current").exists()
        assert "rolled back" not in said and "deployed" not in said.replace("nothing is deployed", "")
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if not was_running:
            sshd.stop(state)
        shutil.rmtree(state / "site", ignore_errors=True)
