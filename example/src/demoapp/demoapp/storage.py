"""The app's data: titled items with a blob each, kept in ZODB through ZEO."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass

import persistent
import ZEO
import ZODB
from BTrees.OOBTree import OOBTree
from ZEO.Exceptions import ClientDisconnected
from ZODB.blob import Blob
from ZODB.POSException import ConflictError

logger = logging.getLogger(__name__)

#: Where the items live in the ZODB root.
ROOT_KEY = "demoapp.items"

#: How often an add is tried when another instance commits at the same time.
ADD_ATTEMPTS = 3

Address = tuple[str, int]


class Item(persistent.Persistent):
    """A titled piece of data; the data is kept in a ZODB blob."""

    def __init__(self, title: str, data: bytes) -> None:
        self.title = title
        self.blob = Blob(data)


@dataclass(frozen=True)
class ItemInfo:
    """What the pages show of an item, read inside a transaction."""

    title: str
    blob_size: int
    blob_sha256: str

    @classmethod
    def of(cls, item: Item) -> ItemInfo:
        """Read the title, size and checksum of ``item``'s blob."""
        with item.blob.open("r") as blob_file:
            size = os.fstat(blob_file.fileno()).st_size
            digest = hashlib.file_digest(blob_file, "sha256").hexdigest()
        return cls(item.title, size, digest)


def new_key() -> str:
    """A key that sorts by creation time and is unique across instances."""
    return f"{time.time_ns():020d}-{os.urandom(4).hex()}"


class Store:
    """The site's storage: a ZEO client, with the server's blob directory or a blob cache of its own.

    With ``shared_blob_dir`` (the default) ``blob_dir`` is the ZEO server's own blob
    directory, which the client reads and writes directly: the instances run on the
    ZEO server's host (or mount its directory). Without it, ``blob_dir`` is a local
    cache: blobs go to and come from the server through the ZEO connection, so an
    instance may run on another host; ``blob_cache_size`` (bytes, None: no limit)
    bounds the cache, which ZEO trims in the background. Clients on one host may
    share a cache directory.

    The client is created without waiting for the server, so an instance
    starts (and reports itself unhealthy) while the ZEO server is down, and
    reconnects by itself when the server comes back.
    """

    def __init__(self, address: Address, blob_dir: str, wait_timeout: float = 10.0, *,
                 shared_blob_dir: bool = True, blob_cache_size: int | None = None) -> None:
        self._storage = ZEO.client(
            address,
            blob_dir=blob_dir,
            shared_blob_dir=shared_blob_dir,
            blob_cache_size=None if shared_blob_dir else blob_cache_size,
            wait=False,
            wait_timeout=wait_timeout,
        )
        self._db: ZODB.DB | None = None
        self._lock = threading.Lock()

    def is_healthy(self) -> bool:
        """Whether the ZEO server answers a request right now."""
        if not self._storage.is_connected():
            return False
        try:
            self._storage.server_status(timeout=2)
        except (ClientDisconnected, TimeoutError) as error:
            logger.warning("ZEO server did not answer: %s", error)
            return False
        return True

    def _database(self) -> ZODB.DB:
        # ZODB.DB reads the root object when it is created, which needs the
        # server; so the database is made on first use, not at start-up.
        # On an empty storage it also creates the root: instances doing that at once conflict, and the
        # one that loses finds the root made by the other when it tries again.
        with self._lock:
            for attempt in range(1, ADD_ATTEMPTS + 1):
                if self._db is not None:
                    break
                if not self._storage.is_connected():
                    raise ClientDisconnected("the ZEO server is not reachable")
                try:
                    self._db = ZODB.DB(self._storage)
                except ConflictError:
                    if attempt == ADD_ATTEMPTS:
                        raise
                    logger.info("another instance created the root at the same time, trying again")
            return self._db

    def items(self) -> list[ItemInfo]:
        """All stored items, oldest first."""
        with self._database().transaction() as connection:
            items = connection.root().get(ROOT_KEY)
            if items is None:
                return []
            return [ItemInfo.of(item) for item in items.values()]

    def add(self, title: str, data: bytes) -> None:
        """Store a new item whose blob holds ``data``."""
        for attempt in range(1, ADD_ATTEMPTS + 1):
            try:
                with self._database().transaction(f"add {title!r}") as connection:
                    root = connection.root()
                    if ROOT_KEY not in root:
                        root[ROOT_KEY] = OOBTree()
                    root[ROOT_KEY][new_key()] = Item(title, data)
                return
            except ConflictError:
                if attempt == ADD_ATTEMPTS:
                    raise
                logger.info("conflict while adding %r, trying again", title)

    def close(self) -> None:
        """Close the database, or the bare client when no database was opened."""
        if self._db is not None:
            self._db.close()
        else:
            self._storage.close()
