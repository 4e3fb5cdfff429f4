"""A bounded load through the front: a few clients, mixed GETs and POSTs, every answer counted.

Every loop here stops by itself: at ``stop()`` or after ``max_seconds``, whichever
comes first, and each request has its own timeout. Only 127.0.0.1 or a test host the
tests made in a network namespace of their own is ever a target.
"""
from __future__ import annotations

import http.client
import itertools
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field


@dataclass
class Load:
    """``clients`` threads sending requests to the front until stopped (at most ``max_seconds``)."""

    port: int
    host_header: str
    address: str = "127.0.0.1"   # or a test host's, in its network namespace
    tls: bool = True
    clients: int = 4
    max_seconds: float = 180
    pause: float = 0.02
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)   # titles whose POST was answered with success
    latencies: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._run = uuid.uuid4().hex[:8]  # titles unique across loads
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(self.clients)]
        self._last_success = None

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        time.sleep(0.5)  # the load runs before the change starts
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)  # and after it ends
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(len(ordered) * 0.99) - 1] if ordered else 0.0

    def _connection(self) -> http.client.HTTPConnection:
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # tls = internal
            return http.client.HTTPSConnection(self.address, self.port, timeout=30, context=context)
        return http.client.HTTPConnection(self.address, self.port, timeout=30)

    def _client(self, number: int) -> None:
        started = time.monotonic()
        for request in itertools.count():
            if self._stop.is_set() or time.monotonic() - started > self.max_seconds:
                return
            post = request % 3 == 2
            title = f"load-{self._run}-{number}-{next(self._counter)}"
            began = time.monotonic()
            connection = self._connection()
            try:
                if post:
                    body = f"title={title}&data=x"
                    connection.request("POST", "/add", body, {"Host": self.host_header,
                                                              "Content-Type": "application/x-www-form-urlencoded"})
                else:
                    connection.request("GET", "/", headers={"Host": self.host_header})
                response = connection.getresponse()
                response.read()
                good = response.status == (303 if post else 200)
                outcome = f"{'POST' if post else 'GET'} {response.status}"
            except (OSError, http.client.HTTPException) as error:
                good, outcome = False, f"{'POST' if post else 'GET'} {type(error).__name__}: {error}"
            finally:
                connection.close()
            now = time.monotonic()
            with self._lock:
                if good:
                    self.ok += 1
                    self.latencies.append(now - began)
                    if post:
                        self.stored.append(title)
                    if self._last_success is not None:
                        self.gaps.append(now - self._last_success)
                    self._last_success = now
                else:
                    self.failures.append(outcome)
            time.sleep(self.pause)
