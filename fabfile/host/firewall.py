"""The host's firewall (``[host] firewall``): nftables, a table of its own, SSH and the front in.

bootstrap-host loads one table, ``inet bootstrap_host``, whose input chain drops what
it does not accept: loopback, replies to connections the host made, ICMP (IPv6 needs
it), and TCP to SSH (the config's ``port`` and every port sshd listens on), the
front's ``http_port`` and ``https_port`` and ``[host] firewall_ports``. Other tables
(Docker's, fail2ban's, the admin's) stay as they are. The file
``/etc/nftables.d/bootstrap-host.nft`` replaces the table in one transaction, and a
unit of its own loads it at boot, before the network comes up, as Debian's
``nftables.service`` loads ``/etc/nftables.conf``.

A ruleset that would shut SSH out is never loaded: this side checks that it accepts
every SSH port before sending it; on the host ``onhost/firewall.py`` checks it again
with the port of its own SSH session, then ``nft -c``, and only then loads it. Then a
new SSH connection as ``user`` with the deploy key must get in, or the table is taken
out again over the root connection, which stays open (established traffic passes).
"""
from __future__ import annotations

import hashlib
import re

from invoke import Exit

from .. import commands, onhost
from ..programs import systemd
from ..config.hostconfig import HostConfig
from ..sites.hostsites import neighbours
from .plan import Change, Plan

PACKAGE = "nftables"
TABLE = "bootstrap_host"
RULES_PATH = "/etc/nftables.d/bootstrap-host.nft"
UNIT = "bootstrap-host-firewall.service"
UNIT_LINK = f"{systemd.UNIT_DIR}/sysinit.target.wants/{UNIT}"
NFT = "/usr/sbin/nft"


def ssh_ports(config: HostConfig, facts: dict) -> list[int]:
    """The SSH ports to keep open: the one the config connects to, and every one sshd listens on."""
    listening = (facts.get("sshd") or {}).get("ports") or []
    return sorted({config.port, *map(int, listening)})


def open_ports(config: HostConfig, facts: dict) -> list[int]:
    """Every TCP port the firewall lets in: SSH, and the front's (where it runs: not on a fleet's app host)
    and ``firewall_ports`` of every site that ``hostconfigs/`` puts on this host (the table is the host's: a
    second site's bootstrap keeps the first's)."""
    ports = set(ssh_ports(config, facts))
    for site in neighbours(config):
        front = (site.front.http_port, site.front.https_port) if site.runs_front else ()
        ports |= {*front, *site.firewall_ports}
    return sorted(ports)


def ruleset(ports: list[int], only_from: tuple[tuple[int, tuple[str, ...]], ...] = ()) -> str:
    """The nftables file: the table replaced in one transaction, marked with a digest of its rules;
    ``only_from``: ports that only some addresses may reach (a fleet's ZEO port: its app hosts)."""
    limited = []
    for port, sources in only_from:
        for family, addresses in (("ip", [a for a in sources if ":" not in a]), ("ip6", [a for a in sources if ":" in a])):
            if addresses:
                limited.append(f"\t\t{family} saddr {{ {', '.join(addresses)} }} tcp dport {port} accept")
    rules = "\n".join([
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy drop;",
        '\t\tiif "lo" accept',
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        "\t\tmeta l4proto { icmp, ipv6-icmp } accept",
        f"\t\ttcp dport {{ {', '.join(map(str, ports))} }} accept",
        *limited,
        "\t}",
    ])
    among = "".join(f"; TCP {port} from {' '.join(sources)}" for port, sources in only_from)
    return "\n".join([
        f"#!{NFT} -f",
        "# Written by bootstrap-host ([host] firewall); run it again rather than editing this file.",
        f"# In: loopback, established, ICMP, TCP {', '.join(map(str, ports))}{among}; everything else is dropped.",
        f"table inet {TABLE}", f"delete table inet {TABLE}",
        f"table inet {TABLE} {{", f'\tcomment "{marker(rules)}"', rules, "}", "",
    ])


def marker(rules: str) -> str:
    """The table's comment, which ``nft list`` shows: tells whether the loaded rules are these."""
    return f"bootstrap-host {hashlib.sha256(rules.encode()).hexdigest()[:16]}"


def marker_line(text: str) -> str:
    """The comment line of a ruleset of ours, as ``nft list table`` prints it back."""
    return re.search(r'comment "[^"]+"', text).group(0)


def accepted_ports(text: str) -> set[int]:
    """The TCP ports a ruleset of ours accepts (its ``tcp dport ... accept`` lines)."""
    ports: set[int] = set()
    for found in re.finditer(r"^\t\ttcp dport (?:\{([\d,\s]+)\}|(\d+)) accept", text, re.M):
        ports.update(int(port) for port in re.split(r"[,\s]+", (found.group(1) or found.group(2)).strip()))
    return ports


def refuse_lockout(config: HostConfig, text: str, ports: list[int]) -> None:
    """Stop before anything is sent when the ruleset does not accept every SSH port."""
    shut_out = sorted(set(ports) - accepted_ports(text))
    if shut_out:
        raise Exit(f"{config.address}: the firewall's rules would shut SSH out (port "
                   f"{', '.join(map(str, shut_out))}); nothing was loaded", 1)


def unit_text() -> str:
    return "\n".join([
        "# Written by bootstrap-host ([host] firewall); run it again rather than editing this file.",
        "[Unit]", f"Description=the firewall of bootstrap-host (nftables table inet {TABLE})",
        "Wants=network-pre.target", "Before=network-pre.target shutdown.target",
        "After=nftables.service",  # Debian's flushes the whole ruleset when it loads /etc/nftables.conf
        "Conflicts=shutdown.target", "DefaultDependencies=no", f"ConditionPathExists={RULES_PATH}", "",
        "[Service]", "Type=oneshot", "RemainAfterExit=yes", f"ExecStart={NFT} -f {RULES_PATH}",
        f"ExecStop={NFT} delete table inet {TABLE}", "",
        "[Install]", "WantedBy=sysinit.target", ""])


def load(text: str, ports: list[int]) -> str:
    """Write the rules aside, and let ``onhost/firewall.py`` check and load them (or refuse)."""
    candidate = RULES_PATH + ".candidate"
    return commands.and_then(
        commands.make_directories("/etc/nftables.d"), commands.write_file(candidate, text),
        commands.python("python3", onhost.source("firewall"), candidate, RULES_PATH,
                        ",".join(map(str, ports))))


def unload() -> str:
    """Take the table out and its file away: the host is as open as before bootstrap-host."""
    return commands.and_then(commands.join("rm", "-f", RULES_PATH),
                             f"{{ {commands.join(NFT, 'delete', 'table', 'inet', TABLE)} || true; }}")


def plan_firewall(config: HostConfig, facts: dict, plan: Plan) -> None:
    """With ``firewall``: the table loaded and written as wanted, and loaded at boot where systemd runs."""
    if not config.firewall:
        return
    ssh, ports = ssh_ports(config, facts), open_ports(config, facts)
    text = ruleset(ports, config.firewall_from)
    refuse_lockout(config, text, ssh)
    loaded = marker_line(text) in (facts.get("nft") or "")
    among = "".join(f", TCP {port} from {' '.join(sources)}" for port, sources in config.firewall_from)
    what = (f"firewall: TCP {', '.join(map(str, ports))} in{among}, everything else dropped (nftables table "
            f"inet {TABLE})")
    if loaded and facts["files"].get(RULES_PATH) == text:
        plan.checked.append(what)
    else:
        plan.changes.append(Change(f"turn on the {what}", load(text, ssh), needs_key_login=True, undo=unload()))
    if not facts["systemd"]:
        plan.checked.append(f"no systemd: nothing loads {RULES_PATH} at boot (run bootstrap-host after a reboot)")
        return
    written = facts["files"].get(f"{systemd.UNIT_DIR}/{UNIT}") == unit_text()
    enabled = facts["paths"].get(UNIT_LINK) is not None
    plan.check(written and enabled, f"{UNIT} loads the firewall at boot",
               f"load the firewall at boot ({UNIT})", commands.write_file(f"{systemd.UNIT_DIR}/{UNIT}", unit_text()),
               commands.join("systemctl", "daemon-reload"), commands.join("systemctl", "enable", "--quiet", UNIT))


def fact_spec(config: HostConfig) -> dict:
    """What bootstrap-host reads for the firewall."""
    if not config.firewall:
        return {"files": [], "paths": []}
    return {"files": [RULES_PATH, f"{systemd.UNIT_DIR}/{UNIT}"], "paths": [UNIT_LINK], "nft_table": f"inet {TABLE}"}
