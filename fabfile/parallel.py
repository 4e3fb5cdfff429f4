"""Work on several hosts at once: a bounded pool of threads, each host's result or its error."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from . import output

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


def run(work: Callable[[T], R], items: dict[str, T], parallel: int) -> tuple[dict[str, R], dict[str, BaseException]]:
    """``work(item)`` for every item, at most ``parallel`` at once, each thread's output under its name;
    the results and the errors, by name, in the order of ``items``."""
    def labelled(name: str, item: T) -> R:
        with output.on_host(name):
            return work(item)

    results: dict[str, R] = {}
    errors: dict[str, BaseException] = {}
    if not items:
        return results, errors
    interrupted = False
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items)))) as pool:
        futures = {name: pool.submit(labelled, name, item) for name, item in items.items()}
        for name, future in futures.items():
            while True:
                try:
                    results[name] = future.result()
                except KeyboardInterrupt:  # Ctrl-C reaches this thread only: the hosts' work goes on to its end
                    if future.done():
                        errors[name] = KeyboardInterrupt()
                        break
                    interrupted = True
                    continue
                except BaseException as error:  # noqa: BLE001: each host's failure is reported, not raised here
                    errors[name] = error
                break
    if interrupted:
        raise Interrupted(results, errors)
    return results, errors


def open_sites(c, members, parallel: int) -> tuple[dict, dict[str, BaseException]]:
    """A connected Site for each fleet member that answers, at once; the others' errors, by name."""
    from .site import Site  # site reads fleet configs, which this module serves
    return run(lambda member: Site(c, member.config), {m.name: m for m in members}, parallel)


def run_all(work: Callable[[T], R], items: dict[str, T], parallel: int) -> dict[str, R]:
    """``run``, raising ``HostErrors`` when any host failed."""
    results, errors = run(work, items, parallel)
    if errors:
        raise HostErrors(errors)
    return results
