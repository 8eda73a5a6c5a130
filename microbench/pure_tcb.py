"""A compact pure-Python TCB for one connection in ESTABLISHED: the oracle of the segment and
retransmission-queue benchmarks (``bench_segment.py``, ``bench_rtx.py``).

It models the fast path of RFC 9293 §3.10.7.4 on real packet bytes, and only that:

* ``receive(packet, now)``: parse and verify the IPv4/TCP packet (``pure.parse_ipv4_tcp``, both
  checksums), PAWS (RFC 7323 §5.3), the sequence acceptability test (the four cases), the ACK
  field (send window update with SND.WL1/WL2, release of acknowledged segments from the
  retransmission queue, an RFC 6298 RTT sample, RFC 5681 slow start / congestion avoidance with
  RFC 3465 byte counting), TS.Recent (RFC 7323 §4.3), then in-order text into the receive buffer
  with the delayed-ACK rule (an ACK for every second full-sized segment, RFC 5681 §4.2);
* ``transmit(now)``: data segments as the windows, Nagle and sender SWS avoidance allow (each
  one appended to the retransmission queue, a deque of ``(seq, payload)``), then a pure ACK if one
  is owed; packets built with ``struct`` and both checksums (``pure.build_ipv4_tcp``), advertising
  the window with receiver SWS avoidance and never shrinking the right edge (RFC 9293
  §3.8.6.2.2, RFC 7323 §2.4);
* ``send`` / ``recv``: the application's side of the two buffers.

Everything else (SYN, FIN, RST, out-of-order data, duplicate ACKs and fast retransmit, timers
other than the delayed ACK, zero windows) raises ``NotImplementedError`` rather than being got
wrong silently: the benchmarks never go there. It starts from a state given to it, normally that
of a ``tcpfast._tcb.Tcb`` just after its handshake (:meth:`PureTcb.from_info`), and it emits the
very bytes that ``Tcb`` does for the same input, which the benchmarks check before timing.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional, Tuple

from pure import (build_ipv4_tcp, parse_ipv4_tcp, seq_ge, seq_gt, seq_in_window, seq_le, seq_lt)

__all__ = ["PureTcb"]

M32 = 0xFFFFFFFF
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
RTT_G = 1000                    # us: clock granularity G of RFC 6298 §2


class PureTcb:
    """One ESTABLISHED connection (IPv4, timestamps on, window scaling negotiated), times in
    seconds as ``Tcb`` takes them (microseconds inside)."""

    def __init__(self, *, src: bytes, dst: bytes, sport: int, dport: int,
                 snd_una: int, snd_nxt: int, snd_wnd: int, snd_wl1: int, snd_wl2: int,
                 snd_wscale: int, rcv_nxt: int, rcv_adv: int, rcv_wscale: int,
                 last_ack_sent: int, ts_recent: int, ts_offset: int, smss: int, mss: int,
                 rcvbuf: int, sndbuf: int, delack: float, cwnd: int, ssthresh: int,
                 srtt: Optional[int], rttvar: int, rto: int, rto_min: int = 200_000,
                 rto_max: int = 120_000_000) -> None:
        self.src, self.dst, self.sport, self.dport = src, dst, sport, dport
        # Send sequence space (RFC 9293 §3.3.1); no rewinds here, so SND.NXT is also SND.MAX.
        self.snd_una, self.snd_nxt, self.snd_wnd = snd_una, snd_nxt, snd_wnd
        self.snd_wl1, self.snd_wl2, self.snd_wscale = snd_wl1, snd_wl2, snd_wscale
        self.max_snd_wnd = snd_wnd
        self.smss = smss
        # Receive sequence space.
        self.rcv_nxt, self.rcv_adv, self.rcv_wscale = rcv_nxt, rcv_adv, rcv_wscale
        self.last_ack_sent = last_ack_sent
        self.ts_recent, self.ts_offset = ts_recent, ts_offset
        self.mss, self.rcvbuf_size, self.sndbuf_size = mss, rcvbuf, sndbuf
        self.delack_us = round(delack * 1_000_000)
        # Buffers: unsent bytes, the retransmission queue of sent segments, received bytes.
        self.unsent = bytearray()
        self.rtx: Deque[Tuple[int, bytes]] = deque()
        self.rcvbuf = bytearray()
        # Pending output and timers (us, 0 = not armed).
        self.ack_now = False
        self.segs_unacked = 0
        self.t_delack = 0
        self.t_rtx = 0
        # RFC 6298 estimator and Karn's single timed segment; RFC 5681 congestion window.
        self.srtt, self.rttvar, self.rto = srtt, rttvar, rto
        self.rto_min, self.rto_max = rto_min, rto_max
        self.rtt_timing = False
        self.rtt_seq = 0
        self.rtt_time = 0
        self.cwnd, self.ssthresh = cwnd, ssthresh
        self.bytes_acked = 0

    @classmethod
    def from_info(cls, info: dict, *, src: bytes, dst: bytes, sport: int, dport: int,
                  ts_offset: int, mss: int, rcvbuf: int, sndbuf: int, delack: float) -> "PureTcb":
        """The state of a ``Tcb`` (its ``info``) just after a passive open: SND.UNA = SND.NXT,
        the last ACK we sent (the SYN-ACK's) acknowledged RCV.NXT."""
        assert info["state"] == "ESTABLISHED" and info["ts_ok"] and info["ws_ok"]
        assert info["snd_una"] == info["snd_nxt"] == info["snd_max"]
        return cls(src=src, dst=dst, sport=sport, dport=dport,
                   snd_una=info["snd_una"], snd_nxt=info["snd_nxt"], snd_wnd=info["snd_wnd"],
                   snd_wl1=info["snd_wl1"], snd_wl2=info["snd_wl2"],
                   snd_wscale=info["snd_wscale"], rcv_nxt=info["rcv_nxt"],
                   rcv_adv=(info["rcv_nxt"] + info["rcv_wnd"]) & M32,
                   rcv_wscale=info["rcv_wscale"], last_ack_sent=info["rcv_nxt"],
                   ts_recent=info["ts_recent"], ts_offset=ts_offset, smss=info["smss"], mss=mss,
                   rcvbuf=rcvbuf, sndbuf=sndbuf, delack=delack, cwnd=info["cwnd"],
                   ssthresh=info["ssthresh"], srtt=info["srtt"], rttvar=info["rttvar"],
                   rto=info["rto"])

    # --- segment arrival (RFC 9293 §3.10.7.4) -----------------------------------------------

    def receive(self, packet: bytes, now: float) -> None:
        us = round(now * 1_000_000)
        p = parse_ipv4_tcp(packet)
        flags = p["flags"]
        if flags & (SYN | RST | FIN | URG):
            raise NotImplementedError("only the ESTABLISHED data/ACK fast path is modelled")
        seq = p["seq"]
        payload = p["payload"]
        n = len(payload)
        ts = p["timestamps"]
        rcv_wnd = (self.rcv_adv - self.rcv_nxt) & M32 if seq_gt(self.rcv_adv, self.rcv_nxt) else 0
        # RFC 7323 §5.3 PAWS (R1), before the sequence check.
        if ts is not None and seq_lt(ts[0], self.ts_recent):
            self.ack_now = True
            return
        # "first check sequence number": the four cases of the acceptability test.
        if n == 0:
            ok = seq == self.rcv_nxt if rcv_wnd == 0 else seq_in_window(seq, self.rcv_nxt, rcv_wnd)
        elif rcv_wnd == 0:
            raise NotImplementedError("zero receive window")
        else:
            ok = seq_in_window(seq, self.rcv_nxt, rcv_wnd) or \
                seq_in_window((seq + n - 1) & M32, self.rcv_nxt, rcv_wnd)
        if not ok:
            self.ack_now = True         # "an acknowledgment should be sent in reply"
            return
        # "fifth check the ACK field"
        if not flags & ACK:
            return
        ack = p["ack"]
        if seq_gt(ack, self.snd_nxt) or seq_lt(ack, (self.snd_una - self.max_snd_wnd) & M32):
            self.ack_now = True         # not yet sent, or too old (RFC 5961 §5.2): ACK, drop
            return
        # RFC 7323 §4.3: TS.Recent from the segment holding the edge we acknowledged last.
        if ts is not None and seq_le(seq, self.last_ack_sent) and seq_ge(ts[0], self.ts_recent):
            self.ts_recent = ts[0]
        self._ack_input(seq, ack, p["window"] << self.snd_wscale, ts, n, us)
        # "seventh, process the segment text"
        if n:
            if seq_lt(seq, self.rcv_nxt):                   # partly old: cut what we have
                cut = (self.rcv_nxt - seq) & M32
                payload = payload[cut:]
                seq = self.rcv_nxt
                n = len(payload)
            right = (self.rcv_nxt + self._ring_space()) & M32
            if seq_lt(self.rcv_adv, right):
                right = self.rcv_adv
            if n and seq_gt((seq + n) & M32, right):        # beyond the offered window
                n -= min(n, ((seq + n) - right) & M32)
                payload = payload[:n]
            if n:
                if seq != self.rcv_nxt:
                    raise NotImplementedError("out-of-order data")
                self.rcvbuf += payload
                self.rcv_nxt = (self.rcv_nxt + n) & M32
                # RFC 5681 §4.2: ACK at least every second full-sized segment, else delay.
                self.segs_unacked += 1 if n < 2 * self.mss else 2
                if self.segs_unacked >= 2:
                    self.ack_now = True
                elif self.t_delack == 0:
                    self.t_delack = us + self.delack_us

    def _ack_input(self, seq: int, ack: int, wnd: int, ts: Optional[Tuple[int, int]], n: int,
                   us: int) -> None:
        # "If SND.UNA =< SEG.ACK =< SND.NXT, the send window should be updated. If (SND.WL1 <
        # SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK)), set SND.WND <- SEG.WND, ..."
        window_update = False
        if seq_le(self.snd_una, ack) and (seq_lt(self.snd_wl1, seq) or
                                          (self.snd_wl1 == seq and seq_le(self.snd_wl2, ack))):
            window_update = wnd != self.snd_wnd
            self.snd_wnd, self.snd_wl1, self.snd_wl2 = wnd, seq, ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
        if not seq_gt(ack, self.snd_una):
            if ack == self.snd_una and self.snd_una != self.snd_nxt and n == 0 and \
                    not window_update:
                raise NotImplementedError("duplicate ACK (fast retransmit)")
            return
        # "set SND.UNA <- SEG.ACK. Any segments on the retransmission queue that are thereby
        # entirely acknowledged are removed." (A partly acknowledged one is cut.)
        acked = (ack - self.snd_una) & M32
        q = self.rtx
        while q and seq_le((q[0][0] + len(q[0][1])) & M32, ack):
            q.popleft()
        if q and seq_lt(q[0][0], ack):
            s, data = q[0]
            q[0] = (ack, data[(ack - s) & M32:])
        flight = (self.snd_nxt - self.snd_una) & M32
        self.snd_una = ack
        # RFC 6298 §3 (Karn): the timed segment; otherwise the echoed timestamp (RFC 7323 §4.1).
        if self.rtt_timing and seq_gt(ack, self.rtt_seq):
            self._rtt_sample(us - self.rtt_time)
            self.rtt_timing = False
        elif ts is not None and ts[1] and not self.rtt_timing:
            now_ts = self._ts_now(us)
            if seq_ge(now_ts, ts[1]) and ((now_ts - ts[1]) & M32) < 120_000:
                self._rtt_sample(((now_ts - ts[1]) & M32) * 1000)
        self._cwnd_on_ack(acked, flight)
        # RFC 6298 §5.2/5.3: everything acknowledged: stop the timer, else restart it.
        self.t_rtx = 0 if self.snd_una == self.snd_nxt else us + self.rto

    def _rtt_sample(self, r: int) -> None:
        """RFC 6298 §2.2/2.3, integer microseconds."""
        if self.srtt is None:
            self.srtt, self.rttvar = r, r // 2
        else:
            self.rttvar = (3 * self.rttvar + abs(self.srtt - r)) // 4
            self.srtt = (7 * self.srtt + r) // 8
        self.rto = min(max(self.srtt + max(RTT_G, 4 * self.rttvar), self.rto_min), self.rto_max)

    def _cwnd_on_ack(self, acked: int, flight: int) -> None:
        """RFC 5681 §3.1 with RFC 3465 byte counting (L = 2 SMSS); no growth while less than half
        the window is in use (application-limited, RFC 7661 §4.3)."""
        if 2 * flight < self.cwnd:
            return
        if self.cwnd < self.ssthresh:
            self.cwnd = min(self.cwnd + min(acked, 2 * self.smss), self.ssthresh)
            return
        self.bytes_acked += acked
        if self.bytes_acked >= self.cwnd:
            self.bytes_acked -= self.cwnd
            self.cwnd += self.smss

    # --- sending ------------------------------------------------------------------------------

    def _ts_now(self, us: int) -> int:
        return (us // 1000 + self.ts_offset) & M32

    def _ring_space(self) -> int:
        """Free receive-ring space: RCV.BUFF plus the window-scale rounding slack, less what is
        held (tcpfast sizes its ring so; see ``_size_rcvbuf``)."""
        slack = (1 << self.rcv_wscale) - 1 if self.rcv_wscale else 0
        return self.rcvbuf_size + slack - len(self.rcvbuf)

    def _rcv_space(self) -> int:
        slack = (1 << self.rcv_wscale) - 1 if self.rcv_wscale else 0
        space = self._ring_space()
        return space - slack if space > slack else 0

    def _window_to_advertise(self) -> int:
        """The window field: receiver SWS avoidance (RFC 9293 §3.8.6.2.2) and a right edge that
        never moves left (RFC 7323 §2.4: round the scaled field up rather than shrink)."""
        space = self._rcv_space()
        cur = (self.rcv_adv - self.rcv_nxt) & M32 if seq_gt(self.rcv_adv, self.rcv_nxt) else 0
        step = min(self.rcvbuf_size // 2, self.mss)
        wnd = space
        if wnd > cur and wnd - cur < step and space < self.rcvbuf_size:
            wnd = cur
        if wnd < cur:
            wnd = cur
        field = min(wnd >> self.rcv_wscale, 0xFFFF)
        if (field << self.rcv_wscale) < cur:
            field += 1
        self.rcv_adv = (self.rcv_nxt + (field << self.rcv_wscale)) & M32
        return field

    def _segment(self, seq: int, flags: int, payload: bytes, us: int) -> bytes:
        """<SEQ=seq><ACK=RCV.NXT><CTL=flags> with timestamps: sending it acknowledges RCV.NXT."""
        self.last_ack_sent = self.rcv_nxt
        self.ack_now = False
        self.segs_unacked = 0
        self.t_delack = 0
        window = self._window_to_advertise()
        return build_ipv4_tcp(self.src, self.dst, self.sport, self.dport, seq, self.rcv_nxt, flags,
                              window, self._ts_now(us), self.ts_recent, payload)

    def _next_data(self, us: int) -> Optional[bytes]:
        """One new data segment if the windows, Nagle and sender SWS avoidance allow it."""
        unsent = len(self.unsent)
        if not unsent:
            return None
        flight = (self.snd_nxt - self.snd_una) & M32
        usable = min(self.snd_wnd - flight if self.snd_wnd > flight else 0,
                     self.cwnd - flight if self.cwnd > flight else 0)
        n = min(unsent, self.smss, usable)
        if n == 0:
            raise NotImplementedError("window-limited to zero (persist timer)")
        if n < unsent and n < self.smss:
            if n < self.max_snd_wnd // 2 and flight:
                return None                     # sender SWS avoidance
        elif n == unsent and n < self.smss and flight:
            return None                         # Nagle
        seq = self.snd_nxt
        payload = bytes(self.unsent[:n])
        del self.unsent[:n]
        packet = self._segment(seq, ACK | (PSH if n == unsent else 0), payload, us)
        self.rtx.append((seq, payload))         # onto the retransmission queue
        if not self.rtt_timing:                 # RFC 6298 §3: time one segment per RTT
            self.rtt_timing, self.rtt_seq, self.rtt_time = True, seq, us
        self.snd_nxt = (seq + n) & M32
        if self.t_rtx == 0:
            self.t_rtx = us + self.rto
        return packet

    def transmit(self, now: float) -> List[bytes]:
        """Every packet due at ``now``."""
        us = round(now * 1_000_000)
        if self.t_delack and us >= self.t_delack:
            self.t_delack = 0
            self.ack_now = True
        out = []
        while True:
            packet = self._next_data(us)
            if packet is None:
                break
            out.append(packet)
        if self.ack_now:                        # a pure ACK: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>
            out.append(self._segment(self.snd_nxt, ACK, b"", us))
        return out

    # --- the application ------------------------------------------------------------------------

    def send(self, data: bytes, now: float = 0) -> int:
        """Queue what fits in the send buffer; returns how many bytes were taken."""
        space = self.sndbuf_size - len(self.unsent) - ((self.snd_nxt - self.snd_una) & M32)
        take = min(len(data), space)
        if take <= 0:
            raise BlockingIOError("send buffer full")
        self.unsent += data[:take] if take < len(data) else data
        return take

    def recv(self, n: int = 65536, *, now: float = 0) -> bytes:
        """Up to ``n`` received bytes (BlockingIOError when there are none)."""
        if not self.rcvbuf:
            raise BlockingIOError("no data")
        out = bytes(self.rcvbuf[:n])
        del self.rcvbuf[:n]
        # Window update when the right edge can move by min(RCV.BUFF/2, MSS) and the peer may be
        # stalled on a small window (RFC 9293 §3.8.6.2.2).
        space = self._rcv_space()
        limit = min(self.rcvbuf_size // 2, self.mss)
        if seq_gt((self.rcv_nxt + space) & M32, self.rcv_adv):
            gain = (self.rcv_nxt + space - self.rcv_adv) & M32
            if gain >= limit and ((self.rcv_adv - self.rcv_nxt) & M32) < 2 * self.mss + limit:
                self.ack_now = True
        return out
