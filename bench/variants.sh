#!/usr/bin/env bash
# Startup of the packaging choices behind bin/ (Documentation/performance.md):
# onefile, onedir with PyInstaller's defaults (PYZ archive + pyi_rth_inspect), onedir with
# the PYZ archive but no runtime hooks, onedir with plain .pyc under PyInstaller's bootloader,
# and the shipped bin/ (plain .pyc, no hooks, our launcher),
# against Go's host-local and bare Python. Builds the variants under build/variants/.
#   bench/variants.sh [ROUNDS] [PLUGIN]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
ROUNDS=${1:-50}
PLUGIN=${2:-bridge}
./build.sh >&2
PY=.venv/bin/python
V=build/variants
mkdir -p "$V"
variant() {  # name, then PYCNI_* assignments
    local name=$1; shift
    env "$@" "$PY" -m PyInstaller --noconfirm --log-level ERROR --distpath "$V/$name" \
        --workpath "$V/work-$name" pycni.spec >"$V/$name.log" 2>&1 || { cat "$V/$name.log" >&2; exit 1; }
    if [ -d "$V/$name/pycni" ]; then ln -sfn pycni "$V/$name/pycni/$PLUGIN"; echo "$V/$name/pycni/$PLUGIN"
    else ln -sfn pycni "$V/$name/$PLUGIN"; echo "$V/$name/$PLUGIN"; fi
}
onefile=$(variant onefile PYCNI_ONEFILE=1 PYCNI_NOARCHIVE=0 PYCNI_KEEP_RTHOOKS=pyi_rth_inspect)
defaults=$(variant defaults PYCNI_NOARCHIVE=0 PYCNI_KEEP_RTHOOKS=pyi_rth_inspect)
nohooks=$(variant pyz-nohooks PYCNI_NOARCHIVE=0)
bootloader=$(variant pyinstaller-bootloader PYCNI_LAUNCHER=pyinstaller)
PYTHONPATH=$PWD "$PY" bench/startup.py -n "$ROUNDS" \
    "go host-local=/usr/lib/cni/host-local" \
    "python3 -S -c pass=$(python3 -c "import os, sys; print(os.path.realpath(sys.executable))") -S -c pass" \
    "python3 -S (venv) -m plugins $PLUGIN=$PY -S -m plugins $PLUGIN" \
    "onefile $PLUGIN=$onefile" \
    "onedir, PyInstaller defaults=$defaults" \
    "onedir, PYZ, no runtime hooks=$nohooks" \
    "onedir, plain .pyc, PyInstaller's bootloader=$bootloader" \
    "shipped bin/$PLUGIN (our launcher)=bin/$PLUGIN"
