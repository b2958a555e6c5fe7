"""Persistent tap devices, made through /dev/net/tun as `ip tuntap add` makes them.

rtnetlink cannot create a tun/tap device (the kernel refuses RTM_NEWLINK for
kind "tun"): a process opens /dev/net/tun inside the target netns, names the
device with TUNSETIFF, sets its owner and group and makes it outlive the open
file with TUNSETPERSIST. A later process (a VM monitor such as QEMU) opens it
by name the same way; the kernel lets it when it runs as the owner or in the
group (or has CAP_NET_ADMIN).
"""
from __future__ import annotations

import errno
import os
import _struct as struct  # the C module, as in cni.netlink.core

from .errors import INTERNAL, CNIError
from .netlink import Link, Netlink, NetlinkError
from .netns import entered

TUN_DEVICE = "/dev/net/tun"
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000
IFREQ = struct.Struct("16sH22x")  # struct ifreq: name, then ifr_flags in the union


def tap_flags(multi_queue: bool) -> int:
    return IFF_TAP | IFF_NO_PI | (IFF_MULTI_QUEUE if multi_queue else 0)


def make_persistent_tap(name: str, *, multi_queue: bool = False, owner: int | None = None,
                        group: int | None = None) -> None:
    """Create the persistent tap `name` in the current netns (the caller entered it)."""
    import fcntl

    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, IFREQ.pack(name.encode(), tap_flags(multi_queue)))
        if owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, owner)
        if group is not None:
            fcntl.ioctl(fd, TUNSETGROUP, group)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)  # without TUNSETPERSIST (a failure above) the device goes with the file


def selinux_enabled() -> bool:
    """SELinux is on: its filesystem is mounted and this process has a real label."""
    if not os.path.exists("/sys/fs/selinux/enforce"):
        return False
    try:
        with open("/proc/thread-self/attr/current") as f:
            return f.read().strip("\0\n ") not in ("", "kernel")
    except OSError:
        return False


def make_labelled_tap(name: str, label: str, *, multi_queue: bool = False, owner: int | None = None,
                      group: int | None = None) -> None:
    """As make_persistent_tap, from a process running with SELinux `label`.

    A tap's security label is its creator's; a confined VM monitor may only
    attach to a tap of its own label, so the device is made by `ip tuntap`
    exec'd under that label (this process cannot change its own).
    """
    import subprocess

    cmd = ["ip", "tuntap", "add", "mode", "tap", "name", name]
    cmd += ["multi_queue"] if multi_queue else []
    cmd += ["user", str(owner)] if owner is not None else []
    cmd += ["group", str(group)] if group is not None else []
    exec_label = "/proc/thread-self/attr/exec"
    with open(exec_label, "w") as f:
        f.write(label)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True)
    finally:
        with open(exec_label, "w") as f:
            f.write("")  # back to the default for anything this thread execs later
    if out.returncode != 0:
        raise OSError(errno.EIO, (out.stderr or out.stdout).strip() or f"ip tuntap failed ({out.returncode})")


def create_tap(netns: str, ifname: str, *, multi_queue: bool = False, owner: int | None = None,
               group: int | None = None, mtu: int = 0, mac: str = "", selinux_label: str = "") -> Link:
    """A persistent tap made inside `netns` under a temporary name, then named `ifname` (down).

    The temporary name matters: TUNSETIFF with the name of an existing tap
    attaches to it instead of failing, so `ifname` itself is never passed
    there. A failed rename or setting removes the device. `selinux_label`: the
    label the device is made with (only pass it when SELinux is on).
    """
    temp = "tap" + os.urandom(4).hex()
    with Netlink(netns) as nl:
        if nl.get_link(ifname) is not None:
            raise CNIError(INTERNAL, f'interface "{ifname}" already exists in netns "{netns}"')
        try:
            with entered(netns):
                if selinux_label:
                    make_labelled_tap(temp, selinux_label, multi_queue=multi_queue, owner=owner, group=group)
                else:
                    make_persistent_tap(temp, multi_queue=multi_queue, owner=owner, group=group)
        except OSError as exc:
            hint = " (no tun driver?)" if exc.errno in (errno.ENOENT, errno.ENODEV) else ""
            raise CNIError(INTERNAL, f"failed to create tap: {exc.strerror}{hint}") from None
        link = nl.get_link(temp)
        if link is None:
            raise CNIError(INTERNAL, f'tap "{temp}" vanished after creation')
        try:
            nl.set_link(link.index, name=ifname, mtu=mtu or None, mac=mac or None)
        except NetlinkError as exc:
            try:
                nl.delete_link(link.index)
            except NetlinkError:
                pass
            raise CNIError(INTERNAL, f'failed to set up tap "{ifname}": {exc}') from None
        return nl.get_link(ifname) or link
