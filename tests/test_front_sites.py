"""Integration: three sites on one booted Debian host behind one front (issue 10, item 4).

Each site has its own root, ``app_user``, ports and domain; all three are bootstrapped and
deployed as ``deploy`` (one key, one ``hostconfigs/``, the host's store). One HAProxy
(Debian's ``haproxy.service``) routes each domain to its site, by ``Host`` and by SNI;
a site's data stays unreadable to the other sites' ``app_user``; bootstrapping or
deploying one site keeps the others answering; maintenance is per site; a fourth site
claiming a domain of the first is refused before anything changes: by the hostconfigs beside
it, or by the host when its hostconfig is elsewhere. The sites are made once for the module;
the tests run in order.
"""
from __future__ import annotations

import http.client
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

import hosts
from sandbox.load import Load
from support import require

# name: (ZEO port, first instance's port); the second instance listens on the next port
SITES = {"a": (8100, 8081), "b": (8200, 8181), "c": (8300, 8281)}


def domain(name: str) -> str:
    return f"{name}.example.test"


def app_user(name: str) -> str:
    return f"plone{name}"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A fresh host booted with systemd-nspawn, removed afterwards."""
    require(not hosts.problems(booted=True), "; ".join(hosts.problems(booted=True)))
    host = hosts.create(tmp_path_factory.mktemp("sites-host"), booted=True)
    yield host
    hosts.destroy(host)


@pytest.fixture(scope="module")
def sites(host, tmp_path_factory):
    """The three sites, each bootstrapped then deployed in turn; what the front answered for the sites
    already there after each later bootstrap."""
    base = tmp_path_factory.mktemp("front-sites")
    made, after_bootstrap, key = {}, {}, None
    for name, (zeo, first) in SITES.items():
        site = hosts.host_site(host, base / name, manager="systemd", app_user=app_user(name),
                               name=name, root=f"/srv/{name}", configs=base / "hostconfigs", key=key,
                               ports=(zeo, first, first + 1),
                               extra=f"[front]\ndomains = {domain(name)}\ntls = internal\nsite_path = /\n"
                                     "[backup]\nbefore_deploy = false\n")
        site.set_host_option("store", "/srv/store")
        key = site.key
        site.fab("bootstrap-host", password=host.root_password)
        after_bootstrap[name] = {other: front_get(host, other)[0] for other in made}
        site.fab("deploy")
        assert front_get(host, name, "/add", body=f"title=site {name}&data=x")[0] == 303
        made[name] = site
    return made, after_bootstrap


def front_get(host, name: str, path: str = "/", tls: bool = True, body: str | None = None):
    """A request to the host's front for ``name``'s domain (as ``Host`` and, over TLS, as SNI): status,
    headers, page, and the name on the certificate it was served."""
    connection = http.client.HTTPConnection(domain(name), 80, timeout=10)
    served = None
    sock = socket.create_connection((host.address, 443 if tls else 80), timeout=10)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # tls = internal
        sock = context.wrap_socket(sock, server_hostname=domain(name))
        certificate = x509.load_der_x509_certificate(sock.getpeercert(binary_form=True))
        served = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    connection.sock = sock
    try:
        headers = {"Host": domain(name)}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request("POST" if body is not None else "GET", path, body, headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode(), served
    finally:
        connection.close()


def test_each_site_answers_on_its_own_domain_through_the_one_front(sites, host):
    for name in SITES:
        status, _, page, served = front_get(host, name)
        assert status == 200 and f"site {name}" in page, page
        assert not [other for other in SITES if other != name and f"site {other}" in page], page
        assert f'action="https://{domain(name)}/add"' in page and served == domain(name)
        status, headers, _, _ = front_get(host, name, tls=False)
        assert status == 301 and headers["location"] == f"https://{domain(name)}/"


def test_one_haproxy_holds_every_sites_backend_and_routes_their_names(sites, host):
    listing = host.run("ls", "/etc/haproxy/sites.d").stdout.split()
    assert {"00-front.cfg", "srv-a.cfg", "srv-b.cfg", "srv-c.cfg", "domains.map"} <= set(listing)
    assert host.run("cat", "/etc/haproxy/sites.d/domains.map").stdout == \
        "a.example.test srv-a\nb.example.test srv-b\nc.example.test srv-c\n"
    assert host.run("systemctl", "is-active", "haproxy.service").stdout.strip() == "active"
    assert front_get(host, "nobody")[0] == 404  # a name no site claims


def test_bootstrapping_another_site_kept_the_sites_there_answering(sites):
    _, after_bootstrap = sites
    assert after_bootstrap == {"a": {}, "b": {"a": 200}, "c": {"a": 200, "b": 200}}


def test_each_site_runs_as_its_own_app_user_and_the_others_cannot_read_its_data(sites, host):
    for name in SITES:
        owners = host.run("sh", "-c", f"ps -eo user=,args= | grep '[/]srv/{name}/' | cut -d' ' -f1").stdout.split()
        assert set(owners) == {app_user(name)}, owners
        data = f"/srv/{name}/var/filestorage/Data.fs"
        assert host.run("test", "-s", data, user=app_user(name), check=False).returncode == 0
        for other in SITES:
            if other == name:
                continue
            for command in (("cat", data), ("ls", f"/srv/{name}/var"), ("ls", f"/srv/{name}/backups")):
                refused = host.run(*command, user=app_user(other), check=False)
                assert refused.returncode != 0 and "Permission denied" in refused.stderr, (other, command)


def test_maintenance_of_one_site_shows_on_its_domain_only(sites, host):
    made, _ = sites
    made["b"].fab("maintenance", "on")
    try:
        status, headers, page, _ = front_get(host, "b")
        assert status == 503 and "Back in a moment" in page and headers["retry-after"] == "30"
        assert front_get(host, "a")[0] == 200 and front_get(host, "c")[0] == 200
    finally:
        made["b"].fab("maintenance", "off")
    assert front_get(host, "b")[0] == 200


def test_bootstrapping_a_site_again_changes_nothing_on_the_shared_front(sites, host):
    made, _ = sites
    result = made["a"].fab("bootstrap-host", password=host.root_password)
    assert "nothing to change" in result.stdout, result.stdout
    assert "ok /etc/default/haproxy loads /etc/haproxy/sites.d" in result.stdout


def test_a_second_deploy_of_one_site_keeps_the_others_answering(sites, host):
    made, _ = sites
    site = made["a"]
    module = site.workdir / "buildout" / "src" / "demoapp" / "demoapp" / "__init__.py"
    module.write_text(module.read_text() + "\n# a change to site a alone\n")
    before = host.run("readlink", "/srv/a/current").stdout.strip()
    with Load(443, domain("b"), address=host.address) as load_b, Load(443, domain("c"), address=host.address) as load_c:
        result = site.fab("deploy")
    assert "front config unchanged" in result.stdout, result.stdout
    assert host.run("readlink", "/srv/a/current").stdout.strip() != before
    for load in (load_b, load_c):
        assert load.total > 20 and load.failures == [], f"{len(load.failures)} of {load.total}: {load.failures[:5]}"
    for name in SITES:
        assert front_get(host, name)[0] == 200


def test_a_site_claiming_another_sites_domain_is_refused_naming_both_before_anything_changes(sites, host):
    made, _ = sites
    configs = made["a"].configs
    text = (configs / "c.cfg").read_text().replace("/srv/c", "/srv/d").replace(domain("c"), domain("a"))
    (configs / "d.cfg").write_text(text.replace("8300", "8400").replace("828", "838"))
    mapped = host.run("cat", "/etc/haproxy/sites.d/domains.map").stdout
    try:
        refused = hosts.HostSite(host, made["c"].workdir, configs, made["c"].key, root="/srv/d", name="d").fab(
            "deploy", check=False)
    finally:
        (configs / "d.cfg").unlink()
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"domain {domain('a')} of site d is also claimed by site a" in refused.stderr
    assert "nothing changed" in refused.stderr
    assert host.run("test", "-e", "/srv/d", check=False).returncode != 0
    assert host.run("cat", "/etc/haproxy/sites.d/domains.map").stdout == mapped


def test_a_site_from_other_hostconfigs_is_refused_by_the_host_for_a_name_another_site_holds(sites, host,
                                                                                             tmp_path):
    made, _ = sites
    elsewhere = hosts.host_site(host, tmp_path / "d", manager="systemd", app_user=app_user("d"), name="d",
                                root="/srv/d", key=made["a"].key, ports=(8400, 8381, 8382),
                                extra=f"[front]\ndomains = {domain('a')}\ntls = internal\nsite_path = /\n"
                                      "[backup]\nbefore_deploy = false\n")
    elsewhere.set_host_option("store", "/srv/store")
    elsewhere.fab("bootstrap-host", password=host.root_password)
    mapped = host.run("cat", "/etc/haproxy/sites.d/domains.map").stdout
    refused = elsewhere.fab("deploy", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"site d: the host's front routes {domain('a')} (site srv-a) already; nothing changed" in refused.stderr
    assert host.run("cat", "/etc/haproxy/sites.d/domains.map").stdout == mapped
    assert "srv-d.cfg" not in host.run("ls", "/etc/haproxy/sites.d").stdout.split()
    status, _, page, _ = front_get(host, "a")
    assert status == 200 and "site a" in page
