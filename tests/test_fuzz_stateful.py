"""Stateful fuzzing of the connection state machine: a quick seeded run, the harness's own checks,
and one regression test per bug the fuzzer found.

The fuzzer is ``tcpfast.testing.fuzz_tcb`` (what it generates and the invariants it checks after
every step are in its docstring); ``fuzz/stateful.py`` is its command line. ``test_fuzz_quick``
runs by default (about 60,000 steps, a few seconds); ``test_fuzz_ten_million`` is marked
``fuzz_long`` (10,000,000 steps, tens of minutes): ``pytest -m fuzz_long tests/test_fuzz_stateful.py``.
``TCPFAST_FUZZ_SEED`` picks another seed.

Bugs found in ``_tcb`` that are not fixed yet go in ``fuzz_tcb.KNOWN_BUGS`` (the fuzzer counts
them instead of failing) with a strict-xfail regression test here; fixed ones keep their
regression test, which then passes (the six found so far are fixed).
"""
from __future__ import annotations

import os

import pytest

from tcpfast.testing import fuzz_tcb as fz
from tcpfast.testing.fuzz_tcb import (ACK, CLOSED, FIN, PSH, SYN, Config, Harness, InvariantError,
                                      replay)

SEED = int(os.environ.get("TCPFAST_FUZZ_SEED", "20240614"))


def _assert_clean(res: fz.Result) -> None:
    print(res.summary())
    if res.findings:
        pytest.fail("\n\n".join(f"FAILED: {f.error}\n{fz.format_repro(f)}" for f in res.findings),
                    pytrace=False)


def _assert_reach(res: fz.Result, steps: int) -> None:
    """The run went where it should: every state as a start and seen, the transitions of the
    RFC's diagram, and the TCB's own counters of the paths worth reaching."""
    st = res.stats
    assert st.steps >= steps
    for name in fz.STATE_NAMES:
        assert st.states_started.get(name, 0) > 0, f"no episode started in {name}"
        assert st.states_seen.get(name, 0) > 0, f"no step ended in {name}"
    diagram = {("LISTEN", "SYN-RECEIVED"), ("SYN-SENT", "ESTABLISHED"), ("SYN-SENT", "SYN-RECEIVED"),
               ("SYN-RECEIVED", "ESTABLISHED"), ("ESTABLISHED", "FIN-WAIT-1"),
               ("ESTABLISHED", "CLOSE-WAIT"), ("FIN-WAIT-1", "FIN-WAIT-2"), ("FIN-WAIT-1", "CLOSING"),
               ("FIN-WAIT-2", "TIME-WAIT"), ("CLOSING", "TIME-WAIT"), ("CLOSE-WAIT", "LAST-ACK"),
               ("LAST-ACK", "CLOSED"), ("TIME-WAIT", "CLOSED"), ("ESTABLISHED", "CLOSED")}
    missing = diagram - set(st.transitions)
    assert not missing, f"transitions never taken: {sorted(missing)}"
    for counter in ("challenge_acks", "paws_rejected", "out_of_window", "dsack_out", "dsack_in",
                    "ooo_segments", "zero_window_probes", "keepalive_probes", "rto_expirations",
                    "retrans_rto", "rst_in", "window_updates", "delayed_acks"):
        assert st.counters.get(counter, 0) > 0, f"the run never made the TCB count {counter}"


# =============================================================================================
# The runs
# =============================================================================================

def test_fuzz_quick():
    steps = 60_000
    res = fz.run(SEED, steps, minimize_budget=20)
    _assert_clean(res)
    _assert_reach(res, steps)


@pytest.mark.fuzz_long
def test_fuzz_ten_million():
    steps = 10_000_000
    res = fz.run(SEED + 1, steps, minimize_budget=60, progress_every=60,
                 progress=lambda s: print(f"{s.steps} steps", flush=True))
    _assert_clean(res)
    _assert_reach(res, steps)


def test_runs_are_reproducible():
    a = fz.run(SEED, 3000, minimize_budget=0)
    b = fz.run(SEED, 3000, minimize_budget=0)
    assert (a.stats.steps, a.stats.episodes, a.stats.segments_out, a.stats.transitions,
            a.stats.counters) == (b.stats.steps, b.stats.episodes, b.stats.segments_out,
                                  b.stats.transitions, b.stats.counters)


def test_bytes_drive_the_generator():
    """The coverage-guided mode: every choice comes from the input; the same input, the same
    episode; running out of input ends it quietly."""
    data = bytes(range(256)) * 40
    a = fz.run_bytes(data)
    b = fz.run_bytes(data)
    assert a.steps == b.steps > 10
    assert fz.run_bytes(b"").steps == 0


# =============================================================================================
# The harness itself
# =============================================================================================

@pytest.mark.parametrize("start", fz.STATE_NAMES)
@pytest.mark.parametrize("active", [False, True], ids=["passive", "active"])
@pytest.mark.parametrize("iss,irs", [(1_000_000, 5_000_000), (0xFFFFFFF0, 0xFFFFFFF8)],
                         ids=["iss", "wrap"])
@pytest.mark.parametrize("extensions", [False, True], ids=["plain", "ws-ts-sack"])
def test_setup_reaches_every_state(start, active, iss, irs, extensions):
    opts = dict(window_scaling=extensions, timestamps=extensions, sack=extensions)
    cfg = Config(iss=iss, irs=irs, start=start, active=active, options=tuple(sorted(opts.items())),
                 peer_wscale=7 if extensions else None, peer_sack=extensions, peer_ts=extensions)
    h = Harness(cfg)
    for a in fz.setup_actions(cfg):
        h.apply(fz._fill_tsecr(a, h))
    assert h.state == start
    assert h.info["error"] == 0


def test_transition_tables_follow_the_rfc_diagram():
    seg = fz.SEGMENT_TRANSITIONS
    assert seg[CLOSED] == frozenset()                     # §3.10.7.1: a reset, never a state
    assert seg["LISTEN"] == {"SYN-RECEIVED"}              # §3.10.7.2
    assert seg["TIME-WAIT"] == {"CLOSED"}
    assert "CLOSED" not in fz.TIMER_TRANSITIONS["LISTEN"]
    for a, tos in seg.items():
        assert a not in tos and tos <= set(fz.STATE_NAMES)
    # Nothing but an OPEN leaves CLOSED.
    leave_closed = {k for k, t in fz.USER_TRANSITIONS.items() if CLOSED in t}
    assert leave_closed == {"connect", "listen"}


def test_the_checks_see_a_wrong_byte(monkeypatch):
    """The delivered-stream invariant fires when what recv() returns is not the peer's stream
    at that place (here: the harness is told the peer's stream changed after it was sent)."""
    cfg = Config(start="ESTABLISHED", options=(("sack", False), ("timestamps", False),
                                               ("window_scaling", False)))
    h = Harness(cfg)
    for a in fz.setup_actions(cfg):
        h.apply(a)
    h.apply(("seg", ACK | PSH, cfg.irs + 1, cfg.iss + 1, 60000, 100, ()))
    monkeypatch.setattr(fz, "PEER_SEED", fz.PEER_SEED + 1)
    with pytest.raises(InvariantError) as e:
        h.apply(("recv", 100, False))
    assert e.value.name == "delivered"


def test_the_checks_see_an_out_of_window_reset_that_resets():
    """A reset that RFC 5961 says to ignore must leave the state alone: the check fires when
    the table says it should (checked on the harness's own bookkeeping, with a made-up step)."""
    cfg = Config(start="ESTABLISHED")
    h = Harness(cfg)
    before = dict(h.info, state="ESTABLISHED", rcv_nxt=100, error=0)
    mid = dict(before, state="CLOSED", error=104)
    with pytest.raises(InvariantError) as e:
        h._check_segment_effects(("seg", fz.RST, 5000, 0, 0, 0, ()), before, mid)
    assert e.value.name == "rst_5961"


def test_minimize_keeps_the_failure_and_drops_the_rest(monkeypatch):
    """Shrinking a failing episode (padded with steps that do not matter) keeps only what it
    needs. The failure is planted: an invariant that rejects any delivered byte (the real bugs
    this used to shrink are fixed)."""
    def planted(self, got, before):
        if got:
            fz._fail("delivered", "planted: no byte may be delivered")

    monkeypatch.setattr(fz.Harness, "_check_delivered", planted)
    cfg = _synack_cfg(rcvbuf=65536)
    acts = [("connect",), ("clock", 10), ("clock", 1000), ("recv", 7, False),
            ("seg", SYN | ACK, 5000, 1001, 60000, 1400, ()), ("clock", 5), ("recv", 65536, False)]
    with pytest.raises(InvariantError) as e:
        replay(cfg, acts)
    assert e.value.name == "delivered"
    small = fz.minimize(cfg, acts, e.value.name, budget=10)
    assert len(small) < len(acts) and ("connect",) in small
    with pytest.raises(InvariantError):
        replay(cfg, small)


# =============================================================================================
# Regression tests: one per bug the fuzzer found (all fixed in _tcb)
# =============================================================================================

def test_every_known_bug_has_a_regression_test():
    src = open(__file__).read()
    for name in fz.KNOWN_BUGS:
        assert f"KNOWN_BUGS[{name!r}]" in src, f"no regression test names {name}"


def _synack_cfg(**kw) -> Config:
    opts = dict(rcvbuf=100, sack=False, timestamps=False, window_scaling=False)
    opts.update(kw)
    return Config(iss=1000, irs=5000, start=CLOSED, options=tuple(sorted(opts.items())))


def test_syn_ack_text_is_trimmed_to_the_window_we_offered():
    """KNOWN_BUGS['synack_data_beyond_window'], found by the fuzzer (seed 4, episode 1188).

    RFC 9293 §3.10.7.3: a SYN,ACK's text is processed "at the sixth step" of §3.10.7.4, where
    segments are trimmed to the window (first step: "only the new parts are processed", "segments
    ... beyond the window" are not). Our SYN offered RCV.WND = min(RCVBUF, 65535) = 100 octets;
    the peer's SYN,ACK carries 1400. Only the first 100 may be kept and acknowledged, and recv()
    must return exactly those (today: RCV.NXT moves by 1400, the ring holds "1400" bytes in a
    100-byte allocation, recv() returns 1400 bytes of heap)."""
    cfg = _synack_cfg()
    t = fz.Tcb(cfg.local, cfg.remote, iss=cfg.iss, secret=cfg.secret, **cfg.opts)
    t.connect(100.0)
    t.transmit(100.0)
    peer = fz.seq_bytes(fz.PEER_SEED, 5001, 1400)
    t.receive(fz.build_segment(cfg, SYN | ACK, 5000, 1001, 60000, peer), 100.0)
    info = t.info
    assert info["state"] == "ESTABLISHED"
    assert info["recv_queue"] <= info["rcvbuf_cap"]
    assert info["rcv_nxt"] == 5001 + 100
    assert t.recv(65536) == peer[:100]
    # And through the harness: every invariant after every step.
    replay(cfg, [("connect",), ("seg", SYN | ACK, 5000, 1001, 60000, 1400, ()),
                 ("recv", 65536, False)])


def test_retransmitted_syn_ack_does_not_shrink_the_window():
    """KNOWN_BUGS['synack_shrinks_window'], found by the fuzzer (seed 2, episode 788).

    SYN-RECEIVED with window scaling (our shift 1, RCVBUF 65536). An unacceptable segment is
    answered with an ACK offering 32768 << 1 = 65536 octets; then the SYN,ACK is retransmitted
    with its unscaled window 65535 (RFC 7323 §2.2) and poll_transmit sets RCV.ADV = RCV.NXT +
    65535: the right edge moves one octet left, and the next ACK offers less than before.
    RFC 9293 §3.8.6.2.2: the receiver SHOULD NOT shrink the window (RFC 7323 §2.4: keep the edge
    rather than retract it)."""
    cfg = Config(family=4, iss=3651288345, irs=1731489178, start="LISTEN",
                 options=(("mss", 88), ("rcvbuf", 65536), ("rto_initial", 0.05),
                          ("rto_min", 0.001), ("sack", True), ("syn_retries", 3),
                          ("timestamps", True), ("window_scaling", True)),
                 peer_mss=536, peer_wscale=15, peer_win=65535)
    replay(cfg, [
        ("listen",),
        ("seg", SYN, 1731489178, 0, 65535, 0, (("mss", 536), ("nop",), ("ws", 15))),
        ("seg", ACK, 1731489178, 3651288346, 20507, 0, ()),     # old: answered with an ACK
        ("clock", 50000),                                        # the SYN,ACK again
        ("seg", ACK | PSH | FIN, 1731489179, 3651288346, 65535, 10, ()),
    ])


def test_newreno_retransmission_stays_within_what_was_sent():
    """KNOWN_BUGS['newreno_rexmit_past_snd_max'], found by the fuzzer (seed 2, episode 1009).

    No SACK; the peer offers a window of 1 octet, so one octet of the 283 queued is in flight.
    Three duplicate ACKs start fast retransmit (RFC 5681 §3.2 step 2, "retransmit the lost
    segment"): the lost segment is that one octet. _emit_data's rexmit_head branch sends
    min(SMSS, queued) = 88 octets from SND.UNA instead: 87 of them new data beyond SND.UNA +
    SND.WND (RFC 9293 §3.8.6.2.1: never beyond the right edge), and neither SND.NXT nor SND.MAX
    counts them, so the peer's ACK of them would be taken for an ACK of unsent data."""
    cfg = Config(family=4, iss=3409680790, irs=1894681582, start="SYN-SENT", active=True,
                 options=(("cc", "newreno"), ("mss", 696), ("rcvbuf", 4096), ("sack", False),
                          ("timestamps", False), ("window_scaling", True)),
                 peer_mss=1, peer_win=1)
    replay(cfg, [
        ("connect",),
        ("seg", SYN | ACK, 1894681582, 3409680791, 1, 0, (("mss", 1),)),
        ("send", 283),
        ("seg", ACK, 1894681583, 3409680791, 1, 0, ()),
        ("seg", ACK, 1894681583, 3409680791, 1, 0, ()),
        ("seg", ACK, 1894681583, 3409680791, 1, 0, ()),
        ("seg", ACK, 1894681583, 3409680791, 1, 0, ()),
    ])


def test_no_window_probe_after_our_fin_is_acknowledged():
    """KNOWN_BUGS['probe_after_fin'], found by the fuzzer (seed 11, episode 10663 of the long run).

    One byte and our FIN are in flight when the peer closes its window (ACK of nothing, window
    0). The RTO rewinds SND.NXT; with the window closed nothing goes, and the persist timer is
    armed (§3.8.6.1). The peer then acknowledges the byte and the FIN, still with window 0:
    FIN-WAIT-2, nothing left to send. The persist timer is not disarmed; when it fires,
    _emit_probe computes unsent = (BUF.SEQ + queued) - SND.NXT = 1002 - 1003, which wraps to
    2**32 - 1, and sends one octet at SND.NXT = 1003, after our FIN, read from beyond the send
    ring's data. RFC 9293 §3.10.4/§3.10.7.4: nothing follows the FIN; FIN-WAIT-2 sends no data."""
    cfg = Config(iss=1000, irs=5000, start="ESTABLISHED",
                 options=(("sack", False), ("timestamps", False), ("window_scaling", False)))
    replay(cfg, fz.setup_actions(cfg) + [
        ("send", 1),
        ("shutdown",),                                       # FIN at 1002
        ("seg", ACK, 5001, 1001, 0, 0, ()),                  # the window closes
        ("clock", 1_100_000),                                # RTO: SND.NXT back to SND.UNA
        ("seg", ACK, 5001, 1003, 0, 0, ()),                  # byte and FIN acked: FIN-WAIT-2
        ("clock", 5_000_000),                                # the persist timer fires
    ])


def test_syn_rst_ack_in_syn_received_is_dropped():
    """KNOWN_BUGS['syn_rst_in_syn_received'], found by the fuzzer (seed 12, the 10-million-step
    run: 20 times, in passive and active opens, IPv4 and IPv6).

    SYN-RECEIVED after LISTEN and the peer's SYN at IRS. A segment <SEQ=IRS><ACK=ISS+1>
    <CTL=SYN,RST,ACK> arrives. It is not acceptable (SEG.SEQ < RCV.NXT); RFC 9293 §3.10.7.4 first
    step: "If an incoming segment is not acceptable, an acknowledgment should be sent in reply
    (unless the RST bit is set, if so drop the segment and return)". _sync_input instead takes
    it, before looking at RST, for a simultaneous open's SYN,ACK and enters ESTABLISHED (with a
    queued CLOSE, FIN-WAIT-1). A reset must never synchronize a connection."""
    cfg = Config(iss=1000, irs=5000, start="SYN-RECEIVED",
                 options=(("sack", False), ("timestamps", False), ("window_scaling", False)))
    h = replay(cfg, fz.setup_actions(cfg) + [("seg", SYN | fz.RST | ACK, 5000, 1001, 60000, 0, ())])
    assert h.state == "SYN-RECEIVED"


def test_closed_connection_asks_for_no_more_calls():
    """KNOWN_BUGS['closed_with_rexmit_pending'], found by the fuzzer (seed 13, episode 125374 of
    the 10-million-step run).

    Without SACK, three duplicate ACKs start NewReno fast retransmit (rexmit_head = 1); the
    application closes (FIN-WAIT-1, orphan) and data arrives: "data after close" aborts, RST,
    CLOSED. _enter_closed clears syn_pending, probe_pending, keepalive_pending, tlp_pending and
    ack_now but not rexmit_head, so poll_at() returns 1 ("call poll_transmit now") for ever
    while poll_transmit has nothing to send in CLOSED. The engine unlinks CLOSED connections, so
    today it does not spin on it; poll_at's contract ("never asks for a call that would send
    nothing") is broken all the same."""
    cfg = Config(family=4, iss=0, irs=4294967294, start="SYN-SENT", active=True,
                 options=(("cc", "newreno"), ("mss", 1220), ("rto_initial", 0.2),
                          ("rto_min", 0.2), ("sack", True), ("sndbuf", 1048576),
                          ("timestamps", False), ("window_scaling", False)),
                 peer_mss=65535, peer_wscale=2, peer_ts=True, peer_win=65535)
    ts = (("ts", 7100000, 0),)
    replay(cfg, [
        ("connect",),
        ("send", 10000),
        ("send", 10000),
        ("seg", SYN | ACK, 4294967294, 1, 65535, 0, (("mss", 65535), ("nop",), ("ws", 2)) + ts),
        ("seg", ACK, 4294967295, 12201, 65535, 0, ts),
        ("seg", ACK, 4294967295, 12201, 65535, 0, ts),
        ("close",),
        ("seg", ACK, 4294967295, 12201, 65535, 0, ts),
        ("seg", ACK, 4294967295, 12201, 65535, 0, ts),
        ("seg", ACK | PSH, 4294967295, 13421, 0, 1, ts),
    ])
