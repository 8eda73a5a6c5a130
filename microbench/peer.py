"""The peer's side of the Tcb benchmarks (``bench_segment.py``, ``bench_rtx.py``): a passive open
driven to ESTABLISHED with real packets, and the packets the peer sends afterwards.

The connection is the stack's default kind (window scaling, timestamps and SACK negotiated, MSS
1460, so 1448 bytes of data per segment) with NewReno, on a virtual clock. Both ISSs are fixed and
so is the RFC 6528 secret, which also fixes the timestamp offset (RFC 7323 §5.4): every call of
:func:`establish` yields the same state, so the compiled Tcb and the pure oracle can be fed the
very same packet bytes. The peer's ISS sits 5 MiB below 2**32 so that long runs cross the wrap.
"""
from __future__ import annotations

from ipaddress import IPv4Address
from typing import Tuple

from tcpfast._tcb import Tcb
from tcpfast.wire import IPv4Header, Packet, TCPFlags, TCPHeader, build_packet, parse_packet

from pure_tcb import PureTcb

M32 = 0xFFFFFFFF
LOCAL = ("198.18.0.2", 80)          # the connection under test
REMOTE = ("198.18.0.1", 40000)      # the peer (this module)
ISS = 1_000_000                     # ours
IRS = 0xFFB00000                    # the peer's: 5 MiB below the wrap
SECRET = (0x0123456789ABCDEF, 0xFEDCBA9876543210)
MSS = 1460
SMSS = 1448                         # MSS less the 12 bytes of NOP NOP TS
RCVBUF = SNDBUF = 256 * 1024
PEER_WSCALE = 7
PEER_WIN = 512                      # << 7: 64 KiB offered to us
PEER_TS0 = 7_000_000                # the peer's first TSval
T0 = 100.0                          # seconds on the virtual clock
OPTIONS = dict(mss=MSS, rcvbuf=RCVBUF, sndbuf=SNDBUF, cc="newreno")


def peer_packet(flags: int, seq: int, ack: int = 0, payload: bytes = b"", *,
                window: int = PEER_WIN, tsval: int = PEER_TS0, tsecr: int = 0, **options) -> bytes:
    """One packet from the peer to us, built by tcpfast's (tested) wire builder."""
    return build_packet(Packet(
        ip=IPv4Header(src=IPv4Address(REMOTE[0]), dst=IPv4Address(LOCAL[0])),
        tcp=TCPHeader(src_port=REMOTE[1], dst_port=LOCAL[1], seq=seq & M32, ack=ack & M32,
                      flags=TCPFlags(flags), window=window, timestamps=(tsval & M32, tsecr & M32),
                      **options),
        payload=payload))


def establish(**overrides) -> Tuple[Tcb, int]:
    """A Tcb in ESTABLISHED by passive open at T0 (LISTEN, SYN, SYN-ACK, ACK); returns it and its
    timestamp offset (our TSval is ``now_ms + offset``)."""
    tcb = Tcb(LOCAL, None, secret=SECRET, iss=ISS, **{**OPTIONS, **overrides})
    tcb.listen()
    tcb.receive(peer_packet(TCPFlags.SYN, IRS, window=65535, mss=MSS, wscale=PEER_WSCALE,
                            sack_permitted=True, tsval=PEER_TS0), T0)
    (synack,) = tcb.transmit(T0)
    our_ts = parse_packet(synack).tcp.timestamps[0]
    tcb.receive(peer_packet(TCPFlags.ACK, IRS + 1, ISS + 1, tsval=PEER_TS0, tsecr=our_ts), T0)
    assert tcb.state_name == "ESTABLISHED" and tcb.transmit(T0) == []
    return tcb, (our_ts - round(T0 * 1_000_000) // 1000) & M32


def establish_pure(**overrides) -> PureTcb:
    """The oracle, started from the state :func:`establish` reaches."""
    opts = {**OPTIONS, **overrides}
    tcb, ts_offset = establish(**overrides)
    return PureTcb.from_info(tcb.info, src=IPv4Address(LOCAL[0]).packed,
                             dst=IPv4Address(REMOTE[0]).packed, sport=LOCAL[1], dport=REMOTE[1],
                             ts_offset=ts_offset, mss=opts["mss"], rcvbuf=opts["rcvbuf"],
                             sndbuf=opts["sndbuf"], delack=opts.get("delack", 0.04))


def our_tsval(ts_offset: int, now: float) -> int:
    """The TSval our side puts in a segment sent at ``now`` (what the peer echoes)."""
    return (round(now * 1_000_000) // 1000 + ts_offset) & M32
