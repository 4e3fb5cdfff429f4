"""Integration: ``tls = acme`` against a real ACME server (pebble, Debian's), on loopback.

pebble listens on 127.0.0.1 with a certificate this test makes; pebble-challtestsrv
answers its DNS questions with 127.0.0.1, so the HTTP-01 check reaches the sandbox
site's front (HAProxy, ``control = self``), which passes it to lego on the host side.
A client that trusts pebble's root gets the page over HTTPS with the configured name;
a forced renewal under load serves a new certificate without a failed request; an
ACME server that cannot be reached leaves the site serving.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

from sandbox.load import Load
from sites import make_site
from support import free_port, require
from test_front import stop_front

DOMAIN = "www.example.test"


def wait_for_port(port: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def pebble(tmp_path_factory):
    """pebble and its DNS stand-in on 127.0.0.1; stopped (by pid) afterwards."""
    for tool in ("pebble", "pebble-challtestsrv", "lego", "haproxy", "openssl"):
        require(shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}"), f"{tool} not found: apt-get install "
                f"{'pebble' if tool.startswith('pebble') else tool}")
    work = tmp_path_factory.mktemp("pebble")
    cert, key = work / "pebble.pem", work / "pebble.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=pebble",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    ports = {name: free_port() for name in ("acme", "management", "dns", "dns_management", "http", "tls")}
    (work / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{ports['acme']}", "managementListenAddress": f"127.0.0.1:{ports['management']}",
        "certificate": str(cert), "privateKey": str(key), "httpPort": ports["http"], "tlsPort": ports["tls"],
        "ocspResponderURL": "", "externalAccountBindingRequired": False}}))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    log = open(work / "pebble.log", "w")
    dns = subprocess.Popen(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                            "-dns01", f"127.0.0.1:{ports['dns']}", "-http01", "", "-https01", "", "-tlsalpn01", "",
                            "-management", f"127.0.0.1:{ports['dns_management']}"], stdout=log, stderr=log)
    server = subprocess.Popen(["pebble", "-config", str(work / "pebble.json"), "-dnsserver",
                               f"127.0.0.1:{ports['dns']}"], stdout=log, stderr=log, env=env)
    try:
        wait_for_port(ports["acme"])
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{ports['management']}/roots/0", context=context) as answer:
            root = answer.read().decode()
        yield {"ports": ports, "cert": cert, "root": root, "log": work / "pebble.log"}
    finally:
        for process in (server, dns):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
        log.close()


def acme_front(pebble, https_port: int) -> str:
    ports = pebble["ports"]
    return (f"[front]\ncontrol = self\nbind = 127.0.0.1\nhttp_port = {ports['http']}\nhttps_port = {https_port}\n"
            f"tls = acme\ndomains = {DOMAIN}\nemail = admin@example.org\n"
            f"acme_directory = https://127.0.0.1:{ports['acme']}/dir\n"
            f"acme_ca_bundle = {pebble['cert']}\nacme_port = {free_port()}\nsite_path = /\n")


class VerifiedHTTPS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with the certificate checked for DOMAIN (which no DNS here resolves)."""

    def connect(self):
        raw = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=DOMAIN)


@pytest.fixture(scope="module")
def site(sandbox_host, tmp_path_factory, pebble):
    https_port = free_port()
    test_site = make_site(tmp_path_factory.mktemp("acme"), sandbox_host, acme_front(pebble, https_port))
    test_site.https_port = https_port
    yield test_site
    test_site.stop_everything()
    stop_front(test_site)


def served_certificate(site, root_pem: str) -> dict:
    """The certificate the front serves for DOMAIN, checked against pebble's root."""
    context = ssl.create_default_context(cadata=root_pem)
    with socket.create_connection(("127.0.0.1", site.https_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            return tls.getpeercert()


def test_the_front_gets_a_certificate_that_verifies_against_the_ca(site, pebble):
    result = site.fab("deploy")
    assert "certificate installed" in result.stdout, result.stdout
    certificate = served_certificate(site, pebble["root"])  # raises when the chain or the name is wrong
    assert ("DNS", DOMAIN) in certificate["subjectAltName"]
    context = ssl.create_default_context(cadata=pebble["root"])
    connection = VerifiedHTTPS(DOMAIN, site.https_port, timeout=10, context=context)
    connection.request("GET", "/")
    page = connection.getresponse().read().decode()
    assert f'action="https://{DOMAIN}:{site.https_port}/add"' in page
    plain = http.client.HTTPConnection("127.0.0.1", pebble["ports"]["http"], timeout=10)
    plain.request("GET", "/", headers={"Host": DOMAIN})
    answer = plain.getresponse()
    assert answer.status == 301 and answer.getheader("location").startswith(f"https://{DOMAIN}")


def test_a_second_deploy_keeps_the_certificate(site, pebble):
    before = served_certificate(site, pebble["root"])["serialNumber"]
    site.change_code("# acme: a change")
    result = site.fab("deploy")
    assert "certificate unchanged" in result.stdout
    assert served_certificate(site, pebble["root"])["serialNumber"] == before


def test_a_forced_renewal_serves_a_new_certificate_without_a_failed_request(site, pebble):
    before = served_certificate(site, pebble["root"])["serialNumber"]
    with Load(site.https_port, DOMAIN) as load:
        result = site.fab("certificate", "--renew")
    assert "certificate installed" in result.stdout
    assert served_certificate(site, pebble["root"])["serialNumber"] != before
    assert load.total > 10 and load.failures == [], load.failures[:5]


def test_an_unreachable_acme_server_leaves_the_site_serving_and_says_so(site, pebble):
    config = site.workdir / "hostconfigs" / "test.cfg"
    before = config.read_text()
    dead = f"https://127.0.0.1:{free_port()}/dir"
    config.write_text(before.replace(f"https://127.0.0.1:{pebble['ports']['acme']}/dir", dead))
    try:
        serial = served_certificate(site, pebble["root"])["serialNumber"]
        renewal = site.fab("certificate", "--renew", check=False)
        site.change_code("# acme: a change while the CA is away")
        deploy = site.fab("deploy", check=False)
    finally:
        config.write_text(before)
    assert renewal.returncode == 1 and f"could not get a certificate from {dead}" in renewal.stderr
    assert deploy.returncode == 0 and "warning: could not get a certificate" in deploy.stdout
    assert served_certificate(site, pebble["root"])["serialNumber"] == serial  # the old one serves on
