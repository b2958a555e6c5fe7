#!/bin/sh
# Unpack Debian's firewalld and the Python modules it needs into DIR, without installing
# them (installing would start firewalld in the root netns, where it takes over the node's
# netfilter rules). tests/test_firewall.py runs it from there on a private D-Bus, in a netns
# of its own:   scripts/firewalld-test-root.sh /tmp/fwd && PYCNI_FIREWALLD_ROOT=/tmp/fwd pytest ...
set -eu
dir=${1:?usage: $0 DIR}
mkdir -p "$dir/debs"
cd "$dir/debs"
apt-get -o APT::Sandbox::User=root download firewalld python3-firewall python3-nftables python3-dbus python3-gi gir1.2-glib-2.0
for deb in *.deb; do dpkg -x "$deb" "$dir"; done
test -x /usr/bin/dbus-daemon && test -x /usr/bin/dbus-send || echo "also needed: dbus-daemon, dbus-send (Debian: dbus, dbus-bin)" >&2
echo "firewalld unpacked into $dir: PYCNI_FIREWALLD_ROOT=$dir"
