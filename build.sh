#!/usr/bin/env bash
# Build pycni: .venv from pyproject.toml, then bin/ frozen with PyInstaller.
#
#   ./build.sh              venv (if needed) + bin/ (if any input changed)
#   ./build.sh demo         build, then run `ip addr` in a fresh netns attached to the demo
#                           network mynet (scripts/priv-net-run.sh; installs iproute2/iptables if missing)
#   ./build.sh test [ARGS]  the whole test suite: install the Debian packages the tests need
#                           (packaging/test-packages.txt, only those missing), build if needed, then
#                           pytest with the frozen tests required (PYCNI_REQUIRE_FROZEN=1); ARGS go to pytest
#   ./build.sh deps         only install those packages (.ci/run's first step)
#   ./build.sh release [--arch amd64|arm64|all]
#                           dist/pycni-linux-<arch>-<version>.tgz (+ .sha256/.sha512), frozen in a
#                           cached Debian 11 root of that architecture so it runs on glibc 2.31+
#                           (default: this machine's; arm64 on amd64 runs under qemu-user: see
#                           packaging/release.sh)
#   ./build.sh clean        remove bin/, dist/ and build/ (but build/bullseye*/, the cached roots)
#
# bin/ layout (copy bin/ as a whole, e.g. `cp -a bin/. /opt/cni/bin/`):
#   bin/pycni        the one frozen executable (PyInstaller onedir bootloader)
#   bin/pycni-lib/   its Python runtime and our modules
#   bin/NAME -> pycni  one relative symlink per plugins/registry.py entry whose module exists;
#                      plugins/multicall.py dispatches on the link name (argv[0]).
# Environment: PYTHON (default python3), PYCNI_FORCE=1 to rebuild bin/ unconditionally,
# and the PYCNI_* knobs documented at the top of pycni.spec.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")"
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=$ROOT/.venv
EXTRAS=build,test,daemon
BUILD=$ROOT/build
BIN=$ROOT/bin

log() { printf 'build.sh: %s\n' "$*" >&2; }

apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        log "missing: $* (install them; this is not a root Debian/Ubuntu shell)"
        exit 1
    fi
    log "apt-get install $*"
    # Package lists are fetched only when the install needs them (a fresh machine has none).
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1; then
        log "apt-get update"
        apt-get update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >/dev/null
    fi
}

system_prerequisites() {
    local missing=()
    command -v "$PYTHON" >/dev/null || missing+=(python3)
    # PyInstaller reads shared-library dependencies with ldd and objdump.
    command -v objdump >/dev/null || missing+=(binutils)
    # A C compiler builds bin/pycni (packaging/launcher.c) and cni/_setns.c.
    command -v cc >/dev/null || missing+=(gcc libc6-dev)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
    if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        local ver
        ver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        apt_install python3-venv "python$ver-venv"
    fi
    # Debian's python3 links libpython statically; PyInstaller needs the shared one.
    if [ "$(readlink -f "$(command -v "$PYTHON")")" = "/usr/bin/python$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" ]; then
        local lib
        lib=libpython$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        ldconfig -p | grep -q "$lib.so" || apt_install "$lib"
        # and its headers for the launcher and the C helper.
        "$PYTHON" -c 'import os, sysconfig; raise SystemExit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
            || apt_install "$lib-dev"
    fi
}

ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV with $("$PYTHON" --version)"
        "$PYTHON" -m venv "$VENV"
    fi
    # Reinstall when pyproject.toml changes (or the venv lacks its stamp).
    local want have=""
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    [ -f "$VENV/.pycni-installed" ] && have=$(cat "$VENV/.pycni-installed")
    if [ "$want" != "$have" ] || ! "$VENV/bin/python" -c 'import PyInstaller, pytest' 2>/dev/null; then
        log "installing .[${EXTRAS}] into $VENV"
        local pip_log
        pip_log=$(mktemp)
        if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[${EXTRAS}]" >"$pip_log" 2>&1; then
            cat "$pip_log" >&2
            rm -f "$pip_log"
            exit 1
        fi
        rm -f "$pip_log"
        echo "$want" >"$VENV/.pycni-installed"
    fi
}

# The commit a bundle is built from, "-dirty" when the frozen files differ from it. The
# plugins print it in their about text (no CNI_COMMAND) from pycni-lib/cni/BUILD.
build_commit() {
    local c
    c=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
    if [ "$c" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain -- cni plugins packaging pycni.spec pyproject.toml 2>/dev/null)" ]; then
        c=$c-dirty
    fi
    echo "$c"
}

write_build_info() {  # DIR (a bin/ tree): rewrite its BUILD file only when the commit changed
    local file=$1/pycni-lib/cni/BUILD want
    want="commit $(build_commit)"
    [ -d "$1/pycni-lib/cni" ] || return 0
    [ -f "$file" ] && [ "$(cat "$file")" = "$want" ] && return 0
    echo "$want" >"$file.new"
    mv "$file.new" "$file"
}

# Everything the frozen bin/ depends on; bin/ is rebuilt when this changes.
fingerprint() {
    {
        "$VENV/bin/python" -c 'import sys, PyInstaller; print(sys.version, PyInstaller.__version__)'
        env | grep '^PYCNI_' | grep -v '^PYCNI_FORCE=' | grep -v '^PYCNI_REQUIRE_FROZEN=' | sort || true
        find cni plugins packaging \( -name '*.py' -o -name '*.c' \) -type f -print0 | sort -z | xargs -0 sha256sum
        sha256sum pycni.spec pyproject.toml
    } | sha256sum | cut -d' ' -f1
}

freeze() {
    local stamp
    stamp=$(fingerprint)
    if [ "${PYCNI_FORCE:-}" != 1 ] && [ -x "$BIN/pycni" ] && [ -f "$BIN/.build-stamp" ] \
            && [ "$(cat "$BIN/.build-stamp")" = "$stamp" ]; then
        write_build_info "$BIN"
        log "bin/ is up to date"
        return
    fi
    log "freezing with PyInstaller"
    # A fresh interpreter per build: PyInstaller runs pycni.spec, which reads plugins/registry.py.
    "$VENV/bin/python" -m PyInstaller --noconfirm --clean --log-level WARN \
        --distpath "$BUILD/dist" --workpath "$BUILD/work" pycni.spec
    local out=$BUILD/dist/pycni staged=$BUILD/bin.new
    rm -rf "$staged"
    mv "$out" "$staged"
    local name module linked=()
    while read -r name module; do
        [ -n "$name" ] || continue
        case $name in pycni | pycni-lib | */*) log "skipping registry name '$name'"; continue ;; esac
        ln -s pycni "$staged/$name"
        linked+=("$name")
    done < <("$VENV/bin/python" packaging/entries.py)
    while read -r name module; do
        [ -n "$name" ] && log "not shipped yet (no module $module): $name"
    done < <("$VENV/bin/python" packaging/entries.py --missing)
    echo "$stamp" >"$staged/.build-stamp"
    write_build_info "$staged"
    # Swap in the new tree in one step; bin/ is never half-written.
    rm -rf "$BUILD/bin.old"
    [ -e "$BIN" ] && mv "$BIN" "$BUILD/bin.old"
    mv "$staged" "$BIN"
    rm -rf "$BUILD/bin.old"
    log "bin/: pycni + ${linked[*]:-(no plugin modules yet)}"
}

# What the plugins exec at run time: ip for the scripts' namespaces, iptables for ipMasq.
runtime_prerequisites() {
    local missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v iptables-restore >/dev/null || command -v nft >/dev/null || missing+=(iptables)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# What the tests exec: the packages of packaging/test-packages.txt (its first column) that dpkg
# does not list as installed. When all are, this is one dpkg-query: no apt-get, no network.
# A real firewalld for tests/test_firewall.py, unpacked (never installed: installed, it would
# take over the node's netfilter rules) into build/firewalld-root once; the tests run it on a
# private D-Bus in a netns of their own. PYCNI_FIREWALLD_ROOT set by the caller wins.
firewalld_root() {
    local root=$BUILD/firewalld-root
    if [ -z "${PYCNI_FIREWALLD_ROOT:-}" ]; then
        if [ ! -x "$root/usr/sbin/firewalld" ]; then
            log "unpacking firewalld into $root for the firewall tests"
            rm -rf "$root"
            "$ROOT/scripts/firewalld-test-root.sh" "$root" >/dev/null || { log "could not unpack firewalld"; exit 1; }
        fi
        export PYCNI_FIREWALLD_ROOT=$root
    fi
}

test_prerequisites() {
    local wanted=() installed missing=() package
    mapfile -t wanted < <(sed 's/#.*//' "$ROOT/packaging/test-packages.txt" | awk 'NF { print $1 }')
    if ! command -v dpkg-query >/dev/null; then
        log "not a Debian system: install the equivalents of ${wanted[*]}"
        return
    fi
    # "ii": wanted and installed (the second letter is the state); an unknown package prints nothing.
    installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${wanted[@]}" 2>/dev/null \
        | awk 'substr($2, 2, 1) == "i" { print $1 }' || true)
    for package in "${wanted[@]}"; do
        grep -qxF -- "$package" <<<"$installed" || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

case "${1:-}" in
    demo)
        system_prerequisites
        runtime_prerequisites
        ensure_venv
        freeze
        # The demo network is the built-in mynet whatever /etc/cni/net.d holds (podman, for one,
        # puts a network there that needs plugins this suite does not ship). NETCONFPATH=DIR
        # runs the demo on the networks of DIR instead.
        if [ -z "${NETCONFPATH:-}" ]; then
            export NETCONFPATH=$BUILD/demo-net.d
            rm -rf "$NETCONFPATH"
            mkdir -p "$NETCONFPATH"
        fi
        exec "$ROOT/scripts/priv-net-run.sh" ip addr
        ;;
    clean)
        # The cached Debian 11 roots stay (1-5 minutes to make again): rm -rf build/bullseye* drops them.
        find "$BUILD" -mindepth 1 -maxdepth 1 ! -name 'bullseye*' -exec rm -rf {} + 2>/dev/null || true
        rm -rf "$BIN" "$ROOT/dist"
        ;;
    release)
        shift
        system_prerequisites
        exec "$ROOT/packaging/release.sh" "$@"
        ;;
    deps)
        system_prerequisites
        test_prerequisites
        ;;
    test)
        shift
        system_prerequisites
        test_prerequisites
        firewalld_root
        ensure_venv
        freeze
        export PYCNI_REQUIRE_FROZEN=1
        exec "$VENV/bin/python" -m pytest -q "$@"
        ;;
    "")
        system_prerequisites
        ensure_venv
        freeze
        ;;
    *)
        echo "usage: $0 [demo | test [PYTEST-ARGS...] | deps | release [--arch amd64|arm64|all] | clean]" >&2
        exit 2
        ;;
esac
