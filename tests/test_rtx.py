"""Retransmission timing (RFC 6298) of tcpfast._rtx, and the SACK scoreboard (RFC 6675) kept as a
reference in tcpfast.testing.

RTT numbers are worked by hand from RFC 6298 §2 (microseconds). Scoreboard cases are worked
examples in segments of 1000 bytes, each run at several bases, some straddling the 2**32 wrap;
then hypothesis compares IsLost / SetPipe / NextSeg with a per-octet reference written from the
RFC 6675 §4 text in its own inclusive terms (HighACK, HighData, HighRxt, RescueRxt name last
bytes), which checks the module's one-past translation as well as its arithmetic.
"""
import pytest

from tcpfast._ranges import MAX as RANGES_MAX
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpfast._rtx import DUP_THRESH, RTO_INITIAL, RTO_MAX, RTO_MIN, RTT_GRANULARITY, RttEstimator
from tcpfast.testing import Scoreboard

M = 1 << 32
TOP = M - 1
MS = 1000


# =============================================================================================
# RFC 6298
# =============================================================================================

def test_constants():
    assert RTO_INITIAL == 1000 * MS          # §2.1
    assert RTO_MIN == 200 * MS               # Linux TCP_RTO_MIN
    assert RTO_MAX == 120000 * MS            # Linux TCP_RTO_MAX; §2.5 wants >= 60 s
    assert RTT_GRANULARITY == 1 * MS
    assert DUP_THRESH == 3


def test_initial_rto_is_one_second():
    e = RttEstimator()
    assert not e.has_sample
    assert e.rto == e.current_rto() == 1000 * MS
    assert (e.rto_min, e.rto_max) == (RTO_MIN, RTO_MAX)
    assert e.backoff_count == 0


def test_backoff_applies_before_any_sample():
    # §2.1: "the 'backing off' on repeated retransmission discussed in (5.5) still applies".
    e = RttEstimator()
    e.backoff()
    assert e.current_rto() == 2000 * MS
    e.backoff()
    assert e.current_rto() == 4000 * MS
    assert e.rto == 1000 * MS                # the estimate itself is untouched


def test_first_sample():
    # §2.2: SRTT = R = 100 ms, RTTVAR = R/2 = 50 ms, RTO = 100 + max(1, 4 * 50) = 300 ms
    # (above the 200 ms floor).
    e = RttEstimator()
    e.sample(100 * MS)
    assert e.has_sample
    assert (e.srtt, e.rttvar, e.rto) == (100000, 50000, 300000)
    assert e.current_rto() == 300000


def test_later_samples_by_hand():
    e = RttEstimator()
    e.sample(100000)
    # §2.3 with R' = 200 ms, RTTVAR first with the old SRTT:
    #   RTTVAR = 3/4 * 50000 + 1/4 * |100000 - 200000| = 37500 + 25000 = 62500
    #   SRTT   = 7/8 * 100000 + 1/8 * 200000           = 87500 + 25000 = 112500
    #   RTO    = 112500 + 4 * 62500                     = 362500
    # (updating SRTT first would give RTTVAR = 37500 + 87500/4 = 59375.)
    e.sample(200000)
    assert (e.srtt, e.rttvar, e.rto) == (112500, 62500, 362500)
    # R' = 50 ms:
    #   RTTVAR = 3/4 * 62500 + 1/4 * |112500 - 50000| = 46875 + 15625 = 62500
    #   SRTT   = (7 * 112500 + 50000) / 8 = 837500 / 8 = 104687.5 -> 104687 (truncated)
    #   RTO    = 104687 + 250000 = 354687
    e.sample(50000)
    assert (e.srtt, e.rttvar, e.rto) == (104687, 62500, 354687)
    # R' = 104687 (= SRTT): RTTVAR = 3/4 * 62500 + 0 = 46875; SRTT unchanged; RTO = 104687 + 187500
    e.sample(104687)
    assert (e.srtt, e.rttvar, e.rto) == (104687, 46875, 292187)


def test_granularity_floor_on_the_variance_term():
    # §4: when K*RTTVAR falls below G, RTO = SRTT + G. No lower bound here to see it.
    e = RttEstimator(rto_min=0)
    e.sample(1000)                               # SRTT 1000, RTTVAR 500, RTO 1000 + 2000
    assert (e.srtt, e.rttvar, e.rto) == (1000, 500, 3000)
    e.sample(1000)                               # RTTVAR 375: 1000 + 1500
    assert (e.rttvar, e.rto) == (375, 2500)
    e.sample(1000)                               # RTTVAR 281: 1000 + 1124
    assert (e.rttvar, e.rto) == (281, 2124)
    e.sample(1000)                               # RTTVAR 210: 4 * 210 = 840 < G
    assert (e.rttvar, e.rto) == (210, 2000)
    for _ in range(40):
        e.sample(1000)
    assert (e.srtt, e.rttvar, e.rto) == (1000, 0, 2000)


def test_rto_min_clamp():
    e = RttEstimator()
    e.sample(10 * MS)                            # 10 + 4 * 5 = 30 ms < 200 ms
    assert (e.srtt, e.rttvar) == (10000, 5000)
    assert e.rto == 200 * MS


def test_rto_max_clamp():
    e = RttEstimator()
    e.sample(100000 * MS)                        # 100 s + 4 * 50 s = 300 s > 120 s
    assert e.rto == 120000 * MS


def test_zero_sample():
    e = RttEstimator(rto_min=0)
    e.sample(0)
    assert (e.srtt, e.rttvar, e.rto) == (0, 0, RTT_GRANULARITY)


def test_huge_samples_do_not_overflow():
    e = RttEstimator(rto_min=0, rto_max=TOP)
    e.sample(TOP)
    assert (e.srtt, e.rttvar) == (TOP, TOP // 2)
    assert e.rto == TOP                          # TOP + 4 * (TOP // 2) clamped, not wrapped
    e.sample(0)
    #   RTTVAR = (3 * 2147483647 + 4294967295) // 4 = 2684354559
    #   SRTT   = (7 * 4294967295) // 8              = 3758096383
    assert (e.rttvar, e.srtt) == (2684354559, 3758096383)
    assert e.rto == TOP


def test_init_keeps_the_initial_rto_within_bounds():
    assert RttEstimator(rto_initial=50 * MS).rto == RTO_MIN
    assert RttEstimator(rto_initial=500000 * MS).rto == RTO_MAX
    assert RttEstimator(rto_initial=3000 * MS).rto == 3000 * MS


def test_backoff_doubles_to_the_cap_and_reset_collapses_it():
    e = RttEstimator()
    e.sample(100 * MS)                           # RTO 300 ms
    seen = [e.current_rto()]
    for _ in range(12):
        e.backoff()
        seen.append(e.current_rto())
    assert seen == [300000, 600000, 1200000, 2400000, 4800000, 9600000, 19200000, 38400000,
                    76800000, 120000000, 120000000, 120000000, 120000000]
    assert e.backoff_count == 12
    assert (e.srtt, e.rttvar, e.rto) == (100000, 50000, 300000)   # Karn: estimate untouched
    e.reset_backoff()
    assert e.backoff_count == 0 and e.current_rto() == 300000


def test_backoff_count_saturates_and_never_overflows():
    e = RttEstimator()
    for _ in range(300):
        e.backoff()
    assert e.backoff_count == 255
    assert e.current_rto() == RTO_MAX


@pytest.mark.parametrize("rto", [1, 3, 1000, 0x7FFFFFFF, TOP])
def test_shift_is_done_wide(rto):
    # With a cap of 2**32 - 1, rto << k for k near 32 would wrap in 32 bits.
    e = RttEstimator(rto_initial=rto, rto_min=0, rto_max=TOP)
    for k in range(64):
        assert e.current_rto() == min(rto << k, TOP), k
        e.backoff()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, TOP), min_size=1, max_size=30),
       st.integers(0, 2_000_000), st.integers(0, TOP))
def test_estimator_matches_rfc_arithmetic(samples, lo, hi):
    """Against the §2.2/§2.3 formulas in Python integers (floors as documented), with bounds."""
    e = RttEstimator(rto_initial=lo, rto_min=lo, rto_max=hi)
    srtt = rttvar = None
    for r in samples:
        if srtt is None:
            srtt, rttvar = r, r // 2
        else:
            rttvar = (3 * rttvar + abs(srtt - r)) // 4
            srtt = (7 * srtt + r) // 8
        rto = min(max(srtt + max(RTT_GRANULARITY, 4 * rttvar), lo), hi)
        e.sample(r)
        assert (e.srtt, e.rttvar, e.rto) == (srtt, rttvar, rto)
        assert e.current_rto() == rto


# =============================================================================================
# RFC 6675 scoreboard
# =============================================================================================

BASES = [0, 1, 2500, M - 3500, M - 9999, TOP, (1 << 31) - 4000]
SMSS = 1000


@pytest.fixture(params=BASES, ids=[hex(b) for b in BASES])
def base(request):
    return request.param


def mk(base):
    return lambda off: (base + off) % M


def ten_segments(base, sacks):
    """A scoreboard for 10 segments of 1000 bytes [0, 10000) sent from ``base``, with the given
    SACK blocks (in offsets) applied."""
    S = mk(base)
    sb = Scoreboard(S(0))
    sb.update(S(0), S(10000), [(S(a), S(b)) for a, b in sacks])
    return sb, S


def test_worked_example_segment_1_lost(base):
    # Segments 1..10 = [0,1000) .. [9000,10000). SACK for segments 2-4 = [1000, 4000).
    S = mk(base)
    sb = Scoreboard(S(0))
    assert sb.high_rxt == S(0)
    assert sb.update(S(0), S(10000), [(S(1000), S(4000))]) == 3000
    assert sb.sacked == [(S(1000), S(4000))]
    # IsLost(segment 1): 3000 bytes SACKed above it > (DupThresh - 1) * SMSS = 2000.
    assert sb.is_lost(S(0), SMSS) and sb.is_lost(S(999), SMSS)
    assert not sb.is_lost(S(4000), SMSS)        # nothing SACKed above segment 5
    # SetPipe: segment 1 is lost and not yet retransmitted -> 0; segments 5-10 -> 6000.
    assert sb.pipe(S(0), S(10000), SMSS) == 6000
    # NextSeg (1): segment 1; HighRxt moves to its last byte (here: one past it).
    assert sb.next_lost(S(0), S(10000), SMSS) == (S(0), 1000)
    assert sb.high_rxt == S(1000)
    # The retransmission counts in pipe (§4 SetPipe (b)).
    assert sb.pipe(S(0), S(10000), SMSS) == 7000
    # Nothing else lies below the highest SACKed byte: rules (1) and (3) are done.
    assert sb.next_lost(S(0), S(10000), SMSS) is None
    # With RescueRxt still undefined, rule (4) resends the segment holding the highest
    # unSACKed byte (segment 10) and sets RescueRxt, not HighRxt.
    assert sb.next_seg(S(0), S(10000), SMSS) == (S(9000), 1000)
    assert sb.high_rxt == S(1000) and sb.rescue_rxt == S(10000)
    assert sb.next_seg(S(0), S(10000), SMSS) is None


def test_recovery_entry_as_the_rfc_steps_it(base):
    # §5 (4.3): the caller retransmits HighACK + 1 itself and sets HighRxt = RescueRxt = the
    # segment's last byte: one past it here.
    sb, S = ten_segments(base, [(1000, 4000)])
    sb.high_rxt = sb.rescue_rxt = S(1000)
    assert sb.next_seg(S(0), S(10000), SMSS) is None       # no rescue yet: HighACK == RescueRxt - 1
    # A cumulative ACK of exactly the retransmission: HighACK = 999 = RescueRxt, not greater.
    sb.advance(S(1000))
    assert sb.next_seg(S(1000), S(10000), SMSS) is None
    # The ACK moves past RescueRxt (segments 2-4 were SACKed): rule (4) may fire, once.
    sb.advance(S(4000))
    assert sb.sacked == []
    assert sb.next_seg(S(4000), S(10000), SMSS) == (S(9000), 1000)
    assert sb.next_seg(S(4000), S(10000), SMSS) is None
    assert sb.high_rxt == S(4000)                           # pulled up to SND.UNA, not moved by (4)


def test_is_lost_by_discontiguous_ranges(base):
    # Three 100-byte SACKed ranges: only 300 bytes, but DupThresh discontiguous sequences.
    sb, S = ten_segments(base, [(2000, 2100), (3000, 3100), (4000, 4100)])
    assert sb.is_lost(S(0), SMSS) and sb.is_lost(S(1999), SMSS)
    assert not sb.is_lost(S(2100), SMSS)                    # two ranges, 200 bytes above
    assert not sb.is_lost(S(4100), SMSS)


def test_is_lost_needs_more_than_dupthresh_minus_one_segments(base):
    sb, S = ten_segments(base, [(1000, 3000)])              # exactly 2 * SMSS SACKed above
    assert not sb.is_lost(S(0), SMSS)
    assert sb.is_lost(S(0), 999)                            # 2000 > 2 * 999
    sb, S = ten_segments(base, [(1000, 3001)])
    assert sb.is_lost(S(0), SMSS)


def test_pipe_counts_each_hole(base):
    # SACKed: segments 3 and 6-8. Holes: [0,2000) lost (4000 SACKed above > 2000),
    # [3000,5000) lost (3000 above), [8000,10000) not lost.
    sb, S = ten_segments(base, [(2000, 3000), (5000, 8000)])
    assert sb.is_lost(S(0), SMSS) and sb.is_lost(S(3000), SMSS) and not sb.is_lost(S(8000), SMSS)
    assert sb.pipe(S(0), S(10000), SMSS) == 2000
    # HighRxt in the middle of the second hole: [0,2000) and [3000,3500) were resent.
    sb.high_rxt = S(3500)
    assert sb.pipe(S(0), S(10000), SMSS) == 2000 + 2000 + 500
    # HighRxt beyond everything: the not-lost hole counts twice (sent and resent).
    sb.high_rxt = S(10000)
    assert sb.pipe(S(0), S(10000), SMSS) == 2000 * 2 + 2000 + 2000
    assert sb.pipe(S(0), S(0), SMSS) == 0


def test_pipe_stops_at_high_data(base):
    # SetPipe walks [HighACK + 1, HighData] only, even if asked about less than was SACKed.
    sb, S = ten_segments(base, [(6000, 7000)])
    assert sb.pipe(S(0), S(10000), SMSS) == 9000
    assert sb.pipe(S(0), S(5000), SMSS) == 5000
    assert sb.pipe(S(0), S(6500), SMSS) == 6000


def test_next_seg_is_cut_at_sacked_data_and_at_smss(base):
    # Hole [0, 2500) below SACKed [2500, 6000): resent as 1000, 1000, 500.
    sb, S = ten_segments(base, [(2500, 6000)])
    assert sb.next_lost(S(0), S(10000), SMSS) == (S(0), 1000)
    assert sb.next_lost(S(0), S(10000), SMSS) == (S(1000), 1000)
    assert sb.next_lost(S(0), S(10000), SMSS) == (S(2000), 500)
    assert sb.high_rxt == S(2500)
    assert sb.next_lost(S(0), S(10000), SMSS) is None


def test_next_seg_skips_sacked_ranges_to_the_next_lost_hole(base):
    sb, S = ten_segments(base, [(1000, 2000), (3000, 4000), (5000, 6000)])
    got = []
    while (seg := sb.next_lost(S(0), S(10000), SMSS)) is not None:
        got.append(seg)
    # [0,1000) has 3 ranges above; [2000,3000) has 2 ranges / 2000 bytes: not lost.
    assert got == [(S(0), 1000)]
    # Rule (3) then takes the holes below the highest SACK regardless of IsLost.
    assert sb.next_seg(S(0), S(10000), SMSS) == (S(2000), 1000)
    assert sb.next_seg(S(0), S(10000), SMSS) == (S(4000), 1000)
    assert sb.high_rxt == S(5000)
    # Then the rescue: highest unSACKed byte is 9999.
    assert sb.next_seg(S(0), S(10000), SMSS) == (S(9000), 1000)
    assert sb.next_seg(S(0), S(10000), SMSS) is None


def test_rule_3_when_nothing_is_lost(base):
    # One SACKed segment: IsLost is false everywhere, rule (1) finds nothing, rule (3) resends
    # the holes below it (1.a and 1.b hold), then rule (4) once.
    sb, S = ten_segments(base, [(5000, 6000)])
    assert not sb.is_lost(S(0), SMSS)
    assert sb.next_lost(S(0), S(10000), SMSS) is None
    segs = [sb.next_seg(S(0), S(10000), SMSS) for _ in range(7)]
    assert segs == [(S(0), 1000), (S(1000), 1000), (S(2000), 1000), (S(3000), 1000),
                    (S(4000), 1000), (S(9000), 1000), None]


def test_rescue_segment_stops_at_sacked_data(base):
    # Tail: [9500, 10000) SACKed, hole [9200, 9500) below it: the rescue is that 300-byte hole.
    sb, S = ten_segments(base, [(9500, 10000)])
    sb.high_rxt = S(9500)                 # rules (1)/(3) exhausted
    assert sb.next_seg(S(0), S(10000), SMSS) == (S(8500), 1000)
    sb, S = ten_segments(base, [(8000, 9200), (9500, 10000)])
    sb.high_rxt = S(9500)
    assert sb.next_seg(S(0), S(10000), SMSS) == (S(9200), 300)


def test_rescue_needs_unsacked_data(base):
    sb, S = ten_segments(base, [(0 + 1, 10000)])
    sb.high_rxt = S(10000)
    assert sb.next_seg(S(0), S(10000), SMSS) == (S(0), 1)   # the one unSACKed byte
    sb, S = ten_segments(base, [])
    sb.update(S(0), S(10000), [(S(0), S(10000))])
    assert sb.next_seg(S(0), S(10000), SMSS) is None


def test_nothing_outstanding(base):
    S = mk(base)
    sb = Scoreboard(S(0))
    assert sb.next_seg(S(0), S(0), SMSS) is None
    assert sb.next_lost(S(0), S(0), SMSS) is None
    assert sb.pipe(S(0), S(0), SMSS) == 0
    assert sb.next_seg(S(0), S(100), 0) is None              # zero SMSS: no segment


# --- Update() ----------------------------------------------------------------------------------

def test_update_ignores_dsack_out_of_window_and_inverted_blocks(base):
    S = mk(base)
    sb = Scoreboard(S(0))
    assert sb.update(S(0), S(10000), [(S(-2000), S(-1000))]) == 0   # D-SACK below SND.UNA
    assert sb.update(S(0), S(10000), [(S(-1000), S(0))]) == 0       # ends at SND.UNA
    assert sb.update(S(0), S(10000), [(S(10000), S(11000))]) == 0   # at/after SND.NXT
    assert sb.update(S(0), S(10000), [(S(3000), S(2000))]) == 0     # inverted
    assert sb.update(S(0), S(10000), [(S(3000), S(3000))]) == 0     # empty
    assert sb.sacked == []


def test_update_clips_straddling_blocks(base):
    S = mk(base)
    sb = Scoreboard(S(0))
    assert sb.update(S(0), S(10000), [(S(-500), S(500))]) == 500
    assert sb.update(S(0), S(10000), [(S(9500), S(10500))]) == 500
    assert sb.sacked == [(S(0), S(500)), (S(9500), S(10000))]


def test_update_counts_only_new_bytes_and_merges(base):
    S = mk(base)
    sb = Scoreboard(S(0))
    blocks = [(S(4000), S(5000)), (S(2000), S(3000))]
    assert sb.update(S(0), S(10000), blocks) == 2000
    assert sb.update(S(0), S(10000), blocks) == 0
    assert sb.update(S(0), S(10000), [(S(3000), S(4000))]) == 1000      # adjacent both sides
    assert sb.sacked == [(S(2000), S(5000))]


def test_update_with_a_new_snd_una_trims(base):
    sb, S = ten_segments(base, [(2000, 3000), (5000, 6000)])
    assert sb.update(S(2500), S(10000), [(S(7000), S(8000))]) == 1000
    assert sb.sacked == [(S(2500), S(3000)), (S(5000), S(6000)), (S(7000), S(8000))]
    assert sb.high_rxt == S(2500)


def test_update_when_snd_nxt_is_not_ahead(base):
    S = mk(base)
    sb = Scoreboard(S(0))
    assert sb.update(S(0), S(0), [(S(0), S(10))]) == 0


def test_update_is_bounded_to_ranges_max(base):
    S = mk(base)
    sb = Scoreboard(S(0))
    top = S(100 * (RANGES_MAX + 8))
    blocks = [(S(100 * k), S(100 * k + 50)) for k in range(RANGES_MAX + 4)]
    for k in range(0, RANGES_MAX, 4):                               # 4 blocks per ACK at most
        assert sb.update(S(0), top, blocks[k:k + 4]) == 4 * 50
    assert sb.update(S(0), top, blocks[RANGES_MAX:]) == 0           # refused: no slot
    assert len(sb.sacked) == RANGES_MAX
    # A block that merges needs no slot and is still taken.
    assert sb.update(S(0), top, [(S(50), S(60))]) == 10
    with pytest.raises(ValueError):
        sb.update(S(0), top, blocks[:RANGES_MAX + 1])


def test_advance(base):
    sb, S = ten_segments(base, [(2000, 3000), (5000, 6000)])
    sb.high_rxt = S(1000)
    sb.advance(S(2500))
    assert sb.sacked == [(S(2500), S(3000)), (S(5000), S(6000))]
    assert sb.high_rxt == S(2500)
    sb.high_rxt = S(7000)
    sb.advance(S(6000))
    assert sb.sacked == [] and sb.high_rxt == S(7000)               # ahead of SND.UNA: kept


def test_rescue_rxt_follows_snd_una_far_around_the_wrap():
    # A long connection: SND.UNA travels 3 * 2**30 (past a 2**31 distance from where RescueRxt
    # was set) in window-sized steps. RescueRxt must keep reading as "below HighACK".
    sb = Scoreboard(0)
    sb.rescue_rxt = 500                      # as after a rescue in an old recovery
    una = 0
    for _ in range(3 * 4):
        una = (una + (1 << 28)) % M
        sb.advance(una)
    sb.update(una, (una + 5000) % M, [((una + 1000) % M, (una + 2000) % M)])
    sb.high_rxt = (una + 5000) % M           # rules (1)/(3) exhausted
    assert sb.next_seg(una, (una + 5000) % M, SMSS) == ((una + 4000) % M, 1000)


def test_init_and_in_use():
    sb = Scoreboard(123)
    assert sb.in_use is False and sb.sacked == [] and sb.high_rxt == 123
    sb.in_use = True
    assert sb.in_use is True


def test_wrapper_rejects_out_of_range():
    with pytest.raises(ValueError):
        Scoreboard(-1)
    with pytest.raises(ValueError):
        Scoreboard(0).is_lost(M, 1000)
    with pytest.raises(ValueError):
        RttEstimator().sample(-5)


# --- hypothesis: against a per-octet reference written from RFC 6675 §4 ----------------------------

class Ref:
    """RFC 6675 §4 over octet offsets, in the RFC's own inclusive variables."""

    def __init__(self, una, nxt):
        self.high_ack = una - 1          # last byte cumulatively ACKed
        self.high_data = nxt - 1         # last byte sent
        self.high_rxt = una - 1          # HighRxt = HighACK: nothing resent (§5 (3.1))
        self.rescue_rxt = None           # undefined
        self.sacked = set()

    def update(self, una, blocks):
        before = len(self.sacked)
        for l, r in blocks:
            for o in range(max(l, una), min(r, self.high_data + 1)):
                self.sacked.add(o)
        return len(self.sacked) - before

    def is_lost(self, s, smss):
        above = sorted(o for o in self.sacked if o > s)
        seqs = sum(1 for i, o in enumerate(above) if i == 0 or above[i - 1] != o - 1)
        return seqs >= 3 or len(above) > 2 * smss

    def pipe(self, smss):
        p = 0
        for s1 in range(self.high_ack + 1, self.high_data + 1):
            if s1 in self.sacked:
                continue
            if not self.is_lost(s1, smss):
                p += 1
            if s1 <= self.high_rxt:
                p += 1
        return p

    def _segment_from(self, s, smss):
        n = 0
        while n < smss and s + n <= self.high_data and (s + n) not in self.sacked:
            n += 1
        return (s, n)

    def next_seg(self, smss, rules=(1, 3, 4)):
        top_sacked = max(self.sacked) if self.sacked else None
        for rule in (1, 3):
            if rule not in rules or top_sacked is None:
                continue
            for s2 in range(self.high_ack + 1, self.high_data + 1):
                if s2 in self.sacked or not s2 > self.high_rxt:          # (1.a)
                    continue
                if not s2 < top_sacked:                                  # (1.b)
                    continue
                if rule == 1 and not self.is_lost(s2, smss):             # (1.c)
                    continue
                seg = self._segment_from(s2, smss)
                self.high_rxt = seg[0] + seg[1] - 1                      # (C.2)
                return seg
        if 4 in rules and (self.rescue_rxt is None or self.high_ack > self.rescue_rxt):
            unsacked = [o for o in range(self.high_ack + 1, self.high_data + 1)
                        if o not in self.sacked]
            if unsacked:
                x = unsacked[-1]
                n = 1
                while n < smss and x - n > self.high_ack and (x - n) not in self.sacked:
                    n += 1
                self.rescue_rxt = self.high_data       # RecoveryPoint (= HighData here)
                return (x - n + 1, n)
        return None


@settings(max_examples=300, deadline=None)
@given(
    base=st.one_of(st.sampled_from([M - 60, M - 1, 0, M - 150, (1 << 31) - 50]),
                   st.integers(0, TOP)),
    sent=st.integers(1, 150),
    smss=st.integers(1, 25),
    blocks=st.lists(st.tuples(st.integers(-30, 180), st.integers(-30, 180)), max_size=8),
    resent=st.integers(0, 150),
    acked=st.integers(0, 40),
    lost_first=st.booleans(),
)
def test_scoreboard_matches_rfc_reference(base, sent, smss, blocks, resent, acked, lost_first):
    S = mk(base)
    acked = min(acked, sent)
    sb = Scoreboard(S(0))
    ref = Ref(0, sent)
    half = len(blocks) // 2
    assert sb.update(S(0), S(sent), [(S(l), S(r)) for l, r in blocks[:half]]) == \
        ref.update(0, [b for b in blocks[:half] if b[0] < b[1]])
    # A cumulative ACK, then the rest of the blocks (with the new SND.UNA).
    sb.advance(S(acked))
    ref.high_ack = acked - 1
    ref.sacked = {o for o in ref.sacked if o >= acked}
    ref.high_rxt = max(ref.high_rxt, acked - 1)
    assert sb.update(S(acked), S(sent), [(S(l), S(r)) for l, r in blocks[half:]]) == \
        ref.update(acked, [b for b in blocks[half:] if b[0] < b[1]])
    assert sorted(ref.sacked) == [o for a, b in sb.sacked
                                  for o in range((a - base) % M, (b - base) % M)]
    # HighRxt somewhere in the outstanding data (as if some was already resent).
    hr = acked + min(resent, sent - acked)
    sb.high_rxt = S(hr)
    ref.high_rxt = hr - 1
    for o in range(acked, sent):
        if o not in ref.sacked:
            assert sb.is_lost(S(o), smss) == ref.is_lost(o, smss), o
    assert sb.pipe(S(acked), S(sent), smss) == ref.pipe(smss)
    # Drive NextSeg to exhaustion, optionally rule (1) first as the caller does.
    for _ in range(sent + 3):
        if lost_first:
            got = sb.next_lost(S(acked), S(sent), smss)
            want = ref.next_seg(smss, rules=(1,))
            assert got == (None if want is None else (S(want[0]), want[1]))
            if got is not None:
                continue
        got = sb.next_seg(S(acked), S(sent), smss)
        want = ref.next_seg(smss)
        assert got == (None if want is None else (S(want[0]), want[1]))
        assert sb.high_rxt == S(ref.high_rxt + 1)
        assert sb.pipe(S(acked), S(sent), smss) == ref.pipe(smss)
        if got is None:
            break
    else:
        pytest.fail("NextSeg did not run dry")
