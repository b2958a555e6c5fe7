#!/usr/bin/env bash
# Where an exec's time goes, phase by phase (Documentation/performance.md, "Decomposition"):
#   bench/phases.sh [ROUNDS] [LABEL=BINDIR ...]      (default: ours=bin)
# Measured alternately in one run (bench/startup.py), medians in ms:
#   go VERSION        Go's host-local answering VERSION: a whole Go exec that does nothing
#   python -S -I      the interpreter bin/ is frozen from, started bare: the floor of any
#                     CPython program
#   LABEL VERSION     our start: exec, the launcher, interpreter init, plugins.multicall,
#                     the registry and cni.version
#   LABEL about P     plugin P's about line (no CNI_COMMAND): the start plus every module P
#                     imports at module level, and no work
# A plugin's ADD minus its about line is its work (with what it imports lazily); take the
# ADD medians from bench/run.sh or bench/plugins.py of the same hour. Several LABEL=BINDIR
# compare builds, e.g. one frozen with PYCNI_LAUNCHER=pyinstaller, or an older commit's bin/.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
ROUNDS=${1:-30}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- ours=bin
./build.sh >&2
PY=.venv/bin/python
PLUGINS=(host-local static bridge ptp macvlan host-device tap loopback tuning sbr bandwidth portmap firewall)
commands=("go VERSION=/usr/lib/cni/host-local"
          "python -S -I=$(readlink -f "$PY") -S -I -c pass")
for pair in "$@"; do
    label=${pair%%=*} dir=${pair#*=}
    commands+=("$label VERSION=$dir/bridge")
    for p in "${PLUGINS[@]}"; do
        [ -e "$dir/$p" ] && commands+=("$label about $p=CNI_COMMAND= $dir/$p")
    done
done
PYTHONPATH=$PWD exec "$PY" bench/startup.py -n "$ROUNDS" "${commands[@]}"
