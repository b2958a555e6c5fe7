#!/bin/sh
# Install the pycni plugins of this release into a CNI plugin directory.
#
#   scripts/install.sh [--prefix DIR | --k3s [--create]] [--only NAME,...] [--all] [--dhcp-units]
#                      [--uninstall] [--dry-run] [--from BIN]
#
#   --prefix DIR   where runtimes look for plugins (default /opt/cni/bin)
#   --k3s          k3s's stable plugin directory, /var/lib/rancher/k3s/data/cni (not with --prefix)
#   --create       with --k3s: create that directory if k3s has not made it yet
#   --only N,...   only these plugins (the shared runtime comes along)
#   --all          replace k3s's own plugins too
#   --dhcp-units   also install the dhcp daemon's systemd units and enable the socket
#                  (with --uninstall: disable and remove them)
#   --uninstall    remove our plugins (all, or --only) and, once none is left, the runtime
#   --dry-run      say what would change, change nothing
#   --from BIN     the release's bin/ (default: bin/ beside this script's directory)
#   (SYSTEMD_DIR=DIR puts the units elsewhere, without calling systemctl)
#
# In any directory, a name that is k3s's multi-call `cni` binary or a link to it (k3s makes
# bridge, host-local, flannel, ... that way) is k3s's: it is left alone unless --all, and an
# uninstall puts k3s's link back where k3s's own bin/ shows what it was.
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
SYSTEMD_DIR=${SYSTEMD_DIR:-/etc/systemd/system}
UNITS="cni-dhcp.socket cni-dhcp.service"

prefix=/opt/cni/bin prefix_given=0 k3s=0 create=0 only="" all=0 uninstall=0 dry=0 units=0 from=""
here=$(cd "$(dirname "$0")" && pwd)

usage() { sed -n '2,/^# Layout/{/^# Layout/d;s/^# \{0,1\}//p;}' "$0"; }
die() { echo "install.sh: $1" >&2; exit "${2:-1}"; }
say() { if [ "$dry" = 1 ]; then echo "[dry run] $*"; else echo "$*"; fi; }

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory" 2; prefix=$2 prefix_given=1; shift ;;
        --prefix=*) prefix=${1#*=} prefix_given=1 ;;
        --k3s) k3s=1 ;;
        --create) create=1 ;;
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
if [ "$k3s" = 1 ]; then
    [ "$prefix_given" = 0 ] || die "--k3s installs into $K3S_DIR; give either --k3s or --prefix DIR, not both" 2
    prefix=$K3S_DIR
    if [ ! -d "$prefix" ] && [ "$uninstall" = 0 ] && [ "$create" = 0 ]; then
        die "no k3s plugin directory $prefix: k3s is not installed here, has not run yet, or is older than that directory (--create makes the directory)"
    fi
elif [ "$create" = 1 ]; then
    die "--create goes with --k3s (--prefix DIR is created anyway)" 2
fi
prefix=${prefix%/}
[ -n "$prefix" ] || prefix=/
[ -n "$from" ] || from=$here/../bin
only=$(echo "$only" | tr ',' ' ')

# The release's executables must be for this node's CPU: an arm64 archive on an amd64 node (or
# the reverse) would install fine and then fail on every exec with "Exec format error".
# The ELF header's e_machine (2 bytes at offset 18) says what the runtime was built for.
# PYCNI_NODE_ARCH stands in for `uname -m` (for tests).
check_arch() {
    [ -f "$1" ] || return 0  # not a release layout: do_install says so
    [ "$(od -An -tx1 -N4 "$1" | tr -d ' \n')" = 7f454c46 ] || return 0  # not ELF (a stand-in in tests)
    case $(od -An -tx1 -j18 -N2 "$1" | tr -d ' \n') in
        3e00) built=amd64 ;; b700) built=arm64 ;; 2800) built=arm ;; *) built=unknown ;;
    esac
    machine=${PYCNI_NODE_ARCH:-$(uname -m)}
    case $machine in
        x86_64 | amd64) node=amd64 ;; aarch64 | arm64 | armv8*) node=arm64 ;; armv7* | armv6*) node=arm ;;
        *) node=$machine ;;
    esac
    [ "$built" = "$node" ] && return 0
    die "this release is built for linux-$built, but this node is $machine (linux-$node): nothing was installed; use the pycni-linux-$node archive of this version"
}
[ "$uninstall" = 1 ] || check_arch "$from/pycni"

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
    local w
    [ -z "$only" ] && return 0
    for w in $only; do [ "$w" = "$1" ] && return 0; done
    return 1
}

is_k3s() {  # DIR/NAME is k3s's multi-call cni binary, or a link to it
    # The link's own target first: k3s's links are absolute and may not resolve here (an
    # init container sees this directory, not the data directory the links point into).
    if [ -L "$1" ]; then
        case $(readlink "$1") in cni | */cni) return 0 ;; esac
        case $(readlink -f "$1" 2>/dev/null) in */cni) return 0 ;; esac
    fi
    local multicall
    multicall=$(dirname "$1")/cni
    [ -e "$1" ] && [ -e "$multicall" ] && { [ "$1" -ef "$multicall" ] || cmp -s "$1" "$multicall"; }
}

k3s_link_for() {  # NAME: the link target k3s made for NAME here, if k3s's own bin/ shows one
    local multicall bindir
    [ -L "$prefix/cni" ] || return 0
    multicall=$(readlink -f "$prefix/cni" 2>/dev/null) || return 0
    bindir=$(dirname "$multicall")
    [ -L "$bindir/$1" ] && [ "$(readlink "$bindir/$1")" = cni ] && readlink "$prefix/cni"
    return 0
}

# A temporary name beside FINAL, on the same file system, so the rename is atomic.
tmpname() { echo "$(dirname "$1")/.$(basename "$1").pycni-new.$$"; }

replace_link() {  # TARGET FINAL: make FINAL a symlink to TARGET in one rename
    local tmp
    tmp=$(tmpname "$2")
    act rm -f "$tmp"
    act ln -s "$1" "$tmp"
    act $MV "$tmp" "$2"
}

runtime_dirs() {  # runtime directories present in the prefix
    local d
    for d in "$prefix"/pycni-*; do
        [ -d "$d" ] && [ ! -L "$d" ] && [ -f "$d/pycni" ] && [ -d "$d/pycni-lib" ] && basename "$d"
    done
    return 0
}

current_runtime() {  # the directory DIR/pycni points into, if it is our link
    local t
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
    local src unit final tmp
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
    local unit
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
    local n f d theirs
    [ -d "$prefix" ] || { say "nothing installed in $prefix"; return 0; }
    for n in $only; do
        if is_k3s "$prefix/$n"; then
            say "$n: k3s's own $n, left alone"
        elif ! is_ours "$prefix/$n"; then
            say "$n: not ours in $prefix, left alone"
        fi
    done
    for f in "$prefix"/* "$prefix"/.[!.]*; do
        [ -L "$f" ] || continue
        n=$(basename "$f")
        is_ours "$f" && wanted "$n" || continue
        theirs=$(k3s_link_for "$n")
        if [ -n "$theirs" ]; then
            replace_link "$theirs" "$f"
            say "removed $n, k3s's own $n is back"
        else
            act rm -f "$f"
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
    # An unversioned bin/ copied in by hand: pycni-lib/ holds our packages (and, before the
    # launcher linked Python statically, a libpython).
    if [ -d "$prefix/pycni-lib/cni" ] || ls "$prefix/pycni-lib/"libpython3* >/dev/null 2>&1; then
        act rm -rf "${prefix:?}/pycni-lib"
    fi
    return 0
}

do_install() {
    local target rt names f n tmp previous dest d replaces
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
        replaces=""
        if is_k3s "$dest"; then
            if [ "$all" != 1 ]; then
                say "$n: skipped, k3s ships its own $n here (--all replaces it)"
                continue
            fi
            replaces=" (in place of k3s's own $n)"
        fi
        if [ -d "$dest" ] && [ ! -L "$dest" ]; then
            say "$n: skipped, $dest is a directory"
            continue
        fi
        replace_link pycni "$dest"
        if [ -e "$dest" ] || [ -L "$dest" ] || [ "$dry" = 1 ]; then say "$n: installed$replaces"; fi
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
