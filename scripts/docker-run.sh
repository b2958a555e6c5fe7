#!/usr/bin/env bash
# Run a container attached to the networks of NETCONFPATH (or the built-in
# "mynet") by our plugins instead of the engine's networking.
#
#   docker-run.sh <docker run arguments>
#
# An infrastructure container is started with --net=none and attached with
# exec-plugins.sh; the container of the arguments joins its network
# namespace (--net=container:...). On exit, failure or Ctrl-C the networks
# are detached and the infrastructure container removed.
#
# Environment: DOCKER (default docker; podman works: DOCKER=podman, extra
# options allowed, e.g. DOCKER="podman --root /tmp/x"), INFRA_ARGS (image or
# options of the infrastructure container, default busybox:latest),
# INFRA_CMD (its command, default "sleep 1000000000"); the rest as
# exec-plugins.sh.
set -euo pipefail
if [ "${DEBUG:-0}" -gt 0 ]; then set -x; fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -eq 0 ]; then
    echo "usage: $(basename "$0") <docker run arguments>" >&2
    exit 1
fi
DOCKER="${DOCKER:-docker}"
INFRA_ARGS="${INFRA_ARGS:-busybox:latest}"
INFRA_CMD="${INFRA_CMD:-sleep 1000000000}"

# shellcheck disable=SC2086 # DOCKER, INFRA_ARGS and INFRA_CMD are word lists
contid=$($DOCKER run -d --net=none $INFRA_ARGS $INFRA_CMD)
attached=""

cleanup() {
    trap '' INT TERM HUP
    if [ -n "$attached" ]; then
        "$here/exec-plugins.sh" del "$contid" "$netns" || echo "$(basename "$0"): teardown was incomplete" >&2
    fi
    # kill first: "rm -f" of a shell-less sleep would wait for a stop timeout
    $DOCKER kill "$contid" >/dev/null 2>&1 || true
    $DOCKER rm -f "$contid" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

pid=$($DOCKER inspect -f '{{ .State.Pid }}' "$contid")
netns="/proc/$pid/ns/net"
attached=1
"$here/exec-plugins.sh" add "$contid" "$netns"
set +e
$DOCKER run --net="container:$contid" "$@"
status=$?
exit $status
