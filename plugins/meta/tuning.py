"""tuning: sysctls and link attributes of the container interface, put back on DEL.

Chained after a main plugin. ADD reads what it is about to change (the
interface's MAC, MTU, promiscuous and all-multicast modes, transmit queue
length, and the sysctls), saves it in `<dataDir>/<containerID>_<ifname>.json`
(the reference's file, with a `sysctl` map added), then changes it; a failure
puts back each value already changed and leaves no file. DEL puts the saved
values back while the netns and interface exist and always drops the file.
"""
from __future__ import annotations

import errno
import os

from cni import jsontext, sysctl
from cni.conf import Fields, NetConf, check_data_dir, parse_mac
from cni.errors import INTERNAL, INVALID_NETWORK_CONFIG, CNIError, invalid_config
from cni.netlink import Link, Netlink, NetlinkError
from cni.netns import NetnsNotFound, NotANetns, entered
from cni.record import Record
from cni.rollback import Rollback
from cni.skel import Call, plugin
from cni.types import Result

DEFAULT_DATA_DIR = "/run/cni/tuning"
# Where the reference reads its list of permitted sysctls (one regular
# expression per line, matched against the key as configured); no file: any
# net.* key is permitted. The path is fixed, as in the reference.
ALLOWLIST = "/etc/cni/tuning/allowlist.conf"
U32_MAX = 2**32 - 1


class Saved(Record):
    """The original values of what ADD changes; None: not changed."""

    mac: str | None = None
    promisc: bool | None = None
    mtu: int | None = None
    allmulti: bool | None = None
    txqlen: int | None = None
    sysctl: dict  # /proc/sys path -> value before ADD

    def __init__(self, **values: object) -> None:
        self.sysctl = {}
        super().__init__(**values)

    def to_json(self) -> str:
        # The reference's keys and layout first, so its DEL can read our file and ours its.
        out: dict = {}
        for key, value in (("mac", self.mac), ("promisc", self.promisc), ("mtu", self.mtu),
                           ("allmulti", self.allmulti), ("txQLen", self.txqlen)):
            if value is not None:
                out[key] = value
        if self.sysctl:
            out["sysctl"] = dict(self.sysctl)
        return jsontext.dumps(out, indent=1)

    @classmethod
    def from_json(cls, data: bytes) -> "Saved":
        raw = jsontext.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("not an object")
        f = Fields(raw, "saved")
        saved = cls(mac=f.text("mac") or None, mtu=f.number("mtu") or None,
                    promisc=f.flag("promisc") if f.has("promisc") else None,
                    allmulti=f.flag("allmulti") if f.has("allmulti") else None,
                    txqlen=f.number("txQLen") if f.has("txQLen") else None)
        saved.sysctl = {k: v for k, v in f.obj("sysctl").items() if isinstance(v, str)}
        return saved


class TuningConf(NetConf):
    data_dir: str = DEFAULT_DATA_DIR
    sysctl: dict  # key as configured -> value
    mac: str = ""  # as given: the result echoes it unchanged, capitals included
    mtu: int = 0
    promisc: bool = False
    allmulti: bool | None = None
    txqlen: int | None = None

    def __init__(self, **values: object) -> None:
        self.sysctl = {}
        super().__init__(**values)

    @classmethod
    def load(cls, call: Call, *, lenient: bool = False) -> "TuningConf":
        """The configuration; `lenient` (DEL, GC, STATUS) reads only where the saved values are."""
        f = Fields(call.config)
        conf = cls(**cls.common(call.config, call.cni_version),
                   data_dir=check_data_dir(f.text("dataDir") or DEFAULT_DATA_DIR))
        if lenient:
            return conf
        conf.sysctl = _sysctl_map(f, "sysctl")
        conf.mac = f.text("mac")
        conf.mtu = f.number("mtu", minimum=0)
        conf.promisc = f.flag("promisc")
        conf.allmulti = f.flag("allmulti") if f.has("allmulti") else None
        conf.txqlen = f.number("txQLen", minimum=0, maximum=U32_MAX) if f.has("txQLen") else None

        # Later wins, in the reference's order: mac, CNI_ARGS MAC, runtimeConfig.mac, args.cni.
        env_mac = call.cni_args(("MAC",)).get("MAC", "")
        runtime_mac = Fields(conf.runtime_config, "runtimeConfig").text("mac")
        conf.mac = runtime_mac or env_mac or conf.mac
        args = conf.cni_args()
        conf.sysctl.update(_sysctl_map(args, "sysctl"))  # also without a "sysctl" map (the reference panicked)
        if args.has("mac"):
            conf.mac = args.text("mac")
        if args.has("promisc"):
            conf.promisc = args.flag("promisc")
        if args.has("mtu"):
            conf.mtu = args.number("mtu", minimum=0)
        if args.has("allmulti"):
            conf.allmulti = args.flag("allmulti")
        if args.has("txQLen"):
            conf.txqlen = args.number("txQLen", minimum=0, maximum=U32_MAX)
        if conf.mac:
            parse_mac(conf.mac)
        return conf

    @property
    def changes_link(self) -> bool:
        return bool(self.mac or self.mtu or self.promisc or self.allmulti is not None or self.txqlen is not None)


def _sysctl_map(f: Fields, key: str) -> dict:
    values = f.obj(key)
    for name, value in values.items():
        if not isinstance(value, str):
            raise invalid_config(f"{f._name(key)}.{name} must be a string", f"got {value!r}"[:200])
    return dict(values)


def sysctl_path(key: str, ifname: str) -> str:
    """The /proc/sys file of `key`; the first `IFNAME` in it names the interface.

    Dots become slashes before the name goes in, so an interface name with a dot
    (eth0.100) stays one path element. Only keys under net. are permitted.
    """
    import posixpath

    path = posixpath.normpath("/proc/sys/" + key.replace(".", "/").replace("IFNAME", ifname, 1))
    if not path.startswith("/proc/sys/net/"):
        raise invalid_config(f'invalid net sysctl key: "{key}"', "only keys under net. can be set")
    return path


def _refuse_duplicates(call: Call, conf: TuningConf) -> None:
    """A key given twice in `sysctl` (JSON keeps the last silently), or two keys naming one file."""
    if "sysctl" not in call.config:
        return
    seen: set[str] = set()

    def pairs(items: list) -> dict:
        return {"pairs": items}

    top = jsontext.loads(call.stdin, object_pairs_hook=pairs)["pairs"]
    sysctl_items = next((v for k, v in reversed(top) if k == "sysctl"), None)
    for key, _ in sysctl_items["pairs"] if isinstance(sysctl_items, dict) else []:
        if key in seen:
            raise invalid_config(f'duplicated sysctl key "{key}"')
        seen.add(key)
    paths: dict[str, str] = {}
    for key in conf.sysctl:
        path = sysctl_path(key, call.ifname)
        if path in paths:
            raise invalid_config(f'sysctl keys "{paths[path]}" and "{key}" name the same setting')
        paths[path] = key


def _check_allowlist(conf: TuningConf) -> None:
    try:
        with open(ALLOWLIST, encoding="utf-8", errors="replace") as fh:
            patterns = [line for line in fh.read().split("\n") if line]
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CNIError(INTERNAL, f"could not read the sysctl allowlist {ALLOWLIST}", exc.strerror or str(exc)) from None
    import re

    for key in conf.sysctl:
        try:
            allowed = any(re.search(pattern, key) for pattern in patterns)
        except re.error as exc:
            raise invalid_config(f"invalid pattern in {ALLOWLIST}", str(exc)) from None
        if not allowed:
            raise invalid_config(f"sysctl {key} is not allowed by {ALLOWLIST}")


def backup_path(data_dir: str, call: Call) -> str:
    return os.path.join(data_dir, f"{call.container_id}_{call.ifname}.json")


# ---- the interface ----------------------------------------------------------------


def _find_link(nl: Netlink, ifname: str) -> Link:
    link = nl.get_link(ifname)
    if link is None:
        raise CNIError(INTERNAL, f'failed to get "{ifname}": link not found')
    return link


def _set(nl: Netlink, link: Link, what: str, **change: object) -> None:
    try:
        nl.set_link(link.index, **change)  # type: ignore[arg-type]
    except NetlinkError as exc:
        code = INVALID_NETWORK_CONFIG if exc.errno in (errno.EINVAL, errno.ERANGE, errno.EADDRNOTAVAIL) else INTERNAL
        raise CNIError(code, f'failed to set {what} of "{link.name}": {exc}') from None


def _set_sysctl(path: str, value: str) -> None:
    try:
        sysctl.set(path, value)
    except OSError as exc:
        code = INVALID_NETWORK_CONFIG if exc.errno in (errno.ENOENT, errno.EINVAL) else INTERNAL
        raise CNIError(code, f"failed to set sysctl {path[len('/proc/sys/'):]} to {value!r}: "
                             f"{exc.strerror or exc}") from None


def snapshot(nl: Netlink, conf: TuningConf, ifname: str) -> Saved:
    saved = Saved()
    for key in conf.sysctl:
        path = sysctl_path(key, ifname)
        try:
            saved.sysctl[path] = sysctl.get(path)
        except PermissionError:
            pass  # write-only knobs (net.ipv4.route.flush) have no value to put back
        except OSError as exc:
            raise invalid_config(f"cannot read sysctl {key}: {exc.strerror or exc}") from None
    if conf.changes_link:
        link = _find_link(nl, ifname)
        saved.mac = link.mac if conf.mac else None
        saved.mtu = link.mtu if conf.mtu else None
        saved.promisc = link.promisc if conf.promisc else None
        saved.allmulti = link.allmulti if conf.allmulti is not None else None
        saved.txqlen = link.txqlen if conf.txqlen is not None else None
    return saved


def apply(nl: Netlink, conf: TuningConf, saved: Saved, ifname: str, addresses: list, undo: Rollback) -> None:
    """Change each value, registering its way back right after it changed; `addresses`
    (prevResult's IPConfigs) are announced with a new MAC."""
    for key, value in conf.sysctl.items():
        path = sysctl_path(key, ifname)
        _set_sysctl(path, value)
        if path in saved.sysctl:
            undo.push(lambda p=path: sysctl.set_if_present(p, saved.sysctl[p]), f"restore sysctl {path}")
    if not conf.changes_link:
        return
    link = _find_link(nl, ifname)
    steps = (("MAC address", "mac", parse_mac(conf.mac) if conf.mac else None, saved.mac),
             ("promiscuous mode", "promisc", True if conf.promisc else None, saved.promisc),
             ("MTU", "mtu", conf.mtu or None, saved.mtu),
             ("all-multicast mode", "allmulti", conf.allmulti, saved.allmulti),
             ("transmit queue length", "txqlen", conf.txqlen, saved.txqlen))
    for what, attribute, value, before in steps:
        if value is None:
            continue
        _set(nl, link, what, **{attribute: value})
        undo.push(lambda a=attribute, b=before: nl.set_link(link.index, **{a: b}), f"restore the {what}")
        if attribute == "mac":  # as the reference: neighbours learn the new MAC of the addresses at once
            from cni.link import announce_new_mac  # here: no other step of tuning needs cni.link

            announce_new_mac(ifname, value, [ip.address.ip for ip in addresses])


def restore(nl: Netlink, saved: Saved, ifname: str) -> None:
    """Put saved values back, as far as the interface and knobs are still there.

    Best effort, value by value, as the reference does: a value the kernel no
    longer takes (an MTU above what the link allows now) must not make DEL fail
    for ever and keep the runtime from cleaning up.
    """
    link = nl.get_link(ifname)
    if link is not None:
        for attribute, value in (("mtu", saved.mtu), ("mac", saved.mac), ("promisc", saved.promisc),
                                 ("allmulti", saved.allmulti), ("txqlen", saved.txqlen)):
            if value is None:
                continue
            try:
                nl.set_link(link.index, **{attribute: value})
            except NetlinkError:
                pass
    for path, value in saved.sysctl.items():
        if path.startswith("/proc/sys/net/"):  # the file is ours, but never write outside net.
            try:
                sysctl.set_if_present(path, value)
            except OSError:
                pass  # a knob that no longer takes the value (its interface was replaced)


# ---- the saved file -----------------------------------------------------------------


def _read_file(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CNIError(INTERNAL, f"failed to read {path}: {exc.strerror}") from None


def _write_file(path: str, data: bytes) -> None:
    """Written beside its name and renamed: a reader never sees half a file."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        temp = f"{path}.tmp{os.getpid()}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(temp, path)
    except OSError as exc:
        raise CNIError(INTERNAL, f"failed to save {path}: {exc.strerror}") from None


def _remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def save(path: str, saved: Saved, undo: Rollback) -> None:
    """Store `saved`; values an earlier ADD of this attachment saved are the originals and win."""
    before = _read_file(path)
    stored = Saved(**{k: v for k, v in saved.fields().items() if k != "sysctl"})
    stored.sysctl = dict(saved.sysctl)
    if before is not None:
        try:
            earlier = Saved.from_json(before)
        except (ValueError, CNIError):
            earlier = Saved()
        for key, value in earlier.fields().items():
            if key == "sysctl":
                stored.sysctl.update(value)
            elif value is not None:
                setattr(stored, key, value)
    _write_file(path, stored.to_json().encode())
    if before is None:
        undo.push(lambda: _remove_file(path), "remove the saved values", stage="backup")
    else:
        undo.push(lambda: _write_file(path, before), "put the earlier saved values back", stage="backup")


# ---- commands -----------------------------------------------------------------------


def _require_prev(conf: TuningConf) -> Result:
    if conf.prev_result is None:
        raise CNIError(INVALID_NETWORK_CONFIG, "required prevResult missing")
    return conf.prev_result


def add(call: Call) -> Result:
    conf = TuningConf.load(call)
    result = _require_prev(conf)
    _refuse_duplicates(call, conf)
    _check_allowlist(conf)
    path = backup_path(conf.data_dir, call)
    with entered(call.netns), Netlink() as nl, Rollback() as undo:
        saved = snapshot(nl, conf, call.ifname)
        if conf.changes_link or saved.sysctl:
            save(path, saved, undo)
        apply(nl, conf, saved, call.ifname, result.ips, undo)
    result.cni_version = call.cni_version
    if conf.mac:
        for iface in result.interfaces:
            if iface.name == call.ifname:
                iface.mac = conf.mac
    return result


def delete(call: Call) -> None:
    conf = TuningConf.load(call, lenient=True)
    path = backup_path(conf.data_dir, call)
    data = _read_file(path)
    if data is None:
        return
    try:
        saved = Saved.from_json(data)
    except (ValueError, CNIError):
        saved = None  # unreadable: nothing can be restored from it; it still goes
    if saved is not None and call.netns:
        try:
            with entered(call.netns), Netlink() as nl:
                restore(nl, saved, call.ifname)
        except (NetnsNotFound, NotANetns):
            pass  # the container is gone with everything in it
    _remove_file(path)


def check(call: Call) -> None:
    conf = TuningConf.load(call)
    _require_prev(conf)
    with entered(call.netns):
        for key, want in conf.sysctl.items():
            path = sysctl_path(key, call.ifname)
            try:
                have = sysctl.get(path)
            except OSError as exc:
                raise CNIError(INTERNAL, f"cannot read sysctl {key}: {exc.strerror or exc}") from None
            if have.split() != want.split():  # the kernel separates numbers with tabs
                raise CNIError(INTERNAL, f"tuning: sysctl {key} is {have!r}, configured {want!r}")
        with Netlink() as nl:
            link = nl.get_link(call.ifname)
        if link is None:
            raise CNIError(INTERNAL, f'tuning: cannot find container link "{call.ifname}"')
    mismatches = []
    if conf.mac and parse_mac(conf.mac) != link.mac:
        mismatches.append(f"MAC address is {link.mac}, configured {conf.mac}")
    if conf.promisc != link.promisc:  # as the reference: promisc off in the config means off
        mismatches.append(f"promiscuous mode is {'on' if link.promisc else 'off'}, configured "
                          f"{'on' if conf.promisc else 'off'}")
    if conf.mtu and conf.mtu != link.mtu:
        mismatches.append(f"MTU is {link.mtu}, configured {conf.mtu}")
    allmulti = link.allmulti
    if conf.allmulti is not None and conf.allmulti != allmulti:
        mismatches.append(f"all-multicast mode is {'on' if allmulti else 'off'}, configured "
                          f"{'on' if conf.allmulti else 'off'}")
    if conf.txqlen is not None and conf.txqlen != link.txqlen:
        mismatches.append(f"transmit queue length is {link.txqlen}, configured {conf.txqlen}")
    if mismatches:
        raise CNIError(INTERNAL, f'tuning: link "{call.ifname}": {"; ".join(mismatches)}')


def status(call: Call) -> None:
    TuningConf.load(call, lenient=True)


main = plugin("tuning", add, delete, check, None, status)
