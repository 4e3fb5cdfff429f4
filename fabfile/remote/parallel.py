"""Work on several hosts at once: a bounded pool of threads, each host's result or its error."""
from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from .. import output
from .site import Site

T = TypeVar("T")
R = TypeVar("R")


class Interrupted(Exception):
    """Ctrl-C while hosts were at work: what each had finished when they all stopped."""

    def __init__(self, results: dict, errors: dict):
        super().__init__("interrupted")
        self.results, self.errors = results, errors


class HostErrors(Exception):
    """Some hosts failed: each one's error, by host."""

    def __init__(self, errors: dict[str, BaseException]):
        super().__init__(describe(errors))
        self.errors = errors


def describe(errors: dict[str, BaseException]) -> str:
    """One line per failed host: its name and what went wrong."""
    return "\n".join(f"  {name}: {message(error)}" for name, error in errors.items())


def message(error: BaseException) -> str:
    """What an error says (``invoke.Exit`` keeps it in ``message``)."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return str(text).strip()


_noting: threading.Event | None = None  # set by Ctrl-C while interrupts_noted() is in force


@contextmanager
def interrupts_noted() -> Iterator[threading.Event]:
    """Inside, Ctrl-C sets the event it yields instead of raising KeyboardInterrupt anywhere in the main
    thread (starting a thread, between two hosts' groups); whoever opened it decides where to stop.
    Nested, it yields the outer one's event."""
    global _noting
    if _noting is not None or threading.current_thread() is not threading.main_thread():
        yield _noting or threading.Event()
        return
    noted = _noting = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.set())
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)
        _noting = None


def run(work: Callable[[T], R], items: dict[str, T], parallel: int,
        alone: bool = False) -> tuple[dict[str, R], dict[str, BaseException]]:
    """``work(item)`` for every item, at most ``parallel`` at once, each thread's output under its name;
    the results and the errors, by name, in the order of ``items``. Ctrl-C lets every host's work go on to
    its end, then raises ``Interrupted`` (inside an outer ``interrupts_noted``, that one's opener decides).
    ``alone``: the one host of a config without ``[fleet]``: its work runs here, in this thread, under no
    name, and Ctrl-C stops it at once (``KeyboardInterrupt``) unless an outer ``interrupts_noted`` holds it."""
    def labelled(name: str, item: T) -> R:
        with output.on_host(name):
            return work(item)

    results: dict[str, R] = {}
    errors: dict[str, BaseException] = {}
    if not items:
        return results, errors
    if alone and len(items) == 1:
        name, item = next(iter(items.items()))
        try:
            results[name] = work(item)
        except Exception as error:  # noqa: BLE001: reported as a host's failure, as a thread's would be
            errors[name] = error
        return results, errors
    outermost = _noting is None
    with interrupts_noted() as noted:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items)))) as pool:
            futures = {name: pool.submit(labelled, name, item) for name, item in items.items()}
            for name, future in futures.items():
                try:
                    results[name] = future.result()
                except BaseException as error:  # noqa: BLE001: each host's failure is reported, not raised here
                    errors[name] = error
    if outermost and noted.is_set():
        raise Interrupted(results, errors)
    return results, errors


def open_sites(c, members, parallel: int, alone: bool = False) -> tuple[dict, dict[str, BaseException]]:
    """A connected Site for each fleet member that answers, at once; the others' errors, by name."""
    return run(lambda member: Site(c, member.config), {m.name: m for m in members}, parallel, alone)


def run_all(work: Callable[[T], R], items: dict[str, T], parallel: int) -> dict[str, R]:
    """``run``, raising ``HostErrors`` when any host failed."""
    results, errors = run(work, items, parallel)
    if errors:
        raise HostErrors(errors)
    return results
