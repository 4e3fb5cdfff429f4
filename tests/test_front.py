"""Integration: the example site behind a real HAProxy, then a real nginx, on the sandbox host, under load.

Every switch (a code change, a rollback, a restart, a deploy whose health check fails)
runs while four clients send GETs and POSTs through the front; each test counts the
failed requests (none allowed) and finds every accepted POST stored exactly once.
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
from collections import Counter

import pytest

from sandbox.load import Load
from sites import make_site
from support import free_port, require

DOMAIN = "www.example.test"


def front_extra(http_port: int, https_port: int, bind: str = "127.0.0.1", server: str = "haproxy") -> str:
    return (f"[front]\nserver = {server}\ncontrol = self\nbind = {bind}\nhttp_port = {http_port}\n"
            f"https_port = {https_port}\n"
            f"tls = internal\ndomains = {DOMAIN}\nsite_path = /\ndrain_timeout = 10\nretry_after = 7\n")


@pytest.fixture(scope="module", params=["haproxy", "nginx"])
def site(request, sandbox_host, tmp_path_factory):
    """The example site behind each kind of front in turn (every test below runs with both)."""
    kind = request.param
    require(shutil.which(kind) or os.path.exists(f"/usr/sbin/{kind}"), f"{kind} not found: apt-get install {kind}")
    require(shutil.which("openssl"), "openssl not found: apt-get install openssl")
    ports = free_port(), free_port()
    test_site = make_site(tmp_path_factory.mktemp(f"front-{kind}"), sandbox_host,
                          front_extra(*ports, server=kind))
    test_site.front_ports, test_site.kind = ports, kind
    yield test_site
    test_site.stop_everything()
    stop_front(test_site)


def stop_front(site) -> None:
    """Stop the front a site's deploy started (control = self), by the pid in its pid file."""
    for name in ("haproxy.pid", "nginx.pid"):
        pid_file = site.root / "front" / "run" / name
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass


def request(site, method="GET", path="/", tls=True, body=None, headers=None):
    port = site.front_ports[1 if tls else 0]
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body, {"Host": DOMAIN, **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        connection.close()


def under_load(site) -> Load:
    return Load(site.front_ports[1], DOMAIN)


def assert_no_request_failed(site, load: Load) -> None:
    assert load.total > 20, f"the load sent only {load.total} requests"
    assert load.failures == [], f"{len(load.failures)} of {load.total} requests failed: {Counter(load.failures)}"
    titles = Counter(o["title"] for o in site.objects())
    missing = [t for t in load.stored if titles[t] != 1]
    assert not missing, f"{len(missing)} accepted POSTs are not stored exactly once: {missing[:5]}"


def zeoserver_pid(site) -> str:
    ctl = site.root / "venv" / "bin" / "supervisorctl"
    conf = site.root / "current" / "etc" / "supervisord.conf"
    return subprocess.run([str(ctl), "-c", str(conf), "pid", "zeoserver"], capture_output=True, text=True).stdout.strip()


def test_first_deploy_serves_https_through_the_front_with_public_urls(site):
    site.fab("deploy")
    status, headers, page = request(site)
    assert status == 200
    public = f"https://{DOMAIN}:{site.front_ports[1]}"
    assert f'action="{public}/add"' in page  # virtual hosting: links carry the public URL
    status, headers, _ = request(site, tls=False)
    assert status == 301 and headers["location"].startswith(f"https://{DOMAIN}")


def test_a_code_change_deploys_without_a_failed_request_and_keeps_zeo(site):
    zeo = zeoserver_pid(site)
    site.change_code("# front: a code change")
    old_release = site.current()
    with under_load(site) as load:
        result = site.fab("deploy")
    assert site.current() != old_release
    assert_no_request_failed(site, load)
    assert "zeoserver: unchanged, kept running" in result.stdout
    assert zeoserver_pid(site) == zeo and zeo


def test_rollback_drops_no_request(site):
    leaving = site.current()
    with under_load(site) as load:
        site.fab("rollback")
    assert site.current() != leaving
    assert_no_request_failed(site, load)


def test_restart_is_rolling_and_drops_no_request(site):
    with under_load(site) as load:
        result = site.fab("restart")
    assert "instance1: out of the front" in result.stdout and "instance2: back in the front" in result.stdout
    assert_no_request_failed(site, load)


def test_a_deploy_that_fails_its_health_check_goes_back_without_a_failed_request(site):
    leaving = site.current()
    site.change_code("import demoapp.app as _app\n"
                     "_app.DemoApp.health = lambda self, environ: _app.text('503 Service Unavailable', 'broken')")
    with under_load(site) as load:
        result = site.fab("deploy", check=False)
    assert result.returncode == 1, result.stdout
    assert "health check failed: instance1 (new) did not answer its health URL" in result.stdout + result.stderr
    assert site.current() == leaving
    bad = [r for r in site.release_ids() if (site.root / "releases" / r / ".deploy" / "bad.json").exists()]
    assert len(bad) == 1 and bad[0] != leaving
    assert_no_request_failed(site, load)
    site.change_code("# health fixed again")  # the next tests deploy good code


def test_maintenance_page_answers_503_with_retry_after_then_goes_off(site):
    site.fab("maintenance", "on")
    status, headers, page = request(site)
    assert status == 503 and headers.get("retry-after") == "7" and "maintained" in page
    site.fab("maintenance", "off")
    assert request(site)[0] == 200


def test_a_front_config_the_server_rejects_changes_nothing(site):
    config = site.workdir / "hostconfigs" / "test.cfg"
    before = config.read_text()
    config.write_text(before.replace("bind = 127.0.0.1", "bind = no-such-host.invalid"))
    try:
        site.change_code("# a change with a broken front")
        result = site.fab("deploy", check=False)
    finally:
        config.write_text(before)
    assert result.returncode == 1
    assert f"does not pass {site.kind}'s check" in result.stdout + result.stderr
    assert request(site)[0] == 200  # the running front keeps its config
    assert not any("no-such-host" in path.read_text() for path in (site.root / "front" / "conf").iterdir())


def test_status_says_what_the_last_switch_did(site):
    result = site.fab("status", check=False)
    assert result.returncode == 5, result.stdout + result.stderr  # serving, but the last switch failed
    assert re.search(r"last switch: to \S+ at \S+: rolled-back \(health check failed", result.stdout), result.stdout
