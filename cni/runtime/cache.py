"""The result cache: one file per attachment, in libcni's layout.

`<dir>/results/<network>-<containerID>-<ifname>` holds a JSON object of kind
"cniCacheV1": containerId, config (base64 of the network's bytes), ifName,
networkName, netns, cniArgs ([[k, v], ...]), capabilityArgs and result. The
file is written the way Go's encoding/json writes it, so libcni and this
package read each other's entries. An older libcni wrote the bare result; it is
still read.

Every part of the file name is validated: no name, container ID or interface
can place the file outside `<dir>/results`.
"""
from __future__ import annotations

import base64
import json
import os

from ..conf import is_valid_name
from ..record import Record
from ..errors import INVALID_ENV, INVALID_NETWORK_CONFIG, IO_FAILURE, CNIError
from ..skel import validate_ifname
from .conf import go_json

DEFAULT_CACHE_DIR = "/var/lib/cni"
KIND = "cniCacheV1"


class Entry(Record):
    """One cached attachment."""

    container_id: str = ""
    network: str = ""
    ifname: str = ""
    config: bytes = b""
    netns: str = ""
    cni_args: list[tuple[str, str]]
    capability_args: dict
    result: dict | None = None

    def __init__(self, **values: object) -> None:
        self.cni_args, self.capability_args = [], {}
        super().__init__(**values)

    def to_bytes(self) -> bytes:
        # Field order of libcni's struct; maps inside are sorted as Go sorts them.
        parts = [("kind", KIND), ("containerId", self.container_id),
                 ("config", base64.b64encode(self.config).decode()), ("ifName", self.ifname),
                 ("networkName", self.network)]
        if self.netns:
            parts.append(("netns", self.netns))
        if self.cni_args:
            parts.append(("cniArgs", [list(pair) for pair in self.cni_args]))
        if self.capability_args:
            parts.append(("capabilityArgs", self.capability_args))
        if self.result:
            parts.append(("result", self.result))
        return b"{" + b",".join(go_json(k) + b":" + go_json(v) for k, v in parts) + b"}"

    @classmethod
    def from_bytes(cls, data: bytes) -> "Entry":
        """Raises ValueError when this is not a cniCacheV1 entry."""
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("kind") != KIND:
            raise ValueError("not a cniCacheV1 entry")
        args = obj.get("cniArgs") or []
        if not isinstance(args, list) or not all(isinstance(p, list) and len(p) == 2 for p in args):
            raise ValueError("cniArgs must be a list of pairs")
        caps = obj.get("capabilityArgs") or {}
        result = obj.get("result")
        if not isinstance(caps, dict) or (result is not None and not isinstance(result, dict)):
            raise ValueError("capabilityArgs and result must be objects")
        config = obj.get("config") or ""
        return cls(container_id=str(obj.get("containerId") or ""), network=str(obj.get("networkName") or ""),
                   ifname=str(obj.get("ifName") or ""), config=base64.b64decode(config, validate=True),
                   netns=str(obj.get("netns") or ""), cni_args=[(str(k), str(v)) for k, v in args],
                   capability_args=caps, result=result)


class Cache:
    def __init__(self, directory: str = DEFAULT_CACHE_DIR) -> None:
        self.directory = directory
        self.results = os.path.join(directory, "results")

    def path(self, network: str, container_id: str, ifname: str) -> str:
        if not is_valid_name(network):
            raise CNIError(INVALID_NETWORK_CONFIG, "invalid network name for the result cache", str(network)[:200])
        if not is_valid_name(container_id):
            raise CNIError(INVALID_ENV, "invalid container ID for the result cache", container_id[:200])
        validate_ifname(ifname)
        name = f"{network}-{container_id}-{ifname}"
        path = os.path.join(self.results, name)
        # The patterns above already rule out separators; this makes the promise explicit.
        if os.path.dirname(path) != self.results or name in (".", ".."):
            raise CNIError(INVALID_ENV, "cache file name escapes the cache directory", name)
        return path

    def save(self, entry: Entry) -> None:
        path = self.path(entry.network, entry.container_id, entry.ifname)
        name = os.path.basename(path)
        tmp = f"{name}.tmp{os.getpid()}"
        dir_fd = -1
        try:
            os.makedirs(self.results, mode=0o700, exist_ok=True)
            # Relative to the directory, which must not be a symlink planted to send the write elsewhere.
            dir_fd = os.open(self.results, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dir_fd)
            with os.fdopen(fd, "wb") as f:
                f.write(entry.to_bytes())
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            if dir_fd >= 0:
                try:
                    os.unlink(tmp, dir_fd=dir_fd)
                except OSError:
                    pass
            raise CNIError(IO_FAILURE, f'failed to set network "{entry.network}" cached result: {exc.strerror}',
                           path) from None
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)

    def read(self, network: str, container_id: str, ifname: str) -> bytes | None:
        """The raw cache file, or None when there is none (or the names cannot have one)."""
        try:
            with open(self.path(network, container_id, ifname), "rb") as f:
                return f.read()
        except (OSError, CNIError):
            return None

    def load(self, network: str, container_id: str, ifname: str) -> Entry | None:
        """The cached entry; a bare (pre-cniCacheV1) result becomes an entry with only a result."""
        data = self.read(network, container_id, ifname)
        if data is None:
            return None
        try:
            return Entry.from_bytes(data)
        except (ValueError, TypeError):
            pass
        try:
            legacy = json.loads(data)
        except ValueError:
            legacy = None
        if not isinstance(legacy, dict):
            raise CNIError(IO_FAILURE, f'failed to read network "{network}" cached result', "unreadable cache file")
        return Entry(container_id=container_id, network=network, ifname=ifname, result=legacy)

    def remove(self, network: str, container_id: str, ifname: str) -> None:
        try:
            os.unlink(self.path(network, container_id, ifname))
        except FileNotFoundError:
            pass
        except CNIError:
            pass

    def entries(self, container_id: str = "") -> list[Entry]:
        """Every readable cniCacheV1 entry (for one container when given), in file-name order."""
        try:
            names = sorted(os.listdir(self.results))
        except OSError:
            return []
        found = []
        for name in names:
            if container_id and f"-{container_id}-" not in name:
                continue
            try:
                with open(os.path.join(self.results, name), "rb") as f:
                    entry = Entry.from_bytes(f.read())
            except (OSError, ValueError, TypeError):
                continue
            if container_id and entry.container_id != container_id:
                continue
            if entry.ifname and entry.network:
                found.append(entry)
        return found
