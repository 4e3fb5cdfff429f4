"""Console scripts: the ZEO server and a web instance, both in the foreground.

The example buildout makes ``bin/instanceN`` from ``instance``, with the site's
addresses and data paths as arguments (its ``bin/zeoserver`` is ZEO's own runzeo,
the same server as ``zeoserver`` here); a process manager runs them. An instance
uses the ZEO server's blob directory (``--blobstorage``, on the ZEO server's host)
or a blob cache of its own (``--blob-cache``, on any host that reaches the server).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import waitress
from ZEO import runzeo

from demoapp.app import DemoApp
from demoapp.storage import Address, Store

ZEO_CONF = """\
<zeo>
  address {address}
</zeo>
<filestorage 1>
  path {filestorage}
  blob-dir {blobstorage}
</filestorage>
"""

#: Accepted as a first argument, like the scripts of plone.recipe.zope2instance;
#: both scripts always run in the foreground.
FOREGROUND_COMMANDS = ("console", "fg")


def address(value: str) -> Address:
    """Parse ``HOST:PORT`` into the tuple ZEO takes."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _zconfig_value(value: object) -> str:
    # ZConfig substitutes $names in values; a literal $ is written $$.
    return str(value).replace("$", "$$")


def zeoserver(argv: Sequence[str] | None = None) -> int:
    """Run a ZEO server for a FileStorage with a blob directory, in the foreground."""
    parser = argparse.ArgumentParser(prog="zeoserver", description=zeoserver.__doc__)
    parser.add_argument("command", nargs="?", choices=FOREGROUND_COMMANDS)
    parser.add_argument("--address", required=True, type=address, help="HOST:PORT to listen on")
    parser.add_argument("--filestorage", required=True, type=Path, help="path of Data.fs")
    parser.add_argument("--blobstorage", required=True, type=Path, help="the blob directory")
    args = parser.parse_args(argv)

    # The data is for the user who runs the site only; FileStorage makes a
    # new blob directory itself (after emptying it) when Data.fs is new.
    os.umask(0o077)
    # Resolved first, so that a var/ linked to a directory not made yet works.
    filestorage = args.filestorage.resolve()
    blobstorage = args.blobstorage.resolve()
    filestorage.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    blobstorage.mkdir(mode=0o700, parents=True, exist_ok=True)
    host, port = args.address
    config = ZEO_CONF.format(
        address=_zconfig_value(f"{host}:{port}"),
        filestorage=_zconfig_value(filestorage),
        blobstorage=_zconfig_value(blobstorage),
    )
    # runzeo reads its storages from a ZConfig file only (-f has no blob
    # directory); the options are read at realize(), so the file can go then.
    options = runzeo.ZEOOptions()
    with tempfile.NamedTemporaryFile("w", prefix="zeoserver-", suffix=".conf") as conf:
        conf.write(config)
        conf.flush()
        options.realize(["-C", conf.name])
    runzeo.ZEOServer(options).main()
    return 0


def instance(argv: Sequence[str] | None = None) -> int:
    """Serve the app with waitress, as a client of the ZEO server, in the foreground."""
    parser = argparse.ArgumentParser(prog="instance", description=instance.__doc__)
    parser.add_argument("command", nargs="?", choices=FOREGROUND_COMMANDS)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", required=True, type=int, help="port to listen on")
    parser.add_argument("--zeo-address", required=True, type=address, help="HOST:PORT of ZEO")
    # One of the two: the buildout passes the one that [data] blob-cache chooses.
    blobs = parser.add_mutually_exclusive_group(required=True)
    blobs.add_argument(
        "--blobstorage", type=Path,
        help="the ZEO server's blob directory, read and written directly (the ZEO server's host)",
    )
    blobs.add_argument(
        "--blob-cache", type=Path,
        help="a local blob cache instead: blobs travel through ZEO (any host that reaches ZEO)",
    )
    parser.add_argument(
        "--blob-cache-size", type=int, default=None,
        help="with --blob-cache: its largest size in bytes (default: no limit)",
    )
    parser.add_argument("--threads", default=4, type=int, help="waitress worker threads")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Blobs are written by the client too: into the shared blob directory, or its cache.
    os.umask(0o077)
    # Turn SIGTERM into SystemExit so that the ZEO client is closed cleanly.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    if args.blob_cache is not None:
        # Resolved first, so that a var/ linked to a directory not made yet works.
        cache = args.blob_cache.resolve()
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = Store(args.zeo_address, str(cache), shared_blob_dir=False,
                      blob_cache_size=args.blob_cache_size)
    else:
        store = Store(args.zeo_address, str(args.blobstorage.resolve()))
    try:
        waitress.serve(
            DemoApp(store), host=args.host, port=args.port, threads=args.threads, ident="demoapp"
        )
    finally:
        store.close()
    return 0
