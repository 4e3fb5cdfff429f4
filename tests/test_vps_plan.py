"""Unit tests: what bootstrap-host decides for a VPS fit to live on: the venv, the firewall, security
updates, a swap file; from the facts of a host, and the on-host guard that never loads a ruleset
that would shut SSH out."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Exit

from fabfile.host import bootstrap, firewall, swap, upgrades
from fabfile.build import dists, venv
from fabfile import onhost
from fabfile.config.hostconfig import ConfigError, load
from test_bootstrap_plan import KEY, bootstrapped_host, fresh_host

GiB, MiB = 2**30, 2**20


def config(tmp_path: Path, host: str = "", extra: str = ""):
    path = tmp_path / "test.cfg"
    path.write_text(f"[host]\naddress = vps.example.org\nuser = deploy\nroot = /srv/site\n{host}"
                    f"[buildout]\ndirectory = .\n[services]\nprograms = instance1\n"
                    "[program:instance1]\nhealth_url = http://127.0.0.1:8081/\n" + extra)
    return load(path, environ={})


FRONT = "[front]\ndomains = www.example.org\n"


# --- the config -------------------------------------------------------------------------

def test_the_defaults_make_a_vps_fit_to_live_on(tmp_path):
    cfg = config(tmp_path)
    assert (cfg.firewall, cfg.firewall_ports, cfg.security_upgrades, cfg.swap) == (True, (), True, "auto")


@pytest.mark.parametrize("line, value", [
    ("swap = off", "off"), ("swap = AUTO", "auto"), ("swap = 512M", 512 * MiB), ("swap = 2g", 2 * GiB),
    ("firewall_ports = 8100 9000", (8100, 9000)), ("firewall = false", False), ("security_upgrades = no", False),
])
def test_the_host_keys_are_read(tmp_path, line, value):
    cfg = config(tmp_path, host=line + "\n")
    key = line.split(" =")[0]
    assert getattr(cfg, key) == value


@pytest.mark.parametrize("line, message", [
    ("swap = 3T", "[host] swap: '3T' is not auto, off or a size such as 512M or 2G"),
    ("swap = 1M", "[host] swap: '1M' is out of range: 64M to 1024G"),
    ("firewall_ports = 80 0", "[host] firewall_ports: 0 is not a TCP port (1-65535)"),
    ("firewall_ports = 80 80", "[host] firewall_ports: 80 is named twice"),
    ("firewall = maybe", "[host] firewall: 'maybe' is not true or false"),
])
def test_a_bad_host_key_stops_naming_file_section_and_key(tmp_path, line, message):
    with pytest.raises(ConfigError) as error:
        config(tmp_path, host=line + "\n")
    assert str(error.value).startswith(str(tmp_path / "test.cfg")) and message in str(error.value)


# --- swap -------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, memory, have, size", [
    ("auto", 512 * MiB, 0, GiB), ("auto", GiB, 0, GiB), ("auto", 1536 * MiB, 0, 2 * GiB),
    ("auto", 2 * GiB, 0, None), ("auto", 24 * GiB, 0, None), ("auto", GiB, 512 * MiB, None),
    ("off", 512 * MiB, 0, None), (64 * MiB, 24 * GiB, 0, 64 * MiB), (GiB, GiB, 256 * MiB, None),
])
def test_a_swap_file_is_made_under_2_gib_of_memory_without_swap_or_of_the_size_asked(setting, memory, have, size):
    assert swap.decide(setting, memory, have)[0] == size


def small_host(**memory) -> dict:
    return fresh_host(memory={"total": GiB, "swap": 0, "swaps": [], **memory})


def test_a_small_host_gets_a_swap_file_in_fstab_and_swapon_may_be_refused(tmp_path):
    plan = bootstrap.make_plan(config(tmp_path), small_host(), KEY)
    made, on = [c for c in plan.changes if "swap" in c.what]
    assert made.what == "make a swap file /swapfile of 1.0 GiB (1.0 GiB of memory and no swap; in /etc/fstab)"
    assert "install -m 0600 /dev/null /swapfile && dd if=/dev/zero of=/swapfile bs=1M count=1024 status=none" \
        in made.command
    assert "mkswap /swapfile" in made.command and "/swapfile none swap sw 0 0" in made.command
    assert on.command == "swapon /swapfile" and "refused" in on.may_fail and not made.may_fail


def test_a_swap_file_in_fstab_is_checked_not_made_again_even_where_swapon_was_refused(tmp_path):
    facts = small_host()
    facts["paths"][swap.SWAP_FILE] = {"kind": "file", "size": GiB, "mode": "0600", "owner": "root", "group": "root"}
    facts["files"][swap.FSTAB] = "proc /proc proc defaults 0 0\n/swapfile none swap sw 0 0\n"
    plan = bootstrap.make_plan(config(tmp_path), facts, KEY)
    assert not any("swap" in c.what for c in plan.changes)
    assert "swap file /swapfile (1.0 GiB) in /etc/fstab, not on (swapon /swapfile: refused in a container)" \
        in plan.checked


def test_no_room_for_the_swap_file_is_said_for_auto_and_stops_a_size_asked_for(tmp_path):
    full = small_host()
    full["swap_space"] = {"path": "/", "free": GiB, "writable": True}
    plan = bootstrap.make_plan(config(tmp_path), full, KEY)
    assert not any("swap" in c.what for c in plan.changes)
    assert any(line.startswith("no room for a swap file of 1.0 GiB") for line in plan.checked)
    with pytest.raises(Exit) as stopped:
        bootstrap.make_plan(config(tmp_path, host="swap = 1G\n"), full, KEY)
    assert "[host] swap: no room for a swap file of 1.0 GiB" in stopped.value.message


def test_swap_off_and_a_big_host_leave_swap_alone(tmp_path):
    assert not any("swap" in c.what for c in bootstrap.make_plan(config(tmp_path, host="swap = off\n"),
                                                                  small_host(), KEY).changes)
    plan = bootstrap.make_plan(config(tmp_path), fresh_host(), KEY)
    assert "no swap file needed: 8.0 GiB of memory" in plan.checked


# --- security updates -------------------------------------------------------------------

def test_security_updates_install_the_package_and_turn_on_its_daily_run(tmp_path):
    plan = bootstrap.make_plan(config(tmp_path), fresh_host(), KEY)
    assert "unattended-upgrades" in plan.changes[0].what
    change = next(c for c in plan.changes if c.what.startswith("install security updates daily"))
    assert 'APT::Periodic::Unattended-Upgrade "1";' in change.command and upgrades.CONFIG_PATH in change.command
    off_config = config(tmp_path, host="security_upgrades = false\nfirewall = false\n")
    assert not {"unattended-upgrades", "nftables"} & set(bootstrap.wanted_packages(off_config))
    off = bootstrap.make_plan(off_config, fresh_host(), KEY)
    assert not any("security" in c.what or "firewall" in c.what for c in off.changes)


# --- firewall ---------------------------------------------------------------------------

def test_the_ruleset_lets_in_ssh_and_the_front_only_in_a_table_of_its_own(tmp_path):
    cfg = config(tmp_path, host="firewall_ports = 8100\n", extra=FRONT)
    text = firewall.ruleset(firewall.open_ports(cfg, fresh_host()))
    assert "table inet bootstrap_host {" in text and "flush ruleset" not in text
    assert "type filter hook input priority filter; policy drop;" in text
    for line in ('iif "lo" accept', "ct state established,related accept", "tcp dport { 22, 80, 443, 8100 } accept"):
        assert f"\t\t{line}\n" in text
    assert firewall.accepted_ports(text) == {22, 80, 443, 8100}


def test_the_ports_of_every_site_on_the_host_stay_open(tmp_path):
    cfg = config(tmp_path, extra=FRONT)
    (tmp_path / "shop.cfg").write_text(  # another site on the same host, with its own front and a port
        "[host]\naddress = vps.example.org\nuser = deploy\nroot = /srv/shop\nfirewall_ports = 8400\n"
        "[buildout]\ndirectory = .\n[services]\nprograms = instance1\n"
        "[program:instance1]\nhealth_url = http://127.0.0.1:8091/\n"
        "[front]\ndomains = shop.example.org\nhttp_port = 8080\nhttps_port = 8443\n")
    (tmp_path / "elsewhere.cfg").write_text(  # a site on another host: not this firewall's business
        "[host]\naddress = other.example.org\nroot = /srv/x\nfirewall_ports = 9999\n[buildout]\ndirectory = .\n")
    assert firewall.open_ports(cfg, fresh_host()) == [22, 80, 443, 8080, 8400, 8443]


def test_every_port_sshd_listens_on_and_the_configs_port_stay_open(tmp_path):
    facts = fresh_host()
    facts["sshd"]["ports"] = [22, 2222]
    cfg = config(tmp_path, host="port = 2200\n")
    assert firewall.ssh_ports(cfg, facts) == [22, 2200, 2222]
    assert firewall.open_ports(cfg, facts) == [22, 2200, 2222]


def test_a_ruleset_that_would_shut_ssh_out_is_refused_before_anything_is_sent(tmp_path):
    cfg = config(tmp_path)
    with pytest.raises(Exit) as stopped:
        firewall.refuse_lockout(cfg, firewall.ruleset([80, 443]), [22])
    assert "would shut SSH out (port 22); nothing was loaded" in stopped.value.message
    firewall.refuse_lockout(cfg, firewall.ruleset([22, 80]), [22])


def test_the_firewall_is_loaded_through_the_guard_then_checked_with_a_new_login_and_undone_if_it_fails(tmp_path):
    plan = bootstrap.make_plan(config(tmp_path, extra=FRONT), fresh_host(), KEY)
    change = next(c for c in plan.changes if c.what.startswith("turn on the firewall"))
    assert change.what == ("turn on the firewall: TCP 22, 80, 443 in, everything else dropped "
                           "(nftables table inet bootstrap_host)")
    assert change.needs_key_login and "nft delete table inet bootstrap_host" in change.undo
    assert "/etc/nftables.d/bootstrap-host.nft.candidate" in change.command and "SSH_CONNECTION" in change.command
    unit = next(c for c in plan.changes if c.what == f"load the firewall at boot ({firewall.UNIT})")
    assert "ExecStart=/usr/sbin/nft -f /etc/nftables.d/bootstrap-host.nft" in unit.command
    assert "systemctl enable --quiet bootstrap-host-firewall.service" in unit.command


def test_a_loaded_firewall_is_a_check_and_a_changed_port_loads_it_again(tmp_path):
    cfg = config(tmp_path, host="firewall = true\n")
    facts = bootstrapped_host(cfg)
    assert not any("firewall" in c.what for c in bootstrap.make_plan(cfg, facts, KEY).changes)
    facts["sshd"]["ports"] = [22, 2222]
    whats = [c.what for c in bootstrap.make_plan(cfg, facts, KEY).changes if "firewall" in c.what]
    assert whats == ["turn on the firewall: TCP 22, 2222 in, everything else dropped (nftables table inet "
                     "bootstrap_host)"]


def test_without_systemd_the_firewall_says_nothing_loads_it_at_boot(tmp_path):
    plan = bootstrap.make_plan(config(tmp_path), fresh_host(systemd=False), KEY)
    assert any(line.startswith("no systemd: nothing loads /etc/nftables.d/bootstrap-host.nft") for line in plan.checked)


def run_guard(tmp_path: Path, text: str, session_port: str, listed: str = "22"):
    """onhost/firewall.py with a stand-in ``nft`` that records its calls."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "nft").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/nft-calls\n")
    (stub / "nft").chmod(0o755)
    candidate, target = tmp_path / "rules.candidate", tmp_path / "rules.nft"
    candidate.write_text(text)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}",
           "SSH_CONNECTION": f"10.0.0.1 50000 10.0.0.2 {session_port}"}
    result = subprocess.run([sys.executable, "-c", onhost.source("firewall"), str(candidate), str(target), listed],
                            capture_output=True, text=True, env=env)
    calls = (tmp_path / "nft-calls").read_text().splitlines() if (tmp_path / "nft-calls").exists() else []
    return result, calls, target


def test_the_guard_on_the_host_never_loads_rules_that_miss_its_own_ssh_session_port(tmp_path):
    result, calls, target = run_guard(tmp_path, firewall.ruleset([22, 80]), session_port="2222")
    assert result.returncode == 3 and "would shut SSH out (port 2222)" in result.stderr
    assert calls == [] and not target.exists() and not (tmp_path / "rules.candidate").exists()


def test_the_guard_checks_with_nft_then_loads_and_keeps_the_file(tmp_path):
    result, calls, target = run_guard(tmp_path, firewall.ruleset([22, 80]), session_port="22")
    assert result.returncode == 0, result.stderr
    assert [call.split()[0] for call in calls] == ["-c", "-f"] and target.exists()


# --- the venv ---------------------------------------------------------------------------

def tools_for(tmp_path: Path) -> bootstrap.VenvTools:
    tools = venv.pinned_tools({"zc.buildout": "6.0.1", "setuptools": "84.2.1", "pip": "26.3", "wheel": "0.48.0",
                               "ZODB": "6.0"})
    files = []
    for name in ("zc_buildout-6.0.1-py3-none-any.whl", "pip-26.3-py3-none-any.whl"):
        (tmp_path / name).write_bytes(name.encode())
        files.append(tmp_path / name)
    return bootstrap.VenvTools(tools, tuple(dists.describe(files)))


def test_the_tools_take_along_the_pinned_distributions_they_need_on_the_hosts_python(tmp_path):
    import zipfile
    from fabfile.build.platforms import Target
    wheel = tmp_path / "wheel-0.48.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("wheel-0.48.0.dist-info/METADATA", "Name: wheel\nVersion: 0.48.0\n"
                         "Requires-Dist: packaging>=24.0\nRequires-Dist: tomli; python_version < '3.11'\n"
                         "Requires-Dist: pytest; extra == 'test'\n")
    assert dists.dependencies(wheel, Target("3.11.2", "x86_64", "2.36")) == ["packaging"]
    assert dists.dependencies(wheel, Target("3.10.12", "x86_64", "2.35")) == ["packaging", "tomli"]


def test_the_venv_holds_the_pinned_tools_and_supervisor():
    tools = venv.pinned_tools({"zc.buildout": "6.0.1", "setuptools": "84.2.1", "ZODB": "6.0"})
    assert tools == {"zc.buildout": "6.0.1", "setuptools": "84.2.1", "supervisor": dists.SUPERVISOR_PIN[1]}
    assert venv.unpinned(tools) == ["pip", "wheel"]
    assert venv.requirements({"b": "2", "a": "1"}) == "a==1\nb==2\n"


def test_bootstrap_sends_the_tools_the_host_lacks_and_makes_the_venv_as_the_deploy_user(tmp_path):
    cfg, wanted = config(tmp_path), tools_for(tmp_path)
    facts = fresh_host()
    pip = next(d for d in wanted.files if d.name.startswith("pip"))
    facts["files"]["/srv/site/dists/SHA256SUMS"] = f"{pip.sha256}  {pip.name}\n"
    plan = bootstrap.make_plan(cfg, facts, KEY, wanted)
    change = next(c for c in plan.changes if c.what.startswith("make /srv/site/venv"))
    assert change.what == ("make /srv/site/venv with pip==26.3 setuptools==84.2.1 supervisor==4.3.0 wheel==0.48.0 "
                           "zc.buildout==6.0.1")
    assert [remote for _, remote in change.uploads] == [
        "/srv/site/dists/.incoming/zc_buildout-6.0.1-py3-none-any.whl"]
    assert "sha256sum --quiet --check --strict" in change.command
    assert "cd / && runuser -u deploy -- env HOME=/home/deploy sh -c" in change.command
    assert "/srv/site/venv/.requirements" in change.command
    whats = [c.what for c in plan.changes]
    assert whats.index(change.what) > whats.index("make /srv/site/dists deploy:deploy 0750")


def test_a_venv_made_with_the_same_pins_is_a_check(tmp_path):
    cfg, wanted = config(tmp_path), tools_for(tmp_path)
    facts = fresh_host()
    facts["files"]["/srv/site/venv/.requirements"] = venv.requirements(wanted.tools)
    plan = bootstrap.make_plan(cfg, facts, KEY, wanted)
    assert not any(c.what.startswith("make /srv/site/venv") for c in plan.changes)
    assert any(line.startswith("/srv/site/venv has pip==26.3") for line in plan.checked)
