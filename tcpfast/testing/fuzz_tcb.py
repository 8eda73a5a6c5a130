"""Stateful fuzzing of one connection (:class:`tcpfast._tcb.Tcb`) on a virtual clock.

Never imported by the runtime. ``fuzz/stateful.py`` is its command line, ``tests/test_fuzz_stateful.py``
its quick run and its regression tests.

How it works. A run is a series of *episodes*. Each episode makes a fresh ``Tcb`` with a random
configuration (IPv4 or IPv6; buffer sizes from one byte to megabytes; window scaling, timestamps and
SACK on or off on either side; initial sequence numbers anywhere, often a few octets below 2**32;
short timers so that retransmission, keep-alive, FIN-WAIT-2 and TIME-WAIT timeouts fire), drives it
into one of the eleven RFC 9293 states with a scripted exchange, and then applies random *steps*.
A step is one action followed by ``Tcb.transmit(now)``:

* a segment from the peer (:data:`SEG`): most of them from a *peer model* that behaves like a real
  TCP (it acknowledges what it received of our stream, with SACK blocks for what lies beyond a hole,
  sends its own stream in and out of order, closes, loses some of our segments, opens and closes its
  window); some of them mutated near the windows (sequence and acknowledgment numbers around
  RCV.NXT, SND.UNA, SND.NXT and the window edges, wrapped values, every flag combination, every
  option incl. unknown kinds, lengths that straddle the window); some fully random;
* a user call: send, recv (and peek), shutdown, close, abort, connect, listen, set_options;
* a clock step: a few microseconds, a delayed-ACK time, an RTO, 2*MSL, or exactly to the TCB's
  next timer.

Every byte the peer ever sends at sequence number ``x`` is ``stream_bytes(PEER_SEED, x, 1)`` (a
function of the sequence number alone), and every byte the application sends at our sequence
number ``y`` is ``stream_bytes(OUR_SEED, y, 1)``: so a byte delivered or emitted at the wrong place
is seen at once, whoever sent which segment.

After every step :class:`Harness` checks the invariants (:data:`INVARIANTS` names them); the first
that fails raises :class:`InvariantError`. A failing episode is replayed from its recorded actions
(:func:`replay`) and shrunk (:func:`minimize`) into a short list of actions that still fails the
same way; :func:`format_repro` prints it as a Python literal for a regression test.

Everything is seeded: ``run(seed, steps)`` makes the same episodes and steps every time.
"""
from __future__ import annotations

import random
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tcpfast import checksum as _ck
from tcpfast._tcb import STATE_NAMES, Tcb
from tcpfast.testing._simlink import stream_bytes

M32 = 1 << 32
HALF = 1 << 31

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

PEER_SEED = 0x5EED_0001      # the peer's byte at sequence number x: stream_bytes(PEER_SEED, x, 1)
OUR_SEED = 0x5EED_0002       # the application's byte at our sequence number y

# The bounds the TCB states in its own modules (_ranges.pxd RANGES_MAX, _rack.pxd TXQ_MAX).
RANGES_MAX = 2048
TXQ_MAX = 16384
# The most segments one transmit() may return: more is a livelock (the window bounds what is due).
TRANSMIT_LIMIT = 4096

CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED, ESTABLISHED = STATE_NAMES[:5]
FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT = STATE_NAMES[5:]
SYNCHRONIZED = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK,
                          TIME_WAIT})

# =============================================================================================
# The transitions RFC 9293 allows, as data
# =============================================================================================
# From the state diagram (RFC 9293 §3.3.2, Figure 5) and the event processing of §3.10, by the kind
# of event that causes them. One segment may take more than one edge of the diagram: those compound
# transitions are listed with the edges they are made of.

#: A segment's arrival (§3.10.7): every edge of Figure 5 labelled "rcv ...", plus a reset (§3.10.7.4
#: second: "enter the CLOSED state") from every state that has a peer, "data after close" (RFC 2525
#: §2.17: an orphan that receives data aborts), and TIME-WAIT -> CLOSED on a reset (§3.10.7.4 allows
#: it; RFC 1337 recommends ignoring it, which tcpfast does).
SEGMENT_TRANSITIONS: Dict[str, frozenset] = {
    CLOSED: frozenset(),
    LISTEN: frozenset({SYN_RECEIVED}),
    SYN_SENT: frozenset({
        SYN_RECEIVED,           # rcv SYN (simultaneous open)
        ESTABLISHED,            # rcv SYN,ACK
        CLOSE_WAIT,             # rcv SYN,ACK,FIN: ESTABLISHED, then §3.10.7.3 "continue ... sixth step"
        CLOSED,                 # rcv RST with an acceptable ACK: "connection reset"
    }),
    SYN_RECEIVED: frozenset({
        ESTABLISHED,            # rcv ACK of SYN
        FIN_WAIT_1,             # rcv ACK of SYN after a CLOSE was queued (§3.10.4)
        CLOSE_WAIT,             # rcv ACK of SYN with FIN: ESTABLISHED -> CLOSE-WAIT
        CLOSING,                # rcv ACK of SYN with FIN after a queued CLOSE: FIN-WAIT-1 -> CLOSING
        LISTEN,                 # rcv RST or SYN, passive OPEN (§3.10.7.4 second/fourth)
        CLOSED,                 # rcv RST, active OPEN: "connection refused"
    }),
    ESTABLISHED: frozenset({CLOSE_WAIT, CLOSED}),
    FIN_WAIT_1: frozenset({FIN_WAIT_2, CLOSING, TIME_WAIT, CLOSED}),   # TIME-WAIT: FIN + ACK of FIN
    FIN_WAIT_2: frozenset({TIME_WAIT, CLOSED}),
    CLOSE_WAIT: frozenset({CLOSED}),
    CLOSING: frozenset({TIME_WAIT, CLOSED}),
    LAST_ACK: frozenset({CLOSED}),
    TIME_WAIT: frozenset({CLOSED}),
}

#: User calls (§3.10.1-§3.10.6). CLOSE is both ``shutdown`` (the RFC's CLOSE, half-close) and
#: ``close`` (CLOSE, and the application will not read: with unread data it is an ABORT, RFC 2525
#: §2.17, as Linux). SEND in LISTEN may turn an OPEN active (§3.10.2): allowed, not implemented.
_CLOSE = {LISTEN: CLOSED, SYN_SENT: CLOSED, SYN_RECEIVED: FIN_WAIT_1, ESTABLISHED: FIN_WAIT_1,
          CLOSE_WAIT: LAST_ACK}
USER_TRANSITIONS: Dict[str, Dict[str, frozenset]] = {
    "connect": {CLOSED: frozenset({SYN_SENT})},
    "listen": {CLOSED: frozenset({LISTEN})},
    "send": {LISTEN: frozenset({SYN_SENT})},
    "recv": {},
    "set_options": {},
    "shutdown": {k: frozenset({v}) for k, v in _CLOSE.items()},
    "close": {**{k: frozenset({v}) for k, v in _CLOSE.items()},
              **{k: frozenset({_CLOSE.get(k, k), CLOSED})
                 for k in (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, FIN_WAIT_2)}},
    "abort": {k: frozenset({CLOSED}) for k in STATE_NAMES if k != CLOSED},
}
# SYN-RECEIVED with a CLOSE queued stays in SYN-RECEIVED until the ACK of its SYN (§3.10.4:
# "queue for processing after entering ESTABLISHED state").
USER_TRANSITIONS["shutdown"][SYN_RECEIVED] = frozenset({FIN_WAIT_1, SYN_RECEIVED})
USER_TRANSITIONS["close"][SYN_RECEIVED] = frozenset({FIN_WAIT_1, SYN_RECEIVED})

#: Time (the timers run in ``transmit``): the user timeout / R2 (§3.8.3), the SYN retries, the
#: keep-alive limit, the FIN-WAIT-2 timeout of an orphan, the end of TIME-WAIT (§3.10.8): each ends
#: in CLOSED. Nothing else changes state with time; LISTEN never times out.
TIMER_TRANSITIONS: Dict[str, frozenset] = {
    s: (frozenset() if s in (CLOSED, LISTEN) else frozenset({CLOSED})) for s in STATE_NAMES}

INVARIANTS = (
    "crash",               # an exception other than OSError from a user call, anything from receive()
    "hang",                # transmit() returned TRANSMIT_LIMIT segments, or the step took too long
    "busy_poll",           # after transmit(now), next_event() asks for a call at or before now
    "transition",          # a state change the tables above do not allow
    "rst_5961",            # a RST that RFC 5961 §3 (or §3.10.7.3 in SYN-SENT) says to ignore reset us
    "syn_5961",            # a SYN in a synchronized state did more than a challenge ACK (RFC 5961 §4)
    "ack_5961",            # data accepted from a segment whose ACK is unacceptable (RFC 5961 §5)
    "memory",              # a queue beyond its configured bound
    "delivered",           # the application got bytes that are not the peer's stream at that place
    "conservation",        # delivered + queued != what RCV.NXT says was received (lost/duplicated)
    "send_accounting",     # queued to send + acknowledged != accepted by send()
    "rcv_window",          # RCV.NXT moved beyond the right edge we offered
    "emit_format",         # a segment we emitted does not parse, or has a wrong address or checksum
    "emit_state",          # a segment that the RFC does not allow in the state it was sent in
    "emit_data",           # data emitted that the application did not send at that place
    "emit_window",         # new data beyond the right edge the peer offered
    "emit_ack",            # an acknowledgment of sequence space the peer never sent
    "emit_options",        # options the negotiation does not allow (RFC 7323, RFC 2018)
    "emit_rst",            # a reset that does not follow §3.10.7.1 / §3.10.5
    "window_shrank",       # our offered right edge moved left (RFC 9293 §3.8.6.2.2, RFC 7323 §2.4)
)


#: Bugs found by this fuzzer in ``_tcb`` and not fixed yet, by the condition (a *trigger*, noted by
#: the harness when a step creates it) that leads to them: a failure of one of the listed
#: invariants in an episode where the trigger was noted is counted as known, not reported. Each has
#: a strict-xfail regression test in tests/test_fuzz_stateful.py; remove the entry with the fix.
KNOWN_BUGS: Dict[str, Tuple[frozenset, str]] = {
    # All six bugs the fuzzer found are fixed in _tcb (see tests/test_fuzz_stateful.py).
}


class InvariantError(AssertionError):
    """An invariant failed: ``name`` is one of :data:`INVARIANTS`."""

    def __init__(self, name: str, detail: str):
        super().__init__(f"[{name}] {detail}")
        self.name = name
        self.detail = detail
        self.trace: List[tuple] = []
        self.triggers: frozenset = frozenset()

    @property
    def known(self) -> Optional[str]:
        """The KNOWN_BUGS entry this failure is, if any."""
        for t in sorted(self.triggers):
            if t in KNOWN_BUGS and self.name in KNOWN_BUGS[t][0]:
                return t
        return None


def _fail(name: str, detail: str) -> None:
    raise InvariantError(name, detail)


def s32(x: int) -> int:
    return x % M32


def rel(x: int, base: int) -> int:
    """x - base in sequence space, as a signed offset in [-2**31, 2**31)."""
    d = (x - base) % M32
    return d - M32 if d >= HALF else d


def seq_lt(a: int, b: int) -> bool:
    return rel(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    return rel(a, b) <= 0


def seq_bytes(seed: int, seq: int, n: int) -> bytes:
    """The ``n`` bytes of a stream at sequence number ``seq``, wrapping at 2**32."""
    seq %= M32
    if seq + n <= M32:
        return stream_bytes(seed, seq, n)
    k = M32 - seq
    return stream_bytes(seed, seq, k) + stream_bytes(seed, 0, n - k)


# =============================================================================================
# Configuration of one episode
# =============================================================================================

@dataclass(frozen=True)
class Config:
    """One episode: the TCB's options, both ISSs, the peer's SYN options, the starting state."""

    family: int = 4
    iss: int = 1_000_000
    irs: int = 5_000_000
    start: str = ESTABLISHED
    active: bool = False             # reach the state by an active OPEN (else passive)
    options: Tuple[Tuple[str, Any], ...] = ()
    secret: Tuple[int, int] = (1, 2)
    peer_mss: Optional[int] = 1460
    peer_wscale: Optional[int] = None
    peer_sack: bool = False
    peer_ts: bool = False
    peer_win: int = 60000            # the peer's window field (scaled by peer_wscale when in use)
    peer_loss: float = 0.0           # the peer model misses this share of our segments
    steps: int = 200

    @property
    def opts(self) -> Dict[str, Any]:
        return dict(self.options)

    @property
    def local(self) -> Tuple[str, int]:
        return ("192.0.2.1", 80) if self.family == 4 else ("2001:db8::1", 80)

    @property
    def remote(self) -> Tuple[str, int]:
        return ("192.0.2.2", 49152) if self.family == 4 else ("2001:db8::2", 49152)


_ISS_CHOICES = (0, 1, 1_000_000, HALF - 1, HALF, M32 - 1, M32 - 2, M32 - 100, M32 - 1460,
                M32 - 65536)


def random_config(rng: random.Random, steps: int = 200) -> Config:
    """A random episode configuration (all values valid for ``Tcb``)."""
    def pick_iss():
        return rng.choice(_ISS_CHOICES) if rng.random() < 0.5 else rng.getrandbits(32)

    o: Dict[str, Any] = {}
    o["mss"] = rng.choice((88, 100, 536, 1220, 1460, 1460, rng.randint(88, 9000)))
    if rng.random() < 0.8:
        o["rcvbuf"] = rng.choice((1, 100, 1000, 4096, 16384, 65535, 65536, 200_000, 1 << 20))
    else:
        o["rcvbuf_max"] = rng.choice((0, 300_000, 1 << 20))
    if rng.random() < 0.8:
        o["sndbuf"] = rng.choice((1, 100, 1000, 4096, 16384, 65536, 1 << 20))
    else:
        o["sndbuf_max"] = rng.choice((0, 300_000, 1 << 20))
    o["window_scaling"] = rng.random() < 0.5
    o["timestamps"] = rng.random() < 0.5
    o["sack"] = rng.random() < 0.6
    o["cc"] = rng.choice(("cubic", "newreno"))
    o["nodelay"] = rng.random() < 0.5
    o["msl"] = rng.choice((0.0, 0.01, 0.5, 2.0))
    o["delack"] = rng.choice((0.0, 0.01, 0.04, 0.2))
    o["rto_initial"] = rng.choice((0.05, 0.2, 1.0))
    o["rto_min"] = rng.choice((0.001, 0.02, 0.2))
    o["rto_max"] = rng.choice((0.5, 2.0, 10.0))
    o["syn_retries"] = rng.randint(0, 6)
    o["retries"] = rng.randint(0, 8)
    o["user_timeout"] = rng.choice((0, 0, 0.5, 5.0))
    o["keepalive"] = rng.random() < 0.3
    o["keepidle"] = rng.choice((0.1, 1.0))
    o["keepintvl"] = rng.choice((0.05, 0.5))
    o["keepcnt"] = rng.randint(1, 4)
    o["fin_timeout"] = rng.choice((0.1, 2.0))
    o["challenge_ack_limit"] = rng.choice((0, 1, 5, 1000))
    if rng.random() < 0.2:
        o["tso_max"] = rng.choice((0, 65535, 20000))
    peer_ws = rng.choice((None, None, 0, 2, 7, 14, 15, 200))
    return Config(
        family=4 if rng.random() < 0.7 else 6,
        iss=pick_iss(), irs=pick_iss(),
        start=rng.choice(STATE_NAMES),
        active=rng.random() < 0.5,
        options=tuple(sorted(o.items())),
        secret=(rng.getrandbits(64), rng.getrandbits(64)),
        peer_mss=rng.choice((None, 88, 536, 1000, 1460, 1460, 65535, 0, 1)),
        peer_wscale=peer_ws,
        peer_sack=rng.random() < 0.6,
        peer_ts=rng.random() < 0.5,
        peer_win=rng.choice((0, 1, 100, 1460, 8192, 30000, 65535, 60000)),
        peer_loss=rng.choice((0.0, 0.0, 0.05, 0.2)),
        steps=steps,
    )


# =============================================================================================
# Segments on the wire: our own encoder and decoder (independent of tcpfast.wire)
# =============================================================================================

def encode_options(opts: Sequence[tuple]) -> bytes:
    """Options as ``("mss", v) ("ws", v) ("sackok",) ("ts", val, ecr) ("sack", blocks) ("nop",)
    ("eol",) ("unk", kind, length)``, padded with NOPs/EOL to a multiple of four."""
    out = bytearray()
    for o in opts:
        k = o[0]
        if k == "mss":
            out += struct.pack("!BBH", 2, 4, o[1])
        elif k == "ws":
            out += struct.pack("!BBB", 3, 3, o[1])
        elif k == "sackok":
            out += b"\x04\x02"
        elif k == "ts":
            out += struct.pack("!BBII", 8, 10, o[1], o[2])
        elif k == "sack":
            out += struct.pack("!BB", 5, 2 + 8 * len(o[1]))
            for a, b in o[1]:
                out += struct.pack("!II", a, b)
        elif k == "nop":
            out += b"\x01"
        elif k == "eol":
            out += b"\x00"
        elif k == "unk":
            out += struct.pack("!BB", o[1], o[2]) + bytes(o[2] - 2)
    while len(out) % 4:
        out += b"\x01"
    return bytes(out)


def options_fit(opts: Sequence[tuple]) -> bool:
    return len(encode_options(opts)) <= 40


def build_segment(cfg: Config, flags: int, seq: int, ack: int, window: int, payload: bytes,
                  opts: Sequence[tuple] = ()) -> bytes:
    """An IP packet from the peer to us. ``flags`` bits 8-11 go to the header's reserved bits."""
    src, dst = cfg.remote, cfg.local
    o = encode_options(opts)
    doff = (20 + len(o)) // 4
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], s32(seq), s32(ack),
                      (doff << 4) | ((flags >> 8) & 0x0F), flags & 0xFF, window & 0xFFFF, 0, 0)
    seg = tcp + o + payload
    if cfg.family == 4:
        ps = _ck.pseudo_header_sum_ipv4(src[0], dst[0], 6, len(seg))
    else:
        ps = _ck.pseudo_header_sum_ipv6(src[0], dst[0], 6, len(seg))
    c = _ck.checksum(seg, ps)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    if cfg.family == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 0, 0x4000, 64, 6, 0,
                         _packed(src[0]), _packed(dst[0]))
        ip = ip[:10] + struct.pack("!H", _ck.checksum(ip)) + ip[12:]
    else:
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(seg), 6, 64, _packed(src[0]),
                         _packed(dst[0]))
    return ip + seg


_PACKED: Dict[str, bytes] = {}


def _packed(a: str) -> bytes:
    p = _PACKED.get(a)
    if p is None:
        import ipaddress
        p = _PACKED[a] = ipaddress.ip_address(a).packed
    return p


@dataclass
class Out:
    """A segment we emitted, decoded."""

    src: Tuple[bytes, int]
    dst: Tuple[bytes, int]
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes
    mss: Optional[int] = None
    wscale: Optional[int] = None
    sackok: bool = False
    ts: Optional[Tuple[int, int]] = None
    sack: Tuple[Tuple[int, int], ...] = ()
    urgent: int = 0

    @property
    def seg_len(self) -> int:
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)

    def __repr__(self) -> str:
        names = "".join(n for b, n in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."),
                                        (URG, "U")) if self.flags & b)
        opt = []
        if self.mss is not None:
            opt.append(f"mss={self.mss}")
        if self.wscale is not None:
            opt.append(f"ws={self.wscale}")
        if self.sackok:
            opt.append("sackok")
        if self.ts:
            opt.append(f"ts={self.ts}")
        if self.sack:
            opt.append(f"sack={self.sack}")
        return (f"<{names} seq={self.seq} ack={self.ack} win={self.window} len={len(self.payload)}"
                f"{' ' + ' '.join(opt) if opt else ''}>")


def decode(raw: bytes, family: int) -> Out:
    """Decode one packet we emitted, checking both checksums and every length."""
    if family == 4:
        if len(raw) < 40 or raw[0] != 0x45:
            raise ValueError(f"not an IPv4 header without options: {raw[:20].hex()}")
        if _ck.checksum(raw[:20]) != 0:
            raise ValueError("bad IPv4 header checksum")
        tot = struct.unpack_from("!H", raw, 2)[0]
        if tot != len(raw) or raw[9] != 6:
            raise ValueError("IPv4 length or protocol wrong")
        src, dst, seg = raw[12:16], raw[16:20], raw[20:]
        ps = _ck.pseudo_header_sum_ipv4(src, dst, 6, len(seg))
    else:
        if len(raw) < 60 or raw[0] >> 4 != 6 or raw[6] != 6:
            raise ValueError("not an IPv6 packet carrying TCP directly")
        if struct.unpack_from("!H", raw, 4)[0] != len(raw) - 40:
            raise ValueError("IPv6 payload length wrong")
        src, dst, seg = raw[8:24], raw[24:40], raw[40:]
        ps = _ck.pseudo_header_sum_ipv6(src, dst, 6, len(seg))
    if _ck.checksum(seg, ps) != 0:
        raise ValueError("bad TCP checksum")
    sp, dp, seq, ack, off, flags, win, _c, urg = struct.unpack_from("!HHIIBBHHH", seg)
    hl = (off >> 4) * 4
    if hl < 20 or hl > len(seg) or off & 0x0F:
        raise ValueError(f"bad data offset/reserved bits {off:#x}")
    o = Out((src, sp), (dst, dp), seq, ack, flags, win, bytes(seg[hl:]), urgent=urg)
    i, opts = 20, seg
    sack: List[Tuple[int, int]] = []
    while i < hl:
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= hl or opts[i + 1] < 2 or i + opts[i + 1] > hl:
            raise ValueError("malformed option")
        ln = opts[i + 1]
        if kind == 2 and ln == 4:
            o.mss = struct.unpack_from("!H", opts, i + 2)[0]
        elif kind == 3 and ln == 3:
            o.wscale = opts[i + 2]
        elif kind == 4 and ln == 2:
            o.sackok = True
        elif kind == 8 and ln == 10:
            o.ts = struct.unpack_from("!II", opts, i + 2)
        elif kind == 5 and (ln - 2) % 8 == 0 and ln > 2:
            for k in range(i + 2, i + ln, 8):
                sack.append(struct.unpack_from("!II", opts, k))
        else:
            raise ValueError(f"option we never send: kind {kind} length {ln}")
        i += ln
    o.sack = tuple(sack)
    return o


# =============================================================================================
# Sequence-range sets for the model (small, sorted, merged)
# =============================================================================================

class Ranges:
    """A set of [start, end) offsets (plain ints, no wrap: offsets from a base), merged."""

    __slots__ = ("r",)

    def __init__(self):
        self.r: List[List[int]] = []

    def add(self, a: int, b: int) -> None:
        if b <= a:
            return
        out, placed = [], False
        for x, y in self.r:
            if y < a:
                out.append([x, y])
            elif b < x:
                if not placed:
                    out.append([a, b])
                    placed = True
                out.append([x, y])
            else:
                a, b = min(a, x), max(b, y)
        if not placed:
            out.append([a, b])
        out.sort()
        self.r = out

    def prefix(self, start: int = 0) -> int:
        """The end of the run of covered offsets from ``start`` (``start`` if not covered)."""
        end = start
        for x, y in self.r:
            if x <= end < y:
                end = y
            elif x > end:
                break
        return end

    def covers(self, a: int, b: int) -> bool:
        return any(x <= a and b <= y for x, y in self.r)

    def blocks_above(self, a: int) -> List[Tuple[int, int]]:
        return [(x, y) for x, y in self.r if x > a]


# =============================================================================================
# The harness: one Tcb, the actions, the invariants
# =============================================================================================

@dataclass
class Stats:
    steps: int = 0
    episodes: int = 0
    segments_in: int = 0
    segments_out: int = 0
    states_started: Dict[str, int] = field(default_factory=dict)
    states_seen: Dict[str, int] = field(default_factory=dict)
    transitions: Dict[Tuple[str, str], int] = field(default_factory=dict)
    actions: Dict[str, int] = field(default_factory=dict)
    known: Dict[str, int] = field(default_factory=dict)      # KNOWN_BUGS hit (episodes ended)
    counters: Dict[str, int] = field(default_factory=dict)   # TCB counters summed at episode end
    bytes_delivered: int = 0
    window_excess: int = 0      # most bytes an offered window exceeded the buffer (RFC 7323 §2.4)

    def merge_counters(self, c: Dict[str, int]) -> None:
        for k, v in c.items():
            self.counters[k] = self.counters.get(k, 0) + v


class Harness:
    """One ``Tcb`` of a :class:`Config` on a virtual clock, the peer's knowledge, and the checks.

    ``apply(action)`` performs one step and checks every invariant; the model it keeps is what
    the checks need (what the peer sent, what the application sent and read) and what the
    generator reads (``info``: the TCB's variables after the last step)."""

    def __init__(self, cfg: Config, stats: Optional[Stats] = None, step_timeout: float = 5.0):
        self.cfg = cfg
        self.stats = stats if stats is not None else Stats()
        self.step_timeout = step_timeout
        self.now_us = 100_000_000                  # 100 s (0 means "not armed" to some timers)
        o = cfg.opts
        # A passive open's TCB learns the peer from its SYN (as the engine's listeners make them).
        remote = None if cfg.start == LISTEN or \
            (not cfg.active and cfg.start not in (CLOSED, SYN_SENT)) else cfg.remote
        self.tcb = Tcb(cfg.local, remote, iss=cfg.iss, secret=cfg.secret, **o)
        self.iss = cfg.iss
        # --- the application side
        self.app_sent = 0                          # bytes send() accepted
        self.app_read = b""                        # kept short: only the count and a check
        self.delivered = 0                         # bytes recv() returned (not peeked)
        self.shut = False                          # shutdown/close called
        # --- what the peer put on the wire (relative to the current IRS)
        self.irs: Optional[int] = None
        self.peer_sent = Ranges()                  # offsets from IRS: SYN at 0, data, FINs
        self.peer_raw: List[Tuple[int, int]] = []  # (abs seq, seq_len) of everything sent
        self.peer_fins: set = set()                # absolute sequence numbers of FINs sent
        self.peer_tsvals: set = {0}
        self.peer_windows: set = {0}              # window fields it sent (SND.WND comes from one)
        self.peer_syn_opts: Dict[str, Any] = {}    # what the peer's SYN offered (negotiation)
        # --- what we emitted
        self.our_edge: Optional[int] = None        # our last offered right edge (abs seq)
        self.our_ack: Optional[int] = None         # the last ACK we sent
        self.our_tsval: int = 0                    # our last TSval (the peer echoes it)
        self.our_syn_seen = False
        # --- the peer model's view of our stream (for the generator)
        self.p_got = Ranges()                      # offsets from ISS+1 of our stream it received
        self.p_fin: Optional[int] = None           # our FIN's offset, once the peer saw it
        self.p_nxt: Optional[int] = None           # the peer's next new sequence number
        self.p_fin_sent: Optional[int] = None      # the peer's FIN (abs seq), if it sent one
        self.peer_wnd = cfg.peer_win
        self.rng_loss = random.Random(cfg.secret[0] ^ 0x10551055)
        self.trace: List[tuple] = []
        self.last_out: List[Out] = []
        self.triggers: set = set()                 # conditions of KNOWN_BUGS met so far
        self.saw_recovery = False                  # fast recovery was entered once
        self.opened = False                        # left CLOSED once (never reopened after)
        self.passive = False                       # opened by listen()
        self.accepted = False                      # a passive one that an accept() could return
        self.info = self.tcb.info
        self.state = self.mid_state = self.info["state"]

    # --- what the runtime can do ----------------------------------------------------------------
    def app_attached(self) -> bool:
        """Whether an application holds this connection, as the engine hands it out: an active
        one from connect(), a passive one once accept() can return it (it left SYN-RECEIVED for a
        synchronized state); an embryonic passive one (LISTEN, SYN-RECEIVED) has no user yet."""
        return not self.passive or self.accepted

    # --- time ---------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.now_us / 1e6

    # --- steps --------------------------------------------------------------------------------
    def apply(self, action: tuple) -> None:
        """Perform one step (the action, then transmit) and check every invariant."""
        self.trace.append(action)
        try:
            self._step(action)
        except InvariantError as e:
            e.trace = list(self.trace)
            e.last_out = list(self.last_out)
            e.triggers = frozenset(self.triggers)
            raise

    def _step(self, action: tuple) -> None:
        self.stats.steps += 1
        kind = action[0]
        self.stats.actions[kind] = self.stats.actions.get(kind, 0) + 1
        before = self.info
        t0 = time.perf_counter()
        if kind == "seg":
            self._segment(action, before)
        elif kind == "clock":
            self.now_us += action[1]
        else:
            self._user(action, before)
        mid = self.tcb.info
        self.mid_state = mid["state"]
        self._check_transition(kind if kind in ("seg", "clock") else action[0], before["state"],
                               mid["state"])
        if kind == "seg":
            self._check_segment_effects(action, before, mid)
        try:
            raws = self.tcb.transmit(self.now, TRANSMIT_LIMIT)
        except Exception as e:                      # pragma: no cover - a crash
            _fail("crash", f"transmit raised {e!r}")
        if len(raws) >= TRANSMIT_LIMIT:
            _fail("hang", f"transmit returned {len(raws)} segments in one call")
        after = self.tcb.info
        self._check_transition("timer", mid["state"], after["state"])
        outs = [self._decode(r) for r in raws]
        self.tx_max = mid["snd_max"]
        self.last_out = outs
        self.stats.segments_out += len(outs)
        for o in outs:
            self._check_emitted(o, mid, after, action)
        for o in outs:
            self._peer_receives(o)
        self._check_after(after, before)
        if after["in_recovery"]:
            self.saw_recovery = True
        nxt = self.tcb.next_event()
        if nxt is not None and nxt * 1e6 <= self.now_us + 0.5:
            if after["state"] == CLOSED and self.saw_recovery:
                self.triggers.add("closed_with_rexmit_pending")
            _fail("busy_poll", f"next_event() = {nxt} at now = {self.now} in {after['state']} "
                               f"after transmit: the engine would spin")
        if time.perf_counter() - t0 > self.step_timeout:
            _fail("hang", f"one step took {time.perf_counter() - t0:.1f} s")
        self.info = after
        st = after["state"]
        if st != CLOSED:
            self.opened = True
        if action[0] == "listen" and st == LISTEN:
            self.passive = True
        if self.passive and st in SYNCHRONIZED:
            self.accepted = True
        self.stats.states_seen[st] = self.stats.states_seen.get(st, 0) + 1
        if st != before["state"]:
            k = (before["state"], st)
            self.stats.transitions[k] = self.stats.transitions.get(k, 0) + 1
        self.state = st

    # --- the peer's segment -------------------------------------------------------------------
    def _segment(self, action: tuple, before: dict) -> None:
        _, flags, seq, ack, window, n, opts = action
        payload = seq_bytes(PEER_SEED, seq + (1 if flags & SYN else 0), n)
        raw = build_segment(self.cfg, flags, seq, ack, window, payload, opts)
        if before["state"] == SYN_RECEIVED and flags & (SYN | RST) == SYN | RST and \
                s32(seq) == before["irs"]:
            self.triggers.add("syn_rst_in_syn_received")
        if before["state"] == SYN_SENT and flags & (SYN | ACK | RST) == SYN | ACK and \
                n > min(before["rcv_wnd"], before["rcvbuf_cap"] - before["recv_queue"]):
            self.triggers.add("synack_data_beyond_window")
        self._peer_sent(flags, seq, ack, window, n, opts, before)
        self.stats.segments_in += 1
        try:
            self.tcb.receive(raw, self.now)
        except Exception as e:
            _fail("crash", f"receive raised {e!r} for {action!r}")

    def _peer_sent(self, flags, seq, ack, window, n, opts, before) -> None:
        """Record what the peer has now put on the wire (the checks' ground truth)."""
        st = before["state"]
        od: Dict[str, tuple] = {}
        for o in opts:
            # As a receiver reads them: up to an EOL; of repeated kinds, any may count.
            if o[0] == "eol":
                break
            od.setdefault(o[0], o)
            if o[0] == "ts":
                self.peer_tsvals.add(o[1])
        self.peer_windows.add(window)
        if flags & SYN and not flags & RST and st in (LISTEN, SYN_SENT):
            # A SYN that may set the IRS: keep what it offered for the negotiation checks.
            self.peer_syn_opts = {k: v for k, v in od.items() if k in ("mss", "ws", "sackok", "ts")}
        seg_len = n + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        self.peer_raw.append((s32(seq), seg_len, bool(flags & SYN), bool(flags & FIN)))
        if self.irs is not None:
            self._cover(s32(seq), seg_len, flags)

    def _cover(self, seq: int, seg_len: int, flags: int) -> None:
        off = rel(seq, self.irs)
        if seg_len == 0 or off + seg_len <= 0:
            return
        self.peer_sent.add(max(0, off), off + seg_len)
        if flags & FIN:
            self.peer_fins.add(s32(seq + seg_len - 1))

    def _set_irs(self, irs: int) -> None:
        """The TCB took a new IRS: rebuild the peer's coverage relative to it."""
        if self.irs == irs:
            return
        self.irs = irs
        self.peer_sent = Ranges()
        self.peer_fins = set()
        for seq, ln, syn, fin in self.peer_raw:
            self._cover(seq, ln, (SYN if syn else 0) | (FIN if fin else 0))
        self.delivered = 0
        self.p_nxt = s32(irs + 1)
        self.our_edge = self.our_ack = None

    # --- user calls ---------------------------------------------------------------------------
    def _user(self, action: tuple, before: dict) -> None:
        kind = action[0]
        t = self.tcb
        try:
            if kind == "send":
                n = action[1]
                data = seq_bytes(OUR_SEED, self.iss + 1 + self.app_sent, n)
                took = t.send(data, self.now)
                if not 0 <= took <= n:
                    _fail("crash", f"send({n}) returned {took}")
                self.app_sent += took
            elif kind == "recv":
                got = t.recv(action[1], peek=action[2], now=self.now)
                if len(got) > action[1]:
                    _fail("crash", f"recv({action[1]}) returned {len(got)} bytes")
                self._check_delivered(got, before)
                if not action[2]:
                    self.delivered += len(got)
                    self.stats.bytes_delivered += len(got)
            elif kind == "shutdown":
                t.shutdown(self.now)
                self.shut = True
            elif kind == "close":
                t.close(self.now)
                self.shut = True
            elif kind == "abort":
                t.abort(self.now)
            elif kind == "connect":
                t.connect(self.now)
            elif kind == "listen":
                t.listen()
            elif kind == "set_options":
                t.set_options(**{action[1]: action[2]})
            else:
                raise ValueError(f"unknown action {action!r}")
        except OSError:
            pass                                    # the errno the kernel would give: fine
        except InvariantError:
            raise
        except Exception as e:
            _fail("crash", f"{kind} raised {e!r}")

    # --- checks -------------------------------------------------------------------------------
    def _check_transition(self, kind: str, a: str, b: str) -> None:
        if a == b:
            return
        if kind == "seg":
            ok = b in SEGMENT_TRANSITIONS[a]
        elif kind in ("timer", "clock"):
            ok = b in TIMER_TRANSITIONS[a]
        else:
            ok = b in USER_TRANSITIONS.get(kind, {}).get(a, frozenset())
        if not ok:
            _fail("transition", f"{a} -> {b} on {kind}")

    def _check_segment_effects(self, action: tuple, before: dict, mid: dict) -> None:
        _, flags, seq, ack, window, n, opts = action
        st = before["state"]
        changed = mid["state"] != st
        if flags & RST:
            if st in SYNCHRONIZED or st == SYN_RECEIVED:
                # RFC 5961 §3.2: only a RST whose SEG.SEQ is exactly RCV.NXT resets.
                if s32(seq) != before["rcv_nxt"] and (changed or mid["error"] != before["error"]):
                    _fail("rst_5961", f"RST seq={s32(seq)} with RCV.NXT={before['rcv_nxt']} "
                                      f"took {st} to {mid['state']} (error {mid['error']})")
            elif st == SYN_SENT:
                # §3.10.7.3: a RST counts only with an ACK of our SYN.
                acceptable = flags & ACK and seq_lt(before["snd_una"], ack) and \
                    seq_le(ack, before["snd_max"])
                if not acceptable and changed:
                    _fail("rst_5961", f"RST without an acceptable ACK (ack={s32(ack)}) "
                                      f"took SYN-SENT to {mid['state']}")
        elif flags & SYN and st in SYNCHRONIZED:
            # RFC 5961 §4.2: a SYN in a synchronized state is answered by a challenge ACK.
            if changed or mid["rcv_nxt"] != before["rcv_nxt"] or mid["error"] != before["error"]:
                _fail("syn_5961", f"SYN seq={s32(seq)} in {st}: -> {mid['state']}, RCV.NXT "
                                  f"{before['rcv_nxt']} -> {mid['rcv_nxt']}")
        if st in SYNCHRONIZED and flags & ACK and not flags & (RST | SYN):
            # RFC 5961 §5.2 (and RFC 9293 §3.10.7.4 fifth): an ACK of what was never sent, or far
            # older than any window, makes the segment be dropped: no data, no state change.
            ahead = seq_lt(before["snd_max"], ack)
            too_old = (before["snd_una"] - ack) % M32
            too_old = (1 << 30) < too_old < HALF
            if (ahead or too_old) and (mid["rcv_nxt"] != before["rcv_nxt"] or changed):
                _fail("ack_5961", f"ACK {s32(ack)} outside [SND.UNA-MAX.SND.WND, SND.NXT] "
                                  f"(SND.UNA={before['snd_una']}, SND.MAX={before['snd_max']}) "
                                  f"moved RCV.NXT {before['rcv_nxt']} -> {mid['rcv_nxt']}, "
                                  f"{st} -> {mid['state']}")
        if st in SYNCHRONIZED or st == SYN_RECEIVED:
            adv = before["rcv_wnd"]
            moved = (mid["rcv_nxt"] - before["rcv_nxt"]) % M32
            if mid["state"] != LISTEN and mid["rcv_nxt"] and moved > adv + 1:
                _fail("rcv_window", f"RCV.NXT moved by {moved} with {adv} offered "
                                    f"({before['rcv_nxt']} -> {mid['rcv_nxt']})")

    def _check_delivered(self, got: bytes, before: dict) -> None:
        if not got:
            return
        if self.irs is None:
            _fail("delivered", f"{len(got)} bytes before any IRS was known")
        want = seq_bytes(PEER_SEED, self.irs + 1 + self.delivered, len(got))
        if got != want:
            i = next(k for k in range(len(got)) if got[k] != want[k])
            _fail("delivered", f"byte {self.delivered + i} of the stream (seq "
                               f"{s32(self.irs + 1 + self.delivered + i)}) is {got[i]:#x}, the "
                               f"peer sent {want[i]:#x} there")
        end = self.delivered + len(got)
        if self.peer_sent.prefix(1) < end + 1:
            _fail("delivered", f"delivered up to offset {end} but the peer sent only "
                               f"{self.peer_sent.prefix(1) - 1} contiguous bytes")

    def _decode(self, raw: bytes) -> Out:
        try:
            return decode(raw, self.cfg.family)
        except ValueError as e:
            _fail("emit_format", f"{e}: {raw.hex()}")

    def _check_emitted(self, o: Out, mid: dict, after: dict, action: tuple) -> None:
        cfg = self.cfg
        st = mid["state"]
        if o.payload and st in (FIN_WAIT_2, TIME_WAIT):
            self.triggers.add("probe_after_fin")
        if o.flags & URG or o.urgent:
            _fail("emit_state", f"URG/urgent pointer in {o}")
        if o.flags & (ECE | CWR):
            _fail("emit_state", f"ECN bits without ECN negotiated in {o}")
        if o.flags & RST:
            self._check_rst(o, mid, action)
            return
        local = (_packed(cfg.local[0]), cfg.local[1])
        remote = (_packed(cfg.remote[0]), cfg.remote[1])
        if o.src != local or o.dst != remote:
            _fail("emit_format", f"{o} from {o.src} to {o.dst}")
        if o.flags & SYN:
            self._check_syn(o, mid)
            return
        if not o.flags & ACK:
            _fail("emit_state", f"a segment without ACK after the SYN: {o} in {st}")
        if st in (CLOSED, LISTEN, SYN_SENT) and after["state"] != st:
            st = after["state"]
        if st in (CLOSED, LISTEN, SYN_SENT):
            _fail("emit_state", f"{o} sent in {st}")
        self._check_ack(o, after)
        self._check_seq_and_data(o, mid, after)
        self._check_options(o, after)
        self._check_window_field(o, after)

    def _check_rst(self, o: Out, mid: dict, action: tuple) -> None:
        if o.payload:
            _fail("emit_rst", f"a RST with data: {o}")
        if action[0] == "seg" and not action[1] & RST:
            _, flags, seq, ack, window, n, opts = action
            if o.flags & ACK:
                # §3.10.7.1 reply to a segment without ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
                want = s32(seq + n + (1 if flags & SYN else 0) + (1 if flags & FIN else 0))
                if flags & ACK or o.seq != 0 or o.ack != want:
                    _fail("emit_rst", f"{o} answering flags={flags:#x} seq={s32(seq)} len={n}")
                return
            if flags & ACK and o.seq == s32(ack):
                return                  # <SEQ=SEG.ACK><CTL=RST>
        # ABORT (§3.10.5), a keep-alive or data-after-close reset: <SEQ=SND.NXT><CTL=RST>.
        if o.flags & ACK:
            _fail("emit_rst", f"a RST,ACK that answers nothing: {o}")
        if o.seq != mid["snd_max"] and o.seq != self.info["snd_max"]:
            _fail("emit_rst", f"{o}: SEQ is not SND.NXT ({mid['snd_max']})")

    def _check_syn(self, o: Out, mid: dict) -> None:
        st = mid["state"]
        if st not in (SYN_SENT, SYN_RECEIVED):
            _fail("emit_state", f"{o} sent in {st}")
        if o.seq != s32(self.iss) or o.payload or o.flags & FIN:
            _fail("emit_state", f"{o}: a SYN is <SEQ=ISS> with no data (ISS={self.iss})")
        if o.mss is None:
            _fail("emit_options", f"{o} without MSS")
        if st == SYN_RECEIVED:
            if self.our_edge is not None and seq_lt(s32(o.ack + o.window), self.our_edge):
                self.triggers.add("synack_shrinks_window")
            if not o.flags & ACK or o.ack != s32(mid["irs"] + 1):
                _fail("emit_state", f"{o}: the SYN,ACK must acknowledge IRS+1 ({mid['irs'] + 1})")
            # RFC 7323 §1.3/§2.2, RFC 2018 §2: a SYN,ACK carries only what the SYN offered.
            p = self.peer_syn_opts
            if o.wscale is not None and "ws" not in p:
                _fail("emit_options", f"{o}: window scale in a SYN,ACK to a SYN without it")
            if o.sackok and "sackok" not in p:
                _fail("emit_options", f"{o}: SACK-permitted to a SYN without it")
            if o.ts and "ts" not in p:
                _fail("emit_options", f"{o}: timestamps to a SYN without them")
        elif o.flags & ACK:
            _fail("emit_state", f"{o}: a SYN with ACK in SYN-SENT")
        if o.sack:
            _fail("emit_options", f"{o}: SACK blocks in a SYN")
        self.our_syn_seen = True
        if o.ts:
            self.our_tsval = o.ts[0]

    def _check_ack(self, o: Out, after: dict) -> None:
        """The ACK field covers only sequence space the peer sent."""
        irs = after["irs"] if self.irs is None else self.irs
        if self.irs is None or after["irs"] != self.irs:
            self._set_irs(after["irs"])
            irs = self.irs
        off = (o.ack - irs) % M32
        if off >= HALF:
            _fail("emit_ack", f"{o} acknowledges below IRS {irs}")
        covered = self.peer_sent.prefix(0)
        if off > covered:
            _fail("emit_ack", f"{o} acknowledges up to offset {off} from IRS {irs}; the peer sent "
                              f"only [0, {covered}) contiguously: {self.peer_sent.r[:6]}")
        if off == covered and off > 0 and (s32(o.ack - 1) in self.peer_fins):
            pass
        if o.ack != after["rcv_nxt"] and off > (after["rcv_nxt"] - irs) % M32:
            _fail("emit_ack", f"{o} acknowledges beyond RCV.NXT {after['rcv_nxt']}")
        if self.our_ack is not None and seq_lt(o.ack, self.our_ack) and \
                rel(o.ack, self.our_ack) > -HALF // 2:
            _fail("emit_ack", f"{o}: the ACK went back from {self.our_ack}")
        self.our_ack = o.ack
        for i, (a, b) in enumerate(o.sack):
            if i == 0 and (seq_le(b, o.ack) or any(seq_le(c, a) and seq_le(b, d)
                                                   for c, d in o.sack[1:])):
                # A D-SACK block (RFC 2883 §4): a duplicate the peer sent, wherever it lay.
                if not any(seq_le(sq, a) and seq_le(b, s32(sq + ln))
                           for sq, ln, _s, _f in self.peer_raw):
                    _fail("emit_ack", f"{o}: D-SACK block {a}-{b} reports a segment the peer "
                                      f"never sent")
                continue
            la, lb = (a - irs) % M32, (b - irs) % M32
            if la >= HALF or lb > HALF or la >= lb:
                _fail("emit_ack", f"{o}: SACK block {a}-{b} is not a range above IRS {irs}")
            if not self.peer_sent.covers(la, lb):
                _fail("emit_ack", f"{o}: SACK block {a}-{b} (offsets {la}-{lb}) covers data the "
                                  f"peer never sent: {self.peer_sent.r[:6]}")

    def _check_seq_and_data(self, o: Out, mid: dict, after: dict) -> None:
        iss = self.iss
        off = (o.seq - (iss + 1)) % M32
        n = len(o.payload)
        if off >= HALF:
            # Only a keep-alive probe goes below SND.UNA: <SEQ=SND.NXT-1>, no data.
            if off == M32 - 1 and n == 0 and not o.flags & FIN:
                return
            _fail("emit_data", f"{o} below ISS+1 ({s32(iss + 1)})")
        if off + n > self.app_sent + (1 if self.shut and not n else 0):
            # (After our FIN, SND.NXT is one past the last byte.)
            _fail("emit_data", f"{o}: data up to offset {off + n}, the application sent only "
                               f"{self.app_sent}")
        if n and o.payload != seq_bytes(OUR_SEED, o.seq, n):
            _fail("emit_data", f"{o}: the payload is not the application's bytes at that place")
        if o.flags & FIN:
            if not self.shut:
                _fail("emit_state", f"{o}: a FIN before the application closed")
            if off + n != self.app_sent:
                _fail("emit_data", f"{o}: the FIN is not right after the last byte "
                                   f"(offset {off + n} != {self.app_sent})")
        st = mid["state"]
        if n and st in (SYN_SENT, SYN_RECEIVED, TIME_WAIT, FIN_WAIT_2, CLOSED, LISTEN):
            _fail("emit_state", f"{o}: data in {st}")
        if n:
            # RFC 9293 §3.8.6.2.1: new data only up to the right edge SND.UNA + SND.WND (neither
            # changes while transmit() runs), one octet beyond a zero window as a probe
            # (§3.8.6.1). Data sent before, again, may lie beyond a window that shrank since.
            end = s32(o.seq + n)
            if seq_lt(self.tx_max, end):
                edge = s32(after["snd_una"] + after["snd_wnd"])
                probe = n == 1 and after["snd_wnd"] == 0 and o.seq == after["snd_una"]
                if seq_lt(edge, end) and not probe:
                    if o.seq == after["snd_una"] and seq_lt(o.seq, mid["snd_max"]) and \
                            not after["sack_ok"]:
                        self.triggers.add("newreno_rexmit_past_snd_max")
                    _fail("emit_window", f"{o}: new data up to {end}, beyond the right edge "
                                         f"SND.UNA + SND.WND = {after['snd_una']} + "
                                         f"{after['snd_wnd']} = {edge}")
                self.tx_max = end

    def _check_options(self, o: Out, after: dict) -> None:
        if o.mss is not None or o.wscale is not None or o.sackok:
            _fail("emit_options", f"{o}: SYN-only options in a segment without SYN")
        if after["ts_ok"] and o.ts is None:
            _fail("emit_options", f"{o}: timestamps negotiated but missing (RFC 7323 §3.2)")
        if not after["ts_ok"] and o.ts is not None and after["state"] != CLOSED:
            _fail("emit_options", f"{o}: timestamps not negotiated")
        if o.ts is not None:
            if o.ts[1] not in self.peer_tsvals:
                _fail("emit_options", f"{o}: TSecr {o.ts[1]} echoes no TSval the peer sent")
            self.our_tsval = o.ts[0]
        if o.sack and not after["sack_ok"]:
            _fail("emit_options", f"{o}: SACK blocks without SACK negotiated")
        if len(o.sack) > (3 if o.ts else 4):
            _fail("emit_options", f"{o}: more SACK blocks than fit")

    def _check_window_field(self, o: Out, after: dict) -> None:
        ws = after["rcv_wscale"]
        unit = 1 << ws
        w = o.window << ws
        edge = s32(o.ack + w)
        room = after["rcvbuf_cap"] - after["recv_queue"]
        # The offered window fits the buffer, give or take the scaling: the field counts in units
        # of 2**wscale, rounded up (the ring keeps 2**wscale - 1 bytes of slack for that); and an
        # edge offered before is kept rather than shrunk, which may need one more unit when
        # RCV.NXT moved by less than a unit (RFC 7323 §2.4: "advertise a new window that is beyond
        # what it previously advertised (and perhaps beyond the buffer)").
        allowed = room + unit - 1
        if self.our_edge is not None and self.state != CLOSED:
            kept = rel(self.our_edge, o.ack)
            if kept > 0:
                allowed = max(allowed, -(-kept // unit) * unit)
        if w > allowed and w > 0 and self.state != CLOSED:
            _fail("memory", f"{o}: offered {w} bytes with room for {room} in the buffer "
                            f"(cap {after['rcvbuf_cap']}, queued {after['recv_queue']}, "
                            f"shift {ws}, edge before {self.our_edge})")
        if w > room:
            self.stats.window_excess = max(self.stats.window_excess, w - room)
        if self.our_edge is not None and seq_lt(edge, self.our_edge):
            _fail("window_shrank", f"{o}: right edge {edge} < {self.our_edge} offered before")
        self.our_edge = edge

    def _check_after(self, after: dict, before: dict) -> None:
        st = after["state"]
        cfg_o = self.cfg.opts
        # --- memory bounded by the configured buffers
        sndmax = max(cfg_o.get("sndbuf", 256 * 1024),
                     0 if "sndbuf" in cfg_o else cfg_o.get("sndbuf_max", 4 << 20))
        rcvmax = max(cfg_o.get("rcvbuf", 256 * 1024),
                     0 if "rcvbuf" in cfg_o else cfg_o.get("rcvbuf_max", 6 << 20))
        slack = (1 << after["rcv_wscale"]) - 1 if after["rcv_wscale"] else 0
        if after["sndbuf_cap"] > sndmax or after["send_queue"] > after["sndbuf_cap"] or \
                after["sndbuf_alloc"] > max(after["sndbuf_cap"], 0) + 4096:
            _fail("memory", f"send buffer: queued {after['send_queue']}, cap "
                            f"{after['sndbuf_cap']}, storage {after['sndbuf_alloc']}, bound {sndmax}")
        if after["rcvbuf_cap"] > rcvmax + slack or after["recv_queue"] > after["rcvbuf_cap"] or \
                after["rcvbuf_alloc"] > after["rcvbuf_cap"] + 4096:
            _fail("memory", f"receive buffer: queued {after['recv_queue']}, cap "
                            f"{after['rcvbuf_cap']}, storage {after['rcvbuf_alloc']}, bound "
                            f"{rcvmax} + {slack}")
        if after["ooo_ranges"] > RANGES_MAX or after["tx_records"] > TXQ_MAX:
            _fail("memory", f"{after['ooo_ranges']} out-of-order ranges, {after['tx_records']} "
                            f"transmit records")
        # --- the byte streams
        if st not in (CLOSED, LISTEN, SYN_SENT) and self.irs != after["irs"]:
            if st == SYN_RECEIVED or self.irs is None:
                self._set_irs(after["irs"])
        if st in SYNCHRONIZED and self.irs is not None:
            got = (after["rcv_nxt"] - self.irs - 1) % M32 - (1 if after["rcv_fin"] else 0)
            if self.delivered + after["recv_queue"] != got:
                _fail("conservation", f"delivered {self.delivered} + queued "
                                      f"{after['recv_queue']} != {got} received in order "
                                      f"(RCV.NXT {after['rcv_nxt']}, IRS {self.irs})")
            if got > self.peer_sent.prefix(1) - 1:
                _fail("emit_ack", f"RCV.NXT {after['rcv_nxt']} beyond what the peer sent "
                                  f"contiguously ({self.peer_sent.prefix(1) - 1} bytes)")
        if st in SYNCHRONIZED and st != TIME_WAIT:
            acked = (after["snd_una"] - self.iss - 1) % M32
            if acked >= HALF:
                acked = 0
            acked = min(acked, self.app_sent)
            if after["send_queue"] + acked != self.app_sent:
                _fail("send_accounting", f"queued {after['send_queue']} + acknowledged {acked} "
                                         f"!= {self.app_sent} accepted (SND.UNA "
                                         f"{after['snd_una']}, ISS {self.iss})")
        ws = after["snd_wscale"]
        if after["snd_wnd"] != before["snd_wnd"] and after["snd_wnd"] not in self.peer_windows \
                and not ((after["snd_wnd"] >> ws) in self.peer_windows and
                         (after["snd_wnd"] >> ws) << ws == after["snd_wnd"]):
            _fail("emit_window", f"SND.WND {after['snd_wnd']} is no window the peer offered "
                                 f"(shift {ws})")
        if after["error"] and after["error"] != before["error"] and st != CLOSED:
            _fail("transition", f"error {after['error']} set in {st}")

    # --- the peer model learns from our segments ------------------------------------------
    def _peer_receives(self, o: Out) -> None:
        if o.flags & RST:
            return
        if self.rng_loss.random() < self.cfg.peer_loss:
            return                                      # lost on the way
        if o.flags & SYN:
            return
        off = (o.seq - self.iss - 1) % M32
        if off < HALF:
            n = len(o.payload)
            self.p_got.add(off, off + n)
            if o.flags & FIN:
                self.p_fin = off + n
        if o.ts:
            self.our_tsval = o.ts[0]

    def peer_ack(self) -> int:
        """What the peer acknowledges of our stream: ISS+1+contiguous (+1 for our FIN)."""
        got = self.p_got.prefix(0)
        fin = 1 if self.p_fin is not None and self.p_fin == got else 0
        return s32(self.iss + 1 + got + fin)


# =============================================================================================
# Setting up each state
# =============================================================================================

def peer_syn_options(cfg: Config, tsval: int) -> Tuple[tuple, ...]:
    o: List[tuple] = []
    if cfg.peer_mss is not None:
        o.append(("mss", cfg.peer_mss))
    if cfg.peer_wscale is not None:
        o.append(("nop",))
        o.append(("ws", cfg.peer_wscale))
    if cfg.peer_sack:
        o.append(("sackok",))
    if cfg.peer_ts:
        o.append(("ts", tsval, 0))
    return tuple(o)


def setup_actions(cfg: Config) -> List[tuple]:
    """The scripted actions that bring a fresh TCB of ``cfg`` into ``cfg.start``. The ACK numbers
    are computed, not observed: they assume the TCB emitted its SYN (and FIN) as the RFC says."""
    st = cfg.start
    iss, irs = cfg.iss, cfg.irs
    tsv = 7_000_000
    syn_opts = peer_syn_options(cfg, tsv)
    ts = (("ts", tsv + 1, 0),) if cfg.peer_ts else ()     # tsecr is fixed in by the generator
    acts: List[tuple] = []
    if st == CLOSED:
        return acts
    if st == LISTEN:
        return [("listen",)]
    if st == SYN_SENT:
        return [("connect",)]
    if cfg.active:
        acts.append(("connect",))
        if st == SYN_RECEIVED:
            acts.append(("seg", SYN, irs, 0, cfg.peer_win, 0, syn_opts))       # simultaneous open
            return acts
        acts.append(("seg", SYN | ACK, irs, iss + 1, cfg.peer_win, 0, syn_opts))
    else:
        acts.append(("listen",))
        acts.append(("seg", SYN, irs, 0, cfg.peer_win, 0, syn_opts))
        if st == SYN_RECEIVED:
            return acts
        acts.append(("seg", ACK, irs + 1, iss + 1, cfg.peer_win, 0, ts))
    if st == ESTABLISHED:
        return acts
    if st in (FIN_WAIT_1, FIN_WAIT_2, CLOSING, TIME_WAIT):
        acts.append(("shutdown",))
        if st == FIN_WAIT_2:
            acts.append(("seg", ACK, irs + 1, iss + 2, cfg.peer_win, 0, ts))
        elif st == CLOSING:
            acts.append(("seg", FIN | ACK, irs + 1, iss + 1, cfg.peer_win, 0, ts))
        elif st == TIME_WAIT:
            acts.append(("seg", ACK, irs + 1, iss + 2, cfg.peer_win, 0, ts))
            acts.append(("seg", FIN | ACK, irs + 1, iss + 2, cfg.peer_win, 0, ts))
        return acts
    acts.append(("seg", FIN | ACK, irs + 1, iss + 1, cfg.peer_win, 0, ts))   # CLOSE-WAIT
    if st == LAST_ACK:
        acts.append(("shutdown",))
    return acts


# =============================================================================================
# The generator: the next action, from the harness's view of the connection
# =============================================================================================

_INTERESTING32 = (0, 1, 2, 0x7FFF_FFFF, HALF, HALF + 1, M32 - 1, M32 - 2, 0xFFFF, 0x10000)
_WINDOWS = (0, 1, 2, 100, 536, 1460, 8192, 32768, 65535)
_FLAG_SETS = (ACK, ACK | PSH, ACK | FIN, SYN, SYN | ACK, RST, RST | ACK, FIN, 0, SYN | FIN,
              SYN | RST, ACK | URG, ACK | ECE | CWR, 0xFF)


class Generator:
    """Chooses actions. ``rng`` is any ``random.Random`` (seeded, or fed by atheris)."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    # --- entry ------------------------------------------------------------------------------
    def next_action(self, h: Harness) -> tuple:
        r = self.rng.random()
        if r < 0.40:
            return self.sane_segment(h)
        if r < 0.58:
            return self.mutate(self.sane_segment(h), h)
        if r < 0.64:
            return self.random_segment(h)
        if r < 0.82:
            return self.user_call(h)
        return self.clock(h)

    # --- the peer as a real TCP -------------------------------------------------------------
    def ts_opt(self, h: Harness) -> Tuple[tuple, ...]:
        if not h.cfg.peer_ts:
            return ()
        tsval = s32(7_000_000 + h.now_us // 1000)
        return (("ts", tsval, h.our_tsval),)

    def sane_segment(self, h: Harness) -> tuple:
        rng, cfg, info = self.rng, h.cfg, h.info
        st = info["state"]
        if st in (CLOSED, LISTEN):
            return ("seg", SYN, cfg.irs if rng.random() < 0.7 else rng.getrandbits(32), 0,
                    cfg.peer_win, 0, peer_syn_options(cfg, s32(7_000_000 + h.now_us // 1000)))
        if st == SYN_SENT:
            if rng.random() < 0.8:
                return ("seg", SYN | ACK, cfg.irs, s32(h.iss + 1), cfg.peer_win, 0,
                        peer_syn_options(cfg, s32(7_000_000 + h.now_us // 1000)))
            return ("seg", SYN, cfg.irs, 0, cfg.peer_win, 0, peer_syn_options(cfg, 0))
        if st == SYN_RECEIVED and rng.random() < 0.25:
            # The peer did not see our SYN,ACK: its SYN again (or, in a simultaneous open, its
            # SYN,ACK, which acknowledges ours).
            fl = SYN | ACK if rng.random() < 0.5 else SYN
            return ("seg", fl, info["irs"], s32(h.iss + 1) if fl & ACK else 0, cfg.peer_win, 0,
                    peer_syn_options(cfg, s32(7_000_000 + h.now_us // 1000)))
        irs = info["irs"]
        if h.p_nxt is None:
            h.p_nxt = s32(irs + 1)
        ack = h.peer_ack()
        opts: Tuple[tuple, ...] = self.ts_opt(h)
        if info["sack_ok"]:
            blocks = h.p_got.blocks_above(h.p_got.prefix(0))[-(3 if opts else 4):]
            if blocks and rng.random() < 0.9:
                bl = tuple((s32(h.iss + 1 + a), s32(h.iss + 1 + b)) for a, b in reversed(blocks))
                opts = opts + (("sack", bl),)
        win = self.peer_window(h)
        # Which of its own bytes to send.
        flags = ACK
        n = 0
        seq = h.p_nxt
        r = rng.random()
        mss = min(info["smss"] or 536, 1460) or 536
        our_wnd = info["rcv_wnd"]
        if h.p_fin_sent is not None and r < 0.5:
            seq = h.p_fin_sent if rng.random() < 0.3 else h.p_nxt
            flags |= FIN if seq == h.p_fin_sent else 0
        elif r < 0.55 and h.p_fin_sent is None:
            # New data: up to an MSS, within what we offered (mostly).
            room = (s32(info["rcv_nxt"] + our_wnd) - h.p_nxt) % M32
            if room >= HALF:
                room = 0
            n = rng.choice((1, mss, mss, rng.randint(1, 3 * mss), room, room + 1))
            if rng.random() < 0.85:
                n = min(n, room) if room else (1 if rng.random() < 0.2 else 0)
            if rng.random() < 0.1 and n:
                seq = s32(h.p_nxt + rng.choice((mss, 2 * mss, rng.randint(1, max(1, our_wnd)))))
                # A hole: the bytes in between come later (or never).
        elif r < 0.7:
            # A retransmission from what we acknowledged.
            seq = info["rcv_nxt"]
            n = min(rng.choice((1, mss, 2 * mss)), max(0, (h.p_nxt - seq) % M32) if
                    (h.p_nxt - seq) % M32 < HALF else 0)
        elif r < 0.75 and h.p_fin_sent is None:
            flags |= FIN
            h.p_fin_sent = h.p_nxt
        if n:
            n = max(0, min(n, 20000))
            end = s32(seq + n)
            if seq_lt(h.p_nxt, end):
                h.p_nxt = end
            if h.p_fin_sent is None and rng.random() < 0.05:
                flags |= FIN
                h.p_fin_sent = end
        if n and rng.random() < 0.7:
            flags |= PSH
        return self._fit(("seg", flags, seq, ack, win, n, opts))

    def peer_window(self, h: Harness) -> int:
        rng = self.rng
        r = rng.random()
        if r < 0.05:
            h.peer_wnd = 0
        elif r < 0.12:
            h.peer_wnd = rng.choice(_WINDOWS)
        elif r < 0.2:
            h.peer_wnd = h.cfg.peer_win or 65535
        return h.peer_wnd

    # --- mutations near the edges -------------------------------------------------------------
    def near(self, h: Harness, which: str) -> int:
        rng, info = self.rng, h.info
        d = rng.choice((0, 0, 1, -1, 2, -2, rng.randint(-70000, 70000)))
        if which == "seq":
            base = rng.choice((info["rcv_nxt"], s32(info["rcv_nxt"] + info["rcv_wnd"]),
                               s32(info["rcv_nxt"] - max(1, info["rcv_wnd"])), info["irs"],
                               h.p_nxt or info["rcv_nxt"], rng.choice(_INTERESTING32)))
        else:
            base = rng.choice((info["snd_una"], info["snd_nxt"], info["snd_max"],
                               s32(info["snd_una"] - max(1, info["snd_wnd"])), h.iss,
                               s32(h.iss + 1), rng.choice(_INTERESTING32)))
        return s32(base + d)

    def mutate(self, a: tuple, h: Harness) -> tuple:
        rng = self.rng
        _, flags, seq, ack, win, n, opts = a
        for _ in range(rng.randint(1, 3)):
            m = rng.randrange(8)
            if m == 0:
                seq = self.near(h, "seq")
            elif m == 1:
                ack = self.near(h, "ack")
            elif m == 2:
                flags = rng.choice(_FLAG_SETS) if rng.random() < 0.5 else flags ^ (1 << rng.randrange(8))
            elif m == 3:
                win = rng.choice(_WINDOWS) if rng.random() < 0.7 else rng.getrandbits(16)
            elif m == 4:
                # A length that straddles the window's right edge.
                wnd = h.info["rcv_wnd"]
                n = max(0, min(20000, wnd + rng.randint(-3, 3)))
                seq = h.info["rcv_nxt"] if rng.random() < 0.7 else seq
            elif m == 5:
                opts = self.random_options(h, flags)
            elif m == 6:
                # The timestamp: old, new, absurd.
                opts = tuple(o for o in opts if o[0] != "ts")
                tsv = rng.choice((0, 1, s32(7_000_000 + h.now_us // 1000 - rng.randint(1, 10**6)),
                                  s32(7_000_000 - HALF), rng.getrandbits(32)))
                opts = opts + (("ts", tsv, rng.choice((0, h.our_tsval, rng.getrandbits(32)))),)
            else:
                flags |= 0x100 * rng.randrange(16) if rng.random() < 0.3 else 0
                n = rng.choice((0, 1, n, n + 1, 1460, 1461))
        return self._fit(("seg", flags, seq, ack, win, n, opts))

    def random_options(self, h: Harness, flags: int) -> Tuple[tuple, ...]:
        rng = self.rng
        out: List[tuple] = []
        for _ in range(rng.randint(0, 5)):
            k = rng.randrange(9)
            if k == 0:
                out.append(("mss", rng.choice((0, 1, 88, 536, 1460, 65535, rng.getrandbits(16)))))
            elif k == 1:
                out.append(("ws", rng.choice((0, 1, 7, 14, 15, 255))))
            elif k == 2:
                out.append(("sackok",))
            elif k == 3:
                out.append(("ts", rng.getrandbits(32) if rng.random() < 0.5 else
                            s32(7_000_000 + h.now_us // 1000), rng.choice((0, h.our_tsval))))
            elif k == 4:
                bl = []
                for _ in range(rng.randint(1, 4)):
                    a = self.near(h, "ack")
                    bl.append((a, s32(a + rng.choice((1, 100, 1460, rng.getrandbits(16))))))
                out.append(("sack", tuple(bl)))
            elif k == 5:
                out.append(("nop",))
            elif k == 6:
                out.append(("unk", rng.choice((6, 7, 19, 28, 29, 30, 34, 253, 254)),
                            rng.randint(2, 10)))
            elif k == 7:
                # A D-SACK-looking block below SND.UNA.
                a = s32(h.info["snd_una"] - rng.randint(1, 3000))
                out.append(("sack", ((a, s32(a + rng.randint(1, 1460))),)))
            else:
                out.append(("eol",))
        while out and not options_fit(out):
            out.pop(rng.randrange(len(out)))
        return tuple(out)

    def random_segment(self, h: Harness) -> tuple:
        rng = self.rng
        flags = rng.getrandbits(8) | (0x100 * rng.randrange(16) if rng.random() < 0.1 else 0)
        seq = rng.getrandbits(32) if rng.random() < 0.5 else rng.choice(_INTERESTING32)
        ack = rng.getrandbits(32) if rng.random() < 0.5 else self.near(h, "ack")
        n = rng.choice((0, 0, 1, 10, 536, 1460, rng.randint(0, 3000)))
        return self._fit(("seg", flags, seq, ack, rng.getrandbits(16), n,
                          self.random_options(h, flags)))

    def _fit(self, a: tuple) -> tuple:
        _, flags, seq, ack, win, n, opts = a
        opts = tuple(opts)
        while opts and not options_fit(opts):
            opts = opts[:-1]
        # The packet must fit IPv4's 16-bit total length (and the TCB's 64 KiB rx buffer).
        n = max(0, min(n, 60000))
        return ("seg", flags & 0xFFF, s32(seq), s32(ack), win & 0xFFFF, n, opts)

    # --- the application --------------------------------------------------------------------
    def user_call(self, h: Harness) -> tuple:
        rng = self.rng
        if not h.app_attached():
            return self.clock(h)
        r = rng.random()
        if h.state == CLOSED and h.opened:
            r = min(r, 0.895)           # a connection that ended is never opened again
        if r < 0.38:
            return ("send", rng.choice((1, 10, 100, 1460, 3000, 10000, 70000, rng.randint(1, 5000))))
        if r < 0.78:
            return ("recv", rng.choice((1, 7, 100, 1460, 65536)), rng.random() < 0.15)
        if r < 0.84:
            return ("shutdown",)
        if r < 0.88:
            return ("close",)
        if r < 0.90:
            return ("abort",)
        if r < 0.93:
            return ("connect",)
        if r < 0.95:
            return ("listen",)
        opt = rng.choice((("nodelay", True), ("nodelay", False), ("keepalive", True),
                          ("keepalive", False), ("cc", "newreno"), ("cc", "cubic"),
                          ("keepidle", 0.2), ("rto_min", 0.001), ("challenge_ack_limit", 2)))
        return ("set_options",) + opt

    # --- time -------------------------------------------------------------------------------
    def clock(self, h: Harness) -> tuple:
        rng = self.rng
        r = rng.random()
        if r < 0.45:
            nxt = h.tcb.next_event()
            if nxt is not None:
                dt = max(0, round(nxt * 1e6) - h.now_us) + rng.choice((0, 0, 1))
                return ("clock", min(dt, 3600 * 10**6))
        if r < 0.6:
            return ("clock", rng.choice((1, 10, 1000)))
        if r < 0.85:
            return ("clock", rng.randint(1, 300_000))
        return ("clock", rng.choice((1_000_000, 5_000_000, 60_000_000, 130_000_000)))


# =============================================================================================
# Running, replaying, shrinking
# =============================================================================================

@dataclass
class Finding:
    """A failed invariant, with what reproduces it."""

    seed: int
    episode: int
    cfg: Config
    actions: List[tuple]
    error: InvariantError

    @property
    def name(self) -> str:
        return self.error.name


@dataclass
class Result:
    seed: int
    stats: Stats
    findings: List[Finding]
    seconds: float

    @property
    def rate(self) -> float:
        return self.stats.steps / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        st = self.stats
        lines = [f"seed {self.seed}: {st.steps} steps in {st.episodes} episodes, "
                 f"{self.seconds:.1f} s ({self.rate:.0f} steps/s), {st.segments_in} segments in, "
                 f"{st.segments_out} out, {len(self.findings)} findings",
                 "  started in: " + ", ".join(f"{k} {v}" for k, v in sorted(st.states_started.items())),
                 "  states seen: " + ", ".join(f"{k} {v}" for k, v in sorted(st.states_seen.items())),
                 f"  transitions seen: {len(st.transitions)}: " +
                 ", ".join(f"{a}->{b} {n}" for (a, b), n in sorted(st.transitions.items()))]
        if st.known:
            lines.append("  known bugs hit (episodes ended): " +
                         ", ".join(f"{k} {v}" for k, v in sorted(st.known.items())))
        nz = {k: v for k, v in st.counters.items() if v}
        lines.append("  TCB counters > 0: " + ", ".join(f"{k} {v}" for k, v in sorted(nz.items())))
        return "\n".join(lines)


def run_episode(cfg: Config, gen: Generator, stats: Stats, steps: Optional[int] = None,
                trace: Optional[List[tuple]] = None) -> Harness:
    """Set up ``cfg.start`` and take ``steps`` random steps; raises InvariantError."""
    h = Harness(cfg, stats)
    stats.episodes += 1
    for a in setup_actions(cfg):
        a = _fill_tsecr(a, h)
        h.apply(a)
    if h.state != cfg.start and h.mid_state != cfg.start:
        # (A timer may end the state at once: TIME-WAIT with MSL 0.)
        e = InvariantError("transition", f"setup for {cfg.start} ended in {h.state}")
        e.trace = list(h.trace)
        raise e
    stats.states_started[cfg.start] = stats.states_started.get(cfg.start, 0) + 1
    closed = 0
    try:
        for _ in range(cfg.steps if steps is None else steps):
            h.apply(gen.next_action(h))
            # A connection that ended is over: a few more steps show it stays so (it answers
            # with resets), then the next episode makes better use of the time.
            closed = closed + 1 if h.state == CLOSED and h.opened else 0
            if closed > 12:
                break
    finally:
        stats.merge_counters(h.tcb.counters)
    return h


def _fill_tsecr(a: tuple, h: Harness) -> tuple:
    """Scripted segments echo our last TSval (known only when they are sent)."""
    if a[0] != "seg" or not a[6]:
        return a
    opts = tuple(("ts", o[1], h.our_tsval) if o[0] == "ts" and not a[1] & SYN else o
                 for o in a[6])
    return a[:6] + (opts,)


def replay(cfg: Config, actions: Sequence[tuple]) -> Harness:
    """Apply recorded actions to a fresh TCB of ``cfg``; raises InvariantError on a failure."""
    h = Harness(cfg)
    for a in actions:
        h.apply(a)
    return h


def _fails_same(cfg: Config, actions: Sequence[tuple], name: str) -> bool:
    try:
        replay(cfg, actions)
    except InvariantError as e:
        return e.name == name
    return False


def minimize(cfg: Config, actions: List[tuple], name: str, budget: float = 20.0) -> List[tuple]:
    """Shrink ``actions`` (ddmin-like: drop chunks, then single actions, then simplify) while
    the replay still fails invariant ``name``; at most ``budget`` seconds."""
    t_end = time.monotonic() + budget
    cur = list(actions)
    # The failure happened at the last action: everything after it is already gone.
    chunk = max(1, len(cur) // 2)
    while chunk >= 1 and time.monotonic() < t_end:
        i, shrunk = 0, False
        while i < len(cur) - 1 and time.monotonic() < t_end:
            cand = cur[:i] + cur[i + chunk:] if i + chunk < len(cur) else cur[:i] + cur[-1:]
            if len(cand) < len(cur) and _fails_same(cfg, cand, name):
                cur, shrunk = cand, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    return cur


def format_repro(f: Finding, actions: Optional[Sequence[tuple]] = None) -> str:
    acts = f.actions if actions is None else actions
    lines = [f"# {f.error}", f"# seed {f.seed}, episode {f.episode}",
             f"cfg = {f.cfg!r}", "actions = ["]
    lines += [f"    {a!r}," for a in acts]
    lines.append("]")
    lines.append("from tcpfast.testing.fuzz_tcb import replay; replay(cfg, actions)")
    return "\n".join(lines)


def run(seed: int, steps: int, *, episode_steps: Tuple[int, int] = (20, 400),
        max_findings: int = 5, minimize_budget: float = 20.0,
        rng: Optional[random.Random] = None, progress: Optional[Callable[[Stats], None]] = None,
        progress_every: float = 10.0, stop_at: Optional[float] = None,
        report_known: bool = False) -> Result:
    """Run episodes until ``steps`` steps were taken (or ``stop_at``, a time.monotonic() value);
    collect at most ``max_findings`` failures, each minimized."""
    rng = rng if rng is not None else random.Random(seed)
    gen = Generator(rng)
    stats = Stats()
    findings: List[Finding] = []
    t0 = time.monotonic()
    last = t0
    episode = 0
    while stats.steps < steps and len(findings) < max_findings:
        if stop_at is not None and time.monotonic() >= stop_at:
            break
        cfg = random_config(rng, rng.randint(*episode_steps))
        episode += 1
        try:
            run_episode(cfg, gen, stats)
        except InvariantError as e:
            if e.known and not report_known:
                stats.known[e.known] = stats.known.get(e.known, 0) + 1
                continue
            acts = _trace_of(e)
            small = minimize(cfg, acts, e.name, minimize_budget) if minimize_budget else acts
            findings.append(Finding(seed, episode, cfg, small, e))
        if progress is not None and time.monotonic() - last >= progress_every:
            last = time.monotonic()
            progress(stats)
    return Result(seed, stats, findings, time.monotonic() - t0)


def _trace_of(e: InvariantError) -> List[tuple]:
    return list(getattr(e, "trace", []))


def explain(cfg: Config, actions: Sequence[tuple], file=None) -> Optional[InvariantError]:
    """Replay ``actions`` printing each step: the action, the state, RCV.NXT/SND.UNA/SND.NXT and
    what was emitted; returns the InvariantError it ends with (or None)."""
    import sys
    out = file if file is not None else sys.stdout
    h = Harness(cfg)
    i = h.info
    print(f"start {i['state']} iss={cfg.iss} irs={cfg.irs}", file=out)
    for k, a in enumerate(actions):
        try:
            h.apply(a)
        except InvariantError as e:
            print(f"{k:3} {a!r}\n    FAILS {e}\n    emitted {h.last_out}", file=out)
            return e
        i = h.info
        print(f"{k:3} {a!r}\n    -> {i['state']} rcv_nxt={i['rcv_nxt']} rcv_wnd={i['rcv_wnd']} "
              f"snd_una={i['snd_una']} snd_nxt={i['snd_nxt']} snd_max={i['snd_max']} "
              f"snd_wnd={i['snd_wnd']} rq={i['recv_queue']} sq={i['send_queue']} "
              f"emitted {h.last_out}", file=out)
    return None


# =============================================================================================
# Choices from bytes (coverage-guided fuzzing: the fuzzer's input is the sequence of choices)
# =============================================================================================

class OutOfBytes(Exception):
    """The input's bytes are used up: the episode ends there (not a failure)."""


class ByteRandom(random.Random):
    """A ``random.Random`` whose every choice is read from ``data`` (as libFuzzer mutates it), so
    that a coverage-guided fuzzer steers the generator. Raises :class:`OutOfBytes` at the end."""

    def __init__(self, data: bytes):
        self._data = memoryview(bytes(data))
        self._pos = 0
        super().__init__(0)

    def seed(self, *args, **kwargs) -> None:         # noqa: D102 - the bytes are the seed
        super().seed(0)

    def getrandbits(self, k: int) -> int:
        n = (k + 7) // 8
        if self._pos + n > len(self._data):
            raise OutOfBytes()
        v = int.from_bytes(self._data[self._pos:self._pos + n], "little")
        self._pos += n
        return v & ((1 << k) - 1)

    def random(self) -> float:
        return self.getrandbits(32) / 4294967296.0


def run_bytes(data: bytes, stats: Optional[Stats] = None,
              on_step: Optional[Callable[[Harness], None]] = None) -> Stats:
    """One episode whose configuration and steps are all chosen by ``data`` (atheris's input).
    Known bugs end the episode quietly; any other failure raises InvariantError."""
    stats = stats if stats is not None else Stats()
    rng = ByteRandom(data)
    try:
        cfg = random_config(rng, 10_000)
    except OutOfBytes:
        return stats
    gen = Generator(rng)
    h = Harness(cfg, stats)
    stats.episodes += 1
    try:
        for a in setup_actions(cfg):
            h.apply(_fill_tsecr(a, h))
        while True:
            try:
                a = gen.next_action(h)
            except OutOfBytes:
                break
            h.apply(a)
            if on_step is not None:
                on_step(h)
    except InvariantError as e:
        if e.known:
            stats.known[e.known] = stats.known.get(e.known, 0) + 1
            return stats
        raise
    return stats
