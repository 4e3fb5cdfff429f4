"""``parallel.run`` under Ctrl-C: every host's work goes on to its end, wherever the main thread was
when the signal came (starting the threads, waiting for them), and the caller learns it once."""
from __future__ import annotations

import os
import signal
import time

import pytest

from fabfile.remote import parallel


def ctrl_c_from_the_first_host(seconds: float):
    """Work that sends the process a Ctrl-C from the first host's thread (while the main thread still
    starts the others' threads, or waits for them), then works ``seconds``."""
    def work(name: str) -> str:
        if name == "host0":
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(seconds)
        return f"{name} done"
    return work


@pytest.mark.parametrize("seconds", [0.0, 0.01, 0.2])
def test_ctrl_c_while_the_threads_start_or_run_lets_every_host_finish_then_says_interrupted(seconds):
    hosts = {f"host{n}": f"host{n}" for n in range(40)}
    with pytest.raises(parallel.Interrupted) as stopped:
        parallel.run(ctrl_c_from_the_first_host(seconds), hosts, parallel=40)
    assert stopped.value.results == {name: f"{name} done" for name in hosts}
    assert stopped.value.errors == {}


def test_inside_interrupts_noted_the_run_returns_and_the_opener_sees_the_ctrl_c():
    hosts = {f"host{n}": f"host{n}" for n in range(5)}
    with parallel.interrupts_noted() as noted:
        results, errors = parallel.run(ctrl_c_from_the_first_host(0.05), hosts, parallel=5)
        assert noted.is_set()
        again, _ = parallel.run(lambda name: name, hosts, parallel=5)  # going back still works
    assert len(results) == 5 and not errors and again == hosts


def test_after_the_run_ctrl_c_interrupts_as_before():
    parallel.run(lambda name: name, {"host0": "host0"}, parallel=1)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # bounded: the signal ends it at once
