"""Entering namespaces by path, typed errors, always coming back."""
from __future__ import annotations

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


def test_none_stays_here():
    home = current_inode()
    with netns.entered(None):
        assert current_inode() == home
