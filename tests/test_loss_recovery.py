"""Loss detection and recovery with SACK: RACK-TLP (RFC 8985), PRR (RFC 6937), F-RTO (RFC 5682),
D-SACK (RFC 2883) and the undo of spurious reductions (RFC 3522/4015/3708).

Segment-level tests on the virtual clock (the helpers of ``test_tcb``: the test is the peer and
speaks in segments), each for one rule with the RFC's section beside it; then the simulated pair
(``tcpfast.testing.SimPair``) for what the rules add up to on a lossy or reordering path; and the
transmit records of ``_rack`` on their own.

The connection here offers SACK, NewReno (beta 1/2, so the numbers are the RFCs'), and measures a
round trip of RTT = 50 ms in its handshake: SRTT = 50 ms, RTO = max(50 + 4 * 25, 200) = 200 ms,
RACK.min_RTT = 50 ms.
"""
import pytest

from test_tcb import F, MSS, RCVBUF, Seg, data, listening

from tcpfast._cc import Prr
from tcpfast._rack import TxQueue
from tcpfast.testing import SimPair

RTT = 0.05
EPS = 1e-6
U32_MAX = 2 ** 32 - 1


def conn(**kw):
    """ESTABLISHED with SACK, after a handshake that took one RTT (passive open)."""
    c = listening(sack=True, **kw)
    c.send(F.SYN, c.irs, mss=MSS, sack_permitted=True)
    c.recv(Seg(F.SYN | F.ACK, c.iss, c.theirs(), window=RCVBUF, mss=MSS, sack_permitted=True))
    c.advance(RTT)
    c.send(F.ACK, c.theirs(), c.ours())
    info = c.tcb.info
    assert c.state == "ESTABLISHED" and info["sack_ok"]
    assert info["srtt"] == 50000 and info["rack_min_rtt"] == 50000 and info["rto"] == 200000
    return c


def flight(c, n, queued=None, seed=7):
    """Queue ``queued`` (default n) segments of data; exactly the first n must go out now."""
    msg = data((queued or n) * MSS, seed)
    assert c.tcb.send(msg, c.now) == len(msg)
    segs = [Seg(F.ACK, c.ours(i * MSS), c.theirs(), payload=msg[i * MSS:(i + 1) * MSS])
            for i in range(queued or n)]
    c.recv(*segs[:n])
    return segs


def sack(c, *blocks, ack_segs=1, **kw):
    """An ACK from the peer of the first ``ack_segs`` segments, SACKing segments [a, b) each."""
    o = c.ours
    c.send(F.ACK, c.theirs(), o(ack_segs * MSS),
           sack_blocks=[(o(a * MSS), o(b * MSS)) for a, b in blocks], **kw)


# =============================================================================================
# RACK: time-based loss detection (RFC 8985 §6.2)
# =============================================================================================

def test_rack_marks_lost_after_the_reordering_window_and_not_before():
    """Segment 2 of 4 is missing when segment 3 is SACKed. One SACKed segment and no reordering
    seen: RACK.reo_wnd = min_RTT/4 = 12.5 ms (§6.2 step 4). Segment 2 was sent with segment 3
    (same time, lower sequence), so it is lost at xmit_ts + RACK.rtt + reo_wnd (§6.2 step 5):
    12.5 ms after this ACK, by the reordering timer, and not a microsecond before."""
    c = conn()
    segs = flight(c, 4)
    c.advance(RTT)
    sack(c)                                     # segment 1 cumulatively acknowledged
    sack(c, (2, 3))                             # segment 3 SACKed, 2 missing
    c.recv_nothing()
    info = c.tcb.info
    assert info["reo_wnd"] == 12500 and info["rack_rtt"] == 50000 and info["lost_out"] == 0
    assert info["timers"]["reo"] == pytest.approx((c.now + 0.0125) * 1e6, abs=1)
    assert c.tcb.next_event() == pytest.approx(c.now + 0.0125, abs=EPS)
    c.advance(0.0125 - EPS)
    c.recv_nothing()
    assert c.tcb.info["lost_out"] == 0
    c.advance(EPS)                              # the reordering timer fires: exactly now
    c.recv(segs[1])
    counters = c.tcb.counters
    assert counters["rack_reo_timeouts"] == 1 and counters["retrans_rack"] == 1
    assert counters["rto_expirations"] == 0
    assert c.tcb.info["in_recovery"]


def test_rack_segment_delivered_in_time_is_not_marked():
    """Reordering shorter than the window costs nothing: segment 2 arrives (is cumulatively
    ACKed) 10 ms after segment 3 was SACKed, inside the 12.5 ms window."""
    c = conn()
    flight(c, 4)
    c.advance(RTT)
    sack(c)
    sack(c, (2, 3))
    c.advance(0.010)
    sack(c, ack_segs=3)
    c.recv_nothing()
    c.advance(0.0025)                           # the reordering timer runs out: nothing lost
    c.recv_nothing()
    counters = c.tcb.counters
    assert counters["retransmits"] == 0 and counters["fast_retransmits"] == 0
    assert c.tcb.info["reordering_seen"]        # segment 2 was delivered below RACK.fack


def test_rack_three_sacked_segments_without_reordering_mean_lost_at_once():
    """No reordering seen and RACK.segs_sacked >= DupThresh: reo_wnd = 0 (§6.2 step 4), so the
    ACK that SACKs the third segment marks the hole lost at once."""
    c = conn()
    segs = flight(c, 6)
    c.advance(RTT)
    sack(c)
    sack(c, (2, 3))
    sack(c, (2, 4))
    c.recv_nothing()
    sack(c, (2, 5))
    c.recv(segs[1])
    assert c.tcb.info["reo_wnd"] == 0
    assert c.tcb.counters["rack_reo_timeouts"] == 0


def test_lost_retransmission_is_found_without_an_rto():
    """Segments 2 and 4 of 6 are lost; both are marked at the ACK that SACKs segment 6 and both
    go out (PRR-SSRB: pipe 0 <= ssthresh 2.5 MSS, sndcnt = 2 MSS). One RTT later the peer SACKs
    the retransmission of 4 but not that of 2: the retransmission of 2, sent no later than that
    of 4, is judged by its new transmit time (§6.2, "lost retransmissions") and sent again
    with no RTO."""
    c = conn()
    segs = flight(c, 6)
    c.advance(RTT)
    sack(c)
    sack(c, (2, 3))
    sack(c, (2, 3), (4, 5))
    c.recv_nothing()
    sack(c, (4, 6), (2, 3))
    c.recv(segs[1], segs[3])
    c.advance(RTT)
    sack(c, (2, 6))                             # the retransmitted 4 arrived; 2 did not
    c.recv(segs[1])
    counters = c.tcb.counters
    assert counters["retrans_rack"] == 3 and counters["rto_expirations"] == 0
    sack(c, ack_segs=6)
    assert not c.tcb.info["in_recovery"]


def test_dsack_widens_the_reordering_window():
    """A D-SACK (the peer got a segment twice) says the window was too small: RACK.reo_wnd_mult
    grows by one per round trip that sees one (RACK.dsack_round = SND.NXT), and the window is
    reo_wnd_mult * min_RTT / 4, at most SRTT (§6.2 step 4): the next reordering wait is 25 ms
    instead of 12.5, then 37.5."""
    c = conn()
    flight(c, 4)
    c.advance(RTT)
    o = c.ours
    c.send(F.ACK, c.theirs(), o(2 * MSS), sack_blocks=[(o(0), o(MSS))])   # D-SACK below the ACK
    assert c.tcb.counters["dsack_in"] == 1 and c.tcb.info["reo_wnd_mult"] == 2
    c.send(F.ACK, c.theirs(), o(3 * MSS), sack_blocks=[(o(MSS), o(2 * MSS))])
    assert c.tcb.counters["dsack_in"] == 2 and c.tcb.info["reo_wnd_mult"] == 2   # same round
    c.send(F.ACK, c.theirs(), o(4 * MSS))
    msg = data(4 * MSS, 9)
    c.tcb.send(msg, c.now)
    c.recv(*[Seg(F.ACK, o((4 + i) * MSS), c.theirs(), payload=msg[i * MSS:(i + 1) * MSS])
             for i in range(4)])
    c.advance(RTT)
    c.send(F.ACK, c.theirs(), o(5 * MSS))
    c.send(F.ACK, c.theirs(), o(5 * MSS), sack_blocks=[(o(6 * MSS), o(7 * MSS))])
    info = c.tcb.info
    assert info["reo_wnd"] == 25000
    assert info["timers"]["reo"] == pytest.approx((c.now + 0.025) * 1e6, abs=1)
    c.send(F.ACK, c.theirs(), o(7 * MSS), sack_blocks=[(o(4 * MSS), o(5 * MSS))])   # new round
    assert c.tcb.info["reo_wnd_mult"] == 3
    assert c.tcb.info["reo_wnd"] == 37500


# =============================================================================================
# Tail loss probe (RFC 8985 §7)
# =============================================================================================

def test_tlp_sends_new_data_at_the_pto():
    """Twelve segments queued, ten sent (IW10), no ACK: at PTO = 2*SRTT (+ 2 ms, Linux's
    TCP_TIMEOUT_MIN) the probe is the first unsent segment, beyond cwnd (§7.3), and the RTO is
    re-armed from the probe."""
    c = conn()
    segs = flight(c, 10, queued=12)
    pto = 2 * RTT + 0.002
    assert c.tcb.next_event() == pytest.approx(c.now + pto, abs=EPS)
    c.advance(pto - EPS)
    c.recv_nothing()
    c.advance(EPS)
    c.recv(segs[10])
    counters = c.tcb.counters
    assert counters["tlp_probes"] == 1 and counters["retrans_tlp"] == 0
    info = c.tcb.info
    assert info["tlp_active"] and not info["tlp_is_retrans"]
    assert info["timers"]["rtx"] == pytest.approx((c.now + 0.2) * 1e6, abs=1)
    assert info["timers"]["tlp"] is None        # one probe outstanding at most
    c.advance(0.2 - EPS)
    c.recv_nothing()


def test_tlp_retransmits_the_last_segment_when_there_is_no_new_data():
    c = conn()
    segs = flight(c, 3)
    c.advance(2 * RTT + 0.002)
    c.recv(segs[2])
    counters = c.tcb.counters
    assert counters["tlp_probes"] == 1 and counters["retrans_tlp"] == 1
    assert c.tcb.info["tlp_is_retrans"]


def test_tlp_pto_with_one_segment_adds_the_delayed_ack_time_capped_by_the_rto():
    """One segment in flight: PTO = 2*SRTT + 2 ms + 200 ms (TLP.max_ack_delay) = 302 ms, more
    than the RTO (200 ms): the probe goes at the RTO's time instead of the RTO (§7.2)."""
    c = conn()
    segs = flight(c, 1)
    assert c.tcb.next_event() == pytest.approx(c.now + 0.2, abs=EPS)
    c.advance(0.2)
    c.recv(segs[0])
    counters = c.tcb.counters
    assert counters["tlp_probes"] == 1 and counters["rto_expirations"] == 0


def test_tlp_that_repaired_a_loss_reduces_cwnd():
    """Only the last segment was lost and the probe repaired it: the ACK of everything looks
    ordinary; the first ACK beyond TLP.end_seq without a D-SACK for the probe means a loss
    happened, and cwnd is reduced as for any loss (§7.4.2)."""
    c = conn()
    flight(c, 3)
    c.advance(2 * RTT + 0.002)
    c.recv(Seg(F.ACK, c.ours(2 * MSS), c.theirs(), payload=data(3 * MSS, 7)[2 * MSS:]))
    c.advance(RTT)
    sack(c, ack_segs=3)                         # ACK == TLP.end_seq: wait for a D-SACK
    assert c.tcb.info["tlp_active"] and c.tcb.counters["tlp_recoveries"] == 0
    msg = data(MSS, 8)
    c.tcb.send(msg, c.now)
    c.recv(Seg(F.ACK, c.ours(3 * MSS), c.theirs(), payload=msg))
    c.advance(RTT)
    sack(c, ack_segs=4)
    info = c.tcb.info
    assert not info["tlp_active"] and c.tcb.counters["tlp_recoveries"] == 1
    assert info["ssthresh"] == 2 * MSS and info["cwnd"] == 2 * MSS   # max(FlightSize/2, 2 SMSS)


def test_tlp_that_was_not_needed_leaves_cwnd():
    """The probe's D-SACK shows that the original arrived too (§7.4.2 case 1): no loss, no
    reduction."""
    c = conn()
    flight(c, 3)
    c.advance(2 * RTT + 0.002)
    c.recv(Seg(F.ACK, c.ours(2 * MSS), c.theirs(), payload=data(3 * MSS, 7)[2 * MSS:]))
    c.advance(RTT)
    o = c.ours
    c.send(F.ACK, c.theirs(), o(3 * MSS), sack_blocks=[(o(2 * MSS), o(3 * MSS))])
    info = c.tcb.info
    assert not info["tlp_active"] and info["ssthresh"] == U32_MAX
    cwnd = info["cwnd"]
    msg = data(MSS, 8)
    c.tcb.send(msg, c.now)
    c.recv(Seg(F.ACK, o(3 * MSS), c.theirs(), payload=msg))
    c.advance(RTT)
    sack(c, ack_segs=4)
    assert c.tcb.counters["tlp_recoveries"] == 0
    assert c.tcb.info["ssthresh"] == U32_MAX and c.tcb.info["cwnd"] >= cwnd


# =============================================================================================
# PRR (RFC 6937 §3): how much each ACK lets go during recovery
# =============================================================================================

def test_prr_ssrb_matches_the_burst_loss_example():
    """RFC 6937 §3.1, 15 of 20 segments lost, PRR-SSRB row: ssthresh 10, RecoverFS 20; the
    three ACKs in recovery find pipe 4, 5, 6 and each sends 2 retransmissions (RB "bd", "d",
    "d"). In segments (smss 1)."""
    p = Prr(20)
    pipe = 4
    for expected_pipe in (4, 5, 6):
        assert pipe == expected_pipe
        sndcnt = p.on_ack(1, pipe, 10, 1)
        assert sndcnt == 2
        p.on_send(sndcnt)
        pipe += sndcnt - 1                      # what was sent, less what the next ACK delivers
    assert (p.prr_delivered, p.prr_out, p.recover_fs) == (3, 6, 20)


def test_prr_single_loss_sends_one_segment_per_two_acks():
    """RFC 6937 §3.1, one loss of 20: while pipe > ssthresh, PRR sends CEIL(prr_delivered *
    ssthresh / RecoverFS) - prr_out: the retransmission on the first ACK, then one new segment
    on every second ACK ("R _ N _ N ..."), spreading the reduction over the round trip."""
    p = Prr(20)
    pipe = 18                                   # after the ACK that starts recovery
    sent = []
    for k in range(12):
        n = p.on_ack(1, pipe, 10, 1)
        p.on_send(n)
        sent.append(n)
        pipe += n - 1
        assert pipe > 10
    assert sent == [1, 0] * 6


def test_prr_ssrb_catches_up_to_ssthresh_without_bursting():
    """pipe <= ssthresh: sndcnt = MIN(ssthresh - pipe, MAX(prr_delivered - prr_out,
    DeliveredData) + MSS): at most what was delivered and one MSS more."""
    p = Prr(10000)
    assert p.on_ack(3000, 1000, 5000, 1000) == 4000        # DeliveredData + MSS
    assert p.on_ack(1000, 1000, 5000, 1000) == 4000        # banked: 4000 - 0 + MSS > 4000
    p.on_send(4000)
    assert p.on_ack(500, 4500, 5000, 1000) == 500          # ssthresh - pipe


# =============================================================================================
# F-RTO (RFC 5682 §3) and undo (RFC 3522/4015/3708)
# =============================================================================================

def test_frto_detects_a_spurious_timeout_and_undoes_it():
    """Ten segments out and four queued; the ACKs are late, not lost. The RTO retransmits only
    segment 1 (step 1); the first new ACK (of 2) lets two NEW segments go (2.b); the next ACK
    acknowledges segments sent before the timeout, none after it: spurious (3.b). cwnd and
    ssthresh come back."""
    c = conn()
    segs = flight(c, 10, queued=14)
    assert c.tcb.info["cwnd"] == 10 * MSS
    c.advance(0.2)                              # the PTO is capped by the RTO: a probe first
    c.recv(segs[10])
    c.advance(0.2)
    c.recv(segs[0])                             # the RTO, with F-RTO: segment 1 only
    info = c.tcb.info
    assert info["rto_recovery"] and info["frto"] == 1 and info["cwnd"] == MSS
    sack(c, ack_segs=2)
    c.recv(segs[11], segs[12])                  # two new segments, not retransmissions
    assert c.tcb.info["frto"] == 2
    sack(c, ack_segs=4)
    info = c.tcb.info
    counters = c.tcb.counters
    assert counters["spurious_rtos"] == 1 and counters["undo_events"] == 1
    assert not info["rto_recovery"] and info["cwnd"] >= 10 * MSS and info["ssthresh"] == U32_MAX
    assert counters["retrans_rto"] == 1


def test_frto_real_loss_falls_back_to_the_conventional_recovery():
    """The same, but the second ACK only SACKs the new segments (sent after the timeout):
    the loss was real (3.a): cwnd at most 3 MSS, and what RACK finds lost is retransmitted."""
    c = conn()
    segs = flight(c, 10, queued=14)
    c.advance(0.4)
    c.recv(segs[10])                            # the probe at the RTO's time
    c.advance(0.4)
    c.recv(segs[0])                             # the RTO (backed off to 400 ms)
    sack(c, ack_segs=1)                         # the retransmission of 1 arrived, 2.. did not
    c.recv(segs[11], segs[12])
    sack(c, (11, 13), ack_segs=1)
    info = c.tcb.info
    assert c.tcb.counters["spurious_rtos"] == 0 and info["frto"] == 0 and info["rto_recovery"]
    assert info["cwnd"] <= 3 * MSS and info["lost_out"] >= 9 * MSS
    assert info["cwnd"] == 3 * MSS and info["pipe"] == 0
    c.recv(segs[1], segs[2], segs[3])           # slow start from 3 MSS over what is lost
    assert c.tcb.counters["retrans_rto"] == 4


def test_dsack_undo_restores_cwnd_after_a_spurious_fast_retransmit():
    """Segment 2 was only late: after its fast retransmission the peer's ACKs cover everything
    and then report the retransmission as a duplicate (D-SACK). Every retransmission of the
    episode came back D-SACKed (RFC 3708 §3): the reduction is undone."""
    c = conn()
    flight(c, 6)
    c.advance(RTT)
    sack(c)
    sack(c, (2, 3))
    sack(c, (2, 4))
    sack(c, (2, 5))
    c.recv(Seg(F.ACK, c.ours(MSS), c.theirs(), payload=data(6 * MSS, 7)[MSS:2 * MSS]))
    assert c.tcb.counters["retrans_rack"] == 1
    info = c.tcb.info
    assert info["in_recovery"] and info["ssthresh"] < U32_MAX
    sack(c, ack_segs=6)
    o = c.ours
    c.send(F.ACK, c.theirs(), o(6 * MSS), sack_blocks=[(o(MSS), o(2 * MSS))])
    info = c.tcb.info
    counters = c.tcb.counters
    assert counters["dsack_in"] == 1 and counters["spurious_retrans"] == 1
    assert counters["undo_events"] == 1
    assert info["ssthresh"] == U32_MAX and info["cwnd"] >= 10 * MSS


def test_eifel_undo_with_timestamps():
    """With timestamps, the first ACK after a retransmission that echoes a timestamp older than
    the retransmission acknowledges the original (RFC 3522 §2): undone at once."""
    c = listening(sack=True, timestamps=True)
    c.send(F.SYN, c.irs, mss=MSS, sack_permitted=True, timestamps=(1000, 0))
    (synack,) = c.transmit()
    ours0 = synack.tcp.timestamps[0]
    c.advance(RTT)
    c.send(F.ACK, c.theirs(), c.ours(), timestamps=(1050, ours0))
    msg = data(6 * (MSS - 12), 3)
    c.tcb.send(msg, c.now)
    out = c.transmit()
    assert len(out) == 6
    ts_orig = out[0].tcp.timestamps[0]
    smss = MSS - 12
    o = c.ours
    c.advance(RTT)
    for k in (2, 3, 4):
        c.send(F.ACK, c.theirs(), o(smss), sack_blocks=[(o(2 * smss), o(k * smss + smss))],
               timestamps=(1100, ts_orig))
    (rexmit,) = c.transmit()
    assert rexmit.tcp.seq == o(smss) and c.tcb.info["in_recovery"]
    c.advance(0.002)
    c.send(F.ACK, c.theirs(), o(6 * smss), timestamps=(1102, ts_orig))   # echoes the original
    counters = c.tcb.counters
    assert counters["undo_events"] == 1 and not c.tcb.info["in_recovery"]
    assert c.tcb.info["ssthresh"] == U32_MAX


# =============================================================================================
# D-SACK from the receiver (RFC 2883 §4)
# =============================================================================================

def test_dsack_for_a_duplicate_below_the_cumulative_ack():
    """RFC 2883 §4.1.1: a segment received twice; the ACK for the copy names it in a D-SACK
    block (the first block, below the ACK)."""
    c = conn()
    t = c.theirs
    c.send(F.ACK, t(0), c.ours(), b"a" * 500)
    c.send(F.ACK, t(500), c.ours(), b"b" * 500)
    c.recv(Seg(F.ACK, c.ours(), t(1000), window=RCVBUF - 1000))
    c.send(F.ACK, t(500), c.ours(), b"b" * 500)
    c.recv(Seg(F.ACK, c.ours(), t(1000), window=RCVBUF - 1000, sack_blocks=((t(500), t(1000)),)))
    assert c.tcb.counters["dsack_out"] == 1
    c.send(F.ACK, t(1000), c.ours(), b"c" * 500)
    c.advance(0.04)
    c.recv(Seg(F.ACK, c.ours(), t(1500), window=RCVBUF - 1500))   # reported once only


def test_dsack_for_a_partly_duplicate_segment():
    """RFC 2883 §4.1.2: [500, 1500) arrives when [0, 1000) is held: the D-SACK names the
    duplicate part [500, 1000), and the ACK covers 1500."""
    c = conn()
    t = c.theirs
    c.send(F.ACK, t(0), c.ours(), b"a" * 1000)
    c.advance(0.04)
    c.recv(Seg(F.ACK, c.ours(), t(1000), window=RCVBUF - 1000))
    c.send(F.ACK, t(500), c.ours(), b"a" * 500 + b"b" * 500)
    c.recv(Seg(F.ACK, c.ours(), t(1500), window=RCVBUF - 1500, sack_blocks=((t(500), t(1000)),)))


def test_dsack_for_a_duplicate_of_out_of_order_data():
    """RFC 2883 §4.1.3: a duplicate of data held beyond a hole: the D-SACK block first, then
    the SACK block that holds it."""
    c = conn()
    t = c.theirs
    c.send(F.ACK, t(0), c.ours(), b"a" * 500)
    c.send(F.ACK, t(1000), c.ours(), b"c" * 500)
    c.recv(Seg(F.ACK, c.ours(), t(500), window=RCVBUF - 500, sack_blocks=((t(1000), t(1500)),)))
    c.send(F.ACK, t(1000), c.ours(), b"c" * 500)
    c.recv(Seg(F.ACK, c.ours(), t(500), window=RCVBUF - 500,
               sack_blocks=((t(1000), t(1500)), (t(1000), t(1500)))))
    assert c.tcb.counters["dsack_out"] == 1


def test_each_out_of_order_segment_asks_for_its_own_ack():
    """Every out-of-order segment is answered by an ACK with the blocks as they are then (RFC 2018
    §4): the connection raises ack_flush so that its caller sends that ACK before handing over
    the next segment."""
    c = conn()
    t = c.theirs
    c.send(F.ACK, t(1000), c.ours(), b"c" * 500)
    assert c.tcb.ack_flush
    c.recv(Seg(F.ACK, c.ours(), t(0), sack_blocks=((t(1000), t(1500)),)))
    assert not c.tcb.ack_flush
    c.send(F.ACK, t(2000), c.ours(), b"e" * 500)
    c.recv(Seg(F.ACK, c.ours(), t(0), sack_blocks=((t(2000), t(2500)), (t(1000), t(1500)))))


def test_after_a_filled_hole_the_next_segments_are_acked_at_once():
    """Quick-ACK after loss (as Linux's TCP_MAX_QUICKACKS): once a hole was filled, the next
    16 in-order segments are each ACKed at once, so that the sender's tail loss probe or last
    retransmission does not wait out the delayed-ACK timer; then ACKs are delayed again."""
    c = conn()
    t = c.theirs
    c.send(F.ACK, t(100), c.ours(), b"b" * 100)                       # a hole at 0
    c.recv(Seg(F.ACK, c.ours(), t(0), sack_blocks=((t(100), t(200)),)))
    c.send(F.ACK, t(0), c.ours(), b"a" * 100)                         # filled
    c.recv(Seg(F.ACK, c.ours(), t(200), window=RCVBUF - 200))
    got = 200
    for k in range(16):
        c.send(F.ACK, t(got), c.ours(), b"c" * 10)
        got += 10
        c.recv(Seg(F.ACK, c.ours(), t(got), window=RCVBUF - got))   # at once, not in 40 ms
    c.send(F.ACK, t(got), c.ours(), b"d" * 10)
    c.recv_nothing()                                                 # delayed again
    c.advance(0.04)
    c.recv(Seg(F.ACK, c.ours(), t(got + 10), window=RCVBUF - got - 10))


# =============================================================================================
# The simulated pair: what the rules add up to (virtual time; every byte checked)
# =============================================================================================

KEYS = ("retransmits", "rto_expirations", "retrans_rack", "retrans_tlp", "tlp_probes",
        "dsack_in", "spurious_retrans", "undo_events")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_percent_loss_on_a_40ms_path_needs_almost_no_rto(seed):
    """1 % random loss each way, 40 ms round trip, 20 MB each way: RTO events are at most 2 % of
    the segments lost (the rest is repaired by RACK and TLP), and every byte arrives."""
    p = SimPair(delay=0.020, loss=0.01, seed=seed)
    r = p.run(20_000_000, 20_000_000, sha256=True)
    assert r["result"] == "done"
    for d in ("a_to_b", "b_to_a"):
        assert r[d]["read"] == 20_000_000 and r[d]["mismatches"] == 0
    lost = r["link"]["lost"]
    assert lost > 200
    rtos = r["a"]["rto_expirations"] + r["b"]["rto_expirations"]
    assert rtos <= 0.02 * lost, ({k: r["a"][k] for k in KEYS}, lost)
    assert r["a"]["retrans_rack"] > 0 and r["b"]["retrans_rack"] > 0


@pytest.mark.parametrize("delay,seed", [(0.0005, 3), (0.0005, 4), (0.020, 5)])
def test_reordering_costs_almost_no_spurious_retransmission_after_the_first_dsack(delay, seed):
    """25 % of packets (each way) held back by an extra one-way delay, no loss: once the first
    D-SACK has arrived, at most 1 retransmission (all are spurious here) per 1,000 segments."""
    p = SimPair(delay=delay, reorder=0.25, seed=seed)
    sent = 0
    while p.a.counters["dsack_in"] == 0:
        r = p.run(100_000, 0, shutdown=False)
        sent += 100_000
        assert sent < 20_000_000, "no D-SACK ever came back"
    before = p.a.counters["retransmits"]
    r = p.run(20_000_000, 0, shutdown=False, sha256=True)
    assert r["result"] == "done" and r["a_to_b"]["mismatches"] == 0
    assert r["link"]["lost"] == 0
    segments = 20_000_000 / MSS
    spurious = p.a.counters["retransmits"] - before
    assert spurious <= segments / 1000, {k: p.a.counters[k] for k in KEYS}
    assert p.b.counters["ooo_dropped"] == 0


def test_no_loss_means_no_retransmission():
    p = SimPair(delay=0.005, seed=9)
    r = p.run(10_000_000, 10_000_000)
    assert r["result"] == "done"
    for end in ("a", "b"):
        assert r[end]["retransmits"] == 0 and r[end]["tlp_probes"] == 0, r[end]


# =============================================================================================
# The transmit records (_rack)
# =============================================================================================

def test_records_cover_what_was_sent_in_segments():
    q = TxQueue(1000)
    assert q.sent(1000, 4000, now=10, smss=1000) == 0
    assert [(a, b) for a, b, _, _ in q.records] == [(1000, 2000), (2000, 3000), (3000, 4000)]
    assert q.pipe(4000) == 3000
    q.sent(1500, 2500, now=20, retrans=True)   # a retransmission cuts records at its edges
    recs = q.records
    assert [(a, b, t) for a, b, t, _ in recs] == [(1000, 1500, 10), (1500, 2000, 20),
                                                  (2000, 2500, 20), (2500, 3000, 10),
                                                  (3000, 4000, 10)]
    assert recs[1][3] == {"retransmitted", "rxt_out"} and recs[0][3] == frozenset()
    assert q.counts["retrans_out"] == 1000


def test_records_sack_loss_and_pipe_counts():
    q = TxQueue(0)
    q.sent(0, 5000, now=100, smss=1000)
    q.rtt_sample(50, now=100)
    assert q.cum_ack(1000, now=150) == 0
    assert q.sack(2000, 4000, now=150) == 2000
    assert q.counts["sacked_out"] == 2000 and q.counts["sacked_segs"] == 2
    assert q.pipe(5000) == 2000
    q.update_reo_wnd(False, False, 5000, 50)
    assert q.rack["reo_wnd"] == 12                  # min_RTT / 4
    assert q.detect_loss(now=150) == (12, 0)        # [1000, 2000) waits for the window
    assert q.detect_loss(now=162) == (0, 1)
    assert q.next_lost(1000) == (1000, 2000)
    assert q.counts["lost_out"] == 1000 and q.pipe(5000) == 1000
    q.sent(1000, 2000, now=170, retrans=True)
    assert q.counts["lost_out"] == 0 and q.next_lost(1000) is None and q.pipe(5000) == 2000
    assert q.cum_ack(4000, now=220) == 2000          # the SACKed part leaves with the ACK
    assert q.counts == dict(sacked_out=0, lost_out=0, retrans_out=0, sacked_segs=0, records=1)


def test_records_are_bounded():
    from tcpfast._rack import TXQ_CAPACITY
    q = TxQueue(0)
    assert q.sent(0, TXQ_CAPACITY, now=1, smss=1) == 0
    assert q.sent(TXQ_CAPACITY, TXQ_CAPACITY + 1, now=1, smss=1) == -1
    assert q.counts["records"] == TXQ_CAPACITY
