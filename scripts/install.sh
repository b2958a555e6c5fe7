#!/bin/sh
# Install the pycni plugins of this release into a CNI plugin directory.
#
#   scripts/install.sh [--prefix DIR | --k3s] [--only NAME,...] [--all] [--dhcp-units]
#                      [--uninstall] [--dry-run] [--from BIN]
#
#   --prefix DIR   where runtimes look for plugins (default /opt/cni/bin)
#   --k3s          k3s's stable plugin directory, /var/lib/rancher/k3s/data/cni. There, names
#                  that k3s ships itself (bridge, host-local, loopback, portmap, bandwidth,
#                  firewall, flannel) are left alone unless --all is given
#   --only N,...   only these plugins (the shared runtime comes along)
#   --all          replace k3s's own plugins too
#   --dhcp-units   also install the dhcp daemon's systemd units and enable the socket
#                  (with --uninstall: disable and remove them)
#   --uninstall    remove our plugins (all, or --only) and, once none is left, the runtime
#   --dry-run      say what would change, change nothing
#   --from BIN     the release's bin/ (default: bin/ beside this script's directory)
#   (SYSTEMD_DIR=DIR puts the units elsewhere, without calling systemctl)
#
# Layout installed (the release's bin/ as it is):
#   DIR/pycni-<version>-<digest>/{pycni,pycni-lib/}   the frozen runtime, one directory per build
#   DIR/pycni -> pycni-<version>-<digest>/pycni       the one link an upgrade swaps
#   DIR/<plugin> -> pycni                             one link per plugin
# Every change is a rename(2) of something complete written beside its final name, so a
# runtime exec'ing a plugin during an upgrade runs either the old or the new build, whole.
# The previous runtime directory is kept (a process started from it may still load modules
# from it); older ones are removed.
set -eu

K3S_DIR=${PYCNI_K3S_DIR:-/var/lib/rancher/k3s/data/cni}  # the override is for tests
K3S_NAMES="bridge host-local loopback portmap bandwidth firewall flannel"
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
UNITS="cni-dhcp.socket cni-dhcp.service"

prefix=/opt/cni/bin k3s=0 only="" all=0 uninstall=0 dry=0 units=0 from=""
here=$(cd "$(dirname "$0")" && pwd)

usage() { sed -n '2,/^# Layout/{/^# Layout/d;s/^# \{0,1\}//p;}' "$0"; }
die() { echo "install.sh: $1" >&2; exit "${2:-1}"; }
say() { if [ "$dry" = 1 ]; then echo "[dry run] $*"; else echo "$*"; fi; }

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory" 2; prefix=$2; shift ;;
        --prefix=*) prefix=${1#*=} ;;
        --k3s) k3s=1; prefix=$K3S_DIR ;;
        --only) [ $# -ge 2 ] || die "--only needs names" 2; only=$2; shift ;;
        --only=*) only=${1#*=} ;;
        --all) all=1 ;;
        --uninstall) uninstall=1 ;;
        --dry-run) dry=1 ;;
        --dhcp-units) units=1 ;;
        --from) [ $# -ge 2 ] || die "--from needs a directory" 2; from=$2; shift ;;
        --from=*) from=${1#*=} ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" 2 ;;
    esac
    shift
done
prefix=${prefix%/}
[ -n "$prefix" ] || prefix=/
[ "$prefix" = "$K3S_DIR" ] && k3s=1
[ -n "$from" ] || from=$here/../bin
only=$(echo "$only" | tr ',' ' ')

# GNU mv -T never moves a file *into* a directory that happens to be the destination.
if mv --help 2>&1 | grep -q -- '-T'; then MV="mv -f -T"; else MV="mv -f"; fi

# Run a change; in --dry-run, skip it (the caller says what it would have done).
act() {
    [ "$dry" = 1 ] || "$@"
}

is_ours() {  # DIR/NAME is one of our plugin links
    [ -L "$1" ] && [ "$(readlink "$1")" = pycni ]
}

wanted() {  # NAME selected by --only (or no --only)
    [ -z "$only" ] && return 0
    for n in $only; do [ "$n" = "$1" ] && return 0; done
    return 1
}

k3s_ships() {
    for n in $K3S_NAMES; do [ "$n" = "$1" ] && return 0; done
    return 1
}

# A temporary name beside FINAL, on the same file system, so the rename is atomic.
tmpname() { echo "$(dirname "$1")/.$(basename "$1").pycni-new.$$"; }

replace_link() {  # TARGET FINAL: make FINAL a symlink to TARGET in one rename
    tmp=$(tmpname "$2")
    act rm -f "$tmp"
    act ln -s "$1" "$tmp"
    act $MV "$tmp" "$2"
}

runtime_dirs() {  # runtime directories present in the prefix
    for d in "$prefix"/pycni-*; do
        [ -d "$d" ] && [ ! -L "$d" ] && [ -f "$d/pycni" ] && [ -d "$d/pycni-lib" ] && basename "$d"
    done
    return 0
}

current_runtime() {  # the directory DIR/pycni points into, if it is our link
    [ -L "$prefix/pycni" ] || return 0
    t=$(readlink "$prefix/pycni")
    case $t in pycni-*/pycni) echo "${t%/pycni}" ;; esac
}

# systemctl only for the real unit directory of a running systemd; SYSTEMD_DIR=elsewhere stages
# the units (an image build, a test) without touching this machine's services.
units_active() {
    [ "$SYSTEMD_DIR" = /etc/systemd/system ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]
}

install_units() {
    src=$here/../deploy/systemd
    [ -f "$src/cni-dhcp.service" ] || die "no systemd units in $src"
    act mkdir -p "$SYSTEMD_DIR"
    for unit in $UNITS; do
        final=$SYSTEMD_DIR/$unit tmp=$(tmpname "$SYSTEMD_DIR/$unit")
        if [ "$dry" != 1 ]; then
            # The units name /opt/cni/bin; point them at the prefix actually used.
            sed "s|/opt/cni/bin/|$prefix/|g" "$src/$unit" >"$tmp"
            chmod 0644 "$tmp"
            $MV "$tmp" "$final"
        fi
        say "unit $final"
    done
    if units_active; then
        act systemctl daemon-reload
        act systemctl enable --now cni-dhcp.socket
        # A daemon still running the previous build picks up this one.
        act systemctl try-restart cni-dhcp.service
    else
        say "systemd is not running here: enable cni-dhcp.socket yourself"
    fi
}

uninstall_units() {
    if units_active; then
        act systemctl disable --now cni-dhcp.socket cni-dhcp.service || true
    fi
    for unit in $UNITS; do
        [ -e "$SYSTEMD_DIR/$unit" ] && { act rm -f "$SYSTEMD_DIR/$unit"; say "removed unit $SYSTEMD_DIR/$unit"; }
    done
    if units_active; then act systemctl daemon-reload; fi
    return 0
}

do_uninstall() {
    [ -d "$prefix" ] || { say "nothing installed in $prefix"; return 0; }
    for n in $only; do
        is_ours "$prefix/$n" || say "$n: not ours in $prefix, left alone"
    done
    for f in "$prefix"/* "$prefix"/.[!.]*; do
        [ -L "$f" ] || continue
        n=$(basename "$f")
        is_ours "$f" && wanted "$n" || continue
        act rm -f "$f"
        if [ "$k3s" = 1 ] && k3s_ships "$n"; then
            say "removed $n (k3s puts its own $n back when it starts)"
        else
            say "removed $n"
        fi
    done
    [ "$units" = 1 ] && uninstall_units
    for f in "$prefix"/*; do
        if is_ours "$f" && ! wanted "$(basename "$f")"; then
            say "runtime kept: $(basename "$f") still uses it"
            return 0
        fi
    done
    if [ -L "$prefix/pycni" ]; then act rm -f "$prefix/pycni"; fi
    for d in $(runtime_dirs) ; do act rm -rf "${prefix:?}/$d"; say "removed runtime $d"; done
    if [ -f "$prefix/pycni-lib/libpython3.so" ] || ls "$prefix/pycni-lib/"libpython3* >/dev/null 2>&1; then
        act rm -rf "${prefix:?}/pycni-lib"
    fi
    return 0
}

do_install() {
    [ -L "$from/pycni" ] || die "$from is not a pycni release bin/ (no pycni link)"
    target=$(readlink "$from/pycni")
    rt=${target%/pycni}
    case $target in pycni-*/pycni) ;; *) die "$from/pycni -> $target: not a release layout" ;; esac
    [ -f "$from/$rt/pycni" ] || die "$from/$rt is incomplete"
    names=""
    for f in "$from"/*; do is_ours "$f" && names="$names $(basename "$f")"; done
    for n in $only; do
        case " $names " in *" $n "*) ;; *) die "--only $n: not in this release (it has:$names)" 2 ;; esac
    done

    [ -d "$prefix" ] || act mkdir -p "$prefix"
    # Temporary names left by an install that was killed midway (its PID is gone).
    for t in "$prefix"/.*.pycni-new.*; do
        [ -e "$t" ] || [ -L "$t" ] || continue
        kill -0 "${t##*.}" 2>/dev/null || act rm -rf "$t"
    done

    # 1. the runtime, complete, under its own name (a rename of a finished copy)
    if [ -f "$prefix/$rt/pycni" ]; then
        say "runtime $rt already present"
    else
        tmp=$(tmpname "$prefix/$rt")
        act rm -rf "$tmp"
        act cp -a "$from/$rt" "$tmp"
        act $MV "$tmp" "$prefix/$rt"
        say "runtime $rt installed"
    fi
    # 2. one link swap moves every plugin to it
    previous=$(current_runtime)
    if [ "$previous" != "$rt" ]; then
        if [ -d "$prefix/pycni" ] && [ ! -L "$prefix/pycni" ]; then die "$prefix/pycni is a directory"; fi
        replace_link "$rt/pycni" "$prefix/pycni"
        say "pycni -> $rt/pycni${previous:+ (was $previous)}"
    fi
    # 3. the plugin names
    for n in $names; do
        wanted "$n" || continue
        dest=$prefix/$n
        if is_ours "$dest"; then
            say "$n: up to date"
            continue
        fi
        if [ "$k3s" = 1 ] && [ "$all" != 1 ] && k3s_ships "$n"; then
            say "$n: skipped, k3s ships its own $n here (--all replaces it)"
            continue
        fi
        if [ -d "$dest" ] && [ ! -L "$dest" ]; then
            say "$n: skipped, $dest is a directory"
            continue
        fi
        replace_link pycni "$dest"
        if [ -e "$dest" ] || [ -L "$dest" ] || [ "$dry" = 1 ]; then say "$n: installed"; fi
    done
    # 4. old runtimes: keep the current and the previous one
    for d in $(runtime_dirs); do
        [ "$d" = "$rt" ] || [ "$d" = "$previous" ] && continue
        act rm -rf "${prefix:?}/$d"
        say "removed old runtime $d"
    done
    # A bin/ copied in before the release layout existed: pycni was a file beside pycni-lib/.
    if [ -d "$prefix/pycni-lib" ] && [ -L "$prefix/pycni" ]; then
        act rm -rf "${prefix:?}/pycni-lib"
        say "removed the unversioned pycni-lib/ of an older install"
    fi
    [ "$units" = 1 ] && install_units
    return 0
}

if [ "$uninstall" = 1 ]; then do_uninstall; else do_install; fi
