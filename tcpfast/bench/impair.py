"""The path impairer put to work: its sockets, a thread that runs it, and its measured ceiling.

:class:`tcpfast._impair.Impairer` (C, no GIL) forwards packets between two ``AF_PACKET``
sockets. This module opens those sockets inside the namespaces that hold the devices
(:func:`open_port`: a socket keeps the namespace it was made in, so one thread can forward
between devices of two namespaces), runs the impairer in a thread (:class:`Forwarder`), and
measures how many packets per second it can forward on this machine (:func:`calibrate`), so
that a WAN figure is never the impairer's limit without the report saying so.

Offloads: every socket is opened with ``PACKET_VNET_HDR`` and the impairer forwards a
super-packet (GSO, up to 64 KiB) whole with its virtio-net header; no offload needs to be
switched off on its devices (the ``off`` offload setting of the benchmark switches them off
anyway, and then every packet is one MTU).
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, asdict
from typing import Any, Dict, Optional

from tcpfast import netns
from tcpfast.bench import loss

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
SOCKET_BUFFER = 32 << 20          # room for a burst of 64 KiB super-packets while the loop sleeps


@dataclass(frozen=True)
class Port:
    """One side of the impairer: device ``ifname`` in namespace ``ns``; ``link`` is the
    link-layer header to prepend to what is sent there (an Ethernet header for a veth end,
    empty for a TUN device)."""

    ns: str
    ifname: str
    link: bytes = b""


def ethernet(dst: str, src: str) -> bytes:
    """The 14-byte Ethernet header of an IPv4 frame from MAC ``src`` to MAC ``dst``."""
    return bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + \
        struct.pack("!H", ETH_P_IP)


def open_port(port: Port, vnet: bool = True) -> int:
    """A packet socket on ``port``'s device (made inside its namespace); returns the descriptor,
    which the caller closes. It sees the packets the device receives (not those sent through
    it: PACKET_IGNORE_OUTGOING), each after its virtio-net header when ``vnet``."""

    def make() -> int:
        # Protocol 0 at first: an ETH_P_ALL socket not yet bound would see every device here.
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            if vnet:
                s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER)
            s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SOCKET_BUFFER)
            s.bind((port.ifname, ETH_P_ALL))
            return s.detach()
        except BaseException:
            s.close()
            raise

    return netns.call_in(port.ns, make)


@dataclass(frozen=True)
class Impairment:
    """What the path does to each direction: ``delay`` seconds one way, ``loss``, ``duplicate``
    and ``reorder`` probabilities, a queue of at most ``limit`` packets and ``limit_bytes``."""

    delay: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    seed: int = 1
    limit: int = 10_000
    limit_bytes: int = 32 << 20

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


class Forwarder:
    """An :class:`~tcpfast._impair.Impairer` between ports ``a`` and ``b`` in a thread of this
    process, for at most ``max_seconds``; a context manager. ``counters()`` while it runs or
    after; leaving the block stops it, joins the thread and closes the sockets."""

    def __init__(self, a: Port, b: Port, impairment: Impairment, max_seconds: float = 600) -> None:
        from tcpfast._impair import Impairer

        self.a, self.b, self.impairment = a, b, impairment
        self.fds = []
        try:
            self.fds.append(open_port(a))
            self.fds.append(open_port(b))
            i = impairment
            self.impairer = Impairer(self.fds[0], self.fds[1], link_a=a.link, link_b=b.link,
                                     delay=i.delay, loss=i.loss, duplicate=i.duplicate,
                                     reorder=i.reorder, seed=i.seed, limit=i.limit,
                                     limit_bytes=i.limit_bytes, max_seconds=max_seconds)
        except BaseException:
            self._close_fds()
            raise
        self.final: Optional[Dict[str, Dict[str, int]]] = None
        self.error: Optional[BaseException] = None
        self.reason: Optional[str] = None
        self.thread = threading.Thread(target=self._run, name="impairer", daemon=True)

    def _run(self) -> None:
        try:
            self.reason = self.impairer.run()
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self.error = exc

    def start(self) -> "Forwarder":
        self.thread.start()
        return self

    def counters(self) -> Dict[str, Dict[str, int]]:
        return self.impairer.counters()

    def drain(self, quiet: float = 0.25, timeout: float = 3.0) -> bool:
        """Wait until nothing is held and nothing new arrived for ``quiet`` seconds (at most
        ``timeout``): the end of a case must not strand its last packets (a FIN's ACK), or the
        next case's counters would show their retransmission. True when it went quiet."""
        deadline = time.monotonic() + timeout
        last = None
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            c = self.impairer.counters()
            now = (c["a_to_b"]["rx_packets"], c["b_to_a"]["rx_packets"])
            held = c["a_to_b"]["queued"] + c["b_to_a"]["queued"]
            if now != last or held:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet:
                return True
            time.sleep(0.02)
        return False

    @property
    def cpu_seconds(self) -> float:
        """CPU time of the impairer's thread (known once it stopped)."""
        return self.impairer.cpu_seconds

    def stop(self, timeout: float = 10.0) -> Dict[str, Dict[str, int]]:
        """Stop the loop, wait for the thread, close the sockets; returns the final counters
        (again on later calls)."""
        if self.final is not None:
            return self.final
        self.impairer.stop()
        if self.thread.is_alive():
            self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError(f"the impairer did not stop within {timeout} s")
        self.final = self.impairer.counters()
        self.impairer.close()
        self._close_fds()
        if self.error is not None:
            raise self.error
        return self.final

    def _close_fds(self) -> None:
        import os

        while self.fds:
            os.close(self.fds.pop())

    def __enter__(self) -> "Forwarder":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the ceiling ----------------------------------------------------------------------------------

CAL_MACS = {"tfbcg": "02:00:00:00:c0:01", "tfbca": "02:00:00:00:c0:02",
            "tfbcb": "02:00:00:00:c0:03", "tfbcs": "02:00:00:00:c0:04"}


def udp_frame(dst_mac: str, src_mac: str, ip_len: int) -> bytes:
    """An Ethernet frame holding one IPv4/UDP datagram of ``ip_len`` bytes (198.18.9.1 ->
    198.18.9.2, port 9), checksums filled in."""
    from tcpfast import checksum

    udp_len = ip_len - 20
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 1, 0x4000, 64, 17, 0,
                               socket.inet_aton("198.18.9.1"), socket.inet_aton("198.18.9.2")))
    ip[10:12] = struct.pack("!H", checksum.checksum(bytes(ip)))
    udp = struct.pack("!HHHH", 9, 9, udp_len, 0) + bytes(udp_len - 8)   # checksum 0: none
    return ethernet(dst_mac, src_mac) + bytes(ip) + udp


def calibrate(tag: str, mtu: int = 1500, seconds: float = 1.0,
              max_packets: int = 5_000_000, silence: bool = True) -> Dict[str, Any]:
    """The impairer's own forwarding capacity here: delay 0, no loss, ``mtu``-byte packets.

    In a namespace of its own (``<tag>-cal``, removed afterwards) a load generator in C
    (:func:`tcpfast._impair.blast`, another thread of this process) sends MTU-sized UDP frames
    into one veth pair as fast as it can for ``seconds`` (at most ``max_packets``); the
    impairer forwards them to a second veth pair. Offloads are off on all four ends. The
    ceiling is what the impairer forwarded per second (from its first packet in to its last
    out). When it fell behind the generator (its input socket dropped packets, or it forwarded
    more slowly than they were offered), the figure is its capacity (``saturated``); otherwise
    the generator was the slower one and the figure is a lower bound. Both share the machine's
    cores, as the benchmark's ends do, so ``pps_per_core`` (packets over the CPU time of the
    impairer's thread) is given too."""
    import os

    from tcpfast._impair import blast

    ns = f"{tag}-cal"
    netns.create(ns)
    try:
        for x, y in (("tfbcg", "tfbca"), ("tfbcb", "tfbcs")):
            netns.ip("link", "add", x, "address", CAL_MACS[x], "mtu", str(mtu), "type", "veth",
                     "peer", "name", y, "address", CAL_MACS[y], "mtu", str(mtu), ns=ns)
        for dev in CAL_MACS:
            netns.call_in(ns, lambda d=dev: netns.set_features(
                d, {k: False for k in netns.FEATURES}))
            netns.ip("link", "set", dev, "up", ns=ns)
        if silence:
            # As on the WAN path: the kernel here drops what reaches the impairer's devices
            # (and the sink) at the ingress hook, before its IP layer would.
            for dev in ("tfbca", "tfbcb", "tfbcs"):
                netns.call_in(ns, lambda d=dev: loss.silence(d))
        a = Port(ns, "tfbca", ethernet(CAL_MACS["tfbcg"], CAL_MACS["tfbca"]))
        b = Port(ns, "tfbcb", ethernet(CAL_MACS["tfbcs"], CAL_MACS["tfbcb"]))
        gen = open_port(Port(ns, "tfbcg"), vnet=False)
        try:
            frame = udp_frame(CAL_MACS["tfbca"], CAL_MACS["tfbcg"], mtu)
            with Forwarder(a, b, Impairment(), max_seconds=seconds + 30) as fw:
                sent, refused, elapsed = blast(gen, frame, max_packets, seconds)
                # Let the impairer empty its socket buffer (bounded).
                deadline = time.monotonic() + 5
                last = -1
                while time.monotonic() < deadline:
                    c = fw.counters()["a_to_b"]
                    if c["tx_packets"] == last:
                        break
                    last = c["tx_packets"]
                    time.sleep(0.05)
                c = fw.stop()["a_to_b"]
        finally:
            os.close(gen)
    finally:
        netns.remove(ns)
    span = (c["last_tx_ns"] - c["first_rx_ns"]) / 1e9 if c["first_rx_ns"] else 0.0
    pps = c["tx_packets"] / span if span > 0 else 0.0
    cpu = fw.cpu_seconds
    return {"mtu": mtu, "seconds": seconds, "offered_packets": sent, "offered_refused": refused,
            "offered_pps": sent / elapsed if elapsed > 0 else 0.0,
            "forwarded_packets": c["tx_packets"], "forward_seconds": span,
            "kernel_drops": c["kernel_drops"], "queue_drops": c["queue_drops"],
            "tx_errors": c["tx_errors"],
            # Behind the generator: its socket buffer overflowed, or forwarding took longer than
            # the offer (a backlog built up in that buffer and was worked off afterwards).
            "saturated": c["kernel_drops"] > 0 or (elapsed > 0 and pps < 0.95 * sent / elapsed),
            "pps": pps, "gbps": pps * mtu * 8 / 1e9, "cpu_seconds": cpu,
            # What one core running only the impairer would forward: its packets over the CPU
            # time its thread used (kernel work done in its system calls included).
            "pps_per_core": c["tx_packets"] / cpu if cpu > 0 else 0.0,
            "gbps_per_core": c["tx_packets"] / cpu * mtu * 8 / 1e9 if cpu > 0 else 0.0}
