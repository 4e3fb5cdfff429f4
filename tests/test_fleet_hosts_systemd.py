"""Integration: the fleet of ``tests/test_fleet_hosts.py`` (four fresh Debian hosts booted with systemd,
bootstrapped with the defaults, the front HAProxy under systemd), with ``[services] manager = systemd``:
every program a unit bootstrap-host writes on its host, and the front on HTTPS (``tls = internal``). A
first deploy serves through the front host's name over HTTPS; a code change and a rollback under a
bounded load there fail no request and keep the ZEO server's process.
"""
from __future__ import annotations

import http.client
import time

import pytest

import fleets
from fleets import DOMAIN
from test_fleet_hosts import PORTS, made_rig


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    yield from made_rig(tmp_path_factory, "systemd", tls=True)


def test_with_units_a_first_deploy_then_a_change_and_a_rollback_under_load_drop_no_request(rig):
    rig.first_deploy()
    for name, units in {"data": ["zeoserver"], "app1": ["instance1", "instance2"],
                        "app2": ["instance1", "instance2"]}.items():
        for unit in units:
            state = rig.hosts[name].run("systemctl", "is-active", f"srv-site-{unit}.service", check=False)
            assert state.stdout.strip() == "active", (name, unit, state.stdout)
    assert rig.hosts["front"].run("systemctl", "is-active", "haproxy.service").stdout.strip() == "active"
    plain = http.client.HTTPConnection(rig.hosts["front"].address, PORTS["front"], timeout=10)
    plain.request("GET", "/", headers={"Host": DOMAIN})
    answer = plain.getresponse()
    assert answer.status == 301 and answer.getheader("location") == f"https://{DOMAIN}/", answer.status
    plain.close()
    zeo, leaving = rig.zeo_pid(), rig.current("app1")
    assert zeo.isdigit() and zeo != "0", zeo
    with rig.load() as load:
        time.sleep(3)  # over TLS, on a loaded machine: long enough for a count that means something
    fleets.assert_no_request_failed(load, rig.objects())
    fleets.change_code(rig.buildout, "# fleet on hosts with units: a code change")
    with rig.load() as load:
        rig.fab("deploy")
    new = rig.currents()
    assert len(new) == 1 and leaving not in new and None not in new, new
    assert rig.zeo_pid() == zeo
    fleets.assert_no_request_failed(load, rig.objects())
    with rig.load() as load:
        rig.fab("rollback")
    assert rig.currents() == {leaving}
    assert rig.zeo_pid() == zeo
    fleets.assert_no_request_failed(load, rig.objects())
    assert rig.fab("status").returncode == 0
