"""Load bootstrap-host's nftables ruleset, but never one that would shut SSH out.

Usage: python3 -c SOURCE CANDIDATE TARGET SSH_PORTS, run as root. SSH_PORTS is a
comma list; the port of this very SSH session (``SSH_CONNECTION``) is added to it.
The candidate must accept every one of them (its ``tcp dport { ... } accept``
lines), and ``nft -c`` must take it; only then is it loaded (``nft -f``, one
transaction) and moved to TARGET, where the boot loads it. Otherwise it is removed,
nothing is loaded, and the exit code says why: 3 SSH would be shut out, 4 nft
refuses the file, 5 loading failed.
"""
import os
import re
import subprocess
import sys

candidate, target, listed = sys.argv[1], sys.argv[2], sys.argv[3]
ssh_ports = {int(port) for port in listed.split(",") if port}
session = os.environ.get("SSH_CONNECTION", "").split()
if len(session) == 4 and session[3].isdigit():
    ssh_ports.add(int(session[3]))


def accepted(text):
    """The TCP ports the ruleset's input chain accepts."""
    ports = set()
    for found in re.finditer(r"^\t\ttcp dport (?:\{([\d,\s]+)\}|(\d+)) accept", text, re.M):
        ports.update(int(port) for port in re.split(r"[,\s]+", (found.group(1) or found.group(2)).strip()))
    return ports


def refuse(code, message):
    os.remove(candidate)
    sys.stderr.write(message + "\n")
    sys.exit(code)


with open(candidate) as handle:
    text = handle.read()
shut_out = sorted(ssh_ports - accepted(text))
if shut_out:
    refuse(3, "not loaded: the ruleset would shut SSH out (port %s); nothing was changed"
           % ", ".join(map(str, shut_out)))
check = subprocess.run(["nft", "-c", "-f", candidate], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
if check.returncode:
    refuse(4, "not loaded: nft -c refuses the ruleset:\n" + check.stdout)
load = subprocess.run(["nft", "-f", candidate], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                      universal_newlines=True)
if load.returncode:
    refuse(5, "loading the ruleset failed:\n" + load.stdout)
os.chmod(candidate, 0o644)
os.replace(candidate, target)
print("loaded; SSH open on port %s" % ", ".join(map(str, sorted(ssh_ports))))
