"""Entering network namespaces by path, and always coming back.

Python before 3.12 has no os.setns. setns(2) then comes from our small C
helper (cni/_setns.c, built by `pip install` when a compiler is there) or,
without it, from libc through ctypes: about 2.5 ms more per exec. The ctypes
handle is ctypes.CDLL(None): ctypes.util.find_library would fork ldconfig on
every call, which costs a plugin exec dearly.

A netlink socket opened inside a namespace stays bound to it after we leave, so
most work enters only long enough to open a socket. /proc/sys/net is resolved
against the namespace of the thread that opens it, so sysctls are written
while entered.
"""
from __future__ import annotations

import errno
import fcntl
import os

from .errors import INTERNAL, CNIError

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs file: which kind of namespace it is


class NetnsNotFound(CNIError):
    """The netns path does not exist (any more): DEL treats this as done."""

    def __init__(self, path: str) -> None:
        super().__init__(INTERNAL, f'failed to open netns "{path}": no such file or directory', path)
        self.path = path


class NotANetns(CNIError):
    """The path exists but is not a network namespace."""

    def __init__(self, path: str) -> None:
        super().__init__(INTERNAL, f'"{path}" is not a valid network namespace', path)
        self.path = path


def _libc_setns():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.setns
    fn.argtypes = (ctypes.c_int, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn, ctypes


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, nstype)
        return
    try:
        from ._setns import setns as c_setns  # our C helper (cni/_setns.c), built when a compiler is there
    except ImportError:
        c_setns = None
    if c_setns is not None:
        c_setns(fd, nstype)
        return
    fn, ctypes = _libc_setns()
    if fn(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def open_netns(path: str) -> int:
    """Open a netns file; typed errors for a missing path and a non-netns file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsNotFound(path) from None
    except OSError as exc:
        raise CNIError(INTERNAL, f'failed to open netns "{path}": {exc.strerror}', path) from None
    try:
        kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError as exc:
        kind = _nstype_without_the_ioctl(fd) if exc.errno == errno.ENOSYS else -1
    if kind != CLONE_NEWNET:
        os.close(fd)
        raise NotANetns(path)
    return fd


def _nstype_without_the_ioctl(fd: int) -> int:
    """When the ioctl itself is missing: a kernel answers ENOTTY for an ioctl it does not know,
    but qemu-user (the arm64 release tested on amd64) answers ENOSYS for NS_GET_NSTYPE, which
    it does not pass through. Then any file of nsfs counts; setns(fd, CLONE_NEWNET) checks
    the kind when the netns is entered, and the kernel when an fd is handed to it."""
    if os.fstat(fd).st_dev == os.stat("/proc/self/ns/net").st_dev:
        return CLONE_NEWNET
    return -1


def current_path() -> str:
    return f"/proc/{os.getpid()}/task/{_gettid()}/ns/net"


def _gettid() -> int:
    gettid = getattr(os, "gettid", None)
    if gettid is not None:
        return gettid()
    return int(os.readlink("/proc/thread-self").rsplit("/", 1)[-1])


class entered:
    """`with entered(path):` runs the block inside the netns at `path` (None: stay where we are).

    A class rather than a contextlib generator: contextlib costs every exec an import.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._target = self._home = -1

    def __enter__(self) -> None:
        if not self.path:
            return
        target = open_netns(self.path)
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(target)
            raise
        try:
            setns(target)
        except OSError as exc:
            os.close(target)
            os.close(home)
            raise CNIError(INTERNAL, f'failed to enter netns "{self.path}": {exc.strerror}', self.path) from None
        self._target, self._home = target, home

    def __exit__(self, *exc_info: object) -> None:
        if self._home < 0:
            return
        target, home = self._target, self._home
        self._target = self._home = -1
        try:
            # Failing to come back would run the rest of the plugin in the wrong
            # namespace; there is no safe way to continue then.
            setns(home)
        finally:
            os.close(target)
            os.close(home)


class locked:
    """`with locked(path):` holds an exclusive flock on the netns file at `path`.

    Serialises plugins that read, then change, state shared by the whole netns
    (sbr picks free routing tables). The file is opened read-only and never
    created: a vanished netns raises NetnsNotFound instead of leaving a file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = open_netns(self.path)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the lock
            self._fd = -1


def exists(path: str | None) -> bool:
    """True when `path` names a live network namespace."""
    if not path:
        return False
    try:
        os.close(open_netns(path))
        return True
    except CNIError:
        return False
