"""firewall (chained): let a container's forwarded traffic through the host's firewall.

ADD takes the addresses of prevResult and, with the iptables backend, accepts
their traffic in CNI-FORWARD (see cni/firewall.py), optionally isolating bridges
from each other (ingressPolicy same-bridge); with the firewalld backend it puts
each address into a firewalld zone as a source. The result is prevResult.
The backend "" (podman writes it) means firewalld when it runs, else iptables.
Everything is validated before anything is written; a failed ADD leaves nothing.
DEL removes this container's rules, also without prevResult or netns (the rules
carry a comment naming network, container and interface); shared chains stay.
"""
from __future__ import annotations

from cni import firewall
from cni.firewall import rule_comment
from cni.conf import Fields, NetConf
from cni.errors import invalid_config
from cni.rollback import Rollback, checkpoint
from cni.skel import Call, Plugin
from cni.types import Result
from cni.version import starting_from

IPTABLES, FIREWALLD = "iptables", "firewalld"
BACKENDS = ("", IPTABLES, FIREWALLD)
MAX_CHAIN_LENGTH = 28


class FirewallConf(NetConf):
    backend: str = ""
    admin_chain: str = firewall.DEFAULT_ADMIN_CHAIN
    zone: str = "trusted"
    ingress_policy: str = ""

    @classmethod
    def load(cls, call: Call, *, lenient: bool = False) -> "FirewallConf":
        """The configuration; `lenient` (DEL, GC) accepts it without prevResult and with unknown
        values, which ADD would have refused before writing anything."""
        f = Fields(call.config)
        conf = cls(**cls.common(call.config, call.cni_version),
                   backend=f.text("backend"),
                   admin_chain=f.text("iptablesAdminChainName") or firewall.DEFAULT_ADMIN_CHAIN,
                   zone=f.text("firewalldZone") or "trusted",
                   ingress_policy=f.text("ingressPolicy"))
        if lenient:
            return conf
        if conf.backend not in BACKENDS:
            raise invalid_config(f'unknown firewall backend "{conf.backend}": want iptables or firewalld')
        if conf.ingress_policy not in firewall.INGRESS_POLICIES:
            raise invalid_config(f'unknown ingress policy: "{conf.ingress_policy}": want open or same-bridge')
        chain = conf.admin_chain
        if len(chain) > MAX_CHAIN_LENGTH or chain[0] in "-!" or any(c.isspace() or c in "\"'" for c in chain):
            raise invalid_config(f'invalid iptablesAdminChainName "{chain}": '
                                 f"at most {MAX_CHAIN_LENGTH} characters, no spaces or quotes")
        if conf.prev_result is None:
            raise invalid_config("missing prevResult from earlier plugin")
        return conf

    def bridge(self) -> str:
        """The bridge of prevResult (its first interface) when same-bridge isolation is asked for."""
        if self.ingress_policy != firewall.SAME_BRIDGE:
            return ""
        interfaces = self.prev_result.interfaces if self.prev_result else []
        if not interfaces or not interfaces[0].name:
            raise invalid_config(f'interface needs to be set for ingress policy "{self.ingress_policy}", '
                                 'make sure to chain "firewall" plugin with "bridge"')
        return interfaces[0].name

    def uses_firewalld(self) -> bool:
        if self.backend:
            return self.backend == FIREWALLD
        from cni import firewalld  # only to ask whether it runs

        return firewalld.is_running()

    def addresses(self) -> list:
        return [ip.address for ip in self.prev_result.ips] if self.prev_result else []


def add(call: Call) -> Result:
    conf = FirewallConf.load(call)
    bridge = conf.bridge()
    ips = conf.addresses()
    if conf.uses_firewalld():
        from cni import firewalld

        firewalld.require_running()
        with Rollback() as undo:
            for ip in ips:
                source = firewall.host_cidr(ip)
                if firewalld.add_source(conf.zone, source):
                    undo.push(lambda s=source: firewalld.remove_source(conf.zone, s), f"remove {source}")
        checkpoint("firewalld")
    else:
        firewall.setup(ips, rule_comment(conf.name, call.container_id, call.ifname), conf.admin_chain, bridge)
        checkpoint("iptables")
    return conf.prev_result


def delete(call: Call) -> None:
    conf = FirewallConf.load(call, lenient=True)
    if conf.backend in ("", FIREWALLD):
        from cni import firewalld

        if firewalld.is_running():
            for ip in conf.addresses():
                firewalld.remove_source(conf.zone, firewall.host_cidr(ip))
            return
        if conf.backend == FIREWALLD:
            return  # firewalld is not running: nothing of ours can be in a zone now
    firewall.teardown(rule_comment(conf.name, call.container_id, call.ifname), conf.addresses())


def check(call: Call) -> None:
    conf = FirewallConf.load(call)
    if conf.uses_firewalld():
        from cni import firewalld
        from cni.errors import INTERNAL, CNIError

        firewalld.require_running()
        for ip in conf.addresses():
            if not firewalld.has_source(conf.zone, firewall.host_cidr(ip)):
                raise CNIError(INTERNAL, f"failed to find the address {firewall.host_cidr(ip)} "
                                         f"in the {conf.zone} zone")
        return
    firewall.check(conf.addresses(), rule_comment(conf.name, call.container_id, call.ifname),
                   conf.admin_chain, conf.bridge())


def gc(call: Call) -> None:
    conf = FirewallConf.load(call, lenient=True)
    if conf.backend == FIREWALLD:
        return  # zone sources carry no owner: nothing to tell stale from live
    keep = {rule_comment(conf.name, cid, ifname) for cid, ifname in call.valid_attachments()}
    firewall.gc(rule_comment(conf.name, "")[:-1], keep)


main = Plugin("firewall", add=add, delete=delete, check=check, gc=gc,
              supported=starting_from("0.4.0"))  # as the reference; plugins/registry.py FIRST_VERSION
