"""The executor ``fab`` uses here (``fabric.json``: ``tasks.executor_class``).

Fabric 3.2 turns the text after ``--`` into a command of its own, run on every host
after the tasks, and refuses it beside any task ("not given any hosts"). Here the text
after ``--`` belongs to the task named before it (``run -- CMD``, ``instance-run
SCRIPT -- ARGS``), which reads it from the command line as the shell split it.
Without a task (``fab -H HOST -- CMD``) Fabric's own behaviour is unchanged: that
path never loads this package.
"""
from __future__ import annotations

from fabric.executor import Executor


class SiteExecutor(Executor):
    """Fabric's executor, minus the anonymous task made from the remainder."""

    def expand_calls(self, calls, apply_hosts=True):
        remainder, self.core.remainder = self.core.remainder, ""
        try:
            return super().expand_calls(calls, apply_hosts)
        finally:
            self.core.remainder = remainder
