#!/usr/bin/env bash
# Make sure OpenSSH's server and the front (HAProxy, openssl) are here: the sandbox host,
# the demo and the tests need them.
# As root, install it with apt; otherwise name the package to install and fail.
set -euo pipefail

have_openssh() {
    command -v ssh-keygen >/dev/null || return 1
    if [[ -n "${SANDBOX_SSHD+set}" ]]; then  # the same override sandbox/sshd.py honours
        [[ -x "$SANDBOX_SSHD" ]]
    else
        command -v sshd >/dev/null || [[ -x /usr/sbin/sshd ]]
    fi
}

# The sandbox's front: HAProxy (in /usr/sbin) and openssl for its certificate (tls = internal).
have_front() {
    command -v openssl >/dev/null && { command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]]; }
}

have_openssh && have_front && exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "ensure-sshd: installing openssh-server, haproxy and openssl with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    install=(apt-get install -y -q --no-install-recommends openssh-server openssh-client haproxy openssl)
    # An image may ship without package lists: update only when the install needs it.
    "${install[@]}" || { apt-get update -q && "${install[@]}"; }
    have_openssh && have_front && exit 0
fi

have_openssh || echo "ensure-sshd: sshd not found: install openssh-server (apt-get install openssh-server)" >&2
have_front || echo "ensure-sshd: haproxy or openssl not found: apt-get install haproxy openssl" >&2
exit 1
