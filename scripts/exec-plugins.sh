#!/usr/bin/env bash
# Attach a container to every network of NETCONFPATH, or detach it.
#
#   exec-plugins.sh add|del <containerID> <netns path>
#
# Networks are taken in file-name order and get eth0, eth1, ... in that order.
# A failed add detaches the networks already attached; del goes on past
# failures and reports them at the end. With no configuration in NETCONFPATH
# the built-in "mynet" (bridge cni0, gateway, masquerade, host-local
# 10.22.0.0/16, default route) is used.
#
# Environment: NETCONFPATH (default /etc/cni/net.d), CNI_PATH (default: this
# repository's bin/), CNITOOL (default: bin/cnitool, else cnitool from source),
# CNI_ARGS, CAP_ARGS, CNI_CACHE_DIR as cnitool reads them; DEBUG=1 traces and
# prints each result on stderr.
set -euo pipefail
if [ "${DEBUG:-0}" -gt 0 ]; then set -x; fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")

usage() {
    echo "usage: $(basename "$0") add|del <containerID> <netns path>" >&2
    exit 1
}
[ $# -eq 3 ] || usage
case "$1" in add|del) ;; *) usage ;; esac
command=$1 contid=$2 netns=$3

export NETCONFPATH="${NETCONFPATH:-/etc/cni/net.d}"
export CNI_PATH="${CNI_PATH:-$root/bin}"
export CNI_CONTAINERID="$contid"
unset CNI_IFNAME

cnitool() {
    if [ -n "${CNITOOL:-}" ]; then
        $CNITOOL "$@"
    elif [ -x "$root/bin/cnitool" ]; then
        "$root/bin/cnitool" "$@"
    else
        PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" -m plugins cnitool "$@"
    fi
}

networks=()
listed=$(cnitool list)
if [ -n "$listed" ]; then
    mapfile -t networks <<<"$listed"
else
    default_dir=$(mktemp -d)
    trap 'rm -rf "$default_dir"' EXIT
    cat >"$default_dir/10-mynet.conflist" <<'CONF'
{
    "cniVersion": "1.0.0",
    "name": "mynet",
    "plugins": [
        {
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": true,
            "ipam": {
                "type": "host-local",
                "subnet": "10.22.0.0/16",
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }
    ]
}
CONF
    export NETCONFPATH="$default_dir"
    networks=(mynet)
fi

show() {
    if [ "${DEBUG:-0}" -gt 0 ]; then cat >&2; else cat >/dev/null; fi
}

if [ "$command" = add ]; then
    for i in "${!networks[@]}"; do
        if ! cnitool -i "eth$i" add "${networks[$i]}" "$netns" | show; then
            echo "$(basename "$0"): attaching network ${networks[$i]} failed; detaching the others" >&2
            for ((j = i - 1; j >= 0; j--)); do
                cnitool -i "eth$j" del "${networks[$j]}" "$netns" || true
            done
            exit 1
        fi
    done
else
    failed=0
    for ((i = ${#networks[@]} - 1; i >= 0; i--)); do
        cnitool -i "eth$i" del "${networks[$i]}" "$netns" || failed=1
    done
    exit $failed
fi
