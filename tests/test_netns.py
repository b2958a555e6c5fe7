"""Entering namespaces by path, typed errors, always coming back."""
from __future__ import annotations

import errno
import os

import pytest

from cni import netns
from conftest import needs_root

pytestmark = needs_root


def current_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_enter_and_return(container_ns):
    home = current_inode()
    with netns.entered(container_ns.path):
        assert current_inode() == os.stat(container_ns.path).st_ino != home
    assert current_inode() == home


def test_return_even_on_error(container_ns):
    home = current_inode()
    with pytest.raises(RuntimeError):
        with netns.entered(container_ns.path):
            raise RuntimeError("x")
    assert current_inode() == home


def test_missing_path_is_typed():
    with pytest.raises(netns.NetnsNotFound):
        with netns.entered("/run/netns/does-not-exist-pycni"):
            pass
    assert not netns.exists("/run/netns/does-not-exist-pycni")


def test_not_a_netns_is_typed(tmp_path):
    f = tmp_path / "plain"
    f.write_text("")
    with pytest.raises(netns.NotANetns):
        netns.open_netns(str(f))
    with pytest.raises(netns.NotANetns):
        netns.open_netns("/proc/self/ns/uts")


def test_without_the_nstype_ioctl_an_nsfs_file_still_counts(container_ns, tmp_path, monkeypatch):
    """qemu-user answers ENOSYS for NS_GET_NSTYPE: an nsfs file is taken, anything else is not.
    A kernel's own answer for an unknown ioctl (ENOTTY) is still a refusal."""
    plain = tmp_path / "plain"
    plain.write_text("")

    def ioctl(errno_value):
        def fail(fd, request, *args):
            assert request == netns.NS_GET_NSTYPE
            raise OSError(errno_value, os.strerror(errno_value))
        return fail

    monkeypatch.setattr(netns.fcntl, "ioctl", ioctl(errno.ENOSYS))
    fd = netns.open_netns(container_ns.path)
    os.close(fd)
    with netns.entered(container_ns.path):
        assert current_inode() == os.stat(container_ns.path).st_ino
    with pytest.raises(netns.NotANetns):
        netns.open_netns(str(plain))
    monkeypatch.setattr(netns.fcntl, "ioctl", ioctl(errno.ENOTTY))
    with pytest.raises(netns.NotANetns):
        netns.open_netns(container_ns.path)


def test_none_stays_here():
    home = current_inode()
    with netns.entered(None):
        assert current_inode() == home


def test_ctypes_fallback_enters_too(container_ns):
    """Without the C helper (no compiler at build time) setns comes from libc through ctypes."""
    fn, ctypes = netns._libc_setns()
    home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = netns.open_netns(container_ns.path)
    try:
        assert fn(target, netns.CLONE_NEWNET) == 0
        assert current_inode() == os.stat(container_ns.path).st_ino
    finally:
        assert fn(home_fd, netns.CLONE_NEWNET) == 0
        os.close(target)
        os.close(home_fd)


def test_c_helper_is_built_here():
    """The development and release builds have a compiler: the helper must be there."""
    import sys

    if sys.version_info >= (3, 12):
        pytest.skip("os.setns exists; the helper is not used")
    from cni import _setns  # noqa: F401
