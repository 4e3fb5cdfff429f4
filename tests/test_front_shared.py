"""Unit tests: the front the sites of one host share (``control = systemd``): the frontend, each site's
backend, the names each site claims in the host's map (the real claim script, run here), HAProxy's own
check of the files together, and the refusals that name both sites."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from invoke import Exit

from fabfile.host import bootstrap
from fabfile.front import haproxy as front, shared as sharedfront
from fabfile.sites import hostsites
from fabfile.switch import job as switch
from fabfile.config.hostconfig import load
from support import require

SITE = """
[host]
address = 10.0.0.5
user = deploy
app_user = {name}
root = /srv/{name}
[buildout]
directory = .
[services]
programs = zeoserver instance1 instance2
[program:instance1]
health_url = http://127.0.0.1:{port1}/health
[program:instance2]
health_url = http://127.0.0.1:{port2}/health
[front]
{front}
"""


def write(configs: Path, name: str, front_section: str, first_port: int = 8081):
    configs.mkdir(exist_ok=True)
    path = configs / f"{name}.cfg"
    path.write_text(SITE.format(name=name, port1=first_port, port2=first_port + 1, front=front_section))
    return load(path, environ={})


def test_the_shared_frontend_routes_by_host_to_the_backend_the_map_names(tmp_path):
    config = write(tmp_path, "a", "domains = a.example\ntls = internal\n")
    text = sharedfront.render_front(config.front)
    assert "frontend sites\n    bind :80\n" in text
    assert 'bind :443 ssl crt "/etc/haproxy/sites.d/default.pem" crt "/etc/haproxy/sites.d/certs/"' in text
    assert ('http-request set-var(txn.site) req.hdr(host),field(1,:),lower,map("/etc/haproxy/sites.d/domains.map")'
            in text)
    assert 'str(*),map("/etc/haproxy/sites.d/domains.map") unless { var(txn.site) -m found }' in text
    assert "use_backend %[var(txn.site)] if { var(txn.site) -m found }" in text
    assert "use_backend %[var(txn.site)]-acme if { path_beg /.well-known/acme-challenge/ }" in text
    assert "default_backend _no_site\n\nbackend _no_site\n    http-request return status 404" in text
    assert "a.example" not in text and "srv-a" not in text  # no site in it: every site writes the same file
    assert text == sharedfront.render_front(write(tmp_path, "b", "domains = b.example\n", 9081).front)


def test_a_sites_part_is_its_backend_with_its_redirect_maintenance_and_hsts(tmp_path):
    config = write(tmp_path, "a", "domains = a.example www.a.example\ntls = acme\nemail = me@a.example\n"
                                  "site_path = /Plone\nhsts = true\nretry_after = 9\n")
    text = front.render_config(config)
    assert front.config_path(config) == "/etc/haproxy/sites.d/srv-a.cfg"
    assert "frontend" not in text and "bind" not in text and "defaults" not in text
    lines = text.splitlines()
    assert lines[1:3] == ["backend srv-a", "    http-request redirect scheme https code 301 unless { ssl_fc }"]
    assert ('file "/srv/a/front/maintenance.html" hdr Retry-After 9 if { str(on),map("/srv/a/front/maintenance.map") '
            '-m found }') in text
    assert 'Strict-Transport-Security "max-age=31536000" if { ssl_fc }' in text
    assert "/Plone/VirtualHostRoot%[path]" in text and "-m str a.example www.a.example" in text
    assert "    server instance1 127.0.0.1:8081 check inter 1s fall 2 rise 1" in text
    assert text.endswith("backend srv-a-acme\n    server lego 127.0.0.1:8402\n")
    plan = switch.front_plan(config, "blue")
    assert plan["backend"] == "srv-a" and plan["socket"] == "/run/haproxy/admin.sock"
    assert plan["config_path"] == "/etc/haproxy/sites.d/srv-a.cfg"


def test_the_deploy_writes_the_frontend_and_its_backend_and_checks_them_with_its_own_certificate(tmp_path):
    config = write(tmp_path, "a", "domains = a.example\ntls = internal\n")
    assert list(front.wanted_files(config, "blue")) == ["/etc/haproxy/sites.d/00-front.cfg",
                                                        "/etc/haproxy/sites.d/srv-a.cfg"]
    candidates, check = front.candidate_check(config, "blue")
    assert list(candidates) == ["/srv/a/front/front.cfg.checking", "/srv/a/front/site.cfg.checking"]
    assert check.endswith("haproxy -c -f /etc/haproxy/haproxy.cfg -f /srv/a/front/front.cfg.checking "
                          "-f /srv/a/front/site.cfg.checking")
    checked = candidates["/srv/a/front/front.cfg.checking"]
    assert 'crt "/etc/haproxy/sites.d/default.pem" crt "/srv/a/front/certs/site.pem"' in checked
    assert sharedfront.link_certificate(config) == \
        "ln -sfn /srv/a/front/certs/site.pem /etc/haproxy/sites.d/certs/srv-a.pem"
    plain = write(tmp_path, "b", "domains = b.example\n", 9081)
    assert sharedfront.link_certificate(plain) == "rm -f /etc/haproxy/sites.d/certs/srv-b.pem"


def test_control_self_keeps_a_whole_front_of_the_sites_own(tmp_path):
    config = write(tmp_path, "a", "domains = a.example\ncontrol = self\nhttp_port = 8080\n")
    assert not sharedfront.shared(config)
    assert "frontend srv-a\n    bind :8080" in front.render_config(config)
    assert front.config_path(config) == "/srv/a/front/conf/site.cfg"


def claim(config, map_file: Path, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", sharedfront.claim_names(config, check, str(map_file))],
                          capture_output=True, text=True, timeout=30)


def test_each_site_replaces_only_its_own_lines_in_the_hosts_map(tmp_path):
    map_file = tmp_path / "sites.d" / "domains.map"
    map_file.parent.mkdir()
    a = write(tmp_path, "a", "domains = a.example www.a.example\n")
    b = write(tmp_path, "b", "\n", 9081)  # no domains: every name nobody claims
    assert claim(a, map_file, check=True).stdout == "changes\n" and not map_file.exists()
    assert claim(a, map_file).stdout == "changed\n" and claim(b, map_file).stdout == "changed\n"
    assert map_file.read_text() == "* srv-b\na.example srv-a\nwww.a.example srv-a\n"
    assert claim(a, map_file).stdout == "unchanged\n"
    fewer = write(tmp_path, "a", "domains = a.example\n")
    assert claim(fewer, map_file).stdout == "changed\n"
    assert map_file.read_text() == "* srv-b\na.example srv-a\n"


def test_a_name_another_site_holds_on_the_host_is_refused_and_the_map_kept(tmp_path):
    map_file = tmp_path / "domains.map"
    map_file.write_text("a.example srv-a\n")
    other = write(tmp_path, "c", "domains = c.example a.example\n", 9081)
    for check in (True, False):
        refused = claim(other, map_file, check)
        assert refused.returncode == 3, refused
        assert "routes a.example (site srv-a) already; nothing changed" in refused.stderr
    assert map_file.read_text() == "a.example srv-a\n"


def test_haproxy_accepts_the_frontend_with_three_sites_parts(tmp_path):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    require(Path(haproxy).exists(), "haproxy not found: apt-get install haproxy")
    require(shutil.which("openssl"), "openssl not found: apt-get install openssl")
    sites_dir = tmp_path / "sites.d"
    (sites_dir / "certs").mkdir(parents=True)
    pem = sites_dir / "default.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=x",
                    "-keyout", str(pem), "-out", str(tmp_path / "crt")], check=True, capture_output=True)
    pem.write_text((tmp_path / "crt").read_text() + pem.read_text())
    fronts = [("a", "domains = a.example\ntls = internal\nhsts = true\n"),
              ("b", "domains = b.example\ntls = acme\nemail = me@b.example\nsite_path = /Plone\n"),
              ("c", "site_path = /\n")]
    configs = [write(tmp_path / "configs", name, text, 8081 + 10 * n) for n, (name, text) in enumerate(fronts)]
    here = lambda text: text.replace("/etc/haproxy/sites.d", str(sites_dir)).replace("/srv/", f"{tmp_path}/srv/")
    (sites_dir / "00-front.cfg").write_text(here(sharedfront.render_front(configs[0].front)))
    for config in configs:
        (sites_dir / f"srv-{config.name}.cfg").write_text(here(front.render_config(config)))
        (tmp_path / "srv" / config.name / "front").mkdir(parents=True)
        for name in ("maintenance.html", "maintenance.map"):
            (tmp_path / "srv" / config.name / "front" / name).write_text("")
        subprocess.run(["sh", "-c", sharedfront.claim_names(config, map_file=str(sites_dir / "domains.map"))],
                       check=True, capture_output=True)
    result = subprocess.run([haproxy, "-c", "-f", str(sites_dir)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (sites_dir / "domains.map").read_text() == "* srv-c\na.example srv-a\nb.example srv-b\n"


def test_two_sites_behind_the_hosts_front_claiming_one_domain_are_refused_naming_both(tmp_path):
    configs = tmp_path / "hostconfigs"
    write(configs, "a", "domains = a.example shared.example\n")
    b = write(configs, "b", "domains = b.example shared.example\n", 9081)
    with pytest.raises(Exit) as refused:
        hostsites.check_neighbours(b)
    message = str(refused.value.message)
    assert refused.value.code == 2 and "domain shared.example of site b is also claimed by site a" in message
    assert str(configs / "a.cfg") in message and "nothing changed" in message


def test_sites_behind_the_hosts_front_share_its_ports_but_not_any_name_nor_other_listeners(tmp_path):
    configs = tmp_path / "hostconfigs"
    write(configs, "a", "domains = a.example\ntls = internal\n")
    hostsites.check_neighbours(write(configs, "b", "domains = b.example\n", 9081))  # both on 80 and 443
    write(configs, "c", "\n", 9181)
    with pytest.raises(Exit, match=r"domain any name \(no \[front\] domains\) of site d is also claimed by site c"):
        hostsites.check_neighbours(write(configs, "d", "\n", 9281))
    (configs / "d.cfg").unlink()
    with pytest.raises(Exit, match=r"site e wants the host's front on \* ports 8000 and 443, site a"):
        hostsites.check_neighbours(write(configs, "e", "domains = e.example\nhttp_port = 8000\n", 9381))
    (configs / "e.cfg").unlink()
    with pytest.raises(Exit, match=r"port 80, 443 of site f is also used by site a"):  # a front of its own on 80
        hostsites.check_neighbours(write(configs, "f", "domains = f.example\ncontrol = self\n", 9481))


def test_bootstrap_loads_the_shared_directory_the_same_for_every_site(tmp_path):
    assert sharedfront.system_defaults() == (
        "# Written by bootstrap-host: Debian's haproxy.service loads the front the sites share too.\n"
        'EXTRAOPTS="-S /run/haproxy-master.sock -f /etc/haproxy/sites.d"\n')
    config = write(tmp_path, "a", "domains = a.example\n")
    spec = bootstrap.fact_spec(config)
    assert {"/etc/haproxy/sites.d", "/etc/haproxy/sites.d/certs", "/etc/haproxy/sites.d/default.pem",
            "/etc/haproxy/sites.d/domains.map"} <= \
        set(spec["paths"])


def test_a_fleets_front_host_routes_its_names_to_the_backend_its_part_defines(tmp_path):
    from fabfile.config import fleet as fleetconfig
    from test_fleet_config import FLEET
    path = tmp_path / "prod.cfg"
    path.write_text(FLEET.replace("[front]\n", "[front]\ncontrol = systemd\n"))
    config = fleetconfig.load(path, environ={}).member("front").config
    map_file = tmp_path / "sites.d" / "domains.map"
    map_file.parent.mkdir()
    assert claim(config, map_file).stdout == "changed\n"
    backend = map_file.read_text().split()[1]  # "www.example.org <backend>"
    assert f"\nbackend {backend}\n" in front.render_site_backend(config), map_file.read_text()
