"""Remote ``extends`` frozen into the release (issue 10, item 3): a chain of versions files served
by a local HTTP server (a redirect, a relative and an absolute URL), fetched once on this machine,
cached with its sha256, shipped in the bundle; the host never fetches; a changed remote file makes a
new release that ``deploy --plan`` names; a URL never fetched that cannot be reached stops the deploy."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from fabfile.buildout import profile as buildoutfiles, remotefiles
from sites import make_site
from support import free_port


class Server:
    """An HTTP server on 127.0.0.1 serving ``directory``; ``/latest/...`` redirects to ``/6.0/...``."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory, self.requests = directory, []
        served = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(directory), **kwargs)

            def do_GET(self):
                served.requests.append(self.path)
                if self.path.startswith("/latest/"):
                    self.send_response(302)
                    self.send_header("Location", "/6.0/" + self.path[len("/latest/"):])
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port or free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@contextmanager
def serving(directory: Path):
    server = Server(directory)
    try:
        yield server
    finally:
        server.stop()


def write_chain(directory: Path, url: str, pins: str = "") -> None:
    """``/6.0/versions.cfg`` extends ``more.cfg`` (relative) and ``/zope/versions.cfg`` (absolute)."""
    (directory / "6.0").mkdir(parents=True, exist_ok=True)
    (directory / "zope").mkdir(exist_ok=True)
    (directory / "6.0" / "versions.cfg").write_text(
        f"[buildout]\nextends =\n    more.cfg\n    {url}/zope/versions.cfg\n\n[versions]\nbd-a = 1\n{pins}")
    (directory / "6.0" / "more.cfg").write_text("[versions]\nbd-b = 2\n")
    (directory / "zope" / "versions.cfg").write_text("[versions]\nbd-c = 3\nbd-a = 0\n")


# -- reading a profile on this machine ----------------------------------------------------

def test_a_chain_of_remote_files_is_read_through_a_redirect_relative_and_absolute_urls(tmp_path):
    write_chain(tmp_path / "www", "URL")
    with serving(tmp_path / "www") as server:
        write_chain(tmp_path / "www", server.url)
        (tmp_path / "buildout.cfg").write_text(f"[buildout]\nextends = {server.url}/latest/versions.cfg\n\n"
                                               f"[versions]\nbd-b = 5\n")
        profile = buildoutfiles.read_profile(tmp_path / "buildout.cfg", cache=tmp_path / "cache")
    assert {k: v for k, v in profile.versions.items() if k.startswith("bd-")} == {"bd-a": "1", "bd-b": "5", "bd-c": "3"}
    urls = {f"{server.url}/latest/versions.cfg", f"{server.url}/latest/more.cfg", f"{server.url}/zope/versions.cfg"}
    assert {r.url for r in profile.remote} == urls
    for remote in profile.remote:  # cached under buildout's own extends-cache name, with its sha256
        cached = tmp_path / "cache" / hashlib.md5(remote.url.encode()).hexdigest()
        assert remote.path == cached and remote.sha256 == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert profile.files == (tmp_path / "buildout.cfg",)
    assert profile.local_pins == {"bd-b"}  # what the bundle ships of them: the site's own pins


def test_pin_keeps_the_versions_files_a_versions_cfg_extends():
    from fabfile.build import pin
    before = "# old\n[buildout]\nextends =\n    https://dist.plone.org/release/6.1.1/versions.cfg\n\n[versions]\nx = 1\n"
    text = pin.render([pin.Pin("ZODB", "6.4", ())], "production.cfg", before)
    assert "[buildout]\nextends =\n    https://dist.plone.org/release/6.1.1/versions.cfg\n\n[versions]\nZODB = 6.4" in text
    assert "x = 1" not in text


def test_a_url_never_fetched_that_cannot_be_reached_stops_with_the_url_and_the_file(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/6.0/versions.cfg"  # nothing listens there
    (tmp_path / "buildout.cfg").write_text(f"[buildout]\nextends = {url}\n")
    with pytest.raises(buildoutfiles.ProfileError) as error:
        buildoutfiles.read_profile(tmp_path / "buildout.cfg", cache=tmp_path / "cache")
    assert url in str(error.value) and "buildout.cfg" in str(error.value)
    assert "never fetched" in str(error.value)


def test_a_url_fetched_before_is_read_from_the_cache_when_it_cannot_be_reached(tmp_path, capsys):
    with serving(tmp_path / "www") as server:
        write_chain(tmp_path / "www", server.url)
        (tmp_path / "buildout.cfg").write_text(f"[buildout]\nextends = {server.url}/6.0/versions.cfg\n")
        first = buildoutfiles.read_profile(tmp_path / "buildout.cfg", cache=tmp_path / "cache")
    remotefiles.forget()  # a new run: fetch again, which fails now
    again = buildoutfiles.read_profile(tmp_path / "buildout.cfg", cache=tmp_path / "cache")
    assert again.versions == first.versions and again.remote == first.remote
    assert "using the copy fetched before" in capsys.readouterr().err


def test_a_url_that_is_not_http_is_refused(tmp_path):
    (tmp_path / "buildout.cfg").write_text("[buildout]\nextends = ftp://example.org/versions.cfg\n")
    with pytest.raises(buildoutfiles.ProfileError, match="only http:// and https://"):
        buildoutfiles.read_profile(tmp_path / "buildout.cfg", cache=tmp_path / "cache")


# -- deploying to the sandbox host ----------------------------------------------------------

@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory):
    """The example site whose versions.cfg (as ``invoke pin`` writes it: the pins the build uses) extends
    the served chain, which pins more than the site uses, as Plone's versions files do."""
    workdir = tmp_path_factory.mktemp("remote")
    test_site = make_site(workdir, sandbox_host)
    server = Server(workdir / "www")
    write_chain(workdir / "www", server.url)
    versions = test_site.buildout / "versions.cfg"
    versions.write_text(f"[buildout]\nextends = {server.url}/latest/versions.cfg\n\n" + versions.read_text())
    test_site.server = server
    try:
        yield test_site
    finally:
        test_site.stop_everything()
        server.stop()


def manifest(site) -> dict:
    return json.loads((site.root / "current" / "manifest.json").read_text())


def test_a_deploy_ships_the_remote_files_and_the_manifest_records_each_url_and_hash(site):
    site.fab("deploy")
    assert site.answers()
    extends = manifest(site)["extends"]
    assert set(extends) == {f"{site.server.url}/latest/versions.cfg", f"{site.server.url}/latest/more.cfg",
                            f"{site.server.url}/zope/versions.cfg"}
    served = (site.server.directory / "6.0" / "versions.cfg").read_bytes()
    assert extends[f"{site.server.url}/latest/versions.cfg"]["sha256"] == hashlib.sha256(served).hexdigest()
    for url, entry in extends.items():  # in the release, where the host's buildout reads them
        assert (site.root / "current" / entry["file"]).read_bytes() == \
            (remotefiles.CACHE / hashlib.md5(url.encode()).hexdigest()).read_bytes()


def test_a_changed_remote_file_makes_a_new_release_that_the_plan_names(site):
    site.fab("deploy")
    before = site.current()
    more = site.server.directory / "6.0" / "more.cfg"
    more.write_text(more.read_text() + "bd-new-pin = 7\n")
    planned = site.fab("deploy", "--plan")
    assert f"{site.server.url}/latest/more.cfg" in planned.stdout, planned.stdout
    assert "+bd-new-pin = 7" in planned.stdout
    assert site.current() == before  # the plan changed nothing
    site.fab("deploy")
    assert site.current() != before
    assert site.answers()


def test_with_the_cache_warm_a_deploy_needs_no_network(site):
    site.fab("deploy")
    site.server.stop()  # the versions files' server is gone: neither this machine nor the host can fetch
    before = site.current()
    site.change_code("# remote extends: a deploy with no network")
    deployed = site.fab("deploy")
    assert site.current() != before
    assert site.answers()
    assert "using the copy fetched before" in deployed.stderr + deployed.stdout
