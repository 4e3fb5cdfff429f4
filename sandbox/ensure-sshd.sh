#!/usr/bin/env bash
# Make sure OpenSSH's server is here: the sandbox host, the demo and the tests need it.
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

have_openssh && exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "ensure-sshd: installing openssh-server with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    install=(apt-get install -y -q --no-install-recommends openssh-server openssh-client)
    # An image may ship without package lists: update only when the install needs it.
    "${install[@]}" || { apt-get update -q && "${install[@]}"; }
    have_openssh && exit 0
fi

echo "ensure-sshd: sshd not found: install openssh-server (apt-get install openssh-server)" >&2
exit 1
