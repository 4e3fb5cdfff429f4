"""Print a job's log as it grows, until the job has left its verdict or is gone.

Usage: python3 -c SOURCE LOG RESULT PID.  A job that is gone (or a zombie nobody
reaps, as in a container whose first process is not an init) without a verdict ends
the follow too; the caller then reads what the log says. Bounded: at most six hours.
"""
import os
import sys
import time

log, result, pid = sys.argv[1], sys.argv[2], sys.argv[3]


def alive():
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


position, deadline = 0, time.monotonic() + 6 * 3600
while time.monotonic() < deadline:
    done = os.path.exists(result) or not alive()
    try:
        with open(log, "rb") as handle:
            handle.seek(position)
            chunk = handle.read()
    except FileNotFoundError:
        chunk = b""
    if chunk:
        position += len(chunk)
        sys.stdout.write(chunk.decode("utf-8", "replace"))
        sys.stdout.flush()
    if done:
        break
    time.sleep(0.1)
