#!/usr/bin/env bash
# Benchmarks: our frozen bin/ against Debian's Go plugins (/usr/lib/cni), exec'd alternately.
#   bench/run.sh [ROUNDS] [-- extra args for bench/plugins.py]
# Prints medians of VERSION, ADD, CHECK and DEL per case (host-local; bridge with and without
# ipMasq, ptp, macvlan, host-device and tap, each over host-local; loopback; static; portmap,
# firewall, bandwidth, sbr and tuning each timed as the chained call alone with one prevResult),
# the ratio to Go and peak RSS, with PASS/OVER against issue 17's budgets (ADD <= 2x Go,
# DEL <= 1.5x, CHECK <= 2x, VERSION <= 4x; host-local, static and loopback alone <= 4x;
# RSS <= 40 MiB). To bench the release bundle instead: bench/run.sh 30 -- --ours DIR (a
# directory install.sh filled). Where the time goes: bench/phases.sh.
# Builds bin/ if needed. Needs root (netns cases), GNU time and the Go plugins
# (apt-get install time containernetworking-plugins).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
ROUNDS=${1:-30}
[ $# -gt 0 ] && shift
[ "${1:-}" = -- ] && shift
./build.sh >&2
PY=.venv/bin/python
echo "== startup: CNI_COMMAND=VERSION, whole exec"
startup=("python -S -c pass=$(python3 -c "import os, sys; print(os.path.realpath(sys.executable))") -S -c pass"
         "go host-local=/usr/lib/cni/host-local")
for name in host-local bridge; do
    [ -e "bin/$name" ] && startup+=("ours $name=bin/$name" "source $name=$PY -m plugins $name")
done
PYTHONPATH=$PWD $PY bench/startup.py -n "$ROUNDS" "${startup[@]}"
echo
echo "== plugin calls: ours vs Go"
exec $PY bench/plugins.py -n "$ROUNDS" "$@"
