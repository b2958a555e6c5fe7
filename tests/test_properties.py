"""Property tests of every configuration parser: any input gives a result or a CNI error, never an exception.

Covers each plugin's conf loader (bridge, macvlan, ipvlan, ptp, host-local,
dhcp), CNI_ARGS as each plugin reads it, prevResult of any shape, and the
skel's whole read-validate-dispatch path on arbitrary standard input.
(tests/test_conf.py and tests/test_args.py hold the library-level ones.)
"""
from __future__ import annotations

import io
import json

from hypothesis import given, settings, strategies as st

from cni.errors import CNIError
from cni.skel import Call, Plugin
from cni.types import Result

SETTINGS = settings(max_examples=300, deadline=None)

# Values that are sometimes right and mostly wrong for some key.
plausible = st.sampled_from([
    "", "x", "eth0", "bridge", "l2", "l3s", "passthru", "iptables", "nftables", "host-local", "../x", "/abs",
    "10.1.0.0/16", "10.1.0.5", "10.1.0.0/33", "fd00::/64", "fd00::1", "0.0.0.0/0", "banana", "02:00:00:00:00:01",
    "1.0.0", "0.2.0", "9.9.9", 0, 1, -1, 4094, 4095, 65535, 70000, 2**40, 1.5, True, False, None,
])
scalars = plausible | st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10) | plausible.filter(
        lambda v: isinstance(v, str)), inner, max_size=4),
    max_leaves=12)

COMMON_KEYS = ["cniVersion", "name", "type", "ipam", "dns", "args", "runtimeConfig", "prevResult"]
IPAM_KEYS = ["type", "subnet", "rangeStart", "rangeEnd", "gateway", "ranges", "routes", "dataDir", "resolvConf",
             "daemonSocketPath", "request", "provide", "priority"]


def range_like():
    rng = st.fixed_dictionaries({}, optional={k: plausible | json_values
                                              for k in ("subnet", "rangeStart", "rangeEnd", "gateway")})
    return st.lists(st.lists(rng, max_size=3) | json_values, max_size=3)


ipam_objects = st.fixed_dictionaries(
    {}, optional=dict({k: plausible | json_values for k in IPAM_KEYS}, ranges=range_like()))


def configs(*keys: str):
    optional = {k: plausible | json_values for k in COMMON_KEYS + list(keys)}
    optional["ipam"] = ipam_objects | json_values
    optional["name"] = st.sampled_from(["net", "n-1.x"]) | json_values
    return st.fixed_dictionaries({}, optional=optional)


cni_args = st.sampled_from(["", "IP=10.1.0.5", "MAC=02:00:00:00:00:01", "IgnoreUnknown=1;K8S_POD_NAME=a",
                            "IP", "IP=banana", "a=b=c"]) | st.text(max_size=30)


def call(raw: dict, args: str = "", command: str = "ADD") -> Call:
    return Call(command=command, container_id="ctr", netns="/run/netns/x", ifname="eth0", args=args,
                path=["/nonexistent"], stdin=json.dumps(raw).encode(), config=raw, cni_version="1.0.0",
                environ={})


def gives_conf_or_cni_error(load, *a) -> None:
    try:
        load(*a)
    except CNIError as err:
        assert 1 <= err.code < 100, err  # a spec code, never the internal 999


BRIDGE_KEYS = ("bridge", "isGateway", "isDefaultGateway", "forceAddress", "ipMasq", "ipMasqBackend", "mtu",
               "hairpinMode", "promiscMode", "vlan", "vlanTrunk", "preserveDefaultVlan", "macspoofchk",
               "enabledad", "disableContainerInterface", "portIsolation")


@SETTINGS
@given(configs(*BRIDGE_KEYS), cni_args)
def test_bridge_conf(raw, args):
    from plugins.main.bridge import BridgeConf

    gives_conf_or_cni_error(BridgeConf.load, call(raw, args))
    gives_conf_or_cni_error(BridgeConf.load_for_delete, call(raw, args, "DEL"))


@SETTINGS
@given(configs("master", "mode", "mtu", "mac", "linkInContainer", "bcqueuelen"), cni_args, st.booleans())
def test_macvlan_conf(raw, args, lenient):
    from plugins.main.macvlan import MacvlanConf

    gives_conf_or_cni_error(lambda: MacvlanConf.load(call(raw, args), lenient=lenient))


@SETTINGS
@given(configs("master", "mode", "mtu", "linkInContainer"), st.booleans())
def test_ipvlan_conf(raw, lenient):
    from plugins.main.ipvlan import IpvlanConf

    def load():
        conf = IpvlanConf.load(call(raw), lenient=lenient)
        conf.master_name()

    gives_conf_or_cni_error(load)


@SETTINGS
@given(configs("ipMasq", "ipMasqBackend", "mtu"), st.booleans())
def test_ptp_conf(raw, lenient):
    from plugins.main.ptp import PtpConf

    gives_conf_or_cni_error(lambda: PtpConf.load(call(raw), lenient=lenient))


@SETTINGS
@given(configs(), cni_args, st.booleans())
def test_host_local_conf(raw, args, strict):
    from cni.hostlocal import config

    def parse():
        env_ip = call(raw, args).cni_args(("IP",)).get("IP", "")
        conf = config.parse(raw, "1.0.0", env_ip, strict=strict)
        if strict:
            config.assign_requested(conf.range_sets, conf.requested)

    gives_conf_or_cni_error(parse)


@SETTINGS
@given(configs(), cni_args, st.booleans())
def test_dhcp_conf(raw, args, lenient):
    from plugins.ipam.dhcp import DhcpConf

    gives_conf_or_cni_error(lambda: DhcpConf.parse(call(raw, args), lenient=lenient))


@SETTINGS
@given(cni_args, st.sampled_from([("MAC",), ("IP",), ("IP", "MAC"), ()]))
def test_cni_args_as_each_plugin_reads_them(text, known):
    gives_conf_or_cni_error(lambda: call({}, text).cni_args(known))


@SETTINGS
@given(json_values | st.fixed_dictionaries({}, optional={
    "cniVersion": plausible, "ips": json_values, "interfaces": json_values, "routes": json_values,
    "dns": json_values, "ip4": json_values, "ip6": json_values}))
def test_prev_result_of_any_shape(prev):
    from cni.conf import NetConf

    gives_conf_or_cni_error(lambda: NetConf.parse({"name": "n", "prevResult": prev}, "1.0.0"))


def _echo_plugin() -> Plugin:
    def add(c: Call) -> Result:
        c.cni_args(("IP", "MAC"))
        return Result(cni_version=c.cni_version)

    return Plugin("prop", add=add, delete=lambda c: None)


@SETTINGS
@given(st.binary(max_size=200) | configs().map(lambda d: json.dumps(d).encode()),
       st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "BOGUS"]), cni_args,
       st.text(max_size=20), st.text(max_size=20))
def test_skel_any_stdin_and_env(stdin, command, args, container_id, ifname):
    environ = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": "/run/netns/x",
               "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": "/nonexistent"}
    out, err = io.StringIO(), io.StringIO()
    status = _echo_plugin().run(environ, io.BytesIO(stdin), out, err)
    assert status in (0, 1) and "Traceback" not in err.getvalue()
    if status == 1:
        answer = json.loads(out.getvalue())
        assert 1 <= answer["code"] < 100, answer
