"""The lease store, byte-compatible with Go host-local.

`<dataDir>/<network>/` holds one file per reserved address, named by the
address as Go prints it ("10.1.2.3", "fd00::3") and containing
`<containerID>\\r\\n<ifname>` without a trailing newline (older Go versions
wrote the container ID alone), one `last_reserved_ip.<set index>` per range
set, and an empty `lock` file that serialises every change with flock.

Every file is opened relative to the network directory's descriptor with
O_NOFOLLOW, so a symlink planted in the data directory is never followed. A
lease appears atomically: its content is written to a temporary file, synced,
then hard-linked to the address name, which fails like O_EXCL when taken.
"""
from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)
if TYPE_CHECKING:
    from typing import Iterator, Optional

from ..errors import INVALID_NETWORK_CONFIG, IO_FAILURE, CNIError
from ..types import IPAddress

LOCK = "lock"
LAST_RESERVED = "last_reserved_ip."
TMP_PREFIX = ".pycni-tmp-"
LINE_BREAK = "\r\n"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Owner = tuple  # (container_id, ifname); ifname "" for a legacy lease


def _safe_component(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise CNIError(INVALID_NETWORK_CONFIG, f"invalid network name for host-local store: {name!r}")
    return name


def parse_owner(data: bytes) -> Owner:
    text = data.decode(errors="replace").strip()
    cid, _, ifname = text.partition(LINE_BREAK)
    return cid.strip(), ifname.strip()


def lease_name(text: str) -> Optional[IPAddress]:
    """The address a file name stands for, or None for any other file."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ip if str(ip) == text else None


class Store:
    """One network's directory; use as a context manager to hold its lock."""

    def __init__(self, data_dir: str, network: str, create: bool = True) -> None:
        self.path = os.path.join(data_dir, _safe_component(network))
        self.dir_fd = -1
        self.lock_fd = -1
        try:
            if create:
                os.makedirs(self.path, mode=0o755, exist_ok=True)
            self.dir_fd = os.open(self.path, _DIR_FLAGS)
        except OSError as exc:
            raise self._io_error("cannot open data directory", exc) from None

    @classmethod
    def existing(cls, data_dir: str, network: str) -> Optional["Store"]:
        """The store if its directory exists (DEL, GC, CHECK never create it)."""
        try:
            return cls(data_dir, network, create=False)
        except CNIError:
            if not os.path.lexists(os.path.join(data_dir, _safe_component(network))):
                return None
            raise

    def _io_error(self, what: str, exc: OSError) -> CNIError:
        return CNIError(IO_FAILURE, f"host-local: {what} {self.path}", exc.strerror or str(exc))

    # ---- locking -----------------------------------------------------------------

    def __enter__(self) -> "Store":
        try:
            self.lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                                   dir_fd=self.dir_fd)
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        except OSError as exc:
            raise self._io_error("cannot lock", exc) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in (self.lock_fd, self.dir_fd):
            if fd >= 0:
                os.close(fd)  # closing drops the flock
        self.lock_fd = self.dir_fd = -1

    # ---- reading -------------------------------------------------------------------

    def _read(self, name: str) -> Optional[bytes]:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=self.dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP):
                return None
            raise self._io_error(f"cannot read {name} in", exc) from None
        try:
            return os.read(fd, 4096)
        finally:
            os.close(fd)

    def names(self) -> list[str]:
        return os.listdir(self.dir_fd)

    def leases(self) -> dict[IPAddress, Owner]:
        """Every reservation, read with one directory listing."""
        out: dict[IPAddress, Owner] = {}
        for name in self.names():
            ip = lease_name(name)
            if ip is None:
                continue
            data = self._read(name)
            if data is not None:
                out[ip] = parse_owner(data)
        return out

    def last_reserved(self, index: int) -> Optional[IPAddress]:
        data = self._read(f"{LAST_RESERVED}{index}")
        return lease_name(data.decode(errors="replace").strip()) if data else None

    # ---- writing -------------------------------------------------------------------

    def _write_temp(self, content: bytes, durable: bool) -> str:
        name = TMP_PREFIX + os.urandom(8).hex()
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=self.dir_fd)
        try:
            try:
                os.write(fd, content)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            self._unlink(name)  # a full disk must not leave an empty temporary file behind
            raise
        return name

    def reserve(self, ip: IPAddress, container_id: str, ifname: str) -> bool:
        """Create the lease file; False when the address is already taken."""
        try:
            # Synced before it is linked: after a crash, a lease is either absent (the
            # address is free) or names its owner, never an empty file no DEL matches.
            tmp = self._write_temp(f"{container_id}{LINE_BREAK}{ifname}".encode(), durable=True)
            try:
                os.link(tmp, str(ip), src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd, follow_symlinks=False)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp, dir_fd=self.dir_fd)
        except OSError as exc:
            raise self._io_error(f"cannot reserve {ip} in", exc) from None
        return True

    def set_last_reserved(self, index: int, ip: IPAddress) -> None:
        try:
            # Not synced: it only says where the round-robin resumes (1 to 5 ms an ADD here).
            tmp = self._write_temp(str(ip).encode(), durable=False)
            try:
                os.replace(tmp, f"{LAST_RESERVED}{index}", src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            except OSError:
                self._unlink(tmp)
                raise
        except OSError as exc:
            raise self._io_error("cannot record the last reserved address in", exc) from None

    def release(self, ip: IPAddress) -> None:
        self._unlink(str(ip))

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._io_error(f"cannot release {name} in", exc) from None

    def release_owner(self, container_id: str, ifname: str) -> list[IPAddress]:
        """Free the addresses of one attachment, and legacy leases of the container."""
        freed = [ip for ip, owner in self.leases().items() if owns(owner, container_id, ifname)]
        for ip in freed:
            self.release(ip)
        return freed

    def stale_temps(self) -> Iterator[str]:
        return (n for n in self.names() if n.startswith(TMP_PREFIX))

    def remove_temp(self, name: str) -> None:
        self._unlink(name)


def owns(owner: Owner, container_id: str, ifname: str) -> bool:
    """Whether a lease belongs to an attachment; a legacy lease names only the container."""
    cid, lease_ifname = owner
    return cid == container_id and (lease_ifname == ifname or lease_ifname == "")
