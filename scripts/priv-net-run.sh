#!/usr/bin/env bash
# Run a command in a fresh network namespace joined to the networks of
# NETCONFPATH (or the built-in "mynet"); everything is torn down on exit,
# on failure and on Ctrl-C.
#
#   priv-net-run.sh <command> [args...]
#
# Environment: as exec-plugins.sh.
set -euo pipefail
if [ "${DEBUG:-0}" -gt 0 ]; then set -x; fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -eq 0 ]; then
    echo "usage: $(basename "$0") <command> [args...]" >&2
    exit 1
fi

contid=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
name="cni-$contid"
netns="/var/run/netns/$name"

cleanup() {
    trap '' INT TERM HUP
    "$here/exec-plugins.sh" del "$contid" "$netns" || echo "$(basename "$0"): teardown of $name was incomplete" >&2
    ip netns delete "$name" 2>/dev/null || true
}

ip netns add "$name"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
ip netns exec "$name" ip link set lo up
"$here/exec-plugins.sh" add "$contid" "$netns"
set +e
ip netns exec "$name" "$@"
status=$?
exit $status
