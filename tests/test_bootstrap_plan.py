"""Unit tests: what bootstrap-host would change, from the facts of a host; the units and the sudo rule."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from invoke import Exit

from fabfile.host import bootstrap, firewall, logrotate, ssh, units, upgrades
from fabfile.build import datadirs
from fabfile.programs import supervisor, systemd
from fabfile.config.hostconfig import load

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests deployer@laptop"


def config(tmp_path: Path, host: str = "", services: str = "manager = systemd"):
    path = tmp_path / "test.cfg"
    path.write_text(f"[host]\naddress = vps.example.org\nuser = deploy\napp_user = plone\nroot = /srv/site\n{host}"
                    f"[buildout]\ndirectory = .\n[services]\n{services}\nprograms = zeoserver instance1\n"
                    "[program:instance1]\ncommand = bin/instance1 console\n")
    return load(path, environ={})


def fresh_host(**changes) -> dict:
    """The facts of a VPS just handed over: Debian 12, systemd, nothing of ours."""
    facts = {
        "os": {"id": "debian", "version": "12", "name": "Debian GNU/Linux 12 (bookworm)"},
        "apt": True, "systemd": True, "python": "3.11.2", "machine": "x86_64", "glibc": "2.36",
        "users": {"deploy": None, "plone": None},
        "packages": {name: name in ("python3", "sudo")
                     for name in (*bootstrap.SYSTEM_PACKAGES, "nftables", "unattended-upgrades")},
        "files": {}, "paths": {},
        "root_space": {"path": "/srv", "free": 10 * 2**30, "writable": True},
        "apt_space": {"path": "/var/cache/apt/archives", "free": 10 * 2**30, "writable": True},
        "sshd": {"binary": "/usr/sbin/sshd", "valid": True, "error": "", "includes_d": True,
                 "passwordauthentication": "yes", "kbdinteractiveauthentication": "no",
                 "permitrootlogin": "yes", "pidfile": "/run/sshd.pid", "ports": [22]},
        "memory": {"total": 8 * 2**30, "swap": 0, "swaps": []},
        "swap_space": {"path": "/", "free": 10 * 2**30, "writable": True},
        "nft": None,
    }
    facts.update(changes)
    return facts


def bootstrapped_host(cfg) -> dict:
    """The facts of the same host after bootstrap-host ran."""
    facts = fresh_host()
    facts["packages"] = {name: True for name in facts["packages"]}
    facts["users"] = {"deploy": {"home": "/home/deploy", "uid": 1000, "group": "deploy", "groups": ["systemd-journal"],
                                 "locked": False},
                      "plone": {"home": "/home/plone", "uid": 1001, "group": "plone", "groups": ["deploy"],
                                "locked": False}}
    facts["files"] = {"/home/deploy/.ssh/authorized_keys": KEY + "\n",
                      "/srv/site/host.json": bootstrap.host_record(cfg, facts),
                      logrotate.rule_path(cfg): logrotate.render_rule(cfg),
                      systemd.sudoers_path(cfg): systemd.render_sudoers(cfg, systemd.unit_names(cfg)),
                      units.data_sudoers_path(cfg): datadirs.sudoers(cfg),
                      upgrades.CONFIG_PATH: upgrades.CONFIG_TEXT,
                      firewall.RULES_PATH: firewall.ruleset(firewall.open_ports(cfg, facts)),
                      f"/etc/systemd/system/{firewall.UNIT}": firewall.unit_text(),
                      **{f"/etc/systemd/system/{name}": text
                         for name, text in systemd.render_units(cfg, "plone").items()}}
    facts["nft"] = f"table inet bootstrap_host {{\n\t{firewall.marker_line(facts['files'][firewall.RULES_PATH])}\n}}"
    facts["paths"] = {d.path: {"owner": d.owner, "group": d.group, "mode": d.mode, "kind": "dir"}
                      for d in bootstrap.layout(cfg)}
    facts["paths"].update({f"/etc/systemd/system/multi-user.target.wants/{unit}": {"kind": "link"}
                           for unit in systemd.unit_names(cfg)})
    facts["paths"][firewall.UNIT_LINK] = {"kind": "link"}
    return facts


def test_a_fresh_host_gets_packages_users_key_layout_record_units_and_sudo_rule(tmp_path):
    plan = bootstrap.make_plan(config(tmp_path), fresh_host(), KEY)
    whats = [change.what for change in plan.changes]
    assert whats[0] == "install python3-venv python3-dev build-essential rsync nftables unattended-upgrades"
    assert "create user deploy" in whats and "create user plone" in whats and "add plone to group deploy" in whats
    assert "make /srv/site/var plone:plone 0700" in whats
    assert "make /srv/site/releases deploy:deploy 0750" in whats
    assert "write unit srv-site-instance1.service" in whats
    assert "let deploy start, stop and restart the units (/etc/sudoers.d/srv-site)" in whats


def test_a_bootstrapped_host_needs_no_change(tmp_path):
    cfg = config(tmp_path)
    plan = bootstrap.make_plan(cfg, bootstrapped_host(cfg), KEY)
    assert plan.changes == []
    assert "/srv/site/var plone:plone 0700" in plan.checked


def test_a_data_directory_with_the_wrong_mode_is_put_right(tmp_path):
    cfg = config(tmp_path)
    facts = bootstrapped_host(cfg)
    facts["paths"]["/srv/site/var"]["mode"] = "0755"
    plan = bootstrap.make_plan(cfg, facts, KEY)
    assert [c.command for c in plan.changes] == [
        "mkdir -p /srv/site/var && chown plone:plone /srv/site/var && chmod 0700 /srv/site/var"]


@pytest.mark.parametrize("facts, message", [
    (fresh_host(apt=False), "has no apt-get"),
    (fresh_host(systemd=False), "systemd does not run"),
    (fresh_host(root_space={"path": "/", "free": 2**40, "writable": False}), "is not writable"),
    (fresh_host(apt_space={"path": "/var", "free": 2**20, "writable": True}), "only 1 MiB free"),
    (fresh_host(users={"deploy": {"home": "/var/lib/deploy", "uid": 5, "group": "deploy", "groups": [],
                                  "locked": True}, "plone": None}), "exists with another home"),
])
def test_a_host_that_cannot_take_the_site_stops_before_any_change(tmp_path, facts, message):
    with pytest.raises(Exit) as stopped:
        bootstrap.make_plan(config(tmp_path), facts, KEY)
    assert message in str(stopped.value.message)


def test_the_unit_runs_the_program_from_current_as_the_app_user(tmp_path):
    unit = systemd.render_units(config(tmp_path), "plone")["srv-site-instance1.service"]
    assert "ExecStart=/srv/site/current/bin/instance1 console" in unit
    assert "User=plone" in unit and "After=network.target srv-site-zeoserver.service" in unit
    assert "ConditionPathExists=/srv/site/current" in unit and "Restart=on-failure" in unit


def test_dollar_and_percent_in_the_root_are_escaped_for_systemd(tmp_path):
    special = replace(config(tmp_path), root="/srv/50%$off")
    unit = systemd.render_unit(special, special.programs[0], None, "plone")
    assert "WorkingDirectory=/srv/50%%$$off/current" in unit
    assert systemd.unit_name(special, "zeoserver") == "srv-50__off-zeoserver.service"


@pytest.mark.parametrize("function, args, expected", [
    (systemd.start, (["zeoserver", "instance1"],),
     "sudo -n /usr/bin/systemctl start srv-site-zeoserver.service && "
     "sudo -n /usr/bin/systemctl start srv-site-instance1.service"),
    (systemd.stop, (["instance1"], True), "sudo -n /usr/bin/systemctl stop srv-site-instance1.service"),
    (systemd.restart, ("instance1",), "sudo -n /usr/bin/systemctl restart srv-site-instance1.service"),
    (systemd.start, ([],), "true"),
])
def test_systemd_commands_go_through_the_sudo_rule(tmp_path, function, args, expected):
    assert function(config(tmp_path), *args) == expected


def test_the_sudo_rule_names_exactly_the_sites_units(tmp_path):
    cfg = config(tmp_path)
    rule = systemd.render_sudoers(cfg, systemd.unit_names(cfg))
    assert rule.splitlines()[1] == (
        "deploy ALL=(root) NOPASSWD: /usr/bin/systemctl start srv-site-zeoserver.service, "
        "/usr/bin/systemctl stop srv-site-zeoserver.service, /usr/bin/systemctl restart srv-site-zeoserver.service, "
        "/usr/bin/systemctl start srv-site-instance1.service, /usr/bin/systemctl stop srv-site-instance1.service, "
        "/usr/bin/systemctl restart srv-site-instance1.service")


def test_host_json_has_the_platform_tags_the_release_step_needs(tmp_path):
    record = json.loads(bootstrap.host_record(config(tmp_path), fresh_host()))
    assert record["abi"] == "cp311" and record["platforms"][0] == "manylinux_2_36_x86_64"
    assert record["distribution"] == "debian" and record["manager"] == "systemd"


def test_supervisor_with_an_app_user_gets_a_sudo_rule_to_run_supervisor_as_that_user(tmp_path):
    cfg = config(tmp_path, services="manager = supervisor")
    plan = bootstrap.make_plan(cfg, fresh_host(systemd=False), KEY)
    rule = next(c for c in plan.changes if c.what.startswith("let deploy run supervisor as plone"))
    assert "deploy ALL=(plone) NOPASSWD: /srv/site/venv/bin/supervisord, /srv/site/venv/bin/supervisorctl" \
        in rule.command
    assert "visudo -q -c -f /etc/sudoers.d/srv-site-supervisor.check" in rule.command


def test_the_deploy_user_joins_the_journal_group_where_systemd_runs_the_units(tmp_path):
    whats = [c.what for c in bootstrap.make_plan(config(tmp_path), fresh_host(), KEY).changes]
    assert "add deploy to group systemd-journal (fab logs reads the journal)" in whats
    supervised = bootstrap.make_plan(config(tmp_path, services="manager = supervisor"), fresh_host(), KEY)
    assert not any("systemd-journal" in c.what for c in supervised.changes)


def test_supervisor_gets_var_run_and_var_log_owned_by_the_app_user(tmp_path):
    cfg = config(tmp_path, services="manager = supervisor")
    whats = [c.what for c in bootstrap.make_plan(cfg, fresh_host(systemd=False), KEY).changes]
    assert "make /srv/site/var/run plone:plone 0700" in whats and "make /srv/site/var/log plone:plone 0700" in whats


def test_harden_comes_last_after_the_key_check_with_a_drop_in_checked_by_sshd(tmp_path):
    plan = bootstrap.make_plan(config(tmp_path, host="harden = true\n"), fresh_host(), KEY)
    last = plan.changes[-1]
    assert last.needs_key_login and [c.what.split(":")[0] for c in plan.changes[:-1] if c.needs_key_login] == [
        "turn on the firewall"]
    assert last.what == f"turn off password and root logins in sshd ({ssh.HARDEN_DROPIN})"
    assert "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n" in last.command
    assert "/usr/sbin/sshd -t && test" in last.command and f"rm -f {ssh.HARDEN_DROPIN}" in last.command
    assert last.command.endswith("systemctl try-reload-or-restart ssh.service")


def test_harden_without_systemd_reloads_sshd_by_its_pid_file(tmp_path):
    plan = bootstrap.make_plan(config(tmp_path, host="harden = true\n", services="manager = supervisor"),
                               fresh_host(systemd=False), KEY)
    assert plan.changes[-1].command.endswith("""sh -c 'kill -HUP "$(cat "$1")"' sh /run/sshd.pid""")


def test_harden_without_an_include_puts_a_checked_block_first_in_sshd_config(tmp_path):
    facts = fresh_host()
    facts["sshd"]["includes_d"] = False
    command = bootstrap.make_plan(config(tmp_path, host="harden = true\n"), facts, KEY).changes[-1].command
    assert "/usr/sbin/sshd -t -f /etc/ssh/sshd_config.bootstrap-host" in command
    assert command.index("sshd -t -f") < command.index("mv -f /etc/ssh/sshd_config.bootstrap-host /etc/ssh/sshd_config")


def test_a_hardened_sshd_is_a_check_not_a_change(tmp_path):
    cfg = replace(config(tmp_path, host="harden = true\n"))
    facts = bootstrapped_host(cfg)
    facts["sshd"].update(passwordauthentication="no", permitrootlogin="no")
    plan = bootstrap.make_plan(cfg, facts, KEY)
    assert plan.changes == [] and "sshd refuses passwords and root's login" in plan.checked


def test_without_harden_sshd_is_left_alone(tmp_path):
    plan = bootstrap.make_plan(config(tmp_path), fresh_host(), KEY)
    assert not any("sshd" in c.what for c in plan.changes)


def test_supervisor_tails_a_log_as_the_app_user_the_sudo_rule_allows(tmp_path):
    cfg = config(tmp_path, services="manager = supervisor")
    assert supervisor.logs(cfg, "instance1", 20) == (
        "sudo -n -u plone /srv/site/venv/bin/supervisorctl -c /srv/site/current/etc/supervisord.conf "
        "tail -8000 instance1 | tail -n 20")


def test_an_app_user_gets_a_sudo_rule_to_make_directories_in_var_and_back_up_as_that_user(tmp_path):
    plan = bootstrap.make_plan(config(tmp_path), fresh_host(), KEY)
    rule = next(c for c in plan.changes if c.what.startswith("let deploy make directories in var/ and back up as plone"))
    assert "deploy ALL=(plone) NOPASSWD: /bin/mkdir -p -m 0700 -- /srv/site/var/*\n" in rule.command
    assert "deploy ALL=(plone) NOPASSWD: /bin/sh\n" in rule.command  # the backups' data commands
    assert "visudo -q -c -f /etc/sudoers.d/srv-site-data.check" in rule.command
    same = replace(config(tmp_path), app_user="deploy")
    assert not any("directories in var/" in c.what for c in bootstrap.make_plan(same, fresh_host(), KEY).changes)


def test_with_an_app_user_the_build_links_var_to_its_own_directory_and_makes_what_it_made_as_that_user(tmp_path):
    cfg = config(tmp_path)
    release = "/srv/site/releases/R"
    assert datadirs.link_for_build(cfg, release) == (
        "mkdir -p /srv/site/releases/R/.deploy/build-data/var /srv/site/releases/R && "
        "rm -rf /srv/site/releases/R/var && ln -s /srv/site/releases/R/.deploy/build-data/var /srv/site/releases/R/var")
    assert datadirs.make_as_app_user(cfg, release) == (
        "find /srv/site/releases/R/.deploy/build-data -mindepth 1 '!' -type d -printf '%P\\n' && "
        "find /srv/site/releases/R/.deploy/build-data/var -type d -printf '/srv/site/var/%P\\0' | "
        "xargs -0 -r sudo -n -u plone /bin/mkdir -p -m 0700 -- && "
        "ln -sfn /srv/site/var /srv/site/releases/R/var && rm -rf /srv/site/releases/R/.deploy/build-data")
    same = replace(cfg, app_user="deploy")
    assert datadirs.link_for_build(same, release) == (
        "mkdir -p /srv/site/var /srv/site/releases/R && rm -rf /srv/site/releases/R/var && "
        "ln -s /srv/site/var /srv/site/releases/R/var")
    assert datadirs.make_as_app_user(same, release) is None


def test_a_fleets_front_host_under_systemd_gets_no_units_and_no_empty_sudo_rule(tmp_path):
    from dataclasses import replace
    front_host = replace(config(tmp_path), programs=())  # a fleet's front host: no program of the site
    plan = bootstrap.make_plan(front_host, fresh_host(), KEY)
    written = [change.what for change in plan.changes]
    assert not [w for w in written if w.startswith("write unit srv-site-") or "start, stop and restart" in w], written
    assert any("no units" in line for line in plan.checked)
