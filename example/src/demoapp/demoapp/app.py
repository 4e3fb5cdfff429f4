"""The WSGI app: a page of items, a form that adds one, JSON, version and health."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from email.parser import BytesParser
from email.policy import HTTP
from importlib.metadata import version
from typing import NamedTuple
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIEnvironment

from ZEO.Exceptions import ClientDisconnected

from demoapp.storage import ItemInfo, Store

#: The largest request body /add accepts, in bytes.
MAX_BODY = 16 * 1024 * 1024

PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>demoapp {version}</title></head>
<body>
<h1>demoapp {version}</h1>
<p>Public address: <a href="{base}/">{base}/</a></p>
<form method="post" action="{base}/add" enctype="multipart/form-data">
  <label>Title <input name="title" required></label>
  <label>Data <textarea name="data"></textarea></label>
  <button>Add</button>
</form>
<table>
<tr><th>Title</th><th>Blob size</th></tr>
{rows}
</table>
</body>
</html>
"""

ROW = "<tr><td>{title}</td><td>{size} bytes</td></tr>"


def virtual_host(environ: WSGIEnvironment) -> WSGIEnvironment:
    """Read Zope's VirtualHostMonster path, as a front sends it.

    ``/VirtualHostBase/https/www.example.org:443/site/VirtualHostRoot/page`` is the
    page ``/page`` of a site whose public address is ``https://www.example.org``;
    the app writes its links with that address (``demoapp.base``).
    """
    path = environ.get("PATH_INFO") or "/"
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "VirtualHostBase" or "VirtualHostRoot" not in parts:
        return {**environ, "demoapp.base": ""}
    scheme, host = parts[2], parts[3]
    name, _, port = host.rpartition(":")
    if (scheme, port) in (("https", "443"), ("http", "80")):
        host = name
    rest = parts[parts.index("VirtualHostRoot") + 1:]
    return {**environ, "PATH_INFO": "/" + "/".join(rest), "demoapp.base": f"{scheme}://{host}"}


def app_version() -> str:
    """The installed version of demoapp, as its metadata says."""
    return version("demoapp")


class Response(NamedTuple):
    """A status, a content type and a body, plus any extra headers."""

    status: str
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def text(status: str, body: str) -> Response:
    """A plain-text response."""
    return Response(status, "text/plain; charset=utf-8", body.encode())


class BadRequest(Exception):
    """The request cannot be handled as sent; the message says why."""


def read_form(environ: WSGIEnvironment) -> dict[str, bytes]:
    """The fields of a urlencoded or multipart form, values as bytes."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_BODY:
        raise BadRequest(f"request body over {MAX_BODY} bytes")
    body: bytes = environ["wsgi.input"].read(length)
    content_type = environ.get("CONTENT_TYPE", "")
    if content_type.startswith("multipart/form-data"):
        # The email parser reads MIME multipart bodies; the cgi module that
        # used to do this is gone from Python 3.13.
        head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        if not message.is_multipart():
            raise BadRequest("malformed multipart body")
        fields: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields[name] = payload
        return fields
    # latin-1 maps bytes to characters one to one: raw UTF-8 and %-escapes both come back as sent
    query = parse_qs(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return {name.encode("latin-1").decode("utf-8", "replace"): values[0].encode("latin-1")
            for name, values in query.items()}


class DemoApp:
    """The WSGI application, serving the items of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.routes: dict[str, tuple[str, Callable[[WSGIEnvironment], Response]]] = {
            "/": ("GET", self.index),
            "/health": ("GET", self.health),
            "/add": ("POST", self.add),
            "/objects.json": ("GET", self.objects),
            "/version": ("GET", self.version),
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request, as WSGI asks."""
        response = self.respond(environ)
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *response.headers,
        ]
        start_response(response.status, headers)
        return [response.body]

    def respond(self, environ: WSGIEnvironment) -> Response:
        """Route the request to its handler and turn known failures into answers."""
        environ = virtual_host(environ)
        route = self.routes.get(environ.get("PATH_INFO") or "/")
        if route is None:
            return text("404 Not Found", "not found")
        method, handler = route
        if environ["REQUEST_METHOD"] != method:
            response = text("405 Method Not Allowed", f"use {method}")
            return response._replace(headers=(("Allow", method),))
        try:
            return handler(environ)
        except BadRequest as error:
            return text("400 Bad Request", str(error))
        except ClientDisconnected:
            return text("503 Service Unavailable", "the ZEO server is not reachable")

    def index(self, environ: WSGIEnvironment) -> Response:
        """The HTML page: the version and every item with its blob size."""
        rows = "\n".join(
            ROW.format(title=html.escape(item.title), size=item.blob_size)
            for item in self.store.items()
        )
        page = PAGE.format(version=html.escape(app_version()), rows=rows,
                           base=html.escape(environ["demoapp.base"]))
        return Response("200 OK", "text/html; charset=utf-8", page.encode())

    def health(self, environ: WSGIEnvironment) -> Response:
        """``ok`` when the ZEO server answers, 503 otherwise."""
        if self.store.is_healthy():
            return text("200 OK", "ok")
        return text("503 Service Unavailable", "the ZEO server is not reachable")

    def add(self, environ: WSGIEnvironment) -> Response:
        """Store the posted ``title`` and ``data``, then go back to the page."""
        form = read_form(environ)
        title = form.get("title", b"").decode("utf-8", errors="replace").strip()
        if not title:
            raise BadRequest("the title is missing")
        self.store.add(title, form.get("data", b""))
        return Response(
            "303 See Other", "text/plain; charset=utf-8", b"added",
            (("Location", environ["demoapp.base"] + "/"),)
        )

    def objects(self, environ: WSGIEnvironment) -> Response:
        """The items as a JSON list of {title, blob_sha256}."""
        listing = [_as_json(item) for item in self.store.items()]
        return Response("200 OK", "application/json", json.dumps(listing).encode())

    def version(self, environ: WSGIEnvironment) -> Response:
        """The installed version of demoapp."""
        return text("200 OK", app_version())


def _as_json(item: ItemInfo) -> dict[str, str]:
    return {"title": item.title, "blob_sha256": item.blob_sha256}
