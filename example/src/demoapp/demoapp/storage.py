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
    """The site's storage: a ZEO client that shares the server's blob directory.

    The client is created without waiting for the server, so an instance
    starts (and reports itself unhealthy) while the ZEO server is down, and
    reconnects by itself when the server comes back.
    """

    def __init__(self, address: Address, blob_dir: str, wait_timeout: float = 10.0) -> None:
        self._storage = ZEO.client(
            address,
            blob_dir=blob_dir,
            shared_blob_dir=True,
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
        with self._lock:
            if self._db is None:
                if not self._storage.is_connected():
                    raise ClientDisconnected("the ZEO server is not reachable")
                self._db = ZODB.DB(self._storage)
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
