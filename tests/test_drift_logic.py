"""The difference between what runs and what is wanted (``state/drift.py``), on facts made by hand."""
from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from fabfile.build.platforms import Target
from fabfile.config.hostconfig import load
from fabfile.front import haproxy
from fabfile.remote.site import Facts, Release
from fabfile.state import drift
from fabfile.state.observed import young_programs
from fabfile.state.status import trouble_code

ROOT = "/srv/site"
CURRENT, OLD = "20261201T000000Z-aaaaaaaa", "20261101T000000Z-bbbbbbbb"


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "site.cfg"
    path.write_text(f"[host]\naddress = 127.0.0.1\nroot = {ROOT}\n[buildout]\ndirectory = {tmp_path}\n"
                    "[services]\nprograms = zeoserver instance1 instance2\n"
                    "[program:instance1]\nhealth_url = http://127.0.0.1:8081/\n"
                    "[program:instance2]\nhealth_url = http://127.0.0.1:8082/\n"
                    "[front]\ncontrol = self\nhttp_port = 8080\nhttps_port = 8443\ndomains = localhost\n")
    return load(path)


def process(pid: int, release: str | None = CURRENT, ppid: int = 1, under_root: bool = True, uid: int = 1000):
    return {"pid": pid, "ppid": ppid, "uid": uid, "cmdline": ["python", "bin/x"], "cwd": None, "exe": None,
            "started": 0.0, "release": release, "under_root": under_root}


def healthy_facts(config) -> Facts:
    programs = {name: {"state": "RUNNING", "pid": pid, "process": process(pid)}
                for name, pid in (("zeoserver", 10), ("instance1", 11), ("instance2", 12))}
    files = {f"front {path}": {"sha256": hashlib.sha256(text.encode()).hexdigest(), "mtime": 0, "text": None}
             for path, text in haproxy.wanted_files(config, "blue").items()}
    files["maintenance"] = {"sha256": "", "mtime": 0, "text": ""}
    observed = {
        "uids": {"deploy": 1000}, "now": 100.0, "managers": [process(5, None)],
        "programs": {"exit": 0, "said": "", "programs": programs},
        "pidfiles": {"supervisord": {"pid": 5, "alive": True, "process": process(5, None)},
                     "front": {"pid": 6, "alive": True, "process": process(6, None)}},
        "ports": {"8081": {"who": "instance1", "pids": [11], "processes": [process(11)], "uids": [1000], "visible": True},
                  "8082": {"who": "instance2", "pids": [12], "processes": [process(12)], "uids": [1000], "visible": True},
                  "8100": None},
        "files": files,
        "haproxy": {"servers": {"instance1": "UP", "instance2": "UP"}},
        "switch_job": {"job": "20261201T000001Z-abcdef", "verdict": True, "running": False},
    }
    releases = tuple(Release(r, {"when": "x"}, None) for r in (OLD, CURRENT))
    return Facts(True, CURRENT, releases, None, {}, None, None, Target("3.11", "x86_64", "2.36"), observed=observed)


def with_observed(facts: Facts, **changes) -> Facts:
    return replace(facts, observed={**facts.observed, **changes})


def kinds(config, facts, looping=None) -> list[str]:
    return [d.kind for d in drift.find(config, facts, looping)]


def test_a_site_as_deployed_has_no_drift(config):
    assert kinds(config, healthy_facts(config)) == []


def test_a_stopped_program_is_down(config):
    facts = healthy_facts(config)
    programs = dict(facts.observed["programs"]["programs"], instance2={"state": "STOPPED", "pid": 0, "process": None})
    found = drift.find(config, with_observed(facts, programs={"programs": programs}))
    assert [(d.kind, d.message, d.code) for d in found] == [("program-down", "instance2 is stopped", drift.PROGRAM_DOWN)]


def test_an_instance_of_another_release_and_a_foreign_port_holder_are_named(config):
    facts = healthy_facts(config)
    programs = dict(facts.observed["programs"]["programs"],
                    instance1={"state": "RUNNING", "pid": 11, "process": process(11, OLD)})
    stranger = {**process(4242, None, under_root=False), "cmdline": ["python3", "-m", "http.server", "8100"]}
    ports = dict(facts.observed["ports"], **{"8100": {"who": "[ports] zeo", "pids": [4242], "processes": [stranger],
                                                      "uids": [1000], "visible": True}})
    found = drift.find(config, with_observed(facts, programs={"programs": programs}, ports=ports))
    messages = {d.kind: d.message for d in found}
    assert messages["other-release"] == f"instance1 (pid 11) runs {OLD}, not {CURRENT}"
    assert messages["port-taken"] == ("port 8100 ([ports] zeo) is held by another process: "
                                      "pid 4242: python3 -m http.server 8100")
    assert trouble_code(True, False, False, None, None, tuple(found)) == drift.PROGRAM_DOWN


def test_a_port_held_by_another_users_hidden_process_is_taken(config):
    facts = healthy_facts(config)
    ports = dict(facts.observed["ports"], **{"8100": {"who": "[ports] zeo", "pids": [], "processes": [],
                                                      "uids": [33], "visible": False}})
    assert kinds(config, with_observed(facts, ports=ports)) == ["port-taken"]


def test_an_instance_whose_port_another_of_its_processes_holds_is_not_listening(config):
    facts = healthy_facts(config)
    ports = dict(facts.observed["ports"], **{"8082": {"who": "instance2", "pids": [11], "processes": [process(11)],
                                                      "uids": [1000], "visible": True}})
    assert kinds(config, with_observed(facts, ports=ports)) == ["not-listening"]


def test_two_supervisords_and_a_deaf_one_are_manager_drift(config):
    facts = healthy_facts(config)
    assert kinds(config, with_observed(facts, managers=[process(5, None), process(7, None)])) == ["second-manager"]
    deaf = with_observed(facts, programs={"exit": 1, "said": "refused", "programs": {}})
    assert kinds(config, deaf) == ["manager-unreachable"]


def test_the_front_dead_edited_out_of_rotation_or_in_maintenance(config):
    facts = healthy_facts(config)
    dead = dict(facts.observed["pidfiles"], front={"pid": 6, "alive": False, "process": None})
    assert kinds(config, with_observed(facts, pidfiles=dead)) == ["front-down"]
    files = dict(facts.observed["files"])
    edited = {name: ({**found, "sha256": "0" * 64} if name.startswith("front ") else found)
              for name, found in files.items()}
    assert kinds(config, with_observed(facts, files=edited)) == ["front-config"]
    out = with_observed(facts, haproxy={"servers": {"instance1": "MAINT", "instance2": "UP"}})
    assert kinds(config, out) == ["front-rotation"]
    files["maintenance"] = {"sha256": "", "mtime": 0, "text": "on 1\n"}
    found = drift.find(config, with_observed(facts, files=files))
    assert [d.kind for d in found] == ["maintenance-on"]
    assert trouble_code(True, False, False, None, None, tuple(found)) == drift.MAINTENANCE_ON


def test_a_dead_job_a_crash_loop_and_a_missing_current(config):
    facts = healthy_facts(config)
    dead = with_observed(facts, switch_job={"job": "j", "verdict": False, "running": False})
    assert kinds(config, dead) == ["job-died"]
    running = with_observed(facts, switch_job={"job": "j", "verdict": False, "running": True})
    assert kinds(config, running) == []
    assert kinds(config, facts, {"instance1": "its pid went from 11 to 13"}) == ["crash-loop"]
    gone = replace(facts, releases=facts.releases[:1])
    assert kinds(config, gone)[0] == "current-missing"


def test_before_the_first_deploy_only_a_taken_port_counts(config):
    facts = replace(healthy_facts(config), current=None)
    assert kinds(config, facts) == []


def test_a_process_on_the_same_port_of_another_address_takes_nothing_from_the_site(config):
    facts = healthy_facts(config)
    other = {**process(77, None, under_root=False), "cmdline": ["python3", "-m", "http.server"]}
    held = {"who": "[ports] zeo", "site_address": "127.0.0.1", "pids": [77], "processes": [other], "uids": [1000],
            "visible": True, "listeners": [{"address": "127.0.0.12", "uid": 1000, "pids": [77]}]}
    assert kinds(config, with_observed(facts, ports=dict(facts.observed["ports"], **{"8100": held}))) == []
    everywhere = dict(held, listeners=[{"address": "0.0.0.0", "uid": 1000, "pids": [77]}])
    assert kinds(config, with_observed(facts, ports=dict(facts.observed["ports"], **{"8100": everywhere}))) == \
        ["port-taken"]


def test_a_young_program_is_looked_at_twice_unless_the_last_good_switch_saw_this_pid_stay_up(config):
    facts = healthy_facts(config)  # every program started at 0.0; now is 100.0
    assert young_programs(facts) == {}
    young = with_observed(facts, now=2.0)
    assert young_programs(young) == {"zeoserver": 10, "instance1": 11, "instance2": 12}
    proven = {"job": "j", "verdict": True, "running": False, "proven": {"instance1": 11, "instance2": 99}}
    assert young_programs(with_observed(young, switch_job=proven)) == {"zeoserver": 10, "instance2": 12}
