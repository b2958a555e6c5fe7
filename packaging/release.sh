#!/usr/bin/env bash
# ./build.sh release: dist/pycni-linux-<arch>-<version>.tgz (+ .sha256, .sha512), frozen inside a
# Debian 11 (bullseye) root of that architecture, so the binaries need glibc 2.31 at most (the
# newest symbol version they ask for is GLIBC_2.29, libm's exp/pow that libpython3.9 uses).
#
#   packaging/release.sh [--arch A]       build (reusing the cached root and venv), then verify in the root
#   packaging/release.sh [--arch A] root  only make sure the cached root exists (used by tests)
#   packaging/release.sh [--arch A] shell a shell inside the root (debugging)
#   packaging/release.sh py39 ARGS        pytest ARGS with the (amd64) root's python3.9 on the current source
#
# --arch amd64 | arm64 | all (default: this machine's). A foreign architecture (arm64 on an amd64
# machine) is built in a root whose programs run under qemu-user: qemu-user-static and
# binfmt-support are installed when missing, binfmt_misc is mounted and qemu-aarch64 enabled.
# Its root is made from the main bullseye suite only (no bullseye-security: its pool has
# answered 404 for arm64 files), which is all a freeze needs.
#
# Caches, all under build/ (gitignored):
#   build/bullseye/root/            the amd64 root: debootstrap --variant=minbase with python3.9,
#                                   libpython3.9, binutils, gcc; /opt/pycni-venv in it holds
#                                   PyInstaller and the test tools, reinstalled only when
#                                   pyproject.toml changes
#   build/bullseye-arm64/root/      the same for arm64 (PyInstaller only: the tests run on the host)
#   build/release/<arch>/           the archive tree
#   build/release-<arch>.stamp      what the archive in dist/ was built from
# Environment: PYCNI_DEBIAN_MIRROR (default: the first Debian URI of this machine's apt sources),
# PYCNI_RELEASE_FORCE=1 to refreeze even when nothing changed.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."
ROOT=$PWD
SUITE=bullseye
DIST=$ROOT/dist
VENV=/opt/pycni-venv                      # inside the root
# gcc and the Python headers build cni/_setns.c (setns without ctypes: about 2.5 ms an exec)
PACKAGES=python3,python3-venv,libpython3.9,binutils,ca-certificates,gcc,libc6-dev,python3-dev

# This machine's architecture in Debian's (and the archive names') spelling.
host_arch() {
    case $(uname -m) in
        x86_64) echo amd64 ;; aarch64) echo arm64 ;; armv7l) echo arm ;; *) uname -m ;;
    esac
}

# Everything below works on one architecture: ARCH, its root and work dirs.
select_arch() {
    ARCH=$1
    case $ARCH in amd64 | arm64) ;; *) log "unknown architecture '$ARCH' (amd64, arm64 or all)"; exit 2 ;; esac
    if [ "$ARCH" = amd64 ]; then
        CACHE=$ROOT/build/$SUITE              # the amd64 root keeps its first name (tests use it)
    else
        CACHE=$ROOT/build/$SUITE-$ARCH
    fi
    CHROOT=$CACHE/root
    WORK=$ROOT/build/release/$ARCH
    STAMP=$ROOT/build/release-$ARCH.stamp
    # The foreign root only freezes (its tests run on the host); pytest there would cost minutes emulated.
    if [ "$ARCH" = "$(host_arch)" ]; then EXTRAS=build,daemon,test; else EXTRAS=build,daemon; fi
}

log() { printf 'release: %s\n' "$*" >&2; }

debian_mirror() {
    if [ -n "${PYCNI_DEBIAN_MIRROR:-}" ]; then echo "$PYCNI_DEBIAN_MIRROR"; return; fi
    # deb822 (URIs: ...) and one-line (deb URL suite ...) sources; the first plain Debian archive.
    local uri
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -n -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' \
        | tr ' ' '\n' | grep -E '/debian/?$' | head -n1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# Run a command inside the root, in a private mount namespace: /proc, /dev and the
# resolver appear for the command and vanish with it. pip in the root trusts what this
# machine trusts (its CA bundle, which may hold a site's TLS proxy CA).
in_root() {
    local ca=/etc/ssl/certs/ca-certificates.crt
    [ -f "$ca" ] && cp -L "$ca" "$CHROOT/etc/pycni-host-ca.pem"
    unshare --mount --propagation private -- /bin/bash -c '
        set -e
        r=$1; shift
        mount -t proc proc "$r/proc"
        mount --rbind /dev "$r/dev"
        cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
        tls=()
        [ -f "$r/etc/pycni-host-ca.pem" ] && tls=(PIP_CERT=/etc/pycni-host-ca.pem SSL_CERT_FILE=/etc/pycni-host-ca.pem)
        exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
            PIP_DEFAULT_TIMEOUT=120 "${tls[@]}" "$@"
    ' in_root "$CHROOT" "$@"
}

apt_install() {  # PACKAGE...
    log "apt-get install $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; then
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
    fi
}

# A foreign root's programs run under qemu-user: the kernel hands its ELF files to
# qemu-aarch64-static through binfmt_misc. Debian registers it with the F flag (the
# interpreter is opened now), so it also works inside the chroot, which has no qemu.
ensure_emulation() {
    [ "$ARCH" = "$(host_arch)" ] && return
    local qemu
    case $ARCH in arm64) qemu=aarch64 ;; amd64) qemu=x86_64 ;; esac
    local missing=()
    [ -x /usr/bin/qemu-$qemu-static ] || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    # systemd (which would do this at boot) need not be PID 1 here: enable it ourselves.
    if ! grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-$qemu 2>/dev/null; then
        update-binfmts --enable qemu-$qemu
    fi
    grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-$qemu || {
        log "binfmt_misc has no enabled qemu-$qemu: cannot run $ARCH programs here"
        exit 1
    }
}

ensure_root() {
    local want
    want="$SUITE $ARCH $PACKAGES"
    [ "$ARCH" = amd64 ] && want="$SUITE $PACKAGES"  # the stamp of roots made before --arch existed
    if [ -f "$CHROOT/.pycni-root" ] && [ "$(cat "$CHROOT/.pycni-root")" = "$want" ]; then
        return
    fi
    command -v debootstrap >/dev/null || apt_install debootstrap
    local mirror tmp=$CACHE/root.new
    mirror=$(debian_mirror)
    log "debootstrap --arch=$ARCH $SUITE from $mirror into $CHROOT (once; cached)"
    rm -rf "$tmp" "$CHROOT"
    mkdir -p "$CACHE"
    local keyring=()
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
    if ! debootstrap --arch="$ARCH" --variant=minbase --include="$PACKAGES" "${keyring[@]}" "$SUITE" "$tmp" "$mirror" \
            >"$CACHE/debootstrap.log" 2>&1; then
        tail -n 30 "$CACHE/debootstrap.log" >&2
        [ -f "$tmp/debootstrap/debootstrap.log" ] && tail -n 30 "$tmp/debootstrap/debootstrap.log" >&2
        exit 1
    fi
    rm -rf "$tmp/var/cache/apt/archives/"*.deb
    echo "$want" >"$tmp/.pycni-root"
    mv "$tmp" "$CHROOT"
}

stage_source() {
    local src=$CHROOT/build/src
    rm -rf "$src"
    mkdir -p "$src"
    tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - cni plugins packaging pycni.spec pyproject.toml setup.py \
        README.md tests | tar -C "$src" -xf -
}

ensure_venv() {
    local want have=""
    want="$(sha256sum pyproject.toml | cut -d' ' -f1) $EXTRAS"
    [ -f "$CHROOT$VENV/.pycni-installed" ] && have=$(cat "$CHROOT$VENV/.pycni-installed")
    [ "$want" = "$have" ] && return
    log "venv $VENV in the root: python3.9 + .[${EXTRAS}] (cached until pyproject.toml changes)"
    rm -rf "${CHROOT:?}$VENV"
    in_root /bin/sh -ec "
        python3 -m venv $VENV
        $VENV/bin/python -m pip install -q --disable-pip-version-check -U pip
        $VENV/bin/python -m pip install -q --disable-pip-version-check '/build/src[$EXTRAS]'
    "
    echo "$want" >"$CHROOT$VENV/.pycni-installed"
}

version() { sed -n 's/^__version__ = "\(.*\)"$/\1/p' cni/__init__.py; }

# The commit the bundle is built from; "-dirty" when the files it freezes differ from it.
commit() {
    local c
    c=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
    if [ "$c" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain -- cni plugins packaging pycni.spec pyproject.toml 2>/dev/null)" ]; then
        c=$c-dirty
    fi
    echo "$c"
}

fingerprint() {
    {
        version; commit; echo "$SUITE $ARCH $PACKAGES $EXTRAS"
        find cni plugins packaging scripts/install.sh deploy/systemd -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum
        sha256sum pycni.spec pyproject.toml setup.py README.md LICENSE
    } | sha256sum | cut -d' ' -f1
}

freeze_in_root() {
    log "PyInstaller inside the $SUITE root"
    rm -rf "$CHROOT/build/out" "$CHROOT/build/work"
    in_root /bin/sh -ec "
        cd /build/src
        $VENV/bin/python -m pip install -q --disable-pip-version-check --no-deps --force-reinstall .
        $VENV/bin/python setup.py -q build_ext --inplace || echo 'no C helper: setns via ctypes' >&2
        $VENV/bin/python -m PyInstaller --noconfirm --clean --log-level WARN \
            --distpath /build/out --workpath /build/work pycni.spec
        $VENV/bin/python packaging/entries.py >/build/out/entries
    "
}

assemble() {
    local ver=$1 arch=$2 name=$3 commit=$4
    local tree=$WORK/$name
    rm -rf "$WORK"
    mkdir -p "$tree/bin" "$tree/scripts" "$tree/deploy"
    local lib=$CHROOT/build/out/pycni
    printf 'commit %s\n' "$commit" >"$lib/pycni-lib/cni/BUILD"
    # The runtime's directory name carries a digest of its contents: an upgrade installs
    # a new directory beside the old one and swaps one link (scripts/install.sh).
    local digest
    digest=$(cd "$lib" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
    local rt=pycni-$ver-$digest
    cp -a "$lib" "$tree/bin/$rt"
    ln -s "$rt/pycni" "$tree/bin/pycni"
    local name_ module
    while read -r name_ module; do
        [ -n "$name_" ] || continue
        case $name_ in pycni | pycni-* | */*) log "skipping registry name '$name_'"; continue ;; esac
        ln -s pycni "$tree/bin/$name_"
    done <"$CHROOT/build/out/entries"
    cp README.md LICENSE "$tree/"
    cp scripts/install.sh "$tree/scripts/"
    cp -a deploy/systemd "$tree/deploy/"
    {
        echo "version $ver"
        echo "commit $commit"
        echo "runtime $rt"
        echo "built-on debian-$SUITE python-$(in_root python3 -c 'import platform; print(platform.python_version())')" \
            "glibc-$(in_root ldd --version | sed -n '1s/.* //p')"
    } >"$tree/BUILD"
}

package() {
    local name=$1 epoch
    epoch=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
    mkdir -p "$DIST"
    local tgz=$DIST/$name.tgz
    tar -C "$WORK" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf - "$name" \
        | gzip -n -9 >"$tgz.new"
    mv "$tgz.new" "$tgz"
    (cd "$DIST" && sha256sum "$name.tgz" >"$name.tgz.sha256" && sha512sum "$name.tgz" >"$name.tgz.sha512")
}

# Prove the archive in the root it was built in: install it, run every plugin's VERSION
# and a host-local ADD/DEL there.
verify_in_root() {
    local name=$1 v=$CHROOT/build/verify
    rm -rf "$v"
    mkdir -p "$v"
    tar -C "$v" -xzf "$DIST/$name.tgz"
    in_root /bin/bash -ec "
        cd /build/verify/$name
        ./scripts/install.sh --prefix /build/verify/opt-cni-bin >/dev/null
        cd /build/verify/opt-cni-bin
        for p in \$(cat /build/out/entries | cut -d' ' -f1); do
            [ \$p = cnitool ] && continue
            echo '{}' | CNI_COMMAND=VERSION ./\$p | grep -q supportedVersions || { echo \"VERSION failed: \$p\" >&2; exit 1; }
        done
        conf='{\"cniVersion\":\"1.0.0\",\"name\":\"verify\",\"type\":\"host-local\",\"ipam\":{\"type\":\"host-local\",\"dataDir\":\"/build/verify/ipam\",\"ranges\":[[{\"subnet\":\"10.99.0.0/24\"}]]}}'
        export CNI_CONTAINERID=verify CNI_NETNS=/proc/self/ns/net CNI_IFNAME=eth0 CNI_PATH=/build/verify/opt-cni-bin
        echo \"\$conf\" | CNI_COMMAND=ADD ./host-local | grep -q '10.99.0.2/24'
        test -f /build/verify/ipam/verify/10.99.0.2
        echo \"\$conf\" | CNI_COMMAND=DEL ./host-local
        test ! -e /build/verify/ipam/verify/10.99.0.2
        ./host-local 2>&1 | head -n2
    " >&2
    rm -rf "$v"
}

release() {
    local ver name commit stamp
    ver=$(version) commit=$(commit)
    name=pycni-linux-$ARCH-$ver
    stamp=$(fingerprint)
    if [ "${PYCNI_RELEASE_FORCE:-}" != 1 ] && [ -f "$DIST/$name.tgz" ] && [ -f "$STAMP" ] \
            && [ "$(cat "$STAMP")" = "$stamp" ]; then
        log "dist/$name.tgz is up to date"
        return
    fi
    ensure_emulation
    ensure_root
    stage_source
    ensure_venv
    freeze_in_root
    assemble "$ver" "$ARCH" "$name" "$commit"
    package "$name"
    verify_in_root "$name"
    echo "$stamp" >"$STAMP"
    log "dist/$name.tgz ($(du -h "$DIST/$name.tgz" | cut -f1)), commit $commit"
}

[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot)"; exit 1; }
# One release build (or py39 run) at a time: they share the root's /build.
mkdir -p "$ROOT/build"
exec 9>"$ROOT/build/release.lock"
flock 9
arches=$(host_arch)
case "${1:-}" in
    --arch) [ $# -ge 2 ] || { log "--arch needs amd64, arm64 or all"; exit 2; }; arches=$2; shift 2 ;;
    --arch=*) arches=${1#*=}; shift ;;
esac
[ "$arches" = all ] && arches="amd64 arm64"
case "${1:-}" in
    "") for a in $arches; do select_arch "$a"; release; done ;;
    root) for a in $arches; do select_arch "$a"; ensure_emulation; ensure_root; done ;;
    shell) select_arch "${arches%% *}"; ensure_emulation; ensure_root; in_root /bin/bash ;;
    py39)
        shift
        select_arch "$(host_arch)"
        ensure_root; stage_source; ensure_venv
        in_root /bin/sh -c 'cd /build/src && exec '"$VENV"'/bin/python -m pytest -q -p no:cacheprovider "$@"' py39 "$@"
        ;;
    *) echo "usage: $0 [--arch amd64|arm64|all] [root | shell] | py39 PYTEST-ARGS..." >&2; exit 2 ;;
esac
