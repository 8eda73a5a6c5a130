"""The WAN path of ``tcpfast bench``: local end ⇄ impairer ⇄ peer, built the same for both stacks.

Three private namespaces per stack (``<tag>-w<k>l``, ``-w<k>i``, ``-w<k>p``; k is ``t`` for
tcpfast, ``k`` for the kernel):

* *peer* (``-p``): the kernel peer's veth end ``tfbwp``, 198.18.0.1/24;
* *impairer* (``-i``): the other end of that pair, ``tfbwi``, with no address: the impairer's
  side b (towards the peer);
* *local* (``-l``): the measured end at 198.18.0.2/24. For tcpfast it is the stack's TUN device
  (created by the worker, its kernel side left without an IPv4 address), and the impairer's side a
  is a packet socket on that device, made inside this namespace. For the kernel it is a veth end
  ``tfbwl`` whose partner ``tfbwj`` (in the impairer's namespace) is side a.

So both stacks' packets cross the same impairer code with the same settings, and each end has a
veth or TUN device of its own; the only difference is which TCP terminates the connection. The
impairer's devices have no address and IP forwarding is off everywhere, so the kernels of those
namespaces drop what they see there, at the ingress hook (:func:`.loss.silence`), before their
IP layer would spend time on it; ARP is never needed (static neighbour entries point at the
impairer's MAC addresses) and IPv6 is off in these namespaces, so only the connection's IPv4
packets travel. Nothing here ever reaches the machine's own interfaces.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from tcpfast import netns
from tcpfast.bench import loss
from tcpfast.bench.impair import Port, ethernet

LOCAL, PEER, PREFIX = "198.18.0.2", "198.18.0.1", 24
MACS = {"tfbwi": "02:00:00:00:0a:01", "tfbwp": "02:00:00:00:0a:02",
        "tfbwj": "02:00:00:00:0b:01", "tfbwl": "02:00:00:00:0b:02"}


def _no_ipv6() -> None:
    for key in ("all", "default"):
        with open(f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6", "w") as f:
            f.write("1")


class WanPath:
    """The namespaces and veth pairs of one stack's WAN path; :meth:`setup` makes them,
    :meth:`close` removes them (the caller's run removes them on failure too)."""

    def __init__(self, tag: str, kind: str, mtu: int) -> None:
        self.kind = kind
        k = "t" if kind == "tcpfast" else "k"
        self.ns_local, self.ns_imp, self.ns_peer = f"{tag}-w{k}l", f"{tag}-w{k}i", f"{tag}-w{k}p"
        self.mtu = mtu
        self.made: List[str] = []
        self.defaults: Dict[str, Dict[str, bool]] = {}
        self.tun: Optional[str] = None

    def namespaces(self) -> List[str]:
        return [self.ns_local, self.ns_imp, self.ns_peer]

    def _veth(self, ns_a: str, a: str, ns_b: str, b: str) -> None:
        netns.ip("link", "add", a, "address", MACS[a], "mtu", str(self.mtu), "type", "veth",
                 "peer", "name", b, "address", MACS[b], "mtu", str(self.mtu), "netns", ns_b,
                 ns=ns_a)

    def setup(self) -> None:
        for ns in self.namespaces():
            netns.create(ns)
            self.made.append(ns)
            netns.call_in(ns, _no_ipv6)
        self._veth(self.ns_imp, "tfbwi", self.ns_peer, "tfbwp")
        netns.ip("link", "set", "tfbwi", "up", ns=self.ns_imp)
        netns.address_up(self.ns_peer, "tfbwp", f"{PEER}/{PREFIX}")
        netns.ip("neigh", "replace", LOCAL, "lladdr", MACS["tfbwi"], "dev", "tfbwp",
                 "nud", "permanent", ns=self.ns_peer)
        netns.call_in(self.ns_imp, lambda: loss.silence("tfbwi"))
        self.defaults["tfbwi"] = netns.call_in(self.ns_imp, lambda: netns.get_features("tfbwi"))
        self.defaults["tfbwp"] = netns.call_in(self.ns_peer, lambda: netns.get_features("tfbwp"))
        if self.kind == "kernel":
            self._veth(self.ns_imp, "tfbwj", self.ns_local, "tfbwl")
            netns.ip("link", "set", "tfbwj", "up", ns=self.ns_imp)
            netns.call_in(self.ns_imp, lambda: loss.silence("tfbwj"))
            netns.address_up(self.ns_local, "tfbwl", f"{LOCAL}/{PREFIX}")
            netns.ip("neigh", "replace", PEER, "lladdr", MACS["tfbwj"], "dev", "tfbwl",
                     "nud", "permanent", ns=self.ns_local)
            self.defaults["tfbwj"] = netns.call_in(self.ns_imp,
                                                   lambda: netns.get_features("tfbwj"))
            self.defaults["tfbwl"] = netns.call_in(self.ns_local,
                                                   lambda: netns.get_features("tfbwl"))

    def _where(self, dev: str) -> str:
        return {"tfbwi": self.ns_imp, "tfbwj": self.ns_imp, "tfbwp": self.ns_peer,
                "tfbwl": self.ns_local}[dev]

    def set_offload(self, on: bool) -> Dict[str, Dict[str, bool]]:
        """Off: every feature off on every veth end of the path (each packet one MTU); on: veth's
        defaults (checksum offload, SG, TSO, GSO; 64 KiB super-packets). Returns what was read
        back."""
        read = {}
        for dev, default in self.defaults.items():
            want = default if on else {k: False for k in netns.FEATURES}
            read[dev] = netns.call_in(self._where(dev),
                                      lambda d=dev, w=want: netns.set_features(d, w))
        return read

    def adopt_tun(self, tun_ifname: str) -> None:
        """The tcpfast stack's TUN device is up in the local namespace: its kernel side drops
        what the stack sends at the ingress hook, as the impairer's veth ends do (the
        impairer's packet socket has its copy by then)."""
        netns.call_in(self.ns_local, lambda: loss.silence(tun_ifname))

    def local_port(self, tun_ifname: Optional[str] = None) -> Port:
        """Side a of the impairer: the tcpfast stack's TUN device (``tun_ifname``, in the local
        namespace) or the veth end facing the kernel's local end."""
        if self.kind == "tcpfast":
            if not tun_ifname:
                raise ValueError("the tcpfast path needs the stack's TUN device")
            return Port(self.ns_local, tun_ifname, b"")
        return Port(self.ns_imp, "tfbwj", ethernet(MACS["tfbwl"], MACS["tfbwj"]))

    def peer_port(self) -> Port:
        """Side b: the veth end facing the peer."""
        return Port(self.ns_imp, "tfbwi", ethernet(MACS["tfbwp"], MACS["tfbwi"]))

    def close(self) -> None:
        for ns in reversed(self.made):
            netns.remove(ns)
        self.made.clear()
