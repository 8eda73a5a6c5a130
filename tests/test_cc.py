"""Congestion control (tcpfast._cc): NewReno (RFC 5681, RFC 3465, RFC 6582) and CUBIC (RFC 9438).

The expected numbers are computed here, independently of the Cython code: by hand for the NewReno
rules, and by ``Ref``, a small Python model written from the RFC text, for CUBIC. ``Ref`` works
in the RFC's own units (segments and seconds, RFC 9438 §4.1) while the module works in bytes and
microseconds, so the unit conversions are checked too. Times are microseconds on a virtual clock.
"""
import importlib.machinery
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpfast import _cc
from tcpfast._cc import CongestionControl, initial_window

S = 1460
US = 1_000_000
C = 0.4                                 # RFC 9438 §4.1.1 / §5
BETA = 0.7                              # RFC 9438 §4.6
ALPHA = 3 * (1 - BETA) / (1 + BETA)     # RFC 9438 §4.3
CWND_MAX = 1 << 30
U32 = 0xFFFFFFFF

try:
    cbrt = math.cbrt                    # Python 3.11+
except AttributeError:                  # pragma: no cover
    def cbrt(x):
        return math.copysign(abs(x) ** (1.0 / 3.0), x)


def iw(smss):
    """RFC 6928 §2 equation (1)."""
    return min(10 * smss, max(2 * smss, 14600))


# =============================================================================================
# Reference model
# =============================================================================================

class Ref:
    """The rules of RFC 5681 §3.1/§4.1, RFC 3465 §2 and RFC 9438 §4, with the choices that
    tcpfast/_cc.pyx documents (L = 2*SMSS, 1*SMSS after an RTO; ssthresh from FlightSize; no
    growth with less than half the window in flight; K from RFC 9438 Figure 2).

    Windows of the CUBIC part are kept in segments and times in seconds, as the RFC writes them.
    """

    def __init__(self, algo="cubic", smss=S, fast_convergence=True, abc_limit=2):
        self.algo = algo
        self.smss = max(1, min(smss, CWND_MAX // 2))
        self.cwnd_f = float(min(iw(self.smss), CWND_MAX))     # bytes, real-valued
        self.ssthresh = U32
        self.bytes_acked = 0
        self.L = abc_limit
        self.fc = fast_convergence
        self.rto_hold = False
        self.after_rto = False
        self.app_limited = False
        self.app_start = 0
        self.epoch = None                 # t_epoch, us
        self.w_max = 0.0                  # segments
        self.w_last_max = 0.0
        self.cwnd_prior = 0.0             # segments
        self.k = 0.0                      # seconds
        self.cwnd_epoch = 0.0             # segments
        self.w_est = 0.0                  # segments

    @property
    def cwnd(self):
        return int(self.cwnd_f)

    def _set(self, w):
        self.cwnd_f = float(min(max(w, self.smss), CWND_MAX))

    def w_cubic(self, t):
        """RFC 9438 Figure 1, segments."""
        return C * (t - self.k) ** 3 + self.w_max

    def _ssthresh(self, flight):
        s = flight * 7 // 10 if self.algo == "cubic" else flight // 2
        return min(max(s, 2 * self.smss), CWND_MAX)

    def on_ack(self, acked, flight=None, rtt=0, now=0):
        if acked == 0:
            return
        flight = self.cwnd if flight is None else flight
        self.rto_hold = False
        if 2 * flight < self.cwnd:
            if not self.app_limited:
                self.app_limited, self.app_start = True, now
            return
        if self.app_limited:
            self.app_limited = False
            if self.epoch is not None and now > self.app_start:
                self.epoch += now - self.app_start
        if self.cwnd < self.ssthresh:
            L = (1 if self.after_rto else self.L) * self.smss
            inc = min(acked, L)
            room = self.ssthresh - self.cwnd
            if inc < room:
                self._set(self.cwnd + inc)
                return
            self._set(min(self.ssthresh, CWND_MAX))
            self.after_rto = False
            acked = max(acked - room, 0)
            if acked == 0 or self.cwnd < self.ssthresh:
                return
        if self.algo == "cubic":
            self._cubic_ca(acked, rtt, now)
        else:
            b = self.bytes_acked + acked
            if b >= self.cwnd:
                b -= self.cwnd
                self._set(self.cwnd + self.smss)
                b = min(b, self.cwnd - 1)
            self.bytes_acked = min(b, U32)

    def _cubic_ca(self, acked, rtt, now):
        s = self.smss
        if self.epoch is None:
            self.epoch = now
            self.cwnd_epoch = self.cwnd_f / s
            if self.w_max <= self.cwnd_epoch:               # §4.8, §4.10
                self.w_max, self.k = self.cwnd_epoch, 0.0
                if self.cwnd_prior <= 0:
                    self.cwnd_prior = self.cwnd_epoch
            else:                                           # §4.2 Figure 2
                self.k = cbrt((self.w_max - self.cwnd_epoch) / C)
            self.w_est = self.cwnd_epoch                    # §4.3
        c = self.cwnd_f / s
        t = max(now - self.epoch, 0) / US
        target = min(max(self.w_cubic(t + rtt / US), c), 1.5 * c)          # §4.2
        alpha = 1.0 if self.w_est >= self.cwnd_prior else ALPHA            # §4.3
        self.w_est = min(self.w_est + alpha * (acked / s) / c, CWND_MAX / s)  # Figure 4
        if self.w_cubic(t) < self.w_est:
            new = max(self.w_est, c)                                       # §4.3
        else:
            new = c + (target - c) / c * (acked / s)                       # §4.4, §4.5
        self._set(new * s)

    def on_congestion(self, flight=None, now=0):
        flight = self.cwnd if flight is None else flight
        if self.algo == "cubic":
            c = self.cwnd_f / self.smss
            self.cwnd_prior = c
            self.w_last_max = self.w_max
            self.w_max = c * (1 + BETA) / 2 if (self.fc and c < self.w_max) else c   # §4.7
        self.ssthresh = self._ssthresh(flight)
        self._set(self.ssthresh)
        self.rto_hold = self.after_rto = False
        self._end_epoch()

    def on_rto(self, flight=None, now=0):
        flight = self.cwnd if flight is None else flight
        if not self.rto_hold:
            if self.algo == "cubic":
                self.cwnd_prior = self.cwnd_f / self.smss
                self.w_last_max = self.w_max
                self.w_max = 0.0
            self.ssthresh = self._ssthresh(flight)
            self.rto_hold = True
        self._set(self.smss)
        self.after_rto = True
        self._end_epoch()

    def on_recovery_exit(self, now=0):
        self._set(self.ssthresh)
        self.rto_hold = False
        self._end_epoch()

    def on_idle_restart(self, now=0):
        if self.cwnd > iw(self.smss):
            self._set(iw(self.smss))
        self._end_epoch()

    def _end_epoch(self):
        self.epoch = None
        self.app_limited = False
        self.bytes_acked = 0


def state_of(x):
    """The comparable state of a CongestionControl or a Ref, windows in bytes."""
    if isinstance(x, Ref):
        s = x.smss
        return dict(cwnd=x.cwnd_f, ssthresh=x.ssthresh, bytes_acked=x.bytes_acked,
                    w_max=x.w_max * s, w_est=x.w_est * s, k=x.k, cwnd_prior=x.cwnd_prior * s,
                    epoch=x.epoch)
    return dict(cwnd=x.exact_cwnd, ssthresh=x.ssthresh, bytes_acked=x.bytes_acked,
                w_max=x.w_max, w_est=x.w_est, k=x.k, cwnd_prior=x.cwnd_prior,
                epoch=x.epoch_start)


def assert_same(cc, ref, rel=1e-9):
    a, b = state_of(cc), state_of(ref)
    assert a["ssthresh"] == b["ssthresh"]
    assert a["bytes_acked"] == b["bytes_acked"]
    assert a["epoch"] == b["epoch"]
    for key in ("cwnd", "w_max", "w_est", "k", "cwnd_prior"):
        assert a[key] == pytest.approx(b[key], rel=rel, abs=1e-6), key


def after_loss(algo, w_max_segs, smss=S, **kw):
    """A connection that lost a segment at cwnd = FlightSize = w_max_segs segments and has just
    left fast recovery."""
    cc = CongestionControl(algo, smss, **kw)
    cc.cwnd = w_max_segs * smss
    cc.on_congestion(flight=w_max_segs * smss, now=0)
    cc.on_recovery_exit(now=0)
    return cc


def drive_rounds(objs, rounds, rtt, t0, per_ack=2):
    """Every round trip, ACK one window (taken from the first object) in ``per_ack``-segment
    ACKs spread over the RTT, as a receiver with delayed ACKs would. Returns [(now, cwnd)]."""
    lead = objs[0]
    now = t0
    samples = []
    for _ in range(rounds):
        samples.append((now, lead.exact_cwnd))
        n = max(1, lead.cwnd // (per_ack * lead.smss))
        for i in range(n):
            for o in objs:
                o.on_ack(per_ack * lead.smss, rtt=rtt, now=now + i * rtt // n)
        now += rtt
    samples.append((now, lead.exact_cwnd))
    return samples


# =============================================================================================
# The module
# =============================================================================================

def test_module_is_compiled():
    assert isinstance(_cc.__spec__.loader, importlib.machinery.ExtensionFileLoader)


def test_constants():
    assert _cc.CUBIC_C == C and _cc.CUBIC_BETA == BETA
    assert _cc.CUBIC_ALPHA == pytest.approx(0.9 / 1.7)
    assert _cc.CWND_MAX == CWND_MAX and _cc.SSTHRESH_INITIAL == U32


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        CongestionControl("vegas", S)
    with pytest.raises(ValueError):
        CongestionControl("cubic", -1)
    with pytest.raises(ValueError):
        CongestionControl("cubic", S, abc_limit=3)
    cc = CongestionControl("cubic", S)
    with pytest.raises(TypeError):
        cc.on_ack(1.5)
    with pytest.raises(ValueError):
        cc.on_ack(1 << 32)
    with pytest.raises(ValueError):
        cc.on_rto(now=-1)
    assert cc.algo == "cubic" and CongestionControl("newreno", S).algo == "newreno"
    assert "cubic" in repr(cc) and "cwnd=14600" in repr(cc)


# =============================================================================================
# Initial window (RFC 6928) and ssthresh (RFC 5681 §3.1)
# =============================================================================================

@pytest.mark.parametrize("smss, expected", [
    (536, 5360),        # 10 segments
    (1095, 10950),
    (1460, 14600),      # 10 segments = the 14600-byte cap
    (4380, 14600),      # 3.33 segments: the byte cap
    (8960, 17920),      # jumbo frames: never fewer than 2 segments
])
@pytest.mark.parametrize("algo", ["newreno", "cubic"])
def test_initial_window(algo, smss, expected):
    assert iw(smss) == expected
    assert initial_window(smss) == expected
    cc = CongestionControl(algo, smss)
    assert cc.cwnd == expected
    assert cc.ssthresh == U32               # "arbitrarily high"
    assert cc.in_slow_start
    assert cc.smss == smss
    assert cc.epoch_start is None and cc.w_max == 0.0


# =============================================================================================
# Slow start (RFC 5681 §3.1, RFC 3465)
# =============================================================================================

@pytest.mark.parametrize("algo", ["newreno", "cubic"])
def test_slow_start_grows_by_the_bytes_acked_per_ack(algo):
    cc = CongestionControl(algo, S)
    w = cc.cwnd
    for _ in range(10):
        cc.on_ack(S)
        w += S
        assert cc.cwnd == w
    cc.on_ack(500)                          # a short segment counts its bytes (ABC)
    assert cc.cwnd == w + 500
    cc.on_ack(0)                            # no new data: nothing
    assert cc.cwnd == w + 500
    assert cc.in_slow_start and cc.bytes_acked == 0


@pytest.mark.parametrize("algo", ["newreno", "cubic"])
def test_slow_start_stretch_ack_is_limited_to_two_segments(algo):
    cc = CongestionControl(algo, S)
    assert cc.abc_limit == 2 and cc.fast_convergence        # cc_init's defaults
    cc.on_ack(5 * S)
    assert cc.cwnd == 14600 + 2 * S         # L = 2*SMSS (RFC 3465 §2.3)
    strict = CongestionControl(algo, S, abc_limit=1)
    assert strict.abc_limit == 1
    strict.on_ack(5 * S)
    assert strict.cwnd == 14600 + S         # RFC 5681 eq. 2, min(N, SMSS)


@pytest.mark.parametrize("limit, factor", [(2, 2.0), (1, 1.5)])
def test_slow_start_per_rtt_with_delayed_acks(limit, factor):
    # A receiver that ACKs every second segment: L = 2*SMSS doubles cwnd per RTT, L = SMSS only
    # grows it by half.
    cc = CongestionControl("newreno", S, abc_limit=limit)
    for _ in range(4):
        before = cc.cwnd
        for _ in range(before // (2 * S)):
            cc.on_ack(2 * S, flight=before)
        assert cc.cwnd == before + (before // (2 * S)) * limit * S
        assert cc.cwnd == pytest.approx(factor * before, rel=0.1)


@pytest.mark.parametrize("algo", ["newreno", "cubic"])
def test_slow_start_stops_at_ssthresh_and_passes_the_rest_on(algo):
    cc = CongestionControl(algo, S)
    cc.ssthresh = cc.cwnd + 1000
    ss = cc.ssthresh
    cc.on_ack(2 * S)
    assert not cc.in_slow_start
    rest = 2 * S - 1000
    if algo == "newreno":
        assert cc.cwnd == ss and cc.bytes_acked == rest
    else:
        # The rest of the ACK started the CUBIC epoch at cwnd_epoch = ssthresh with no W_max yet:
        # K = 0, W_max = cwnd_prior = cwnd_epoch (§4.10), so W_cubic(0) = cwnd_epoch is below
        # W_est, which grew with alpha = 1 (W_est >= cwnd_prior) by rest / cwnd segments (§4.3).
        assert cc.epoch_start == 0 and cc.k == 0.0
        assert cc.w_max == cc.cwnd_epoch == cc.cwnd_prior == ss
        assert cc.exact_cwnd == pytest.approx(ss + rest * S / ss, rel=1e-12)


# =============================================================================================
# NewReno congestion avoidance (RFC 5681 §3.1 byte counting, RFC 3465 §2.1)
# =============================================================================================

def newreno_in_ca(segs):
    cc = CongestionControl("newreno", S)
    cc.cwnd = cc.ssthresh = segs * S
    return cc


def test_ca_byte_counting_one_smss_per_window():
    cc = newreno_in_ca(20)
    for i in range(1, 20):
        cc.on_ack(S)
        assert cc.cwnd == 20 * S and cc.bytes_acked == i * S
    cc.on_ack(S)                            # the window's worth of bytes is complete
    assert cc.cwnd == 21 * S and cc.bytes_acked == 0


@pytest.mark.parametrize("per_ack", [1, 2, 3])
def test_ca_grows_one_segment_per_window_whatever_the_ack_pattern(per_ack):
    cc = newreno_in_ca(30)
    acked = 0
    for rnd in range(20):
        w = cc.cwnd
        sent = 0
        while sent < w:
            n = min(per_ack * S, w - sent)
            cc.on_ack(n, flight=w)
            sent += n
            acked += n
        assert cc.cwnd == w + S, rnd        # exactly one SMSS per window of ACKed bytes
    assert cc.cwnd == 50 * S


def test_ca_odd_sized_acks_carry_over():
    cc = newreno_in_ca(10)
    cc.on_ack(10 * S - 1)
    assert cc.cwnd == 10 * S and cc.bytes_acked == 10 * S - 1
    cc.on_ack(100)
    assert cc.cwnd == 11 * S and cc.bytes_acked == 99


def test_ca_at_most_one_smss_per_ack():
    cc = newreno_in_ca(10)
    cc.on_ack(35 * S)                       # a huge stretch ACK
    assert cc.cwnd == 11 * S                # RFC 5681 §3.1: MUST NOT increase by more than SMSS
    assert cc.bytes_acked == 11 * S - 1     # less than one window of credit is kept
    cc.on_ack(1)
    assert cc.cwnd == 12 * S and cc.bytes_acked == 0


# =============================================================================================
# Loss: fast retransmit (RFC 5681 §3.2, RFC 6582), RTO (RFC 5681 §3.1), recovery exit, idle
# =============================================================================================

@pytest.mark.parametrize("flight, expected", [
    (100 * S, 50 * S),
    (100 * S + 1, (100 * S + 1) // 2),
    (5 * S, 5 * S // 2),
    (4 * S, 2 * S),
    (3 * S, 2 * S),                         # the 2*SMSS floor of eq. 4
    (S, 2 * S),
    (0, 2 * S),
])
def test_newreno_halves_flightsize_with_a_floor(flight, expected):
    cc = CongestionControl("newreno", S)
    cc.cwnd = 200 * S                       # ssthresh comes from FlightSize, not cwnd
    cc.on_congestion(flight=flight)
    assert cc.ssthresh == expected
    assert cc.cwnd == expected              # the post-recovery window; inflation is the TCB's
    assert cc.bytes_acked == 0


@pytest.mark.parametrize("algo", ["newreno", "cubic"])
def test_recovery_exit_deflates_to_ssthresh(algo):
    cc = CongestionControl(algo, S)
    cc.cwnd = 80 * S
    cc.on_congestion(flight=80 * S, now=10)
    ss = cc.ssthresh
    cc.cwnd = ss + 3 * S + 7 * S            # what an inflating TCB might have made of it
    cc.on_recovery_exit(now=20)
    assert cc.cwnd == ss and not cc.in_slow_start
    assert cc.epoch_start is None


@pytest.mark.parametrize("algo, factor", [("newreno", 0.5), ("cubic", 0.7)])
def test_rto_collapses_to_one_segment(algo, factor):
    cc = CongestionControl(algo, S)
    cc.cwnd = 100 * S
    cc.on_rto(flight=40 * S)
    assert cc.cwnd == S                     # the loss window
    assert cc.ssthresh == int(40 * factor) * S
    # The same segment times out again (no new data ACKed in between): ssthresh is held.
    cc.on_rto(flight=S)
    assert cc.cwnd == S and cc.ssthresh == int(40 * factor) * S
    # New data is ACKed; a later timeout is for another segment and reduces ssthresh again.
    cc.on_ack(S)
    assert cc.cwnd == 2 * S
    cc.on_rto(flight=10 * S)
    assert cc.cwnd == S and cc.ssthresh == max(int(10 * S * factor), 2 * S)


def test_rto_ssthresh_floor():
    cc = CongestionControl("newreno", S)
    cc.on_rto(flight=S)
    assert cc.ssthresh == 2 * S and cc.cwnd == S


def test_slow_start_after_rto_uses_one_segment_limit_until_ssthresh():
    cc = CongestionControl("newreno", S)
    cc.cwnd = 50 * S
    cc.on_rto(flight=40 * S)
    assert (cc.cwnd, cc.ssthresh) == (S, 20 * S)
    cc.on_ack(3 * S)                        # RFC 3465 §2.3: L = 1*SMSS after an RTO
    assert cc.cwnd == 2 * S
    while cc.in_slow_start:
        cc.on_ack(3 * S)
    assert cc.cwnd == 20 * S
    # A later slow start (after an idle restart) has L = 2*SMSS again.
    cc.on_idle_restart()
    assert cc.cwnd == 14600
    cc.on_ack(3 * S)
    assert cc.cwnd == 14600 + 2 * S


@pytest.mark.parametrize("algo", ["newreno", "cubic"])
def test_idle_restart_window(algo):
    cc = CongestionControl(algo, S)
    cc.cwnd = 50 * S
    cc.ssthresh = 30 * S
    cc.on_idle_restart(now=5 * US)
    assert cc.cwnd == 14600                 # RW = min(IW, cwnd), RFC 5681 §4.1
    assert cc.ssthresh == 30 * S            # what was learned is kept
    cc.cwnd = 4 * S
    cc.on_idle_restart(now=6 * US)
    assert cc.cwnd == 4 * S                 # already below IW: unchanged


@pytest.mark.parametrize("algo", ["newreno", "cubic"])
def test_no_growth_while_application_limited(algo):
    cc = CongestionControl(algo, S)
    w = cc.cwnd
    cc.on_ack(S, flight=w // 2 - 1)         # less than half the window in flight
    assert cc.cwnd == w and cc.app_limited
    cc.on_ack(S, flight=(w + 1) // 2)       # half or more: the window is in use
    assert cc.cwnd == w + S and not cc.app_limited
    ca = CongestionControl(algo, S)
    ca.cwnd = ca.ssthresh = 40 * S
    for i in range(200):
        ca.on_ack(S, flight=10 * S, rtt=10_000, now=i * 1000)
    assert ca.cwnd == 40 * S and ca.bytes_acked == 0


# =============================================================================================
# PMTUD changes (RFC 5681 §3.1)
# =============================================================================================

def test_set_smss():
    cc = CongestionControl("cubic", 536)
    cc.set_smss(1460)                       # nothing learned yet: the IW for the new MSS
    assert cc.cwnd == 14600 and cc.smss == 1460
    cc.cwnd = 40 * 1460
    cc.ssthresh = 30 * 1460
    cc.set_smss(1000)                       # smaller: the same number of segments
    assert cc.cwnd == 40 * 1000 and cc.smss == 1000
    cc.set_smss(1460)                       # larger: the same bytes
    assert cc.cwnd == 40 * 1000
    cc.ssthresh = 2 * 1460
    cc.set_smss(100)
    assert cc.cwnd == 40 * 1000 * 100 // 1460
    assert cc.ssthresh == 2 * 1460          # already above the new 2*SMSS floor


# =============================================================================================
# CUBIC (RFC 9438)
# =============================================================================================

@pytest.mark.parametrize("w_max", [10, 100, 1000, 12345])
def test_cubic_decrease_is_beta_times_w_max(w_max):
    cc = CongestionControl("cubic", S)
    cc.cwnd = w_max * S
    cc.on_congestion(flight=w_max * S, now=1000)
    assert cc.w_max == w_max * S            # first event: no fast convergence
    assert cc.cwnd_prior == w_max * S
    assert cc.ssthresh == cc.cwnd == (w_max * S * 7) // 10
    assert cc.cwnd == pytest.approx(BETA * cc.w_max, abs=1)


def test_cubic_decrease_uses_flightsize_and_floor():
    cc = CongestionControl("cubic", S)
    cc.cwnd = 100 * S
    cc.on_congestion(flight=60 * S)
    assert cc.w_max == 100 * S              # W_max is the cwnd before the reduction (§4.6)
    assert cc.ssthresh == cc.cwnd == 42 * S     # but ssthresh is flight_size * beta (Figure 5)
    cc.on_congestion(flight=2 * S)
    assert cc.ssthresh == cc.cwnd == 2 * S  # max(ssthresh, 2) segments


def test_cubic_k_matches_the_formula():
    w_max = 1000
    cc = after_loss("cubic", w_max)
    assert cc.epoch_start is None
    t0 = 3 * US
    cc.on_ack(S, rtt=100_000, now=t0)
    assert cc.epoch_start == t0
    assert cc.cwnd_epoch == 700 * S
    # RFC 9438 Figure 2 with cwnd_epoch = beta * W_max, which is RFC 8312's cbrt(W_max (1-b)/C).
    assert cc.k == pytest.approx(cbrt((w_max - 700) / C), rel=1e-12)
    assert cc.k == pytest.approx(cbrt(w_max * (1 - BETA) / C), rel=1e-12)
    assert cc.k == pytest.approx(9.0856, abs=1e-4)
    # W_est starts at cwnd_epoch and took this ACK's alpha * segments_acked / cwnd.
    assert cc.w_est == pytest.approx((700 + ALPHA * 1 / 700) * S, rel=1e-12)


def test_cubic_k_uses_cwnd_epoch_not_beta_w_max():
    # The epoch starts from a FlightSize-based window below beta * W_max: K grows accordingly.
    cc = CongestionControl("cubic", S)
    cc.cwnd = 1000 * S
    cc.on_congestion(flight=800 * S)
    cc.on_recovery_exit()
    cc.on_ack(S, rtt=0, now=0)
    assert cc.cwnd_epoch == 560 * S
    assert cc.k == pytest.approx(cbrt((1000 - 560) / C), rel=1e-12)


def test_cubic_follows_the_curve():
    w_max, rtt = 400, 50_000
    cc = after_loss("cubic", w_max)
    ref = Ref("cubic")
    ref.cwnd_f = float(w_max * S)
    ref.on_congestion(flight=w_max * S)
    ref.on_recovery_exit()
    k = cbrt(w_max * (1 - BETA) / C)        # 6.69 s
    rounds = int(1.6 * k * US / rtt)
    samples = drive_rounds([cc, ref], rounds, rtt, t0=0)
    assert_same(cc, ref, rel=1e-9)
    assert cc.k == pytest.approx(k, rel=1e-12)

    def w_cubic(t):                         # segments
        return C * (t - k) ** 3 + w_max

    segs = [(now / US, w / S) for now, w in samples]
    # cwnd tracks W_cubic(t): the per-ACK step aims at W_cubic(t + RTT) one RTT ahead.
    for t, w in segs[1:]:
        assert w == pytest.approx(w_cubic(t), rel=0.01), t
        assert w >= w_cubic(t) - 0.5        # never behind the curve by more than a fraction
    # It reaches W_max at t = K and lingers there (the plateau).
    at_k = min(segs, key=lambda p: abs(p[0] - k))
    assert at_k[1] == pytest.approx(w_max, rel=0.003)
    # Concave before K, convex after: per-round increments shrink, then grow.
    inc = [(segs[i][0], segs[i + 1][1] - segs[i][1]) for i in range(len(segs) - 1)]
    before = [d for t, d in inc if 0.5 < t < k - 0.5]
    after = [d for t, d in inc if t > k + 0.5]
    assert all(d >= 0 for _, d in inc)
    assert all(b2 <= b1 + 1e-6 for b1, b2 in zip(before, before[1:]))
    assert all(a2 >= a1 - 1e-6 for a1, a2 in zip(after, after[1:]))
    assert before[0] > 10 * before[-1] and after[-1] > 10 * after[0]
    assert max(w for t, w in segs if t <= k) <= w_max + 0.01
    # Outside the Reno-friendly region all the way: W_est stays below the curve.
    assert cc.w_est < cc.cwnd


def test_cubic_target_is_limited_to_one_and_a_half_cwnd():
    # Long after the epoch began (a far-off point of the convex curve), one window of ACKs may
    # raise cwnd by at most half of itself per ACKed window (target <= 1.5 cwnd, §4.2).
    cc = after_loss("cubic", 100)
    cc.on_ack(S, rtt=100_000, now=0)
    w = cc.exact_cwnd
    cc.on_ack(S, rtt=100_000, now=1000 * US)
    assert cc.exact_cwnd == pytest.approx(w + 0.5 * w / w * S, rel=1e-12)
    # ... and from below by cwnd: with cwnd above the curve (and above W_est) an ACK adds nothing
    # rather than shrinking the window.
    cc2 = after_loss("cubic", 100)
    cc2.on_ack(S, rtt=0, now=0)             # the epoch starts at 70 segments, K = 4.2 s
    cc2.cwnd = 95 * S
    t = 0.1
    assert C * (t - cc2.k) ** 3 + 100 < 95 and cc2.w_est < 71 * S
    for _ in range(10):
        cc2.on_ack(S, rtt=0, now=int(t * US))
    assert cc2.exact_cwnd == 95 * S


def test_cubic_fast_convergence_lowers_w_max():
    cc = CongestionControl("cubic", S)
    cc.cwnd = 1000 * S
    cc.on_congestion(flight=1000 * S)
    assert cc.w_max == 1000 * S
    cc.cwnd = 800 * S                       # the next loss comes below the old plateau
    cc.on_congestion(flight=800 * S)
    assert cc.w_last_max == 1000 * S
    assert cc.w_max == pytest.approx(800 * S * (1 + BETA) / 2)      # 680 segments
    assert cc.cwnd_prior == 800 * S
    assert cc.cwnd == 560 * S
    # A loss above the plateau simply sets W_max to cwnd.
    cc.cwnd = 900 * S
    cc.on_congestion(flight=900 * S)
    assert cc.w_max == 900 * S

    off = CongestionControl("cubic", S, fast_convergence=False)
    assert not off.fast_convergence
    off.cwnd = 1000 * S
    off.on_congestion(flight=1000 * S)
    off.cwnd = 800 * S
    off.on_congestion(flight=800 * S)
    assert off.w_max == 800 * S


def test_cubic_fast_convergence_lengthens_k():
    def k_after(fc):
        cc = CongestionControl("cubic", S, fast_convergence=fc)
        cc.cwnd = 1000 * S
        cc.on_congestion(flight=1000 * S)
        cc.cwnd = 800 * S
        cc.on_congestion(flight=800 * S)
        cc.on_recovery_exit()
        cc.on_ack(S, now=0)
        return cc.k
    assert k_after(True) == pytest.approx(cbrt((680 - 560) / C), rel=1e-12)
    assert k_after(False) == pytest.approx(cbrt((800 - 560) / C), rel=1e-12)


def test_cubic_reno_friendly_region_on_short_rtt_small_window():
    w_max, rtt = 20, 10_000                 # K = 2.47 s, 247 RTTs: Reno is faster here
    cc = after_loss("cubic", w_max)
    ref = Ref("cubic")
    ref.cwnd_f = float(w_max * S)
    ref.on_congestion()
    ref.on_recovery_exit()
    samples = drive_rounds([cc, ref], 100, rtt, t0=0, per_ack=1)
    assert_same(cc, ref, rel=1e-9)
    k = cbrt(w_max * (1 - BETA) / C)
    now = samples[-1][0]
    w_cubic = C * (now / US - k) ** 3 + w_max
    assert cc.cwnd / S > 2 * w_cubic        # far above the cubic curve
    assert cc.exact_cwnd == pytest.approx(cc.w_est, rel=1e-12)     # cwnd = W_est
    per_round = [(b[1] - a[1]) / S for a, b in zip(samples, samples[1:])]
    # alpha_cubic = 0.53 segments per RTT until W_est reaches cwnd_prior (20 segments), 1 after.
    assert per_round[0] == pytest.approx(ALPHA, rel=0.05)
    assert per_round[-1] == pytest.approx(1.0, rel=0.05)
    assert cc.cwnd / S == pytest.approx(20 + (100 - (20 - 14) / ALPHA), abs=2)


def test_cubic_reno_friendly_region_ends_when_the_curve_overtakes():
    # Same start, long RTT: the curve grows faster than W_est and drives cwnd.
    cc = after_loss("cubic", 20)
    drive_rounds([cc], 10, 500_000, t0=0, per_ack=1)
    assert cc.w_est < cc.exact_cwnd


def test_cubic_after_rto_uses_k_zero_and_w_max_from_the_epoch():
    cc = CongestionControl("cubic", S)
    cc.cwnd = 100 * S
    cc.on_congestion(flight=100 * S)
    cc.on_recovery_exit()
    cc.on_rto(flight=70 * S, now=0)
    assert cc.cwnd == S and cc.ssthresh == 49 * S
    assert cc.w_max == 0.0 and cc.w_last_max == 100 * S and cc.cwnd_prior == 70 * S
    now = 0
    while cc.in_slow_start:
        now += 1000
        cc.on_ack(S, rtt=10_000, now=now)
    cc.on_ack(S, rtt=10_000, now=now + 1000)
    assert cc.epoch_start is not None
    assert cc.k == 0.0                      # §4.8
    assert cc.w_max == cc.cwnd_epoch == 49 * S
    assert cc.w_est >= cc.cwnd_epoch


def test_cubic_idle_restart_and_congestion_restart_the_epoch():
    cc = after_loss("cubic", 100)
    cc.on_ack(S, rtt=10_000, now=1 * US)
    assert cc.epoch_start == 1 * US
    cc.on_idle_restart(now=9 * US)
    assert cc.epoch_start is None
    cc.cwnd = cc.ssthresh
    cc.on_ack(S, rtt=10_000, now=10 * US)
    assert cc.epoch_start == 10 * US
    assert cc.cwnd_epoch == 70 * S
    cc.on_congestion(now=11 * US)
    assert cc.epoch_start is None


def test_cubic_clock_skips_application_limited_periods():
    rtt = 50_000

    def run(pause):
        cc = after_loss("cubic", 300)
        now = 0
        for _ in range(40):                 # 2 s of cwnd-limited sending
            for i in range(cc.cwnd // S):
                cc.on_ack(S, rtt=rtt, now=now)
            now += rtt
        if pause:
            for _ in range(pause // rtt):   # the application sends only a trickle
                cc.on_ack(S, flight=5 * S, rtt=rtt, now=now)
                now += rtt
        start = now
        for _ in range(40):
            for i in range(cc.cwnd // S):
                cc.on_ack(S, rtt=rtt, now=now)
            now += rtt
        return cc, start

    plain, s0 = run(0)
    paused, s1 = run(3 * US)
    assert s1 - s0 == 3 * US
    assert paused.epoch_start == plain.epoch_start + 3 * US
    assert paused.exact_cwnd == pytest.approx(plain.exact_cwnd, rel=1e-12)


# =============================================================================================
# Edge values: no overflow, no division by zero, no NaN
# =============================================================================================

def check_invariants(cc):
    assert cc.smss >= 1
    assert min(cc.smss, CWND_MAX) <= cc.cwnd <= CWND_MAX
    assert cc.ssthresh == U32 or cc.ssthresh >= min(2 * cc.smss, CWND_MAX)
    for v in (cc.exact_cwnd, cc.w_max, cc.w_est, cc.k, cc.cwnd_epoch, cc.cwnd_prior):
        assert math.isfinite(v) and v >= 0
    assert 0 <= cc.exact_cwnd - cc.cwnd < 1


@pytest.mark.parametrize("algo", ["newreno", "cubic"])
@pytest.mark.parametrize("smss", [0, 1, 2, 536, 65535, 1 << 29, U32])
def test_extreme_smss_and_zero_times(algo, smss):
    cc = CongestionControl(algo, smss)
    assert cc.smss == max(1, min(smss, 1 << 29))
    assert cc.cwnd == min(iw(cc.smss), CWND_MAX)
    for _ in range(50):
        cc.on_ack(U32, flight=U32, rtt=0, now=0)
        check_invariants(cc)
    cc.on_congestion(flight=0, now=0)
    check_invariants(cc)
    cc.on_recovery_exit(now=0)
    for _ in range(100):
        cc.on_ack(1, flight=U32, rtt=0, now=0)
        check_invariants(cc)
    cc.on_rto(flight=U32, now=0)
    check_invariants(cc)
    for _ in range(100):
        cc.on_ack(U32, flight=U32, rtt=U32, now=(1 << 64) - 1)
        check_invariants(cc)
    cc.on_idle_restart(now=0)
    cc.on_ack(1, flight=U32, rtt=U32, now=0)            # time ran backwards
    check_invariants(cc)
    cc.set_smss(0)
    check_invariants(cc)


def test_cubic_grows_with_zero_rtt_and_a_frozen_clock():
    # t = 0 and RTT = 0 forever: the curve gives nothing, the Reno-friendly estimate still grows.
    cc = after_loss("cubic", 100)
    w = cc.cwnd
    for _ in range(1000):
        cc.on_ack(S, rtt=0, now=0)
    assert cc.cwnd > w + 5 * S
    check_invariants(cc)


def test_cwnd_is_capped():
    for algo in ("newreno", "cubic"):
        cc = CongestionControl(algo, 65535)
        now = 0
        for _ in range(10000):
            now += 10 * US
            cc.on_ack(2 * 65535, flight=U32, rtt=US, now=now)
        assert cc.cwnd == CWND_MAX
        cc.on_congestion(flight=U32)
        assert cc.ssthresh == CWND_MAX and cc.cwnd == CWND_MAX
        check_invariants(cc)


# =============================================================================================
# Random event sequences against the reference model
# =============================================================================================

events = st.lists(
    st.one_of(
        st.tuples(st.just("ack"), st.integers(0, 5 * S), st.sampled_from([0.25, 0.75, 1.0, 1.5]),
                  st.integers(0, 500_000), st.integers(0, 200_000)),
        st.tuples(st.just("congestion"), st.sampled_from([0.25, 0.75, 1.0, 1.5])),
        st.tuples(st.just("rto"), st.sampled_from([0.25, 0.75, 1.0, 1.5])),
        st.just(("exit",)),
        st.just(("idle",)),
    ),
    max_size=150,
)


def replay(algo, smss, evs):
    cc = CongestionControl(algo, smss)
    ref = Ref(algo, smss)
    now = 0
    for ev in evs:
        kind = ev[0]
        if kind == "ack":
            _, acked, frac, rtt, dt = ev
            now += dt
            flight = min(int(cc.cwnd * frac), U32)
            cc.on_ack(acked, flight=flight, rtt=rtt, now=now)
            ref.on_ack(acked, flight=flight, rtt=rtt, now=now)
        elif kind in ("congestion", "rto"):
            flight = min(int(cc.cwnd * ev[1]), U32)
            getattr(cc, "on_" + kind)(flight=flight, now=now)
            getattr(ref, "on_" + kind)(flight=flight, now=now)
        elif kind == "exit":
            cc.on_recovery_exit(now=now)
            ref.on_recovery_exit(now=now)
        else:
            cc.on_idle_restart(now=now)
            ref.on_idle_restart(now=now)
        check_invariants(cc)
        yield cc, ref


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 100, 536, 1460, 9000]), events)
def test_newreno_matches_reference(smss, evs):
    for cc, ref in replay("newreno", smss, evs):
        assert (cc.cwnd, cc.ssthresh, cc.bytes_acked) == (ref.cwnd, ref.ssthresh, ref.bytes_acked)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 536, 1460, 9000]), events)
def test_cubic_matches_reference(smss, evs):
    for cc, ref in replay("cubic", smss, evs):
        assert_same(cc, ref, rel=1e-6)
