#!/usr/bin/env bash
# Make sure Graphviz's dot is here: the docs draw their pictures with it (sphinx.ext.graphviz).
# As root, install it with apt; otherwise name the package to install and fail.
set -euo pipefail

command -v dot >/dev/null && exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "ensure-dot: installing graphviz with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    install=(apt-get install -y -q --no-install-recommends graphviz)
    # An image may ship without package lists: update only when the install needs it.
    "${install[@]}" || { apt-get update -q && "${install[@]}"; }
    command -v dot >/dev/null && exit 0
fi

echo "ensure-dot: dot not found: install graphviz (apt-get install graphviz)" >&2
exit 1
