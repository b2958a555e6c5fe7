"""host-device: lend a whole host interface (a NIC, an SR-IOV VF) to a container.

ADD finds the host link (by name, MAC, kernel device path or PCI address),
moves it into the container netns under CNI_IFNAME, keeping its host name in
the link alias, brings it up and configures IPAM addresses on it; any failure
moves it back and releases the addresses. DEL moves it back to the host under
its original name, down, alias cleared, and releases the addresses; a gone
netns or link is success. A PCI device bound to a userspace (DPDK) driver has
no kernel link: it is not moved, only IPAM runs.
"""
from __future__ import annotations

import os

from cni import ipam
from cni.conf import Fields, NetConf, parse_mac
from cni.errors import INCOMPATIBLE_VERSION, INTERNAL, INVALID_NETWORK_CONFIG, CNIError, invalid_config
from cni.link import (
    as_interface,
    check_interface_config,
    configure_interface,
    container_interface_index,
    move_link_into,
    require_link,
    return_link_to_host,
    set_link_up,
)
from cni.netlink import Link, Netlink
from cni.rollback import Rollback
from cni.skel import Call, plugin
from cni.types import LEGACY, Result

SYS_BUS_PCI = "/sys/bus/pci/devices"
# Drivers that hand a NIC to userspace (DPDK): such a device has no kernel link to move.
USERSPACE_DRIVERS = ("vfio-pci", "uio_pci_generic", "igb_uio")
SELECTORS = ("device", "hwaddr", "kernelpath", "pciBusID")


class HostDeviceConf(NetConf):
    device: str = ""
    hwaddr: str = ""
    kernelpath: str = ""
    pci_address: str = ""  # pciBusID, or the runtime's deviceID capability

    @classmethod
    def load(cls, call: Call, *, lenient: bool = False) -> "HostDeviceConf":
        """The configuration; `lenient` (DEL, GC, STATUS) does not insist on a device selector."""
        f = Fields(call.config)
        runtime = Fields(f.obj("runtimeConfig"), "runtimeConfig")
        conf = cls(**cls.common(call.config, call.cni_version),
                   device=f.text("device"), hwaddr=f.text("hwaddr"), kernelpath=f.text("kernelpath"),
                   # The device plugin's choice (SR-IOV) overrides the configured address.
                   pci_address=runtime.text("deviceID") or f.text("pciBusID"))
        if lenient:
            return conf
        given = [key for key, value in zip(SELECTORS, (conf.device, conf.hwaddr, conf.kernelpath,
                                                        conf.pci_address)) if value]
        if not given:
            raise invalid_config('specify either "device", "hwaddr", "kernelpath" or "pciBusID"')
        if len(given) > 1:
            raise invalid_config(f"specify only one of {', '.join(given)}",
                                 "runtimeConfig.deviceID counts as pciBusID")
        if conf.hwaddr:
            conf.hwaddr = parse_mac(conf.hwaddr, "hwaddr")
        if conf.kernelpath and (os.path.normpath(conf.kernelpath) != conf.kernelpath.rstrip("/")
                                or not conf.kernelpath.startswith("/sys/devices/")):
            raise invalid_config(f'kernel device path "{conf.kernelpath}" must be absolute, '
                                 "without \"..\", and begin with /sys/devices/")
        if conf.pci_address:
            check_pci_address(conf.pci_address)
        return conf

    def dpdk(self) -> bool:
        """The PCI device is bound to a userspace driver (checked each time: it may be rebound)."""
        return bool(self.pci_address) and pci_driver(self.pci_address) in USERSPACE_DRIVERS


def check_pci_address(address: str) -> None:
    import re

    # domain:bus:device.function; a path component, so nothing else may pass.
    if not re.fullmatch(r"[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]", address):
        raise invalid_config(f'invalid PCI address "{address}"', "want domain:bus:device.function, e.g. 0000:03:00.1")


def pci_driver(address: str) -> str:
    """The name of the driver bound to the PCI device ("" when none or no such device)."""
    driver = os.path.join(SYS_BUS_PCI, address, "driver")
    return os.path.basename(os.path.realpath(driver)) if os.path.exists(driver) else ""


def find_host_device(conf: HostDeviceConf) -> Link:
    """The link the configuration selects, in the current (host) netns."""
    with Netlink() as nl:
        if conf.device:
            link = nl.get_link(conf.device)
            if link is None:
                raise CNIError(INVALID_NETWORK_CONFIG, f'host device "{conf.device}" not found')
            return link
        links = nl.links()
    if conf.hwaddr:
        found = next((l for l in links if l.mac == conf.hwaddr), None)
        if found is None:
            raise CNIError(INVALID_NETWORK_CONFIG, f"no host device with MAC {conf.hwaddr}")
        return found
    if conf.kernelpath:
        names = sysfs_net_names(os.path.join(conf.kernelpath, "net"))
        where = f'at "{conf.kernelpath}"'
    else:
        names = sysfs_net_names(pci_net_dir(conf.pci_address))
        where = f"for PCI address {conf.pci_address}"
    by_name = {l.name: l for l in links}
    found = next((by_name[n] for n in names if n in by_name), None)
    if found is None:
        raise CNIError(INVALID_NETWORK_CONFIG, f"no host network device {where}")
    return found


def pci_net_dir(address: str) -> str:
    """Where sysfs lists a PCI device's interfaces (virtio devices: one level down)."""
    device = os.path.join(SYS_BUS_PCI, address)
    if not os.path.isdir(device):
        raise CNIError(INVALID_NETWORK_CONFIG, f"no PCI device {address}")
    net = os.path.join(device, "net")
    if os.path.lexists(net):
        return net
    virtio = sorted(e for e in os.listdir(device) if e.startswith("virtio"))
    for entry in virtio:
        if os.path.isdir(os.path.join(device, entry, "net")):
            return os.path.join(device, entry, "net")
    raise CNIError(INVALID_NETWORK_CONFIG, f"PCI device {address} has no network interface")


def sysfs_net_names(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError as exc:
        raise CNIError(INVALID_NETWORK_CONFIG, f'failed to list network devices at "{directory}": '
                                               f"{exc.strerror}") from None


def add(call: Call) -> Result:
    conf = HostDeviceConf.load(call)
    dpdk = conf.dpdk()
    if not conf.ipam_type and call.cni_version in LEGACY:
        # Refused before anything moves: these versions cannot express a result without addresses.
        raise CNIError(INCOMPATIBLE_VERSION, f"a host device without ipam has no result in version {call.cni_version}")
    host_link = None if dpdk else find_host_device(conf)

    with Rollback() as undo:
        link = None
        if host_link is not None:
            link = move_link_into(call.netns, call.ifname, host_link)
            undo.push(lambda: return_link_to_host(call.netns, call.ifname, up=host_link.up), "move the device back",
                      stage="link")
        if conf.ipam_type:
            result = ipam.lease(conf, call, undo)
            for ip in result.ips:
                ip.interface = 0 if link is not None else None
            if link is not None:
                configure_interface(call.netns, call.ifname, result, 0)
        else:
            result = Result(cni_version=call.cni_version)
            if link is not None:
                set_link_up(call.netns, call.ifname)  # also without addresses, as the reference does

    if link is not None:
        result.interfaces = [as_interface(link, sandbox=call.netns)]
    result.dns = conf.dns
    return result


def delete(call: Call) -> None:
    conf = HostDeviceConf.load(call, lenient=True)
    if not (conf.pci_address and conf.dpdk()):
        # No netns (containerd's DEL): nothing to reach; a physical device comes back to the
        # root netns when the netns goes, a virtual one goes with it.
        return_link_to_host(call.netns, call.ifname, conf.device)
    ipam.delete(conf, call)


def check(call: Call) -> None:
    conf = HostDeviceConf.load(call)
    if conf.ipam_type:
        ipam.check(conf, call)
    if conf.prev_result is None:
        raise invalid_config("required prevResult missing")
    if conf.dpdk():
        return
    index = container_interface_index(conf.prev_result, call.ifname, call.netns)
    expected = conf.prev_result.interfaces[index]
    with Netlink(call.netns) as nl:
        link = require_link(nl, call.ifname, call.netns)
    if expected.mac and link.mac != expected.mac:
        raise CNIError(INTERNAL, f'"{call.ifname}": MAC is {link.mac}, want {expected.mac}')
    check_interface_config(call.netns, call.ifname, conf.prev_result, index)


def status(call: Call) -> None:
    ipam.status(HostDeviceConf.load(call, lenient=True), call)


def gc(call: Call) -> None:
    ipam.gc(HostDeviceConf.load(call, lenient=True), call)


main = plugin("host-device", add=add, delete=delete, check=check, gc=gc, status=status)
