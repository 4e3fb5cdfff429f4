"""Unit tests: fleet configs read into one HostConfig per host, and bad fleets refused by file, section, key."""
from pathlib import Path
from types import SimpleNamespace

import pytest

from fabfile.host import bootstrap, firewall, frontplan
from fabfile.config import fleet as fleetconfig, hostconfig
from fabfile.pipeline import fleet as fleetdeploy
from fabfile.front import haproxy as front
from fabfile.host.plan import Plan
from fabfile.config.hostconfig import ConfigError

REPO = Path(__file__).resolve().parent.parent

FLEET = f"""
[fleet]
hosts = front data app1 app2
parallel = 4
batch = 50%
[host]
user = deploy
root = /srv/site
[host:front]
address = front.example.org
private_address = 10.0.0.2
roles = front
[host:data]
address = data.example.org
private_address = 10.0.0.10
roles = zeo backup
[host:app1]
address = 10.0.0.11
roles = app
[host:app2]
address = 10.0.0.12
roles = app
[role:zeo]
programs = zeoserver
[role:app]
programs = instance1 instance2
[buildout]
directory = {REPO / 'example'}
[services]
programs = zeoserver instance1 instance2
[program:instance1]
health_url = http://${{host:private_address}}:8081/health
[program:instance2]
health_url = http://${{host:private_address}}:8082/health
[front]
domains = www.example.org
[overrides]
ports:host = ${{host:private_address}}
ports:zeo-host = ${{fleet:zeo_address}}
"""


def write(tmp_path: Path, text: str, name: str = "prod.cfg") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str = FLEET) -> fleetconfig.Fleet:
    return fleetconfig.load(write(tmp_path, text), environ={})


def test_each_host_gets_its_own_config_with_its_roles_programs_and_values(tmp_path):
    fleet = load(tmp_path)
    assert fleet.declared and fleet.names == ("front", "data", "app1", "app2")
    assert fleet.parallel == 4
    data, app1 = fleet.member("data").config, fleet.member("app1").config
    assert data.address == "data.example.org" and data.private_address == "10.0.0.10"
    assert [p.name for p in data.programs] == ["zeoserver"]
    assert data.front is None and data.switch == "rolling"  # ZEO restarts only when it changed
    assert [p.name for p in app1.programs] == ["instance1", "instance2"]
    assert app1.private_address == "10.0.0.11"  # no private_address: the address
    assert app1.programs[0].health_url == "http://10.0.0.11:8081/health"
    overrides = {f"{s}:{o}": v for s, o, v in app1.overrides}
    assert overrides == {"ports:host": "10.0.0.11", "ports:zeo-host": "10.0.0.10"}
    assert app1.user == "deploy" and app1.root == "/srv/site" and app1.label == "prod/app1"


def test_the_front_balances_every_app_hosts_instances_and_app_hosts_reach_its_runtime_api(tmp_path):
    fleet = load(tmp_path)
    front_host = fleet.member("front").config
    assert front_host.programs == ()
    assert [s[:2] for s in front_host.front.servers] == [
        ("app1-instance1", "10.0.0.11:8081"), ("app1-instance2", "10.0.0.11:8082"),
        ("app2-instance1", "10.0.0.12:8081"), ("app2-instance2", "10.0.0.12:8082")]
    rendered = front.render_config(front_host)
    assert "server app2-instance2 10.0.0.12:8082 check" in rendered
    assert "stats socket ipv4@10.0.0.2:9999 level admin" in rendered
    app2 = fleet.member("app2").config
    assert app2.front.admin == "10.0.0.2:9999" and app2.front.server_prefix == "app2-"


def test_the_switch_goes_zeo_first_then_the_front_then_app_hosts_in_batches(tmp_path):
    order = fleetdeploy.switch_order(load(tmp_path))
    assert [[m.name for m in group] for group in order] == [["data"], ["front"], ["app1"], ["app2"]]
    whole = load(tmp_path, FLEET.replace("batch = 50%", "batch = 2"))
    assert [[m.name for m in g] for g in fleetdeploy.switch_order(whole)][-1] == ["app1", "app2"]


def test_app_hosts_that_serve_nothing_yet_switch_together_before_the_batches(tmp_path):
    fleet = load(tmp_path, FLEET.replace("batch = 50%", "batch = 1").replace(
        "[host:app2]", "[host:app3]\naddress = 10.0.0.13\nroles = app\n[host:app2]").replace(
        "hosts = front data app1 app2", "hosts = front data app1 app2 app3"))

    def order(currents):
        facts = {name: SimpleNamespace(current=current) for name, current in currents.items()}
        return [[m.name for m in group] for group in fleetdeploy.switch_order(fleet, facts)]

    first = dict.fromkeys(("front", "data", "app1", "app2", "app3"))
    assert order(first) == [["data"], ["front"], ["app1", "app2", "app3"]]
    added = {**dict.fromkeys(("front", "data", "app1", "app2"), "r1"), "app3": None}
    assert order(added) == [["data"], ["front"], ["app3"], ["app1"], ["app2"]]
    assert order(dict.fromkeys(first, "r1")) == [["data"], ["front"], ["app1"], ["app2"], ["app3"]]


def test_a_config_without_a_fleet_is_one_host_with_every_role():
    fleet = fleetconfig.resolve("sandbox")
    assert not fleet.declared
    assert [(m.name, m.roles) for m in fleet.members] == [("sandbox", fleetconfig.ROLES)]


def test_a_fleet_config_is_refused_by_a_one_host_task_naming_its_hosts(tmp_path):
    with pytest.raises(ConfigError, match=r"prod.cfg: is a fleet of 4 hosts \(front data app1 app2\)"):
        hostconfig.load(write(tmp_path, FLEET), environ={})


@pytest.mark.parametrize("change, message", [
    (("[role:zeo]\nprograms = zeoserver\n", "[role:zeo]\nprograms = zeoserver\n[role:backup]\n"), None),
    (("roles = zeo backup", "roles = backup"),
     r"\[host:data\] roles: data has the role backup but not zeo"),
    (("[host:app2]\naddress = 10.0.0.12\nroles = app", "[host:app2]\naddress = 10.0.0.12\nroles ="),
     r"\[host:app2\] roles: app2 is in no role"),
    (("address = 10.0.0.12", "address = 10.0.0.11"),
     r"\[host:app2\] address: app2 and app1 are one host \(10.0.0.11:22\) with one root \(/srv/site\)"),
    (("roles = front", "roles = app frontend"), r"\[host:front\] roles: 'frontend' is not a role"),
    (("hosts = front data app1 app2", "hosts = front data app1"), r"\[host:app2\]: app2 is not in \[fleet\] hosts"),
    (("programs = instance1 instance2", "programs = instance1"), r"\[services\] programs: instance2 is in no role"),
    (("batch = 50%", "batch = half"), r"\[fleet\] batch: 'half' is not 1"),
    (("roles = zeo backup", "roles = zeo backup\n[role:front]\n"), None),
    # hostile: no traceback, the key named, what is accepted said
    (("parallel = 4", "parallel = \u00b2"), r"\[fleet\] parallel: '\u00b2' is not a whole number \(digits 0-9\)"),
    (("parallel = 4", "parallel = \u0664"), r"\[fleet\] parallel: .* is not a whole number"),
    (("parallel = 4", "parallel = 99999999"), r"\[fleet\] parallel: 99999999 is out of range"),
    (("batch = 50%", "batch = \u0665\u0660%"), r"\[fleet\] batch: .* is not 1"),
    (("[role:zeo]\nprograms = zeoserver", "[role:zeo]\nprograms = zeoserver\nport = abc"),
     r"\[role:zeo\] port: 'abc' is not a whole number"),
    (("[role:zeo]\nprograms = zeoserver", "[role:zeo]\nprograms = zeoserver\nport = 99999"),
     r"\[role:zeo\] port: 99999 is not a TCP port \(1-65535\)"),
    (("[role:zeo]\nprograms = zeoserver", "[role:zeo]\nprograms = zeoserver\nport = -1"),
     r"\[role:zeo\] port: -1 is not a TCP port"),
    (("hosts = front data app1 app2", "hosts = front data app1 a/b"), r"\[fleet\] hosts: 'a/b' is not a host name"),
    (("hosts = front data app1 app2", "hosts = front data app1 -rf"), r"\[fleet\] hosts: '-rf' is not a host name"),
    (("hosts = front data app1 app2", "hosts = front data app1 \u00e4pp1"),
     r"\[fleet\] hosts: '\u00e4pp1' is not a host name"),
    (("roles = zeo backup", "roles = zeo backup zeo"), r"\[host:data\] roles: 'zeo' is named twice"),
])
def test_bad_fleets_stop_with_file_section_and_key(tmp_path, change, message):
    text = FLEET.replace(*change)
    assert text != FLEET
    if message is None:
        load(tmp_path, text)  # still fine
        return
    with pytest.raises(ConfigError, match=message) as error:
        load(tmp_path, text)
    assert str(tmp_path / "prod.cfg") in str(error.value)


def test_a_role_no_host_has_is_refused(tmp_path):
    text = FLEET.replace("roles = front\n", "roles = app\n").replace("[front]\n", "[front]\n")
    text = text.replace("[role:app]", "[role:front]\n[role:app]")
    with pytest.raises(ConfigError, match=r"\[role:front\]: no host has the role front"):
        load(tmp_path, text)


def test_a_front_host_without_a_front_section_is_refused(tmp_path):
    text = FLEET.replace("[front]\ndomains = www.example.org\n", "")
    with pytest.raises(ConfigError, match=r"\[host:front\] roles: front has the role front, and there is no \[front\]"):
        load(tmp_path, text)


def test_the_firewall_lets_only_the_fleets_own_hosts_reach_zeo_the_runtime_api_and_the_instances(tmp_path):
    fleet = load(tmp_path, FLEET.replace("[role:zeo]\nprograms = zeoserver", "[role:zeo]\nprograms = zeoserver\nport = 8100"))
    apps = ("10.0.0.11", "10.0.0.12")
    assert fleet.member("data").config.firewall_from == ((8100, apps),)
    assert fleet.member("front").config.firewall_from == ((9999, apps),)
    assert fleet.member("app1").config.firewall_from == ((8081, ("10.0.0.2",)), (8082, ("10.0.0.2",)))
    rules = firewall.ruleset([22], fleet.member("data").config.firewall_from)
    assert "\t\tip saddr { 10.0.0.11, 10.0.0.12 } tcp dport 8100 accept" in rules
    assert firewall.accepted_ports(rules) == {22}  # a port some may reach is not open to all


def test_only_the_front_host_gets_the_front_its_package_and_its_open_ports(tmp_path):
    fleet = load(tmp_path)
    facts = {"sshd": {"ports": ["22"]}}
    front_host, app1, data = (fleet.member(name).config for name in ("front", "app1", "data"))
    assert front_host.runs_front and not app1.runs_front and not data.runs_front
    assert app1.front.admin  # an app host keeps its [front]: its switch drains through the front host's
    assert "haproxy" in bootstrap.wanted_packages(front_host)
    assert "haproxy" not in bootstrap.wanted_packages(app1) and "openssl" not in bootstrap.wanted_packages(app1)
    assert firewall.open_ports(front_host, facts) == [22, 80, 443]
    assert firewall.open_ports(app1, facts) == [22]  # nothing listens there: the instances are the front's only
    plan = Plan([], [])
    frontplan.plan_front(app1, {"systemd": True, "files": {}, "paths": {}, "users": {}}, plan)
    assert plan == Plan([], [])  # no haproxy.service, group or sudo rule for a front the host does not run


@pytest.mark.parametrize("names", [",", " ", ",,", " , "])
def test_a_limit_that_names_no_host_is_refused_not_taken_for_every_host(tmp_path, names):
    from invoke import Exit
    with pytest.raises(Exit) as caught:
        fleetconfig.limit(load(tmp_path), names)
    assert caught.value.code == 2 and "--limit" in str(caught.value.message)


def test_a_limit_naming_a_host_twice_takes_it_once(tmp_path):
    assert [m.name for m in fleetconfig.limit(load(tmp_path), "app1,app1 data").members] == ["app1", "data"]
