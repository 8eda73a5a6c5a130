"""The connection state machine (tcpfast._tcb): packet-in/packet-out tests per state, virtual clock.

In the style of smoltcp's socket tests: small functions put a connection straight into a state by
driving it there with segments from "the peer" (the test), then each test speaks in segments:

    c.send(F.ACK, seq, ack, payload)      a segment from the peer, handed to Tcb.receive()
    c.recv(Seg(...), Seg(...))            exactly these segments come out of Tcb.transmit()
    c.recv_nothing()                      nothing comes out

Times are seconds on a virtual clock that starts at T0; sequence numbers are exact because both
ISSs are fixed. ``ours(k)`` is the sequence number of our k-th octet after the SYN, ``theirs(k)``
the peer's. Tests marked with the ``seqs`` fixture run twice: once with ordinary ISSs and once
with both ISSs a few octets below 2**32, so that sequence numbers wrap during the test.

Most tests turn window scaling, timestamps and SACK off so that segments match exactly; the
negotiation tests and the SACK/PAWS tests turn them on. Where these tests assert something, it is
what the RFC says (RFC 9293 §3.10.7 unless noted), with the section cited beside it.

PSH is left out of every comparison: when to set it is the sender's choice (RFC 9293 §3.9.1.2,
RFC 1122 §4.2.2.2).
"""
import errno
from typing import NamedTuple, Optional, Tuple

import pytest

from tcpfast._tcb import Tcb
from tcpfast.wire import IPv4Header, Packet, TCPFlags, TCPHeader, build_packet, parse_packet

F = TCPFlags
M32 = 1 << 32

LOCAL = ("192.0.2.1", 80)
REMOTE = ("192.0.2.2", 49152)

T0 = 100.0              # the virtual clock starts here (0 means "not armed" to some timers)
EPS = 1e-6              # one microsecond, the clock's resolution
MSS = 1460
RCVBUF = 16384          # < 65535: the window fits the 16-bit field unscaled
PEER_WIN = 60000        # the window the peer offers
ISS = 1_000_000         # our initial sequence number
IRS = 5_000_000         # the peer's
WRAP_ISS = 0xFFFFFFF0   # a few octets below 2**32
WRAP_IRS = 0xFFFFFFF8

DEFAULTS = dict(mss=MSS, rcvbuf=RCVBUF, sndbuf=65536, cc="newreno", window_scaling=False,
                timestamps=False, sack=False, delack=0.04, msl=30.0, rto_initial=1.0,
                rto_min=0.2, rto_max=120.0)


def s(x: int) -> int:
    """Sequence arithmetic modulo 2**32."""
    return x % M32


class _Any:
    """Equal to anything: for fields the RFC leaves to the sender (a RST's window, a TSval)."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __repr__(self):
        return "ANY"


ANY = _Any()


class Seg(NamedTuple):
    """What a segment says, as compared by recv(). ``ack`` is only compared when ACK is set."""

    flags: F
    seq: int
    ack: object = None
    window: object = None       # None: the connection's default (Conn.wnd); RST: ANY
    payload: bytes = b""
    mss: Optional[int] = None
    wscale: Optional[int] = None
    sack_permitted: bool = False
    sack_blocks: Tuple[Tuple[int, int], ...] = ()
    timestamps: object = None


class Payload(bytes):
    """bytes that print short in failure reports."""

    def __repr__(self):
        head = bytes(self[:16])
        return f"<{len(self)} octets {head!r}{'...' if len(self) > 16 else ''}>"


def _norm_flags(flags) -> F:
    return F(int(flags) & ~int(F.PSH))


class Conn:
    """One Tcb on a virtual clock, and the peer's side of the conversation."""

    def __init__(self, tcb: Tcb, *, iss: int, irs: int, now: float = T0, wnd: int = RCVBUF,
                 local=LOCAL, remote=REMOTE):
        self.tcb = tcb
        self.iss = iss
        self.irs = irs
        self.now = now
        self.wnd = wnd              # the window we expect the Tcb to advertise unless told
        self.local = local
        self.remote = remote
        self.ts_offset = None       # our TSval - (now in ms), learnt from our first segment
        # The test's own idea of RCV.NXT and SND.NXT after the fixture: theirs(rk), ours(sk).
        self.rk = 0
        self.sk = 0

    # --- sequence numbers -------------------------------------------------------------------
    def ours(self, k: int = 0) -> int:
        return s(self.iss + 1 + k)

    def theirs(self, k: int = 0) -> int:
        return s(self.irs + 1 + k)

    def our_ts(self, now: Optional[float] = None) -> int:
        now = self.now if now is None else now
        return s(self.ts_offset + round(now * 1e6) // 1000)

    # --- time ---------------------------------------------------------------------------------
    def at(self, t: float) -> "Conn":
        assert t >= self.now, "the virtual clock does not run backwards"
        self.now = t
        return self

    def advance(self, dt: float) -> "Conn":
        return self.at(self.now + dt)

    # --- the peer speaks ------------------------------------------------------------------------
    def packet(self, flags, seq, ack=0, payload=b"", *, window=PEER_WIN, mss=None, wscale=None,
               sack_permitted=False, sack_blocks=(), timestamps=None, src=None, dst=None) -> bytes:
        src = self.remote if src is None else src
        dst = self.local if dst is None else dst
        return build_packet(Packet(
            ip=IPv4Header(src=src[0], dst=dst[0]),
            tcp=TCPHeader(src_port=src[1], dst_port=dst[1], seq=s(seq), ack=s(ack), flags=F(flags),
                          window=window, mss=mss, wscale=wscale, sack_permitted=sack_permitted,
                          sack_blocks=tuple((s(a), s(b)) for a, b in sack_blocks),
                          timestamps=timestamps),
            payload=bytes(payload)))

    def send(self, flags, seq, ack=0, payload=b"", **kw) -> None:
        self.tcb.receive(self.packet(flags, seq, ack, payload, **kw), self.now)

    # --- the Tcb speaks -------------------------------------------------------------------------
    def transmit(self, *, src=None, dst=None):
        """What transmit(now) returns, parsed (and checked to be from us to the peer)."""
        src = self.local if src is None else src
        dst = self.remote if dst is None else dst
        out = []
        for raw in self.tcb.transmit(self.now):
            p = parse_packet(raw)           # verifies both checksums
            assert p.tcp is not None, p
            assert (str(p.ip.src), p.tcp.src_port) == (src[0], src[1]), p
            assert (str(p.ip.dst), p.tcp.dst_port) == (dst[0], dst[1]), p
            assert p.tcp.urgent == 0 and not p.tcp.flags & F.URG, p
            out.append(p)
        return out

    def _seg(self, p) -> Seg:
        t = p.tcp
        return Seg(flags=_norm_flags(t.flags), seq=t.seq,
                   ack=t.ack if t.flags & F.ACK else None, window=t.window,
                   payload=Payload(p.payload),
                   mss=t.mss, wscale=t.wscale, sack_permitted=t.sack_permitted,
                   sack_blocks=t.sack_blocks, timestamps=t.timestamps)

    def _want(self, e: Seg) -> Seg:
        flags = _norm_flags(e.flags)
        window = e.window
        if window is None:
            window = ANY if flags & F.RST else self.wnd
        return e._replace(flags=flags, seq=s(e.seq), payload=Payload(e.payload),
                          ack=s(e.ack) if flags & F.ACK else None, window=window,
                          sack_blocks=tuple((s(a), s(b)) for a, b in e.sack_blocks))

    def recv(self, *expected: Seg, **kw) -> list:
        got = [self._seg(p) for p in self.transmit(**kw)]
        want = [self._want(e) for e in expected]
        assert got == want, f"\n  got:  {got}\n  want: {want}"
        return got

    def recv_nothing(self) -> None:
        self.recv()

    @property
    def state(self) -> str:
        return self.tcb.state_name


def make_tcb(**kw) -> Tcb:
    opts = dict(DEFAULTS)
    opts.update(kw)
    remote = opts.pop("remote", REMOTE)
    return Tcb(LOCAL, remote, **opts)


# =============================================================================================
# Fixtures: a connection driven into each state
# =============================================================================================

@pytest.fixture(params=[(ISS, IRS), (WRAP_ISS, WRAP_IRS)], ids=["iss", "wrap"])
def seqs(request):
    return request.param


def closed(iss=ISS, irs=IRS, **kw) -> Conn:
    return Conn(make_tcb(iss=iss, **kw), iss=iss, irs=irs)


def listening(iss=ISS, irs=IRS, **kw) -> Conn:
    tcb = Tcb(LOCAL, None, **{**DEFAULTS, "iss": iss, **kw})
    tcb.listen()
    assert tcb.state_name == "LISTEN"
    return Conn(tcb, iss=iss, irs=irs)


def syn_received(iss=ISS, irs=IRS, *, peer_mss=MSS, peer_win=PEER_WIN, **kw) -> Conn:
    c = listening(iss, irs, **kw)
    c.send(F.SYN, irs, window=peer_win, mss=peer_mss)
    c.wnd = min(kw.get("rcvbuf", RCVBUF), 65535)
    c.recv(Seg(F.SYN | F.ACK, iss, c.theirs(), window=c.wnd, mss=kw.get("mss", MSS)))
    assert c.state == "SYN-RECEIVED"
    return c


def established(iss=ISS, irs=IRS, *, peer_win=PEER_WIN, **kw) -> Conn:
    """Passive open: LISTEN, SYN, SYN-ACK, ACK."""
    c = syn_received(iss, irs, peer_win=peer_win, **kw)
    c.send(F.ACK, c.theirs(), c.ours(), window=peer_win)
    c.recv_nothing()
    assert c.state == "ESTABLISHED"
    return c


def syn_sent(iss=ISS, irs=IRS, **kw) -> Conn:
    c = closed(iss, irs, **kw)
    c.tcb.connect(c.now)
    c.wnd = min(kw.get("rcvbuf", RCVBUF), 65535)
    c.recv(Seg(F.SYN, iss, window=c.wnd, mss=kw.get("mss", MSS)))
    assert c.state == "SYN-SENT"
    return c


def established_active(iss=ISS, irs=IRS, *, peer_mss=MSS, **kw) -> Conn:
    """Active open: SYN, SYN-ACK, ACK."""
    c = syn_sent(iss, irs, **kw)
    c.send(F.SYN | F.ACK, irs, c.ours(), mss=peer_mss)
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    assert c.state == "ESTABLISHED"
    return c


def fin_wait_1(iss=ISS, irs=IRS, **kw) -> Conn:
    c = established(iss, irs, **kw)
    c.tcb.shutdown(c.now)
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs()))
    assert c.state == "FIN-WAIT-1"
    c.sk = 1
    return c


def fin_wait_2(iss=ISS, irs=IRS, **kw) -> Conn:
    c = fin_wait_1(iss, irs, **kw)
    c.send(F.ACK, c.theirs(), c.ours(1))
    c.recv_nothing()
    assert c.state == "FIN-WAIT-2"
    return c


def closing(iss=ISS, irs=IRS, **kw) -> Conn:
    c = fin_wait_1(iss, irs, **kw)
    c.send(F.FIN | F.ACK, c.theirs(), c.ours())      # the peer has not seen our FIN yet
    c.recv(Seg(F.ACK, c.ours(1), c.theirs(1)))
    assert c.state == "CLOSING"
    c.rk = 1
    return c


def time_wait(iss=ISS, irs=IRS, **kw) -> Conn:
    c = fin_wait_2(iss, irs, **kw)
    c.send(F.FIN | F.ACK, c.theirs(), c.ours(1))
    c.recv(Seg(F.ACK, c.ours(1), c.theirs(1)))
    assert c.state == "TIME-WAIT"
    c.rk = 1
    return c


def close_wait(iss=ISS, irs=IRS, **kw) -> Conn:
    c = established(iss, irs, **kw)
    c.send(F.FIN | F.ACK, c.theirs(), c.ours())
    c.recv(Seg(F.ACK, c.ours(), c.theirs(1)))
    assert c.state == "CLOSE-WAIT"
    c.rk = 1
    return c


def last_ack(iss=ISS, irs=IRS, **kw) -> Conn:
    c = close_wait(iss, irs, **kw)
    c.tcb.close(c.now)
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs(1)))
    assert c.state == "LAST-ACK"
    c.sk = 1
    return c


STATES = {
    "SYN-RECEIVED": syn_received, "ESTABLISHED": established, "FIN-WAIT-1": fin_wait_1,
    "FIN-WAIT-2": fin_wait_2, "CLOSE-WAIT": close_wait, "CLOSING": closing,
    "LAST-ACK": last_ack, "TIME-WAIT": time_wait,
}


def rcv_nxt_of(c: Conn) -> int:
    """RCV.NXT as the test counts it (not as the Tcb reports it)."""
    return c.theirs(c.rk)


def snd_nxt_of(c: Conn) -> int:
    return c.ours(c.sk)


def data(n: int, seed: int = 0) -> bytes:
    return bytes((seed + i * 7 + (i >> 8)) & 0xFF for i in range(n))


# =============================================================================================
# The fixtures themselves: every state reached, in both sequence spaces
# =============================================================================================

@pytest.mark.parametrize("name", sorted(STATES))
def test_fixture_reaches_state(seqs, name):
    c = STATES[name](*seqs)
    assert c.state == name
    assert c.tcb.error == 0
    info = c.tcb.info
    assert (info["rcv_nxt"], info["snd_nxt"]) == (rcv_nxt_of(c), snd_nxt_of(c))


# =============================================================================================
# CLOSED (RFC 9293 §3.10.7.1)
# =============================================================================================

def test_closed_answers_ack_with_rst_seq_seg_ack():
    """§3.10.7.1: "If the ACK bit is on, <SEQ=SEG.ACK><CTL=RST>"."""
    c = closed()
    c.send(F.ACK, 777, 123456, b"data")
    c.recv(Seg(F.RST, 123456))
    assert c.state == "CLOSED"


def test_closed_answers_no_ack_with_rst_ack_seq_plus_len():
    """§3.10.7.1: "If the ACK bit is off, sequence number zero is used,
    <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>" (SEG.LEN counts SYN and FIN)."""
    c = closed()
    c.send(F.SYN, 777, payload=b"abc")
    c.recv(Seg(F.RST | F.ACK, 0, 777 + 1 + 3))
    c.send(F.FIN, 0xFFFFFFFF, payload=b"xy")           # the sum wraps
    c.recv(Seg(F.RST | F.ACK, 0, 2))
    c.send(0, 500, payload=b"q")                       # no control bits at all
    c.recv(Seg(F.RST | F.ACK, 0, 501))
    assert c.state == "CLOSED"


def test_closed_never_answers_rst():
    """§3.10.7.1: "An incoming segment containing a RST is discarded"."""
    c = closed()
    c.send(F.RST, 777)
    c.send(F.RST | F.ACK, 777, 888)
    c.recv_nothing()


def test_closed_reply_to_other_endpoint_is_addressed_to_it():
    """The reset goes back to whoever sent the segment."""
    c = closed()
    other = ("198.51.100.7", 4444)
    c.send(F.ACK, 1, 99, src=other, dst=("192.0.2.1", 8080))
    c.recv(Seg(F.RST, 99), src=("192.0.2.1", 8080), dst=other)


def test_after_close_a_segment_gets_rst(seqs):
    """A connection that reached CLOSED (here via LAST-ACK) answers like §3.10.7.1."""
    c = last_ack(*seqs)
    c.send(F.ACK, c.theirs(1), c.ours(1))
    c.recv_nothing()
    assert c.state == "CLOSED"
    c.send(F.ACK | F.PSH, c.theirs(1), c.ours(1), b"late")
    c.recv(Seg(F.RST, c.ours(1)))


# =============================================================================================
# LISTEN (§3.10.7.2) and passive open
# =============================================================================================

def test_listen_syn_gets_syn_ack_with_mss(seqs):
    iss, irs = seqs
    c = listening(iss, irs)
    c.send(F.SYN, irs, mss=1400, window=PEER_WIN)
    # §3.10.7.2 third: "<SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>"; §3.7.1 our MSS in the SYN.
    c.recv(Seg(F.SYN | F.ACK, iss, s(irs + 1), window=RCVBUF, mss=MSS))
    assert c.state == "SYN-RECEIVED"
    info = c.tcb.info
    assert (info["irs"], info["rcv_nxt"], info["iss"]) == (irs, s(irs + 1), iss)
    assert (info["snd_una"], info["snd_nxt"]) == (iss, s(iss + 1))
    assert info["snd_wnd"] == PEER_WIN
    assert c.tcb.local == LOCAL and c.tcb.remote == REMOTE


def test_syn_received_ack_establishes(seqs):
    c = syn_received(*seqs)
    c.send(F.ACK, c.theirs(), c.ours())
    c.recv_nothing()
    assert c.state == "ESTABLISHED"
    info = c.tcb.info
    assert (info["snd_una"], info["snd_nxt"], info["rcv_nxt"]) == (c.ours(), c.ours(), c.theirs())
    assert c.tcb.next_event() is None
    with pytest.raises(BlockingIOError):
        c.tcb.recv(100)


def test_syn_received_ack_with_data_establishes_and_delivers(seqs):
    """§3.10.7.4 fifth, SYN-RECEIVED: enter ESTABLISHED "and continue processing"."""
    c = syn_received(*seqs)
    c.send(F.ACK | F.PSH, c.theirs(), c.ours(), b"hello")
    assert c.state == "ESTABLISHED"
    assert c.tcb.recv(100) == b"hello"
    c.advance(0.04)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(5)))


def test_listen_ignores_rst():
    """§3.10.7.2 first: "An incoming RST segment could not be valid ... ignore it"."""
    c = listening()
    c.send(F.RST, 1234)
    c.send(F.RST | F.ACK, 1234, 5678)
    c.recv_nothing()
    assert c.state == "LISTEN"


def test_listen_answers_ack_with_rst():
    """§3.10.7.2 second: "Any acknowledgment is bad if it arrives on a connection still in the
    LISTEN state. An acceptable reset segment should be formed ... <SEQ=SEG.ACK><CTL=RST>"."""
    c = listening()
    c.send(F.ACK, 1234, 5678)
    c.recv(Seg(F.RST, 5678))
    c.send(F.SYN | F.ACK, 1234, 0xFFFFFFFF)
    c.recv(Seg(F.RST, 0xFFFFFFFF))
    assert c.state == "LISTEN"


def test_listen_drops_other_segments():
    """§3.10.7.2 fourth: "Any other control or text-bearing segment (not containing SYN) must
    have an ACK and thus would be discarded by the ACK processing"."""
    c = listening()
    c.send(F.FIN, 1234)
    c.send(0, 1234, payload=b"text")
    c.recv_nothing()
    assert c.state == "LISTEN"


def test_syn_received_rst_returns_passive_connection_to_listen(seqs):
    """§3.10.7.4 second, SYN-RECEIVED: "If this connection was initiated with a passive OPEN
    (i.e., came from the LISTEN state), then return this connection to LISTEN state and return.
    The user need not be informed." It then takes the next SYN."""
    c = syn_received(*seqs)
    c.send(F.RST, c.theirs())
    c.recv_nothing()
    assert c.tcb.error == 0
    assert c.state == "LISTEN"
    c.send(F.SYN, 42, mss=MSS)
    c.recv(Seg(F.SYN | F.ACK, c.iss, 43, mss=MSS))


def test_syn_received_unacceptable_ack_gets_rst(seqs):
    """§3.10.7.4 fifth, SYN-RECEIVED: "If the segment acknowledgment is not acceptable, form a
    reset segment <SEQ=SEG.ACK><CTL=RST> and send it." (acceptable: SND.UNA < SEG.ACK =< SND.NXT)"""
    c = syn_received(*seqs)
    c.send(F.ACK, c.theirs(), c.ours(10))              # beyond SND.NXT
    c.recv(Seg(F.RST, c.ours(10)))
    c.send(F.ACK, c.theirs(), c.iss)                   # = SND.UNA: acknowledges nothing
    c.recv(Seg(F.RST, c.iss))
    assert c.state == "SYN-RECEIVED"
    c.send(F.ACK, c.theirs(), c.ours())                # the right one still works
    assert c.state == "ESTABLISHED"


def test_syn_received_in_window_syn_returns_passive_connection_to_listen(seqs):
    """§3.10.7.4 fourth, SYN-RECEIVED: "If the connection was initiated with a passive OPEN, then
    return this connection to the LISTEN state and return." (a SYN within the window, i.e. not
    a retransmission of the first one)."""
    c = syn_received(*seqs)
    c.send(F.SYN, c.theirs(100), mss=MSS)
    c.recv_nothing()
    assert c.tcb.error == 0
    assert c.state == "LISTEN"


# =============================================================================================
# SYN-SENT (§3.10.7.3) and active open
# =============================================================================================

def test_connect_sends_syn(seqs):
    iss, irs = seqs
    c = closed(iss, irs)
    c.tcb.connect(c.now)
    assert c.state == "SYN-SENT"
    # <SEQ=ISS><CTL=SYN> with our MSS; the window of a SYN is never scaled (RFC 7323 §2.2).
    c.recv(Seg(F.SYN, iss, window=RCVBUF, mss=MSS))
    assert c.tcb.info["snd_nxt"] == s(iss + 1)


def test_syn_sent_syn_ack_establishes(seqs):
    iss, irs = seqs
    c = syn_sent(iss, irs)
    c.send(F.SYN | F.ACK, irs, s(iss + 1), mss=MSS)
    # "form an ACK segment <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and send it"
    c.recv(Seg(F.ACK, s(iss + 1), s(irs + 1)))
    assert c.state == "ESTABLISHED"
    assert c.tcb.error == 0
    info = c.tcb.info
    assert (info["irs"], info["rcv_nxt"], info["snd_una"]) == (irs, s(irs + 1), s(iss + 1))
    assert info["snd_wnd"] == PEER_WIN


def test_syn_sent_bad_ack_gets_rst(seqs):
    """§3.10.7.3 first: "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless the RST
    bit is set ...) <SEQ=SEG.ACK><CTL=RST>"."""
    iss, irs = seqs
    c = syn_sent(iss, irs)
    c.send(F.SYN | F.ACK, irs, iss)
    c.recv(Seg(F.RST, iss))
    c.send(F.SYN | F.ACK, irs, s(iss + 2))
    c.recv(Seg(F.RST, s(iss + 2)))
    c.send(F.ACK, irs, s(iss - 1000))
    c.recv(Seg(F.RST, s(iss - 1000)))
    assert c.state == "SYN-SENT"


def test_syn_sent_rst_with_acceptable_ack_refuses(seqs):
    """§3.10.7.3 second: an RST with an acceptable ACK ends the attempt; like Linux, the user
    sees ECONNREFUSED."""
    iss, irs = seqs
    c = syn_sent(iss, irs)
    c.send(F.RST | F.ACK, 0, s(iss + 1))
    c.recv_nothing()
    assert c.state == "CLOSED"
    assert c.tcb.error == errno.ECONNREFUSED
    with pytest.raises(ConnectionRefusedError) as exc:
        c.tcb.recv(10)
    assert exc.value.errno == errno.ECONNREFUSED
    with pytest.raises(ConnectionRefusedError):
        c.tcb.send(b"x", c.now)
    assert c.tcb.next_event() is None


def test_syn_sent_rst_without_ack_is_ignored(seqs):
    """§3.10.7.3 second: "If the ACK was acceptable ... Otherwise (no ACK), drop the segment and
    return"; RFC 5961 §3.2 likewise."""
    iss, irs = seqs
    c = syn_sent(iss, irs)
    c.send(F.RST, irs)
    c.send(F.RST, 0)
    c.recv_nothing()
    assert c.state == "SYN-SENT"
    assert c.tcb.error == 0


def test_syn_sent_rst_with_bad_ack_is_dropped(seqs):
    """§3.10.7.3 first: a bad ACK with RST set: "drop the segment and return"."""
    iss, irs = seqs
    c = syn_sent(iss, irs)
    c.send(F.RST | F.ACK, irs, s(iss + 5))
    c.send(F.RST | F.ACK, irs, iss)
    c.recv_nothing()
    assert c.state == "SYN-SENT"


def test_syn_sent_drops_segment_without_syn_or_rst(seqs):
    """§3.10.7.3 fifth: "If neither of the SYN or RST bits is set, then drop the segment"."""
    iss, irs = seqs
    c = syn_sent(iss, irs)
    c.send(F.ACK, irs, s(iss + 1))
    c.send(F.ACK | F.PSH, irs, s(iss + 1), b"data")
    c.recv_nothing()
    assert c.state == "SYN-SENT"


def test_data_queued_in_syn_sent_goes_after_handshake(seqs):
    """§3.10.2 SEND in SYN-SENT: "Queue the data for transmission after entering ESTABLISHED
    state"; §3.10.7.3: "Data or controls that were queued for transmission MAY be included" in
    the ACK. So: nothing with the SYN, and after the SYN-ACK the data, acknowledging it."""
    iss, irs = seqs
    c = closed(iss, irs)
    c.tcb.connect(c.now)
    c.tcb.send(b"early", c.now)
    c.recv(Seg(F.SYN, iss, window=RCVBUF, mss=MSS))
    c.send(F.SYN | F.ACK, irs, s(iss + 1), mss=MSS)
    out = [c._seg(p) for p in c.transmit()]           # [ACK + data] or [ACK, data]: both fine
    off = 0
    for g in out:
        assert (g.flags, g.seq, g.ack) == (F.ACK, s(iss + 1 + off), s(irs + 1))
        off += len(g.payload)
    assert b"".join(g.payload for g in out) == b"early"
    assert c.state == "ESTABLISHED"


def test_retransmitted_syn_ack_is_acked_again(seqs):
    """Our ACK of the SYN-ACK was lost and the peer sends its SYN-ACK again: in ESTABLISHED it is
    an old duplicate, answered with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (§3.10.7.4 first)."""
    c = established_active(*seqs)
    c.advance(1.0)
    c.send(F.SYN | F.ACK, c.irs, c.ours(), mss=MSS)
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    assert c.state == "ESTABLISHED"


# =============================================================================================
# Simultaneous open (RFC 9293 §3.5 Figure 7)
# =============================================================================================

def test_simultaneous_open_syn_gives_syn_ack(seqs):
    iss, irs = seqs
    c = syn_sent(iss, irs)
    c.send(F.SYN, irs, mss=MSS)
    # §3.10.7.3 fourth: "Otherwise, enter SYN-RECEIVED, form a SYN,ACK segment
    # <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK> and send it."
    assert c.state == "SYN-RECEIVED"
    c.recv(Seg(F.SYN | F.ACK, iss, s(irs + 1), window=RCVBUF, mss=MSS))


def test_simultaneous_open_then_ack_establishes(seqs):
    iss, irs = seqs
    c = syn_sent(iss, irs)
    c.send(F.SYN, irs, mss=MSS)
    c.recv(Seg(F.SYN | F.ACK, iss, s(irs + 1), window=RCVBUF, mss=MSS))
    c.send(F.ACK, s(irs + 1), s(iss + 1))
    c.recv_nothing()
    assert c.state == "ESTABLISHED"
    assert c.tcb.error == 0


def test_simultaneous_open_then_syn_ack_establishes(seqs):
    """Figure 7 line 6: in SYN-RECEIVED, the peer's <SEQ=300><ACK=101><CTL=SYN,ACK> (its answer
    to our SYN, which crossed ours) takes us to ESTABLISHED."""
    iss, irs = seqs
    c = syn_sent(iss, irs)
    c.send(F.SYN, irs, mss=MSS)
    c.recv(Seg(F.SYN | F.ACK, iss, s(irs + 1), window=RCVBUF, mss=MSS))
    c.send(F.SYN | F.ACK, irs, s(iss + 1), mss=MSS)
    out = c.transmit()
    assert c.state == "ESTABLISHED"
    # Figure 7 shows no further segment; an ACK of the duplicate SYN is harmless. Nothing else.
    assert [c._seg(p) for p in out] in ([], [c._want(Seg(F.ACK, s(iss + 1), s(irs + 1)))])
    c.send(F.ACK | F.PSH, s(irs + 1), s(iss + 1), b"after")
    assert c.tcb.recv(10) == b"after"


def test_simultaneous_open_rst_is_connection_refused(seqs):
    """§3.10.7.4 second, SYN-RECEIVED: "If this connection was initiated with an active OPEN
    (i.e., came from SYN-SENT state), then the connection was refused; signal the user
    'connection refused'." (MUST-11: remember whether the open was passive or active.)"""
    iss, irs = seqs
    c = syn_sent(iss, irs)
    c.send(F.SYN, irs, mss=MSS)
    c.recv(Seg(F.SYN | F.ACK, iss, s(irs + 1), window=RCVBUF, mss=MSS))
    c.send(F.RST, s(irs + 1))
    c.recv_nothing()
    assert c.state == "CLOSED"
    assert c.tcb.error == errno.ECONNREFUSED
    with pytest.raises(ConnectionRefusedError):
        c.tcb.recv(10)


# =============================================================================================
# Data transfer (both sequence spaces)
# =============================================================================================

def test_transfer_both_ways(seqs):
    c = established(*seqs)
    msg = data(300, 1)
    c.send(F.ACK | F.PSH, c.theirs(), c.ours(), msg)
    c.recv_nothing()                                   # delayed ACK
    assert c.tcb.recv(1000) == msg
    # Our data carries the ACK (piggybacked), which also cancels the delayed ACK.
    reply = data(200, 2)
    assert c.tcb.send(reply, c.now) == 200
    c.recv(Seg(F.ACK, c.ours(), c.theirs(300), payload=reply))
    c.advance(1.0)
    c.send(F.ACK, c.theirs(300), c.ours(200))
    c.recv_nothing()
    info = c.tcb.info
    assert (info["snd_una"], info["snd_nxt"], info["rcv_nxt"]) == \
        (c.ours(200), c.ours(200), c.theirs(300))
    assert c.tcb.next_event() is None


def test_bulk_send_segments_at_mss_and_data_is_exact(seqs):
    c = established(*seqs)
    msg = data(4 * MSS, 3)
    c.tcb.send(msg, c.now)
    got = c.recv(*[Seg(F.ACK, c.ours(i * MSS), c.theirs(), payload=msg[i * MSS:(i + 1) * MSS])
                   for i in range(4)])
    assert b"".join(g.payload for g in got) == msg
    c.send(F.ACK, c.theirs(), c.ours(4 * MSS))
    c.recv_nothing()
    assert c.tcb.info["snd_una"] == c.ours(4 * MSS)


def test_receive_large_stream_in_order(seqs):
    c = established(*seqs, rcvbuf=65535)
    c.wnd = 65535
    msg = data(20000, 4)
    off = 0
    while off < len(msg):
        chunk = msg[off:off + MSS]
        c.send(F.ACK, c.theirs(off), c.ours(), chunk)
        off += len(chunk)
    got = b""
    while True:
        try:
            got += c.tcb.recv(7000)
        except BlockingIOError:
            break
    assert got == msg
    assert c.tcb.info["rcv_nxt"] == c.theirs(len(msg))


# =============================================================================================
# Closing: four-way from either side, three segments, simultaneous, half-close
# =============================================================================================

def test_active_close_four_way(seqs):
    c = established(*seqs)
    c.tcb.close(c.now)
    assert c.state == "FIN-WAIT-1"
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs()))
    c.send(F.ACK, c.theirs(), c.ours(1))
    c.recv_nothing()
    assert c.state == "FIN-WAIT-2"
    c.send(F.FIN | F.ACK, c.theirs(), c.ours(1))
    c.recv(Seg(F.ACK, c.ours(1), c.theirs(1)))
    assert c.state == "TIME-WAIT"


def test_passive_close_four_way(seqs):
    c = established(*seqs)
    c.send(F.FIN | F.ACK, c.theirs(), c.ours())
    # §3.10.7.4 eighth: "advance RCV.NXT over the FIN, and send an acknowledgment for the FIN"
    c.recv(Seg(F.ACK, c.ours(), c.theirs(1)))
    assert c.state == "CLOSE-WAIT"
    assert c.tcb.recv(100) == b""                      # end of stream
    c.tcb.close(c.now)
    assert c.state == "LAST-ACK"
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs(1)))
    c.send(F.ACK, c.theirs(1), c.ours(1))
    c.recv_nothing()
    assert c.state == "CLOSED"
    assert c.tcb.error == 0
    assert c.tcb.next_event() is None


def test_three_segment_close(seqs):
    """§3.10.7.4 eighth, FIN-WAIT-1: "If our FIN has been ACKed (perhaps in this segment), then
    enter TIME-WAIT, start the time-wait timer, turn off the other timers"."""
    c = fin_wait_1(*seqs)
    c.send(F.FIN | F.ACK, c.theirs(), c.ours(1))
    c.recv(Seg(F.ACK, c.ours(1), c.theirs(1)))
    assert c.state == "TIME-WAIT"


def test_simultaneous_close(seqs):
    """FIN-WAIT-1 + FIN that does not ACK our FIN -> CLOSING; then the ACK -> TIME-WAIT."""
    c = fin_wait_1(*seqs)
    c.send(F.FIN | F.ACK, c.theirs(), c.ours())
    c.recv(Seg(F.ACK, c.ours(1), c.theirs(1)))
    assert c.state == "CLOSING"
    c.send(F.ACK, c.theirs(1), c.ours(1))
    c.recv_nothing()
    assert c.state == "TIME-WAIT"


def test_simultaneous_close_fins_cross_with_acks(seqs):
    """Both FINs cross, then both ACKs: the peer's FIN|ACK that acknowledges only data,
    followed by its ACK of our FIN."""
    c = established(*seqs)
    c.tcb.send(b"abc", c.now)
    c.tcb.shutdown(c.now)
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs(), payload=b"abc"))
    c.send(F.FIN | F.ACK, c.theirs(), c.ours(3))       # acks the data, not our FIN
    c.recv(Seg(F.ACK, c.ours(4), c.theirs(1)))
    assert c.state == "CLOSING"
    c.send(F.ACK, c.theirs(1), c.ours(4))
    assert c.state == "TIME-WAIT"


def test_half_close_fin_wait_2_keeps_receiving(seqs):
    """After our FIN, data keeps flowing the other way (§3.10.7.4 seventh: FIN-WAIT-1/2 process
    segment text)."""
    c = fin_wait_2(*seqs)
    a, b = data(MSS, 5), data(MSS, 6)
    c.send(F.ACK, c.theirs(), c.ours(1), a)
    c.send(F.ACK, c.theirs(MSS), c.ours(1), b)
    c.recv(Seg(F.ACK, c.ours(1), c.theirs(2 * MSS), window=RCVBUF - 2 * MSS))
    assert c.tcb.recv(10000) == a + b
    c.send(F.FIN | F.ACK, c.theirs(2 * MSS), c.ours(1))
    c.recv(Seg(F.ACK, c.ours(1), c.theirs(2 * MSS + 1)))
    assert c.state == "TIME-WAIT"
    assert c.tcb.recv(10) == b""


def test_half_close_fin_wait_1_receives_data(seqs):
    c = fin_wait_1(*seqs)
    c.send(F.ACK | F.PSH, c.theirs(), c.ours(), b"still here")   # our FIN not yet acked
    assert c.state == "FIN-WAIT-1"
    assert c.tcb.recv(100) == b"still here"


def test_half_close_close_wait_keeps_sending(seqs):
    """After the peer's FIN, we may still send (§3.10.2 SEND in CLOSE-WAIT)."""
    c = close_wait(*seqs)
    msg = data(1000, 7)
    assert c.tcb.send(msg, c.now) == 1000
    c.recv(Seg(F.ACK, c.ours(), c.theirs(1), payload=msg))
    c.send(F.ACK, c.theirs(1), c.ours(1000))
    c.recv_nothing()
    assert c.state == "CLOSE-WAIT"
    c.tcb.close(c.now)
    c.recv(Seg(F.FIN | F.ACK, c.ours(1000), c.theirs(1)))
    c.send(F.ACK, c.theirs(1), c.ours(1001))
    assert c.state == "CLOSED"


def test_fin_on_last_data_segment(seqs):
    """Data queued before shutdown(): the FIN rides on the last data segment."""
    c = established(*seqs)
    c.tcb.send(b"hello", c.now)
    c.tcb.shutdown(c.now)
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs(), payload=b"hello"))
    assert c.state == "FIN-WAIT-1"
    c.send(F.ACK, c.theirs(), c.ours(6))
    assert c.state == "FIN-WAIT-2"
    assert c.tcb.info["fin_acked"]


def test_peer_fin_on_last_data_segment(seqs):
    c = established(*seqs)
    c.send(F.FIN | F.ACK | F.PSH, c.theirs(), c.ours(), b"bye")
    # The FIN takes a sequence number but no buffer space: the right edge stays where it was
    # (moving it by one octet would be a silly-window advertisement), so the window is 4 less.
    c.recv(Seg(F.ACK, c.ours(), c.theirs(4), window=RCVBUF - 4))
    assert c.state == "CLOSE-WAIT"
    assert c.tcb.recv(100) == b"bye"
    assert c.tcb.recv(100) == b""


def test_send_after_shutdown_is_epipe(seqs):
    c = fin_wait_1(*seqs)
    with pytest.raises(BrokenPipeError):
        c.tcb.send(b"x", c.now)


def test_close_wait_stays_until_application_closes(seqs):
    c = close_wait(*seqs)
    assert c.tcb.next_event() is None
    c.advance(10000.0)
    c.recv_nothing()
    assert c.state == "CLOSE-WAIT"
    c.tcb.close(c.now)
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs(1)))


def test_last_ack_retransmits_fin_on_rto(seqs):
    c = last_ack(*seqs)                                # RTO 0.2 s after the handshake sample
    rto = c.tcb.info["rto"] / 1e6
    c.advance(rto - EPS)
    c.recv_nothing()
    c.advance(EPS)
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs(1)))
    c.send(F.ACK, c.theirs(1), c.ours(1))
    assert c.state == "CLOSED"


def test_fin_wait_1_retransmits_fin_on_rto(seqs):
    c = fin_wait_1(*seqs)
    rto = c.tcb.info["rto"] / 1e6
    assert c.tcb.next_event() == pytest.approx(c.now + rto)
    c.advance(rto)
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs()))
    c.send(F.ACK, c.theirs(), c.ours(1))
    assert c.state == "FIN-WAIT-2"


def test_fin_wait_2_after_shutdown_waits_for_the_peer(seqs):
    """After shutdown() the application still reads: FIN-WAIT-2 waits for the peer's FIN with no
    timer of its own (§3.10.7.4: "if the retransmission queue is empty, the user's CLOSE can be
    acknowledged ... but do not delete the TCB")."""
    c = fin_wait_2(*seqs)
    assert c.tcb.next_event() is None
    c.advance(10000.0)
    c.recv_nothing()
    assert c.state == "FIN-WAIT-2"
    c.send(F.ACK | F.PSH, c.theirs(), c.ours(1), b"late")
    assert c.tcb.recv(10) == b"late"


def test_fin_wait_2_after_close_times_out(seqs):
    """After close() nobody reads: like Linux's tcp_fin_timeout, FIN-WAIT-2 ends after
    fin_timeout, silently."""
    c = established(*seqs, fin_timeout=5.0)
    c.tcb.close(c.now)
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs()))
    c.send(F.ACK, c.theirs(), c.ours(1))
    assert c.state == "FIN-WAIT-2"
    start = c.now
    c.at(start + 5.0 - EPS)
    c.recv_nothing()
    assert c.state == "FIN-WAIT-2"
    c.at(start + 5.0 + EPS)
    c.recv_nothing()
    assert c.state == "CLOSED"
    assert c.tcb.error == 0


def test_data_after_close_gets_rst(seqs):
    """RFC 1122 §4.2.2.13: "if new data is received after CLOSE is called, its TCP SHOULD send a
    RST to show that data was lost." <SEQ=SND.NXT><CTL=RST> (§3.10.5)."""
    c = established(*seqs)
    c.tcb.close(c.now)
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs()))
    c.send(F.ACK | F.PSH, c.theirs(), c.ours(1), b"nobody reads this")
    c.recv(Seg(F.RST, c.ours(1)))
    assert c.state == "CLOSED"


def test_close_with_unread_data_sends_rst(seqs):
    """RFC 1122 §4.2.2.13: "If such a host issues a CLOSE call while received data is still
    pending in TCP ... its TCP SHOULD send a RST to show that data was lost." (RFC 2525 §2.17)"""
    c = established(*seqs)
    c.send(F.ACK | F.PSH, c.theirs(), c.ours(), b"unread")
    c.tcb.close(c.now)
    c.recv(Seg(F.RST, c.ours()))
    assert c.state == "CLOSED"


def test_close_wait_reacks_retransmitted_fin(seqs):
    """§3.10.7.4 eighth, CLOSE-WAIT: "Remain in the CLOSE-WAIT state"; the duplicate FIN lies
    below RCV.NXT and is acknowledged again (first step)."""
    c = close_wait(*seqs)
    c.advance(0.3)
    c.send(F.FIN | F.ACK, c.theirs(), c.ours())
    c.recv(Seg(F.ACK, c.ours(), c.theirs(1)))
    assert c.state == "CLOSE-WAIT"


def test_close_wait_ignores_segment_text(seqs):
    """§3.10.7.4 seventh, CLOSE-WAIT: "This should not occur since a FIN has been received from
    the remote side. Ignore the segment text." The stream stays at its end."""
    c = close_wait(*seqs)
    assert c.tcb.recv(10) == b""
    c.send(F.ACK | F.PSH, c.theirs(1), c.ours(), b"after fin")
    assert c.tcb.recv(10) == b""
    assert c.tcb.info["rcv_nxt"] == c.theirs(1)


# =============================================================================================
# TIME-WAIT
# =============================================================================================

def test_time_wait_lasts_two_msl(seqs):
    c = time_wait(*seqs, msl=10.0)
    start = c.now
    assert c.tcb.next_event() == pytest.approx(start + 20.0, abs=EPS)
    c.at(start + 20.0 - EPS)
    c.recv_nothing()
    assert c.state == "TIME-WAIT"
    c.at(start + 20.0 + EPS)
    c.recv_nothing()
    assert c.state == "CLOSED"
    assert c.tcb.error == 0
    assert c.tcb.next_event() is None


def test_time_wait_reacks_retransmitted_fin_and_restarts_timer(seqs):
    """§3.10.7.4 eighth, TIME-WAIT: "Remain in the TIME-WAIT state. Restart the 2 MSL time-wait
    timeout." (and the FIN is acknowledged again)."""
    c = time_wait(*seqs, msl=10.0)
    start = c.now
    c.at(start + 5.0)
    c.send(F.FIN | F.ACK, c.theirs(), c.ours(1))       # the peer lost our ACK
    c.recv(Seg(F.ACK, c.ours(1), c.theirs(1)))
    assert c.tcb.next_event() == pytest.approx(start + 25.0, abs=EPS)
    c.at(start + 20.0 + EPS)
    c.recv_nothing()
    assert c.state == "TIME-WAIT"
    c.at(start + 25.0 - EPS)
    c.recv_nothing()
    assert c.state == "TIME-WAIT"
    c.at(start + 25.0 + EPS)
    c.recv_nothing()
    assert c.state == "CLOSED"


def test_time_wait_ignores_rst(seqs):
    """RFC 1337 §3 (fix F1): "ignore RST segments in TIME-WAIT state"."""
    c = time_wait(*seqs, msl=10.0)
    start = c.now
    c.send(F.RST, c.theirs(1))                         # exact match
    c.send(F.RST | F.ACK, c.theirs(1), c.ours(1))
    c.send(F.RST, c.theirs(100))                       # in window
    c.recv_nothing()
    assert c.state == "TIME-WAIT"
    assert c.tcb.error == 0
    c.at(start + 20.0 - EPS)
    c.recv_nothing()
    assert c.state == "TIME-WAIT"


def test_time_wait_after_closing(seqs):
    c = closing(*seqs, msl=10.0)
    c.send(F.ACK, c.theirs(1), c.ours(1))
    assert c.state == "TIME-WAIT"
    start = c.now
    c.at(start + 20.0 - EPS)
    c.recv_nothing()
    assert c.state == "TIME-WAIT"
    c.at(start + 20.0 + EPS)
    c.recv_nothing()
    assert c.state == "CLOSED"


# =============================================================================================
# RST (§3.10.7.4 second, RFC 5961 §3)
# =============================================================================================

@pytest.mark.parametrize("name", ["ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT"])
def test_exact_rst_resets(seqs, name):
    """RFC 5961 §3.2 / §3.10.7.4: an RST at exactly RCV.NXT resets. "any outstanding RECEIVEs
    and SEND should receive 'reset' responses ... Enter the CLOSED state"."""
    c = STATES[name](*seqs)
    c.send(F.RST, rcv_nxt_of(c))
    c.recv_nothing()
    assert c.state == "CLOSED"
    assert c.tcb.error == errno.ECONNRESET
    with pytest.raises(ConnectionResetError) as exc:
        c.tcb.send(b"x", c.now)
    assert exc.value.errno == errno.ECONNRESET
    assert c.tcb.next_event() is None


@pytest.mark.parametrize("name", ["ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2"])
def test_exact_rst_fails_recv_with_econnreset(seqs, name):
    c = STATES[name](*seqs)
    c.send(F.RST | F.ACK, rcv_nxt_of(c), snd_nxt_of(c))
    assert c.state == "CLOSED"
    with pytest.raises(ConnectionResetError) as exc:
        c.tcb.recv(10)
    assert exc.value.errno == errno.ECONNRESET


@pytest.mark.parametrize("name", ["CLOSING", "LAST-ACK"])
def test_exact_rst_closes_closing_and_last_ack(seqs, name):
    """§3.10.7.4 second, CLOSING/LAST-ACK: "If the RST bit is set, then enter the CLOSED state,
    delete the TCB, and return"."""
    c = STATES[name](*seqs)
    c.send(F.RST, rcv_nxt_of(c))
    c.recv_nothing()
    assert c.state == "CLOSED"


@pytest.mark.parametrize("name", ["ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT",
                                  "CLOSING", "LAST-ACK", "SYN-RECEIVED"])
def test_in_window_rst_gets_challenge_ack(seqs, name):
    """RFC 5961 §3.2: "If the RST bit is set and the sequence number does not exactly match the
    next expected sequence value, yet is within the current receive window, TCP MUST send an
    acknowledgment (challenge ACK): <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>"."""
    c = STATES[name](*seqs)
    state = c.state
    rcv_nxt, snd_nxt = rcv_nxt_of(c), snd_nxt_of(c)
    c.send(F.RST, s(rcv_nxt + 1))
    c.recv(Seg(F.ACK, snd_nxt, rcv_nxt))
    c.send(F.RST | F.ACK, s(rcv_nxt + RCVBUF - 1), snd_nxt)   # the last octet of the window
    c.recv(Seg(F.ACK, snd_nxt, rcv_nxt))
    assert c.state == state
    assert c.tcb.error == 0
    assert c.tcb.counters["challenge_acks"] == 2


@pytest.mark.parametrize("name", ["ESTABLISHED", "FIN-WAIT-2", "CLOSE-WAIT", "SYN-RECEIVED"])
def test_out_of_window_rst_dropped_silently(seqs, name):
    """RFC 5961 §3.2: "If the RST bit is set and the sequence number is outside the current
    receive window, silently drop the segment"."""
    c = STATES[name](*seqs)
    state = c.state
    rcv_nxt = rcv_nxt_of(c)
    c.send(F.RST, s(rcv_nxt + RCVBUF))                 # one past the window
    c.send(F.RST, s(rcv_nxt - 1))                      # just below it
    c.send(F.RST, s(rcv_nxt + 0x80000000))
    c.recv_nothing()
    assert c.state == state
    assert c.tcb.error == 0


@pytest.mark.parametrize("offset", [0, 10, RCVBUF - 1, RCVBUF + 5000, -1, -70000])
def test_syn_in_established_gets_challenge_ack(seqs, offset):
    """RFC 5961 §4.2 / §3.10.7.4 fourth: a SYN in a synchronized state, "irrespective of the
    sequence number", is answered with a challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and
    dropped; the connection stays."""
    c = established(*seqs)
    c.send(F.SYN, c.theirs(offset), mss=MSS)
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    c.send(F.SYN | F.ACK, c.theirs(offset), c.ours(), mss=MSS)
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    assert c.state == "ESTABLISHED"
    assert c.tcb.error == 0


def test_syn_in_established_does_not_deliver_its_data(seqs):
    c = established(*seqs)
    c.send(F.SYN, c.theirs(), payload=b"syn data")
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    with pytest.raises(BlockingIOError):
        c.tcb.recv(100)


def test_challenge_ack_rate_limit(seqs):
    """RFC 5961 §7: "An implementation SHOULD include an ACK throttling mechanism" (here
    challenge_ack_limit a second)."""
    c = established(*seqs, challenge_ack_limit=3)
    for _ in range(3):
        c.send(F.RST, c.theirs(50))
        c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    for _ in range(4):
        c.send(F.RST, c.theirs(50))
        c.send(F.SYN, c.theirs(50))
        c.recv_nothing()
    assert c.state == "ESTABLISHED"
    assert c.tcb.counters["challenge_acks"] == 3
    c.advance(1.0)                                      # a new second
    c.send(F.RST, c.theirs(50))
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    assert c.state == "ESTABLISHED"


def test_ack_of_unsent_data_gets_ack_and_is_dropped(seqs):
    """§3.10.7.4 fifth: "If the ACK acks something not yet sent (SEG.ACK > SND.NXT), then send
    an ACK, drop the segment, and return." The segment's data is not taken."""
    c = established(*seqs)
    c.send(F.ACK | F.PSH, c.theirs(), c.ours(10), b"xyz")
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    with pytest.raises(BlockingIOError):
        c.tcb.recv(10)
    info = c.tcb.info
    assert (info["snd_una"], info["rcv_nxt"]) == (c.ours(), c.theirs())
    assert c.state == "ESTABLISHED"


def test_ack_of_unsent_data_with_data_in_flight(seqs):
    c = established(*seqs)
    c.tcb.send(b"0123456789", c.now)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), payload=b"0123456789"))
    c.send(F.ACK, c.theirs(), c.ours(11))              # one past what we sent
    c.recv(Seg(F.ACK, c.ours(10), c.theirs()))
    assert c.tcb.info["snd_una"] == c.ours()


def test_too_old_ack_gets_challenge_ack(seqs):
    """RFC 5961 §5.2: acceptable is "(SND.UNA - MAX.SND.WND) =< SEG.ACK =< SND.NXT"; "All
    incoming segments whose ACK value doesn't satisfy the above condition MUST be discarded and
    an ACK sent back." At the edge the ACK is merely a duplicate and the data is taken."""
    c = established(*seqs)
    c.send(F.ACK | F.PSH, c.theirs(), c.ours(-PEER_WIN - 1), b"old")
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    with pytest.raises(BlockingIOError):
        c.tcb.recv(10)
    c.send(F.ACK | F.PSH, c.theirs(), c.ours(-PEER_WIN), b"edge")
    assert c.tcb.recv(10) == b"edge"
    assert c.tcb.info["snd_una"] == c.ours()
    assert c.state == "ESTABLISHED"


def test_duplicate_ack_is_ignored(seqs):
    c = established(*seqs)
    c.tcb.send(b"abc", c.now)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), payload=b"abc"))
    c.send(F.ACK, c.theirs(), c.ours(3))
    c.send(F.ACK, c.theirs(), c.ours(1))               # older than SND.UNA: ignored
    c.recv_nothing()
    assert c.tcb.info["snd_una"] == c.ours(3)


def test_out_of_window_data_gets_ack(seqs):
    """§3.10.7.4 first: "If an incoming segment is not acceptable, an acknowledgment should be
    sent in reply"."""
    c = established(*seqs)
    c.send(F.ACK, c.theirs(RCVBUF), c.ours(), b"beyond")
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    c.send(F.ACK, c.theirs(-10), c.ours(), b"old dup!")    # entirely below RCV.NXT
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    with pytest.raises(BlockingIOError):
        c.tcb.recv(10)


def test_segment_straddling_rcv_nxt_delivers_only_new_part(seqs):
    """§3.10.7.4 first: "If a segment's contents straddle the boundary between old and new, only
    the new parts are processed"."""
    c = established(*seqs)
    c.send(F.ACK, c.theirs(), c.ours(), b"hello")
    c.send(F.ACK, c.theirs(2), c.ours(), b"llo world")
    assert c.tcb.recv(100) == b"hello world"


def test_segment_without_ack_is_dropped(seqs):
    """§3.10.7.4 fifth: "if the ACK bit is off, drop the segment and return"."""
    c = established(*seqs)
    c.send(F.PSH, c.theirs(), 0, b"noack")
    c.recv_nothing()
    with pytest.raises(BlockingIOError):
        c.tcb.recv(10)


def test_abort_sends_rst(seqs):
    """§3.10.5 ABORT in a synchronized state: "a reset segment should be sent:
    <SEQ=SND.NXT><CTL=RST>"."""
    c = established(*seqs)
    c.tcb.send(b"queued", c.now)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), payload=b"queued"))
    c.tcb.abort(c.now)
    c.recv(Seg(F.RST, c.ours(6)))
    assert c.state == "CLOSED"


def test_old_segment_does_not_update_send_window(seqs):
    """§3.10.7.4 fifth: the window is taken only "If (SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and
    SND.WL2 =< SEG.ACK))": a reordered older segment (still acceptable: it fills a hole) does not
    take the window back to what it said."""
    c = established(*seqs)
    c.send(F.ACK, c.theirs(10), c.ours(), b"abc", window=7000)          # overtook the next
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))                            # out of order: ACK now
    assert c.tcb.info["snd_wnd"] == 7000
    c.send(F.ACK, c.theirs(), c.ours(), b"0123456789", window=1000)     # older, sent before
    assert c.tcb.info["snd_wnd"] == 7000
    assert c.tcb.recv(100) == b"0123456789abc"


# =============================================================================================
# Retransmission timeouts (RFC 6298)
# =============================================================================================

def test_syn_retransmissions_back_off_and_time_out():
    """RFC 6298 §2.1/§5.5 with an initial RTO of 1 s: SYNs at 0, 1, 3, 7, 15 s (syn_retries=4),
    then at 31 s the attempt fails with ETIMEDOUT."""
    c = closed(syn_retries=4, rto_initial=1.0)
    start = c.now
    c.tcb.connect(c.now)
    syn = Seg(F.SYN, ISS, window=RCVBUF, mss=MSS)
    c.recv(syn)
    for t in (1, 3, 7, 15):
        assert c.tcb.next_event() == pytest.approx(start + t, abs=EPS)
        c.at(start + t - EPS)
        c.recv_nothing()
        c.at(start + t)
        c.recv(syn)
        assert c.state == "SYN-SENT"
    assert c.tcb.next_event() == pytest.approx(start + 31, abs=EPS)
    c.at(start + 31 - EPS)
    c.recv_nothing()
    assert c.state == "SYN-SENT"
    c.at(start + 31)
    c.recv_nothing()
    assert c.state == "CLOSED"
    assert c.tcb.error == errno.ETIMEDOUT
    with pytest.raises(TimeoutError) as exc:
        c.tcb.recv(10)
    assert exc.value.errno == errno.ETIMEDOUT


def test_syn_ack_after_syn_retransmission_establishes():
    c = closed(syn_retries=4)
    c.tcb.connect(c.now)
    c.recv(Seg(F.SYN, ISS, window=RCVBUF, mss=MSS))
    c.advance(1.0)
    c.recv(Seg(F.SYN, ISS, window=RCVBUF, mss=MSS))
    c.advance(0.5)
    c.send(F.SYN | F.ACK, IRS, ISS + 1, mss=MSS)
    c.recv(Seg(F.ACK, ISS + 1, IRS + 1))
    assert c.state == "ESTABLISHED"
    assert c.tcb.next_event() is None


def test_syn_ack_retransmissions_back_off():
    c = syn_received()
    start = c.now
    synack = Seg(F.SYN | F.ACK, ISS, IRS + 1, window=RCVBUF, mss=MSS)
    for t in (1, 3, 7):
        c.at(start + t - EPS)
        c.recv_nothing()
        c.at(start + t)
        c.recv(synack)
        assert c.state == "SYN-RECEIVED"
    c.send(F.ACK, IRS + 1, ISS + 1)
    assert c.state == "ESTABLISHED"


def rfc6298(samples, g=0.001, k=4, rto_min=0.2):
    """The RFC 6298 §2.2/§2.3 estimator, written out: returns (srtt, rttvar, rto)."""
    srtt = rttvar = None
    for r in samples:
        if srtt is None:
            srtt, rttvar = r, r / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
            srtt = 0.875 * srtt + 0.125 * r
    rto = max(srtt + max(g, k * rttvar), rto_min)
    return srtt, rttvar, rto


def test_data_rto_after_rtt_samples_doubles_and_times_out():
    """RTT samples: the handshake (100 ms) and one data segment (200 ms) -> RTO by RFC 6298 §2;
    then a lost segment is retransmitted at RTO, 2*RTO, 4*RTO after each other (§5.5) and after
    `retries` retransmissions the connection fails with ETIMEDOUT (RFC 9293 §3.8.3 R2)."""
    c = syn_received(retries=3)
    c.advance(0.1)
    c.send(F.ACK, IRS + 1, ISS + 1)
    assert c.state == "ESTABLISHED"
    c.advance(1.0)
    c.tcb.send(b"first", c.now)
    c.recv(Seg(F.ACK, ISS + 1, IRS + 1, payload=b"first"))
    c.advance(0.2)
    c.send(F.ACK, IRS + 1, ISS + 6)
    srtt, rttvar, rto = rfc6298([0.1, 0.2])
    info = c.tcb.info
    assert info["srtt"] == pytest.approx(srtt * 1e6, abs=2)
    assert info["rttvar"] == pytest.approx(rttvar * 1e6, abs=2)
    assert info["rto"] == pytest.approx(rto * 1e6, abs=2)

    c.at(107.0)
    c.tcb.send(b"lost", c.now)
    seg = Seg(F.ACK, ISS + 6, IRS + 1, payload=b"lost")
    c.recv(seg)
    rto_us = round(rto * 1e6)                          # 362500
    t_us = 107_000_000
    for i in range(3):
        t_us += rto_us << i                            # §5.5: RTO <- RTO * 2 after each expiry
        assert c.tcb.next_event() == pytest.approx(t_us / 1e6, abs=EPS / 2)
        c.at((t_us - 1) / 1e6)
        c.recv_nothing()
        c.at(t_us / 1e6)
        c.recv(seg)
        assert c.state == "ESTABLISHED"
    t_us += rto_us << 3
    c.at((t_us - 1) / 1e6)
    c.recv_nothing()
    assert c.state == "ESTABLISHED"
    c.at(t_us / 1e6)
    c.recv_nothing()
    assert c.state == "CLOSED"
    assert c.tcb.error == errno.ETIMEDOUT
    with pytest.raises(TimeoutError):
        c.tcb.send(b"x", c.now)


def test_rto_collapses_after_ack_of_new_data(seqs):
    """The note after RFC 6298 §5.7: after backing off, an ACK of new data brings the RTO back
    to the estimate."""
    c = established(*seqs, rto_min=1.0, rto_initial=1.0)
    c.tcb.send(b"abc", c.now)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), payload=b"abc"))
    c.advance(1.0)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), payload=b"abc"))
    c.advance(2.0)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), payload=b"abc"))
    c.advance(0.5)
    c.send(F.ACK, c.theirs(), c.ours(3))
    c.tcb.send(b"def", c.now)
    c.recv(Seg(F.ACK, c.ours(3), c.theirs(), payload=b"def"))
    assert c.tcb.next_event() == pytest.approx(c.now + 1.0, abs=EPS)


def test_rto_retransmits_from_snd_una_after_loss_of_several(seqs):
    """After an RTO, cwnd is one segment (RFC 5681 §3.1): the first unacknowledged segment goes
    again, and the next only after it is acknowledged."""
    c = established(*seqs, rto_min=1.0, rto_initial=1.0)
    msg = data(3 * MSS, 8)
    c.tcb.send(msg, c.now)
    segs = [Seg(F.ACK, c.ours(i * MSS), c.theirs(), payload=msg[i * MSS:(i + 1) * MSS])
            for i in range(3)]
    c.recv(*segs)
    c.advance(1.0)
    c.recv(segs[0])
    c.advance(0.1)
    c.send(F.ACK, c.theirs(), c.ours(MSS))
    c.recv(segs[1], segs[2])                           # slow start: cwnd 1 -> 2 segments
    c.send(F.ACK, c.theirs(), c.ours(3 * MSS))
    c.recv_nothing()
    assert c.tcb.next_event() is None


# =============================================================================================
# Keep-alive (RFC 1122 §4.2.3.6, RFC 9293 §3.8.4)
# =============================================================================================

def test_keepalive_probe_answered_and_unanswered(seqs):
    c = established(*seqs, keepalive=True, keepidle=10.0, keepintvl=2.0, keepcnt=3)
    start = c.now
    assert c.tcb.next_event() == pytest.approx(start + 10.0, abs=EPS)
    c.at(start + 10.0 - EPS)
    c.recv_nothing()
    c.at(start + 10.0)
    # "a segment with SEG.SEQ = SND.NXT-1", no data (SHOULD, RFC 1122 §4.2.3.6)
    probe = Seg(F.ACK, c.ours(-1), c.theirs())
    c.recv(probe)
    c.advance(0.5)
    c.send(F.ACK, c.theirs(), c.ours())                # the peer is alive
    c.recv_nothing()
    alive = c.now
    assert c.tcb.next_event() == pytest.approx(alive + 10.0, abs=EPS)
    c.at(alive + 10.0 - EPS)
    c.recv_nothing()
    for k in range(3):                                 # now the peer is gone
        c.at(alive + 10.0 + 2.0 * k)
        c.recv(probe)
        assert c.state == "ESTABLISHED"
        c.at(alive + 10.0 + 2.0 * k + 2.0 - EPS)
        c.recv_nothing()
    c.at(alive + 16.0)
    # keepcnt probes unanswered: give up, with a reset as Linux does.
    c.recv(Seg(F.RST, c.ours()))
    assert c.state == "CLOSED"
    assert c.tcb.error == errno.ETIMEDOUT
    with pytest.raises(TimeoutError):
        c.tcb.recv(10)


def test_keepalive_idle_restarts_on_traffic(seqs):
    c = established(*seqs, keepalive=True, keepidle=10.0, keepintvl=2.0, keepcnt=3)
    c.advance(8.0)
    c.send(F.ACK, c.theirs(), c.ours(), b"ping")
    c.advance(8.0)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(4), window=RCVBUF - 4))   # just the delayed ACK
    c.at(c.now + 2.0 - EPS)
    c.recv_nothing()
    c.advance(EPS)
    c.recv(Seg(F.ACK, c.ours(-1), c.theirs(4), window=RCVBUF - 4))


def test_keepalive_off_by_default(seqs):
    c = established(*seqs)
    assert c.tcb.next_event() is None
    c.advance(7200.0 * 3)
    c.recv_nothing()
    assert c.state == "ESTABLISHED"


# =============================================================================================
# Zero-window probing (RFC 9293 §3.8.6.1)
# =============================================================================================

def zero_window(seqs, **kw):
    """ESTABLISHED with RTO = 1 s; 100 bytes sent and acknowledged with a zero window; 50 more
    queued."""
    c = established(*seqs, rto_min=1.0, rto_initial=1.0, **kw)
    c.tcb.send(b"a" * 100, c.now)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), payload=b"a" * 100))
    c.send(F.ACK, c.theirs(), c.ours(100), window=0)
    c.tcb.send(b"b" * 50, c.now)
    c.recv_nothing()
    return c


def test_zero_window_probe_after_rto_then_doubling(seqs):
    c = zero_window(seqs)
    start = c.now
    probe = Seg(F.ACK, c.ours(100), c.theirs(), payload=b"b")
    # SHLD-29: the first probe when the zero window has existed for the RTO; SHLD-30: the
    # interval between probes grows exponentially.
    t = start
    for k in range(4):
        t += 1.0 * 2 ** k
        assert c.tcb.next_event() == pytest.approx(t, abs=EPS)
        c.at(t - EPS)
        c.recv_nothing()
        c.at(t)
        c.recv(probe)
        c.send(F.ACK, c.theirs(), c.ours(100), window=0)   # still closed
        c.recv_nothing()
    assert c.state == "ESTABLISHED"


def test_zero_window_peer_acking_keeps_connection_open_beyond_retries(seqs):
    """MUST-37: "As long as the receiving TCP peer continues to send acknowledgments in response
    to the probe segments, the sending TCP peer MUST allow the connection to stay open"."""
    c = zero_window(seqs, retries=2)
    probe = Seg(F.ACK, c.ours(100), c.theirs(), payload=b"b")
    for _ in range(8):
        c.at(c.tcb.next_event())
        c.recv(probe)
        c.send(F.ACK, c.theirs(), c.ours(100), window=0)
        c.recv_nothing()
        assert c.state == "ESTABLISHED"
        assert c.tcb.error == 0
    assert c.tcb.counters["zero_window_probes"] == 8


def test_zero_window_reopening_resumes_sending(seqs):
    c = zero_window(seqs)
    c.at(c.tcb.next_event())
    c.recv(Seg(F.ACK, c.ours(100), c.theirs(), payload=b"b"))
    c.send(F.ACK, c.theirs(), c.ours(100), window=0)
    c.advance(0.5)
    c.send(F.ACK, c.theirs(), c.ours(100), window=1000)    # window update
    c.recv(Seg(F.ACK, c.ours(100), c.theirs(), payload=b"b" * 50))
    c.send(F.ACK, c.theirs(), c.ours(150), window=1000)
    c.recv_nothing()
    assert c.tcb.next_event() is None


def test_zero_window_probe_accepted_by_peer(seqs):
    """The peer takes the probe's octet but keeps the window closed: the next probe carries the
    next octet."""
    c = zero_window(seqs)
    c.at(c.tcb.next_event())
    c.recv(Seg(F.ACK, c.ours(100), c.theirs(), payload=b"b"))
    c.send(F.ACK, c.theirs(), c.ours(101), window=0)
    c.at(c.tcb.next_event())
    c.recv(Seg(F.ACK, c.ours(101), c.theirs(), payload=b"b"))
    c.send(F.ACK, c.theirs(), c.ours(101), window=5000)
    c.recv(Seg(F.ACK, c.ours(101), c.theirs(), payload=b"b" * 49))


def test_zero_window_receiver_answers_probe(seqs):
    """§3.8.6.1: "When the receiving TCP peer has a zero window and a segment arrives, it must
    still send an acknowledgment showing its next expected sequence number and current window
    (zero)." (and §3.10.7.4 first: an unacceptable segment is answered with an ACK)."""
    c = established(*seqs, rcvbuf=4096)
    c.wnd = 4096
    msg = data(4096, 9)
    c.send(F.ACK, c.theirs(), c.ours(), msg[:MSS])
    c.send(F.ACK, c.theirs(MSS), c.ours(), msg[MSS:2 * MSS])
    c.send(F.ACK, c.theirs(2 * MSS), c.ours(), msg[2 * MSS:])
    c.recv(Seg(F.ACK, c.ours(), c.theirs(4096), window=0))
    c.advance(1.0)
    c.send(F.ACK, c.theirs(4096), c.ours(), b"?")      # the peer's zero-window probe
    c.recv(Seg(F.ACK, c.ours(), c.theirs(4096), window=0))
    assert c.tcb.recv(10000) == msg


# =============================================================================================
# Delayed ACK (RFC 9293 §3.8.6.3, RFC 5681 §4.2)
# =============================================================================================

def test_delayed_ack_after_delack(seqs):
    c = established(*seqs)
    c.send(F.ACK, c.theirs(), c.ours(), b"x" * 100)
    c.recv_nothing()
    assert c.tcb.next_event() == pytest.approx(c.now + 0.04, abs=EPS)
    t = c.now
    c.at(t + 0.04 - EPS)
    c.recv_nothing()
    c.at(t + 0.04)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(100), window=RCVBUF - 100))
    c.advance(1.0)
    c.recv_nothing()
    assert c.tcb.next_event() is None


def test_ack_every_second_full_segment(seqs):
    """RFC 5681 §4.2: "an ACK SHOULD be generated for at least every second full-sized
    segment"."""
    c = established(*seqs)
    for i in range(4):
        c.send(F.ACK, c.theirs(i * MSS), c.ours(), data(MSS, i))
        if i % 2 == 0:
            c.recv_nothing()
        else:
            c.recv(Seg(F.ACK, c.ours(), c.theirs((i + 1) * MSS),
                       window=RCVBUF - (i + 1) * MSS))


def test_out_of_order_segment_acked_at_once_with_sack(seqs):
    """RFC 5681 §4.2: "an immediate ACK SHOULD be generated when an out-of-order segment
    arrives"; RFC 2018 §4: with SACK blocks describing what is held. The segment that fills the
    hole is also acknowledged at once (RFC 5681 §4.2)."""
    iss, irs = seqs
    c = listening(iss, irs, sack=True)
    c.send(F.SYN, irs, mss=MSS, sack_permitted=True)
    c.recv(Seg(F.SYN | F.ACK, iss, s(irs + 1), window=RCVBUF, mss=MSS, sack_permitted=True))
    c.send(F.ACK, c.theirs(), c.ours())
    assert c.tcb.info["sack_ok"]
    a, b, d = data(100, 1), data(100, 2), data(100, 3)
    c.send(F.ACK, c.theirs(100), c.ours(), b)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), sack_blocks=((c.theirs(100), c.theirs(200)),)))
    c.send(F.ACK, c.theirs(300), c.ours(), data(50, 4))
    # RFC 2018 §4: "The first SACK block ... MUST specify the contiguous block of data containing
    # the segment which triggered this ACK"
    c.recv(Seg(F.ACK, c.ours(), c.theirs(),
               sack_blocks=((c.theirs(300), c.theirs(350)), (c.theirs(100), c.theirs(200)))))
    c.send(F.ACK, c.theirs(), c.ours(), a)             # fills the first hole
    c.recv(Seg(F.ACK, c.ours(), c.theirs(200), window=RCVBUF - 200,
               sack_blocks=((c.theirs(300), c.theirs(350)),)))
    c.send(F.ACK, c.theirs(200), c.ours(), d)          # fills the last one
    c.recv(Seg(F.ACK, c.ours(), c.theirs(350), window=RCVBUF - 350))
    assert c.tcb.recv(1000) == a + b + d + data(50, 4)


def test_out_of_order_reassembly(seqs):
    """Segments 2 and 3 before 1: each is acknowledged at once with the old ACK; segment 1 then
    brings one cumulative ACK for all three, and the data reads back in order."""
    c = established(*seqs)
    parts = [data(500, 10), data(500, 11), data(500, 12)]
    c.send(F.ACK, c.theirs(500), c.ours(), parts[1])
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    c.send(F.ACK, c.theirs(1000), c.ours(), parts[2])
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    with pytest.raises(BlockingIOError):
        c.tcb.recv(100)
    c.send(F.ACK, c.theirs(0), c.ours(), parts[0])
    c.recv(Seg(F.ACK, c.ours(), c.theirs(1500), window=RCVBUF - 1500))
    assert c.tcb.recv(10000) == b"".join(parts)
    assert c.tcb.info["ooo_ranges"] == 0


def test_out_of_order_fin_waits_for_the_data(seqs):
    c = established(*seqs)
    c.send(F.FIN | F.ACK, c.theirs(5), c.ours(), b"world")
    c.recv(Seg(F.ACK, c.ours(), c.theirs()))
    assert c.state == "ESTABLISHED"
    c.send(F.ACK, c.theirs(), c.ours(), b"hello")
    c.recv(Seg(F.ACK, c.ours(), c.theirs(11), window=RCVBUF - 11))   # right edge unmoved
    assert c.state == "CLOSE-WAIT"
    assert c.tcb.recv(100) == b"helloworld"
    assert c.tcb.recv(100) == b""


# =============================================================================================
# Nagle (RFC 9293 §3.7.4, RFC 896)
# =============================================================================================

def test_nagle_holds_small_segment_until_ack(seqs):
    c = established(*seqs)
    c.tcb.send(b"a", c.now)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), payload=b"a"))
    c.tcb.send(b"b", c.now)
    c.recv_nothing()
    c.tcb.send(b"c", c.now)
    c.recv_nothing()
    c.advance(0.05)
    c.send(F.ACK, c.theirs(), c.ours(1))
    c.recv(Seg(F.ACK, c.ours(1), c.theirs(), payload=b"bc"))


def test_nagle_sends_full_segments_regardless(seqs):
    c = established(*seqs)
    c.tcb.send(b"a", c.now)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), payload=b"a"))
    msg = data(MSS + 10, 13)
    c.tcb.send(msg, c.now)
    c.recv(Seg(F.ACK, c.ours(1), c.theirs(), payload=msg[:MSS]))   # the tail of 10 waits
    c.send(F.ACK, c.theirs(), c.ours(1 + MSS))
    c.recv(Seg(F.ACK, c.ours(1 + MSS), c.theirs(), payload=msg[MSS:]))


def test_nodelay_sends_at_once(seqs):
    c = established(*seqs, nodelay=True)
    c.tcb.send(b"a", c.now)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), payload=b"a"))
    c.tcb.send(b"b", c.now)
    c.recv(Seg(F.ACK, c.ours(1), c.theirs(), payload=b"b"))


# =============================================================================================
# Receive window: updates and SWS avoidance (RFC 9293 §3.8.6.2.2)
# =============================================================================================

def filled(seqs, rcvbuf=4096):
    c = established(*seqs, rcvbuf=rcvbuf)
    c.wnd = rcvbuf
    msg = data(rcvbuf, 14)
    off = 0
    while off < rcvbuf:
        n = min(MSS, rcvbuf - off)
        c.send(F.ACK, c.theirs(off), c.ours(), msg[off:off + n])
        off += n
    c.advance(0.04)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(rcvbuf), window=0))
    return c, msg


def test_window_update_after_application_drains_full_buffer(seqs):
    c, msg = filled(seqs)
    assert c.tcb.recv(4096, now=c.now) == msg
    c.recv(Seg(F.ACK, c.ours(), c.theirs(4096), window=4096))
    assert c.tcb.counters["window_updates"] == 1
    c.send(F.ACK, c.theirs(4096), c.ours(), b"more")
    assert c.tcb.recv(10, now=c.now) == b"more"


def test_no_tiny_window_advertisement(seqs):
    """Receiver SWS avoidance: the window is not opened until it can grow by
    min(RCV.BUFF/2, Eff.snd.MSS); meanwhile ACKs keep offering zero."""
    c, msg = filled(seqs)
    assert c.tcb.recv(100, now=c.now) == msg[:100]
    c.recv_nothing()                                   # no window update for 100 octets
    # An unacceptable segment (SEG.SEQ != RCV.NXT with a zero window) draws an ACK: window 0.
    c.send(F.ACK, c.theirs(4095), c.ours())
    c.recv(Seg(F.ACK, c.ours(), c.theirs(4096), window=0))
    assert c.tcb.recv(1300, now=c.now) == msg[100:1400]
    c.recv_nothing()                                   # 1400 < MSS: still closed
    assert c.tcb.recv(100, now=c.now) == msg[1400:1500]
    c.recv(Seg(F.ACK, c.ours(), c.theirs(4096), window=1500))


def test_window_shrinks_as_data_arrives_unread(seqs):
    c = established(*seqs)
    c.send(F.ACK, c.theirs(), c.ours(), data(MSS))
    c.send(F.ACK, c.theirs(MSS), c.ours(), data(MSS))
    c.recv(Seg(F.ACK, c.ours(), c.theirs(2 * MSS), window=RCVBUF - 2 * MSS))
    assert c.tcb.info["rcv_wnd"] == RCVBUF - 2 * MSS


def test_data_beyond_window_is_cut(seqs):
    """Only what fits the window is kept (§3.10.7.4 first: trim what lies outside it)."""
    c, msg = filled(seqs)
    c.tcb.recv(4096, now=c.now)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(4096), window=4096))
    big = data(5000, 15)
    for off in range(0, 5000, MSS):
        c.send(F.ACK, c.theirs(4096 + off), c.ours(), big[off:off + MSS])
    c.advance(0.04)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(8192), window=0))
    assert c.tcb.recv(10000, now=c.now) == big[:4096]


# =============================================================================================
# MSS (RFC 9293 §3.7.1)
# =============================================================================================

def test_peer_mss_option_limits_segment_size(seqs):
    iss, irs = seqs
    c = listening(iss, irs)
    c.send(F.SYN, irs, mss=1000)
    c.recv(Seg(F.SYN | F.ACK, iss, s(irs + 1), mss=MSS))
    c.send(F.ACK, c.theirs(), c.ours())
    assert c.tcb.info["smss"] == 1000
    msg = data(3000, 16)
    c.tcb.send(msg, c.now)
    c.recv(*[Seg(F.ACK, c.ours(i * 1000), c.theirs(), payload=msg[i * 1000:(i + 1) * 1000])
             for i in range(3)])


def test_default_mss_536_without_option(seqs):
    """§3.7.1: "If an MSS Option is not received at connection setup, TCP implementations MUST
    assume a default send MSS of 536 (576 - 40) for IPv4"."""
    iss, irs = seqs
    c = listening(iss, irs)
    c.send(F.SYN, irs)
    c.recv(Seg(F.SYN | F.ACK, iss, s(irs + 1), mss=MSS))
    c.send(F.ACK, c.theirs(), c.ours())
    assert c.tcb.info["smss"] == 536
    msg = data(3 * 536, 17)
    c.tcb.send(msg, c.now)
    c.recv(*[Seg(F.ACK, c.ours(i * 536), c.theirs(), payload=msg[i * 536:(i + 1) * 536])
             for i in range(3)])


def test_active_open_mss_from_syn_ack(seqs):
    c = established_active(*seqs, peer_mss=1200)
    assert c.tcb.info["smss"] == 1200
    msg = data(2400, 18)
    c.tcb.send(msg, c.now)
    c.recv(Seg(F.ACK, c.ours(), c.theirs(), payload=msg[:1200]),
           Seg(F.ACK, c.ours(1200), c.theirs(), payload=msg[1200:]))


def test_our_mss_option_is_configured_mss():
    c = closed(mss=1200)
    c.tcb.connect(c.now)
    c.recv(Seg(F.SYN, ISS, window=RCVBUF, mss=1200))


def test_smaller_own_mss_limits_what_we_send(seqs):
    iss, irs = seqs
    c = listening(iss, irs, mss=1000)
    c.send(F.SYN, irs, mss=1460)
    c.recv(Seg(F.SYN | F.ACK, iss, s(irs + 1), mss=1000))
    c.send(F.ACK, c.theirs(), c.ours())
    assert c.tcb.info["smss"] == 1000


# =============================================================================================
# Options negotiation: window scale, timestamps, SACK-permitted (RFC 7323, RFC 2018)
# =============================================================================================

BIG = 262144            # needs a window scale of 3 to be offered whole


def _offer(ws, ts, sack):
    return dict(wscale=7 if ws else None, timestamps=(4242, 0) if ts else None,
                sack_permitted=sack)


@pytest.mark.parametrize("ws", [False, True], ids=["-ws", "+ws"])
@pytest.mark.parametrize("ts", [False, True], ids=["-ts", "+ts"])
@pytest.mark.parametrize("sack", [False, True], ids=["-sack", "+sack"])
def test_syn_ack_echoes_only_what_the_syn_offered(ws, ts, sack):
    """RFC 7323 §1.3/§2.2 (window scale "only if ... received in the initial <SYN>"), §3.2
    ("TSopt MUST be sent in a <SYN,ACK> segment only if a TSopt was received in the initial
    <SYN>"), RFC 2018 §2 (SACK-permitted likewise)."""
    c = listening(rcvbuf=BIG, window_scaling=True, timestamps=True, sack=True)
    c.send(F.SYN, IRS, mss=MSS, **_offer(ws, ts, sack))
    (synack,) = c.recv(Seg(F.SYN | F.ACK, ISS, IRS + 1, window=65535, mss=MSS,
                           wscale=3 if ws else None, sack_permitted=sack,
                           timestamps=(ANY, 4242) if ts else None))
    info = c.tcb.info
    assert (info["ws_ok"], info["ts_ok"], info["sack_ok"]) == (ws, ts, sack)
    # Eff.snd.MSS leaves room for the options every segment carries (§3.7.1).
    assert info["smss"] == (MSS - 12 if ts else MSS)
    our_ts = synack.timestamps[0] if ts else 0
    c.send(F.ACK, IRS + 1, ISS + 1, window=1000, timestamps=(4243, our_ts) if ts else None)
    assert c.state == "ESTABLISHED"
    # Windows in and out are scaled only when both sides offered scaling (RFC 7323 §2.2).
    assert c.tcb.info["snd_wnd"] == (1000 << 7 if ws else 1000)
    c.send(F.ACK | F.PSH, IRS + 1, ISS + 1, b"hi", window=1000,
           timestamps=(4244, our_ts) if ts else None)
    c.advance(0.04)
    (got,) = c.transmit()
    assert (got.tcp.flags, got.tcp.seq, got.tcp.ack) == (F.ACK, ISS + 1, IRS + 3)
    assert got.tcp.window == ((BIG - 2) >> 3 if ws else 65535)
    assert got.tcp.wscale is None and got.tcp.mss is None and not got.tcp.sack_permitted
    if ts:
        assert got.tcp.timestamps == (s(our_ts + 40), 4244)
    else:
        assert got.tcp.timestamps is None


@pytest.mark.parametrize("ws", [False, True], ids=["-ws", "+ws"])
@pytest.mark.parametrize("ts", [False, True], ids=["-ts", "+ts"])
@pytest.mark.parametrize("sack", [False, True], ids=["-sack", "+sack"])
def test_active_open_uses_only_what_both_offered(ws, ts, sack):
    c = closed(rcvbuf=BIG, window_scaling=True, timestamps=True, sack=True)
    c.tcb.connect(c.now)
    (syn,) = c.transmit()
    t = syn.tcp
    # Our SYN offers everything; its window is not scaled (RFC 7323 §2.2).
    assert (t.flags, t.seq, t.window, t.mss, t.wscale, t.sack_permitted) == \
        (F.SYN, ISS, 65535, MSS, 3, True)
    assert t.timestamps is not None and t.timestamps[1] == 0
    c.advance(0.01)
    c.send(F.SYN | F.ACK, IRS, ISS + 1, mss=MSS, window=1000,
           wscale=2 if ws else None, sack_permitted=sack,
           timestamps=(777, t.timestamps[0]) if ts else None)
    (ack,) = c.transmit()
    assert c.state == "ESTABLISHED"
    info = c.tcb.info
    assert (info["ws_ok"], info["ts_ok"], info["sack_ok"]) == (ws, ts, sack)
    assert info["snd_wnd"] == 1000                    # the SYN-ACK's window: never scaled
    assert (ack.tcp.flags, ack.tcp.seq, ack.tcp.ack) == (F.ACK, ISS + 1, IRS + 1)
    assert ack.tcp.window == (BIG >> 3 if ws else 65535)
    if ts:
        assert ack.tcp.timestamps == (t.timestamps[0] + 10, 777)   # 10 ms later; echoes 777
    else:
        assert ack.tcp.timestamps is None
    c.send(F.ACK, IRS + 1, ISS + 1, window=1000, timestamps=(778, 0) if ts else None)
    assert c.tcb.info["snd_wnd"] == (1000 << 2 if ws else 1000)


def test_options_off_locally_are_not_used():
    """The peer offers window scale, timestamps and SACK, we offer none: the SYN-ACK carries only
    the MSS, and neither side's windows are scaled (RFC 7323 §1.3, §2.2, §3.2; RFC 2018 §2)."""
    c = listening(rcvbuf=BIG)
    c.send(F.SYN, IRS, mss=MSS, window=1000, **_offer(True, True, True))
    c.recv(Seg(F.SYN | F.ACK, ISS, IRS + 1, window=65535, mss=MSS))
    info = c.tcb.info
    assert (info["ws_ok"], info["ts_ok"], info["sack_ok"]) == (False, False, False)
    assert info["smss"] == MSS
    c.send(F.ACK, IRS + 1, ISS + 1, window=1000)
    assert c.tcb.info["snd_wnd"] == 1000
    c.send(F.ACK | F.PSH, IRS + 1, ISS + 1, b"hi", window=1000)
    c.advance(0.04)
    c.recv(Seg(F.ACK, ISS + 1, IRS + 3, window=65535))


def test_window_scale_applied_to_send_window():
    """The peer's window field is shifted by its scale; a window of 100 (<< 2 = 400) lets 400
    octets go."""
    c = listening(rcvbuf=BIG, window_scaling=True, nodelay=True)
    c.send(F.SYN, IRS, mss=MSS, wscale=2, window=100)
    c.recv(Seg(F.SYN | F.ACK, ISS, IRS + 1, window=65535, mss=MSS, wscale=3))
    assert c.tcb.info["snd_wnd"] == 100               # unscaled in the SYN
    c.send(F.ACK, IRS + 1, ISS + 1, window=100)
    assert c.tcb.info["snd_wnd"] == 400
    msg = data(1000, 19)
    c.tcb.send(msg, c.now)
    c.wnd = BIG >> 3
    c.recv(Seg(F.ACK, ISS + 1, IRS + 1, payload=msg[:400]))


def test_our_window_is_scaled():
    """Our window field is the free buffer shifted right by our scale (3 for 256 KiB): the SYN-ACK
    offered 65535 unscaled (RFC 7323 §2.2), later segments (BIG - unread) >> 3."""
    c = listening(rcvbuf=BIG, window_scaling=True)
    c.send(F.SYN, IRS, mss=MSS, wscale=0)
    c.recv(Seg(F.SYN | F.ACK, ISS, IRS + 1, window=65535, mss=MSS, wscale=3))
    c.send(F.ACK, IRS + 1, ISS + 1)
    assert c.tcb.info["rcv_wscale"] == 3
    c.send(F.ACK, IRS + 1, ISS + 1, data(1000))
    c.send(F.ACK, IRS + 1001, ISS + 1, data(1001))
    c.recv(Seg(F.ACK, ISS + 1, IRS + 2002, window=(BIG - 2001) >> 3))
    c.tcb.recv(5000)
    c.send(F.ACK, IRS + 2002, ISS + 1, data(1460))
    c.send(F.ACK, IRS + 3462, ISS + 1, data(1460))
    c.recv(Seg(F.ACK, ISS + 1, IRS + 4922, window=(BIG - 2920) >> 3))


def ts_established(peer_ts=1000, **kw):
    c = listening(timestamps=True, **kw)
    c.send(F.SYN, IRS, mss=MSS, timestamps=(peer_ts, 0))
    (synack,) = c.transmit()
    assert synack.tcp.timestamps[1] == peer_ts
    c.ts_offset = s(synack.tcp.timestamps[0] - round(c.now * 1e6) // 1000)
    c.send(F.ACK, IRS + 1, ISS + 1, timestamps=(peer_ts + 1, synack.tcp.timestamps[0]))
    assert c.state == "ESTABLISHED" and c.tcb.info["ts_ok"]
    return c


def test_timestamps_in_every_segment_and_echoed():
    """RFC 7323 §3.2: once negotiated, TSopt in every non-<RST> segment; TSecr echoes
    TS.Recent."""
    c = ts_established()
    c.advance(0.25)
    c.send(F.ACK, IRS + 1, ISS + 1, b"x" * 10, timestamps=(1005, c.our_ts()))
    c.tcb.send(b"reply", c.now)
    c.recv(Seg(F.ACK, ISS + 1, IRS + 11, window=RCVBUF - 10, payload=b"reply",
               timestamps=(c.our_ts(), 1005)))
    assert c.tcb.info["smss"] == MSS - 12


def test_paws_drops_old_tsval():
    """RFC 7323 §5.3 R1: "If SEG.TSval < TS.Recent and the RST bit is off ... Send an
    acknowledgment in reply ... and drop the segment"."""
    c = ts_established()
    c.send(F.ACK, IRS + 1, ISS + 1, b"new", timestamps=(2000, c.our_ts()))
    assert c.tcb.recv(10) == b"new"
    c.advance(0.04)
    c.recv(Seg(F.ACK, ISS + 1, IRS + 4, timestamps=(c.our_ts(), 2000)))   # the delayed ACK
    c.advance(0.1)
    c.send(F.ACK, IRS + 4, ISS + 1, b"old", timestamps=(1999, c.our_ts()))   # older TSval
    c.recv(Seg(F.ACK, ISS + 1, IRS + 4, timestamps=(c.our_ts(), 2000)))
    with pytest.raises(BlockingIOError):
        c.tcb.recv(10)
    assert c.tcb.counters["paws_rejected"] == 1
    c.send(F.ACK, IRS + 4, ISS + 1, b"ok!", timestamps=(2000, c.our_ts()))   # equal: fine
    assert c.tcb.recv(10) == b"ok!"


def test_paws_lets_an_old_tsval_through_after_24_idle_days():
    """RFC 7323 §5.5: when the connection has been idle for more than 24 days, TS.Recent is
    invalid: the segment is taken and TS.Recent set from it (keep-alives off here)."""
    c = ts_established()
    c.send(F.ACK, IRS + 1, ISS + 1, b"new", timestamps=(2000, c.our_ts()))
    assert c.tcb.recv(10) == b"new"
    c.advance(0.04)
    c.recv(Seg(F.ACK, ISS + 1, IRS + 4, timestamps=(c.our_ts(), 2000)))
    c.advance(24 * 24 * 3600 + 1)
    c.send(F.ACK, IRS + 4, ISS + 1, b"old", timestamps=(1999, c.our_ts()))
    assert c.tcb.recv(10) == b"old"
    assert c.tcb.counters["paws_rejected"] == 0 and c.tcb.info["ts_recent"] == 1999


def test_paws_does_not_drop_rst():
    """RFC 7323 §5.3 R1 applies only when "the RST bit is off"."""
    c = ts_established()
    c.send(F.ACK, IRS + 1, ISS + 1, b"new", timestamps=(2000, c.our_ts()))
    c.send(F.RST, IRS + 4, timestamps=(5, 0))
    assert c.state == "CLOSED"
    assert c.tcb.error == errno.ECONNRESET


def test_paws_tsval_wraps():
    """TSval comparison is modulo 2**32 (RFC 7323 §5.2): a TSval just past the wrap is newer."""
    c = ts_established(peer_ts=0xFFFFFFF0)
    c.send(F.ACK, IRS + 1, ISS + 1, b"a", timestamps=(0xFFFFFFFE, c.our_ts()))
    c.send(F.ACK, IRS + 2, ISS + 1, b"b", timestamps=(0x00000005, c.our_ts()))
    assert c.tcb.recv(10) == b"ab"
    assert c.tcb.counters["paws_rejected"] == 0


# =============================================================================================
# Loss recovery: NewReno fast retransmit (RFC 5681 §3.2, RFC 6582) and SACK (RFC 6675)
# =============================================================================================

def flight_of(c: Conn, n: int, seed: int = 20):
    msg = data(n * MSS, seed)
    c.tcb.send(msg, c.now)
    segs = [Seg(F.ACK, c.ours(i * MSS), c.theirs(), payload=msg[i * MSS:(i + 1) * MSS])
            for i in range(n)]
    c.recv(*segs)
    return segs


def test_fast_retransmit_on_third_duplicate_ack_newreno(seqs):
    c = established(*seqs)
    segs = flight_of(c, 5)
    c.advance(0.05)
    c.send(F.ACK, c.theirs(), c.ours(MSS))             # segment 1 arrived, 2 lost
    c.recv_nothing()
    c.send(F.ACK, c.theirs(), c.ours(MSS))             # dupack 1 (segment 3)
    c.recv_nothing()
    c.send(F.ACK, c.theirs(), c.ours(MSS))             # dupack 2 (segment 4)
    c.recv_nothing()
    c.send(F.ACK, c.theirs(), c.ours(MSS))             # dupack 3 (segment 5)
    c.recv(segs[1])                                    # RFC 5681 §3.2 step 2-3
    info = c.tcb.info
    assert info["in_recovery"]
    # ssthresh = max(FlightSize / 2, 2*SMSS) (RFC 5681 eq. 4); cwnd = ssthresh + 3*SMSS.
    assert info["ssthresh"] == max(4 * MSS // 2, 2 * MSS)
    assert info["cwnd"] == info["ssthresh"] + 3 * MSS
    assert c.tcb.counters["fast_retransmits"] == 1
    c.send(F.ACK, c.theirs(), c.ours(5 * MSS))         # full ACK: recovery over
    c.recv_nothing()
    info = c.tcb.info
    assert not info["in_recovery"]
    assert info["cwnd"] == info["ssthresh"]
    assert info["snd_una"] == c.ours(5 * MSS)


def test_two_duplicate_acks_do_not_retransmit(seqs):
    c = established(*seqs)
    flight_of(c, 4)
    c.send(F.ACK, c.theirs(), c.ours(MSS))
    c.send(F.ACK, c.theirs(), c.ours(MSS))
    c.send(F.ACK, c.theirs(), c.ours(MSS))
    c.recv_nothing()
    assert not c.tcb.info["in_recovery"]


def test_window_update_is_not_a_duplicate_ack(seqs):
    """RFC 5681 §2: a duplicate ACK has "the advertised window in the incoming acknowledgment
    equals the advertised window in the last incoming acknowledgment"."""
    c = established(*seqs)
    flight_of(c, 4)
    c.send(F.ACK, c.theirs(), c.ours(MSS))
    for w in (PEER_WIN - 1, PEER_WIN - 2, PEER_WIN - 3):
        c.send(F.ACK, c.theirs(), c.ours(MSS), window=w)
    c.recv_nothing()
    assert not c.tcb.info["in_recovery"]


def test_newreno_partial_ack_retransmits_next_hole(seqs):
    """RFC 6582 §3.2 step 3: on a partial ACK, "retransmit the first unacknowledged segment";
    the full ACK (covering "recover") ends recovery."""
    c = established(*seqs)
    segs = flight_of(c, 6)                              # segments 2 and 4 are lost
    c.advance(0.05)
    c.send(F.ACK, c.theirs(), c.ours(MSS))
    for _ in range(3):                                  # 3, 5, 6 arrive
        c.send(F.ACK, c.theirs(), c.ours(MSS))
    c.recv(segs[1])
    c.advance(0.05)
    c.send(F.ACK, c.theirs(), c.ours(3 * MSS))         # 2 and 3 now there: partial ACK
    c.recv(segs[3])
    assert c.tcb.info["in_recovery"]
    c.send(F.ACK, c.theirs(), c.ours(6 * MSS))
    c.recv_nothing()
    assert not c.tcb.info["in_recovery"]
    assert c.tcb.counters["fast_retransmits"] == 1


def sack_established(iss=ISS, irs=IRS, **kw):
    c = listening(iss, irs, sack=True, **kw)
    c.send(F.SYN, irs, mss=MSS, sack_permitted=True)
    c.recv(Seg(F.SYN | F.ACK, iss, s(irs + 1), window=RCVBUF, mss=MSS, sack_permitted=True))
    c.send(F.ACK, c.theirs(), c.ours())
    assert c.state == "ESTABLISHED" and c.tcb.info["sack_ok"]
    return c


def test_sack_recovery_retransmits_the_hole(seqs):
    """RFC 6675: after three duplicate ACKs whose SACK blocks cover segments 3-5, the hole
    (segment 2) is retransmitted, and nothing that the peer has SACKed."""
    c = sack_established(*seqs)
    segs = flight_of(c, 6)
    c.advance(0.05)
    c.send(F.ACK, c.theirs(), c.ours(MSS))
    c.recv_nothing()
    c.send(F.ACK, c.theirs(), c.ours(MSS), sack_blocks=[(c.ours(2 * MSS), c.ours(3 * MSS))])
    c.send(F.ACK, c.theirs(), c.ours(MSS), sack_blocks=[(c.ours(2 * MSS), c.ours(4 * MSS))])
    c.recv_nothing()
    c.send(F.ACK, c.theirs(), c.ours(MSS), sack_blocks=[(c.ours(2 * MSS), c.ours(5 * MSS))])
    c.recv(segs[1])
    assert c.tcb.info["in_recovery"]
    assert c.tcb.counters["sack_recoveries"] == 1
    c.send(F.ACK, c.theirs(), c.ours(6 * MSS))
    c.recv_nothing()
    assert not c.tcb.info["in_recovery"]


def test_sack_recovery_two_holes(seqs):
    """Eight segments, 2 and 5 lost. RACK (RFC 8985 §6.2): once three segments are SACKed and no
    reordering has been seen, the reordering window is 0, so every segment sent before the most
    recently delivered one (segment 6) and not delivered is lost at once: 2 and 5 together,
    with no DupThresh counting per hole. PRR-SSRB (RFC 6937 §3) then paces the retransmissions,
    and SACKed data is never sent again.

    The numbers (NewReno, beta 1/2): FlightSize 7*MSS at the ACK of segment 6, so ssthresh =
    3.5 MSS = RecoverFS/2. At that ACK pipe = 7 - 3 SACKed - 2 lost = 2 MSS <= ssthresh:
    sndcnt = MIN(ssthresh - pipe, MAX(prr_delivered - prr_out, DeliveredData) + MSS) = 1.5 MSS,
    so segment 2 goes; after it pipe = 3 MSS and 0.5 MSS of room is left. The ACK of segment 7:
    pipe = 2 MSS, prr_delivered = 2, prr_out = 1: sndcnt = MIN(1.5, 1 + 1) MSS: segment 5 goes."""
    c = sack_established(*seqs)
    segs = flight_of(c, 8)
    o = c.ours
    c.advance(0.05)
    c.send(F.ACK, c.theirs(), o(MSS))                                       # 1
    c.send(F.ACK, c.theirs(), o(MSS), sack_blocks=[(o(2 * MSS), o(3 * MSS))])             # 3
    c.send(F.ACK, c.theirs(), o(MSS), sack_blocks=[(o(2 * MSS), o(4 * MSS))])             # 4
    c.recv_nothing()           # 2 SACKed: the reordering window (min_RTT/4) still runs
    c.send(F.ACK, c.theirs(), o(MSS),                                       # 6
           sack_blocks=[(o(5 * MSS), o(6 * MSS)), (o(2 * MSS), o(4 * MSS))])
    assert c.tcb.info["lost_out"] == 2 * MSS
    c.recv(segs[1])
    info = c.tcb.info
    assert info["ssthresh"] == 7 * MSS // 2 and info["recover_fs"] == 7 * MSS
    assert info["cwnd"] == 2 * MSS + 3 * MSS // 2 and info["pipe"] == 3 * MSS
    c.send(F.ACK, c.theirs(), o(MSS),                                       # 7
           sack_blocks=[(o(5 * MSS), o(7 * MSS)), (o(2 * MSS), o(4 * MSS))])
    c.recv(segs[4])
    c.send(F.ACK, c.theirs(), o(MSS),                                       # 8
           sack_blocks=[(o(5 * MSS), o(8 * MSS)), (o(2 * MSS), o(4 * MSS))])
    c.recv_nothing()           # nothing lost is left, nothing new to send
    c.send(F.ACK, c.theirs(), o(8 * MSS))
    c.recv_nothing()
    info = c.tcb.info
    assert not info["in_recovery"] and info["cwnd"] == info["ssthresh"] == 7 * MSS // 2
    counters = c.tcb.counters
    assert counters["retrans_rack"] == 2 and counters["retrans_rto"] == 0
    assert counters["sack_recoveries"] == 1


def test_sack_recovery_retransmits_on_entry_even_with_full_pipe(seqs):
    """RFC 6675 §5 (4.3): the first retransmission on entering recovery is not subject to
    cwnd - pipe (that test is step (C), for what follows). Ten segments, segment 2 lost: at the
    third dupack pipe (segments 6-10) exceeds cwnd = FlightSize/2, yet segment 2 goes at once."""
    c = sack_established(*seqs)
    segs = flight_of(c, 10)
    o = c.ours
    c.advance(0.05)
    c.send(F.ACK, c.theirs(), o(MSS))
    for k in (3, 4):
        c.send(F.ACK, c.theirs(), o(MSS), sack_blocks=[(o(2 * MSS), o(k * MSS))])
    c.recv_nothing()
    c.send(F.ACK, c.theirs(), o(MSS), sack_blocks=[(o(2 * MSS), o(5 * MSS))])
    c.recv(segs[1])


def test_rto_during_sack_recovery_goes_back_to_snd_una(seqs):
    c = sack_established(*seqs, rto_min=1.0, rto_initial=1.0)
    segs = flight_of(c, 4)
    c.advance(1.0)
    c.recv(segs[0])
    assert c.tcb.counters["rto_expirations"] == 1


# =============================================================================================
# Sequence-number wrap: a longer transfer through 2**32 in both directions
# =============================================================================================

def test_transfer_across_wrap_then_close():
    c = established(WRAP_ISS, WRAP_IRS, nodelay=True)
    out = data(5000, 21)
    sent = 0
    got_back = b""
    while sent < len(out):
        n = c.tcb.send(out[sent:sent + 700], c.now)
        (seg,) = c.recv(Seg(F.ACK, c.ours(sent), c.theirs(len(got_back)),
                            window=RCVBUF - len(got_back), payload=out[sent:sent + n]))
        sent += n
        c.send(F.ACK, c.theirs(len(got_back)), c.ours(sent), out[sent - n:sent][::-1])
        got_back += out[sent - n:sent][::-1]
        c.advance(0.001)
    assert c.tcb.info["snd_una"] == c.ours(5000) == s(WRAP_ISS + 5001)
    received = c.tcb.recv(100000)
    assert received == got_back
    c.tcb.close(c.now)
    c.advance(0.04)
    c.recv(Seg(F.FIN | F.ACK, c.ours(5000), c.theirs(5000)))
    c.send(F.FIN | F.ACK, c.theirs(5000), c.ours(5001))
    c.recv(Seg(F.ACK, c.ours(5001), c.theirs(5001)))
    assert c.state == "TIME-WAIT"


# =============================================================================================
# next_event contract
# =============================================================================================

def test_next_event_reports_pending_output_and_timers(seqs):
    c = established(*seqs)
    assert c.tcb.next_event() is None
    c.send(F.ACK, c.theirs(), c.ours(), b"x")
    assert c.tcb.next_event() == pytest.approx(c.now + 0.04, abs=EPS)     # the delayed ACK
    c.send(F.ACK, c.theirs(RCVBUF + 10), c.ours(), b"y")                  # out of window
    assert c.tcb.next_event() == 0.0                                      # an ACK is due now
    c.recv(Seg(F.ACK, c.ours(), c.theirs(1), window=RCVBUF - 1))
    assert c.tcb.next_event() is None
