# cython: language_level=3
"""Congestion control: NewReno window rules (RFC 5681, RFC 6582) and CUBIC (RFC 9438).

The C-level functions are declared in ``_cc.pxd`` for ``_tcb`` to ``cimport``; they touch only
the ``cc_state`` they are given, take ``now`` as an argument, and never fail. The Python class
:class:`CongestionControl` below wraps one ``cc_state`` for users and tests and calls exactly
the same functions.

Units: windows are bytes (``uint32_t`` in ``cc_state``, ``double`` for CUBIC's real-valued
windows), times are microseconds. RFC 9438 writes its formulas in segments and seconds
(§4.1); the CUBIC code converts at the formula's edge: windows / SMSS into segments, time / 1e6
into seconds, and back.

Choices this module makes (each with its reason at the code):
- Slow start: ``cwnd += min(acked, L)`` with L = 2*SMSS (RFC 3465 §2.3), not RFC 5681 eq. 2's
  L = SMSS. A receiver that delays ACKs (RFC 5681 §4.2: an ACK at least every second full-sized
  segment, as Linux does outside quick-ACK mode) acknowledges two segments per ACK; with L = SMSS
  the window then grows by only 1.5x per RTT instead of doubling, so slow start takes ~70% more
  round trips. L = 2*SMSS restores doubling for such ACKs and is the largest L RFC 3465 allows
  (MUST NOT exceed 2*SMSS), so stretch ACKs and ACK division (RFC 5681 §5) still cannot inflate
  cwnd. RFC 5681 §3.1 calls L > SMSS experimental, like the IW10 (RFC 6928) this stack also
  uses; ``cc_state.abc_l = 1`` gives the strict RFC 5681 behaviour. After an RTO, L = SMSS
  (RFC 3465 §2.3: a cumulative ACK then covers data that left the network long ago).
- ssthresh from FlightSize, not cwnd, for both algorithms (RFC 5681 eq. 4 and its note on using
  cwnd by mistake; RFC 9438 §4.6 Figure 5 uses flight_size too).
- No growth while the window is not used (RFC 7661 §4.3's half-window test, RFC 9438 §5.8).
- CUBIC's K uses RFC 9438 Figure 2, cbrt((W_max - cwnd_epoch) / C), which equals RFC 8312's
  cbrt(W_max * (1 - beta_cubic) / C) only when the epoch starts at exactly beta_cubic * W_max;
  with FlightSize-based reduction and fast convergence it generally does not.
- CUBIC slow start is Reno's (RFC 9438 §4.10 allows it; HyStart++, RFC 9406, is not done here).
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t, UINT32_MAX
from libc.math cimport cbrt, floor

import operator

# RFC 9438 §4.1.1 constants. C is in segments / second**3 (§5 explains 0.4); beta_cubic = 0.7
# (§4.6, SHOULD); alpha_cubic = 3 (1 - beta) / (1 + beta) makes the Reno-friendly estimate grow
# like AIMD(1, 0.5) on average (§4.3, Figure 3). ssthresh applies beta as the integer ratio 7/10
# (see _ssthresh_after_loss); W_max and the curve use the double.
cdef double CUBIC_C_ = 0.4
cdef double CUBIC_BETA_ = 0.7
cdef double CUBIC_ALPHA_ = 3.0 * (1.0 - 0.7) / (1.0 + 0.7)

CUBIC_C = CUBIC_C_
CUBIC_BETA = CUBIC_BETA_
CUBIC_ALPHA = CUBIC_ALPHA_
CWND_MAX = CC_CWND_MAX
SSTHRESH_INITIAL = UINT32_MAX


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

cdef inline uint32_t _clamp_window(uint64_t w) noexcept nogil:
    """A window in bytes, bounded to CC_CWND_MAX (so 64-bit intermediate sums never wrap)."""
    return <uint32_t>(w if w < CC_CWND_MAX else CC_CWND_MAX)


cdef inline uint32_t _smss_ok(uint32_t smss) noexcept nogil:
    """SMSS as used here: at least 1 (every division is by smss or by cwnd >= smss) and at most
    CC_CWND_MAX / 2, so that 2*SMSS is still a window. The MSS option is 16 bits (RFC 9293 §3.2),
    so real values are far inside these bounds."""
    if smss == 0:
        return 1
    return smss if smss <= CC_CWND_MAX // 2 else CC_CWND_MAX // 2


cdef inline uint32_t _floor2(const cc_state* cc) noexcept nogil:
    """2*SMSS, the least ssthresh after a reduction (RFC 5681 eq. 4, RFC 9438 §4.6 Figure 5)."""
    return _clamp_window(2 * <uint64_t>cc.smss)


cdef inline uint32_t _ssthresh_after_loss(const cc_state* cc, uint32_t flight) noexcept nogil:
    """The new ssthresh after a loss, from FlightSize (not cwnd, RFC 5681 §3.1 note on eq. 4).

    NewReno: max(FlightSize / 2, 2*SMSS), RFC 5681 eq. 4. CUBIC: max(flight_size * beta_cubic,
    2*SMSS), RFC 9438 §4.6 Figure 5 (a gentler decrease, §3.4, compensated in §4.3).
    """
    cdef uint32_t s
    if cc.algo == CC_CUBIC:
        # beta_cubic = 7/10 exactly, in integers: 0.7 is not a binary fraction, and
        # flight * 0.7 in doubles can land a byte short (1460000 * 0.7 = 1021999.99...).
        s = _clamp_window(<uint64_t>flight * 7 // 10)
    else:
        s = _clamp_window(flight // 2)
    cdef uint32_t lo = _floor2(cc)
    return s if s > lo else lo


cdef inline double _cwnd_d(const cc_state* cc) noexcept nogil:
    """cwnd with CUBIC's not-yet-applied fractional bytes, as a real number of bytes."""
    return <double>cc.cwnd + cc.cwnd_frac


cdef inline void _set_cwnd_d(cc_state* cc, double w) noexcept nogil:
    """Store a real-valued window: whole bytes in cwnd, the fraction kept for the next ACK.

    CUBIC's per-ACK increments ((target - cwnd) / cwnd * acked, §4.4-4.5) are often below one
    byte on a large window; truncating each would stall growth, so the remainder is carried.
    """
    if w >= <double>CC_CWND_MAX:
        cc.cwnd = CC_CWND_MAX
        cc.cwnd_frac = 0.0
    elif w < <double>cc.smss:          # never below one segment (RFC 5681 §3.1 loss window)
        cc.cwnd = cc.smss
        cc.cwnd_frac = 0.0
    else:
        cc.cwnd = <uint32_t>w
        cc.cwnd_frac = w - floor(w)


cdef inline void _set_cwnd(cc_state* cc, uint32_t w) noexcept nogil:
    """Store a window in bytes, within [SMSS, CC_CWND_MAX] (ssthresh may still be UINT32_MAX)."""
    if w > CC_CWND_MAX:
        w = CC_CWND_MAX
    cc.cwnd = w if w >= cc.smss else cc.smss
    cc.cwnd_frac = 0.0


cdef inline double _w_cubic(const cc_state* cc, double t) noexcept nogil:
    """W_cubic(t) = C (t - K)**3 + W_max, RFC 9438 §4.2 Figure 1, in bytes (t in seconds).

    The curve is evaluated in segments, as the RFC defines C (segments / s**3), and scaled back.
    """
    cdef double d = t - cc.k
    return (CUBIC_C_ * d * d * d) * <double>cc.smss + cc.w_max


# ---------------------------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------------------------

cdef uint32_t cc_initial_window(uint32_t smss) noexcept nogil:
    """RFC 6928 §2 equation (1): IW = min(10*MSS, max(2*MSS, 14600)).

    Ten segments for the common MSSes (1460 -> 14600 bytes), never fewer than two (so a jumbo
    MSS of 8960 gets 17920), never more than ten (536 -> 5360).
    """
    cdef uint64_t s = _smss_ok(smss)
    cdef uint64_t hi = 10 * s, lo = 2 * s
    if lo < 14600:
        lo = 14600
    return _clamp_window(hi if hi < lo else lo)


cdef void cc_init(cc_state* cc, cc_algo algo, uint32_t smss) noexcept nogil:
    cc.algo = CC_CUBIC if algo == CC_CUBIC else CC_NEWRENO
    cc.smss = _smss_ok(smss)
    cc.cwnd = cc_initial_window(cc.smss)
    # RFC 5681 §3.1: ssthresh "SHOULD be set arbitrarily high", so that the network, not a host
    # constant, ends the first slow start.
    cc.ssthresh = UINT32_MAX
    cc.bytes_acked = 0
    cc.abc_l = 2                       # RFC 3465 §2.3, see the module docstring
    cc.fast_convergence = 1            # RFC 9438 §4.7: SHOULD be implemented
    cc.rto_hold = 0
    cc.ss_after_rto = 0
    cc.app_limited = 0
    cc.epoch_valid = 0
    cc.app_limited_start = 0
    cc.cwnd_frac = 0.0
    cc.w_max = 0.0                     # undefined until the first congestion event
    cc.w_last_max = 0.0
    cc.cwnd_prior = 0.0
    cc.k = 0.0
    cc.cwnd_epoch = 0.0
    cc.w_est = 0.0
    cc.epoch_start = 0
    cc.min_rtt = 0


cdef void cc_set_smss(cc_state* cc, uint32_t smss) noexcept nogil:
    cdef uint32_t old = cc.smss
    cdef uint32_t new = _smss_ok(smss)
    cdef uint64_t w
    if new == old:
        return
    if cc.ssthresh == UINT32_MAX and cc.cwnd == cc_initial_window(old):
        # Nothing has been learned about the path yet (no reduction, still at IW, or back at it
        # after an idle restart): the initial window for the new MSS is as safe as the old one.
        cc.smss = new
        _set_cwnd(cc, cc_initial_window(new))
    elif new < old:
        # RFC 5681 §3.1: "cwnd SHOULD be reduced by the ratio of the old segment size to the new
        # segment size", so that the same number of (now smaller) segments is in flight and a
        # too-large MSS found by PMTUD does not turn into a burst of many small segments.
        w = <uint64_t>cc.cwnd * new // old
        cc.smss = new
        _set_cwnd(cc, _clamp_window(w))
    else:
        # A larger MSS: the byte count the path has absorbed is kept; scaling up would send a
        # burst larger than any the path has carried.
        cc.smss = new
        _set_cwnd(cc, cc.cwnd)
    # The ssthresh floor of RFC 5681 eq. 4 is in segments; keep it for the new size.
    if cc.ssthresh < _floor2(cc):
        cc.ssthresh = _floor2(cc)


# ---------------------------------------------------------------------------------------------
# ACK of new data
# ---------------------------------------------------------------------------------------------

cdef uint32_t _slow_start(cc_state* cc, uint32_t acked) noexcept nogil:
    """RFC 5681 §3.1 slow start with RFC 3465 byte counting; returns the bytes of this ACK left
    over for congestion avoidance once cwnd reaches ssthresh.

    cwnd += min(acked, L): counting bytes, not ACKs, defeats ACK division (RFC 5681 §3.1 and §5);
    the limit L keeps a stretch ACK from releasing a line-rate burst (RFC 3465 §2.3). L is
    2*SMSS, or 1*SMSS in the slow start that follows an RTO: RFC 3465 §2.3 requires that because
    a cumulative ACK then often covers data that arrived at the receiver long before and says
    nothing about what left the network in the last RTT.
    """
    cdef uint32_t l_segs = 1 if (cc.ss_after_rto or cc.abc_l < 2) else 2
    cdef uint64_t limit = <uint64_t>l_segs * cc.smss
    cdef uint64_t inc = acked if acked < limit else limit
    cdef uint64_t room = <uint64_t>cc.ssthresh - cc.cwnd      # > 0: the caller checked
    if inc < room:
        _set_cwnd(cc, _clamp_window(cc.cwnd + inc))
        return 0
    # Slow start ends at ssthresh (RFC 5681 §3.1: "when cwnd exceeds ssthresh (or, optionally,
    # when it reaches it)"): stopping exactly there makes the next CUBIC epoch start from the
    # window that the decrease chose. The bytes beyond what filled the gap count as
    # congestion-avoidance bytes, as Linux's tcp_slow_start() hands them on.
    _set_cwnd(cc, _clamp_window(cc.ssthresh))
    cc.ss_after_rto = 0
    return <uint32_t>(acked - room) if acked > room else 0


cdef void _reno_ca(cc_state* cc, uint32_t acked) noexcept nogil:
    """RFC 5681 §3.1 congestion avoidance by byte counting (RFC 3465 §2.1).

    bytes_acked collects the bytes ACKed; each time it reaches cwnd, cwnd grows by one SMSS and
    bytes_acked drops by the old cwnd. That is one segment per window of data delivered, i.e.
    per RTT, whether the receiver ACKs every segment or every second one -- which eq. 3
    (SMSS*SMSS/cwnd per ACK) gets wrong with delayed ACKs (RFC 5681 §3.1). cwnd "MUST NOT be
    increased by more than SMSS bytes" per ACK, so one ACK gives at most one increment, and the
    carried credit is kept below one window so a huge stretch ACK cannot bank several.
    """
    cdef uint64_t b = <uint64_t>cc.bytes_acked + acked
    cdef uint32_t old = cc.cwnd
    if b >= old:
        b -= old
        _set_cwnd(cc, _clamp_window(<uint64_t>old + cc.smss))
        if b >= cc.cwnd:
            b = cc.cwnd - 1
    cc.bytes_acked = <uint32_t>(b if b < UINT32_MAX else UINT32_MAX)


cdef void _cubic_epoch_start(cc_state* cc, uint64_t now) noexcept nogil:
    """Begin a congestion avoidance stage (RFC 9438 §4.2): t_epoch, cwnd_epoch, K, W_est."""
    cdef double segs
    cc.epoch_valid = 1
    cc.epoch_start = now
    cc.cwnd_epoch = _cwnd_d(cc)
    if cc.w_max <= cc.cwnd_epoch:
        # No plateau above us: after an RTO (§4.8), after a slow start that ended without loss
        # (§4.10), or when the epoch starts above W_max. The RFC then sets K = 0 and W_max to the
        # window at the start of the stage, so the curve is convex (probing) from here.
        cc.w_max = cc.cwnd_epoch
        cc.k = 0.0
        if cc.cwnd_prior <= 0.0:
            cc.cwnd_prior = cc.cwnd_epoch    # §4.10: "CUBIC sets cwnd_prior = cwnd"
    else:
        # §4.2 Figure 2: K = cbrt((W_max - cwnd_epoch) / C), in segments so that C keeps its
        # units; K is the time the curve takes to climb back from cwnd_epoch to W_max.
        segs = (cc.w_max - cc.cwnd_epoch) / <double>cc.smss
        cc.k = cbrt(segs / CUBIC_C_)
    # §4.3: "W_est is set equal to cwnd_epoch at the start of the congestion avoidance stage"
    # (and §4.8 says the same after a timeout).
    cc.w_est = cc.cwnd_epoch


cdef void _cubic_ca(cc_state* cc, uint32_t acked, uint32_t rtt, uint64_t now) noexcept nogil:
    """RFC 9438 §4.2-4.5: one new ACK in congestion avoidance."""
    cdef double cwnd, t, target, w_t, alpha, new
    if not cc.epoch_valid:
        _cubic_epoch_start(cc, now)
    cwnd = _cwnd_d(cc)
    # t = t_current - t_epoch, in seconds; a clock that steps back counts as no time.
    t = <double>(now - cc.epoch_start) / 1e6 if now > cc.epoch_start else 0.0
    # §4.2: target = W_cubic(t + RTT) with RTT the smoothed RTT, bounded below by cwnd (the rate of
    # increase never goes negative) and above by 1.5 cwnd (never faster than slow start).
    target = _w_cubic(cc, t + <double>rtt / 1e6)
    if target < cwnd:
        target = cwnd
    elif target > 1.5 * cwnd:
        target = 1.5 * cwnd
    # §4.3 Figure 4: W_est += alpha_cubic * segments_acked / cwnd, in segments. In bytes:
    # (acked / SMSS) / (cwnd / SMSS) segments = acked / cwnd segments = acked * SMSS / cwnd bytes.
    # alpha becomes 1 once W_est has reached cwnd_prior, where Reno itself would be growing.
    alpha = 1.0 if cc.w_est >= cc.cwnd_prior else CUBIC_ALPHA_
    cc.w_est += alpha * <double>acked * <double>cc.smss / cwnd
    if cc.w_est > <double>CC_CWND_MAX:
        cc.w_est = <double>CC_CWND_MAX
    w_t = _w_cubic(cc, t)
    if w_t < cc.w_est:
        # Reno-friendly region (§4.3): the cubic curve is below what Reno would have by now
        # (short RTTs, small windows); cwnd "SHOULD be set to W_est". Never shrink on an ACK.
        new = cc.w_est if cc.w_est > cwnd else cwnd
    else:
        # Concave (cwnd < W_max, §4.4) and convex (cwnd >= W_max, §4.5) regions alike: cwnd grows
        # by (target - cwnd) / cwnd per SMSS acknowledged, so byte-proportionally per ACK.
        new = cwnd + (target - cwnd) / cwnd * <double>acked
    _set_cwnd_d(cc, new)


cdef void cc_on_ack(cc_state* cc, uint32_t acked, uint32_t flight, uint32_t rtt,
                    uint64_t now) noexcept nogil:
    if acked == 0:
        return
    # New data was acknowledged, so the next RTO (if any) is for another segment: RFC 5681 §3.1
    # reduces ssthresh again then.
    cc.rto_hold = 0
    if rtt and (cc.min_rtt == 0 or rtt < cc.min_rtt):
        cc.min_rtt = rtt
    # Is the window in use? With less than half of cwnd in flight when this ACK arrived, the
    # sender is limited by the application or the receiver, and the ACK says nothing about
    # whether the network could take a larger window: RFC 7661 §4.3 uses this half-window test
    # for a window that is no longer validated, RFC 9438 §5.8 says CUBIC "does not increase its
    # congestion window if a flow is application limited", and Linux's tcp_is_cwnd_limited()
    # uses the same test in slow start.
    if 2 * <uint64_t>flight < cc.cwnd:
        if not cc.app_limited:
            cc.app_limited = 1
            cc.app_limited_start = now
        return
    if cc.app_limited:
        cc.app_limited = 0
        # RFC 9438 §4.2: "The elapsed time t ... MUST NOT include periods during which cwnd has
        # not been updated due to application-limited behavior": slide the epoch past them.
        if cc.epoch_valid and now > cc.app_limited_start:
            cc.epoch_start += now - cc.app_limited_start
    if cc.cwnd < cc.ssthresh:
        # RFC 5681 §3.1: slow start "when cwnd < ssthresh"; CUBIC uses the same (RFC 9438 §4.10).
        acked = _slow_start(cc, acked)
        if acked == 0 or cc.cwnd < cc.ssthresh:
            return
    # Congestion avoidance (RFC 5681 §3.1: at cwnd == ssthresh "the sender may use either").
    if cc.algo == CC_CUBIC:
        _cubic_ca(cc, acked, rtt, now)
    else:
        _reno_ca(cc, acked)


# ---------------------------------------------------------------------------------------------
# Congestion signals
# ---------------------------------------------------------------------------------------------

cdef inline void _end_epoch(cc_state* cc) noexcept nogil:
    cc.epoch_valid = 0
    cc.app_limited = 0
    cc.bytes_acked = 0                 # RFC 3465 §2.1's counter restarts with the new window


cdef void cc_on_congestion(cc_state* cc, uint32_t flight, uint64_t now) noexcept nogil:
    cdef double cwnd
    if cc.algo == CC_CUBIC:
        cwnd = _cwnd_d(cc)
        cc.cwnd_prior = cwnd           # §4.6 Figure 5: "save cwnd"
        cc.w_last_max = cc.w_max
        # §4.7 fast convergence: a loss below the last plateau means the available bandwidth
        # shrank (a new flow arrived): plateau lower, at cwnd (1 + beta) / 2, to release
        # bandwidth sooner. Otherwise W_max is the cwnd before the reduction.
        if cc.fast_convergence and cwnd < cc.w_max:
            cc.w_max = cwnd * (1.0 + CUBIC_BETA_) / 2.0
        else:
            cc.w_max = cwnd
    # RFC 5681 §3.2 step 2 / eq. 4, RFC 9438 §4.6 Figure 5, RFC 6675 §5 (4.2): ssthresh from
    # FlightSize; cwnd = ssthresh is the window recovery ends with (MUST reduce "immediately upon
    # entering loss recovery", RFC 9438 §4.6). Any inflation during recovery is the TCB's.
    cc.ssthresh = _ssthresh_after_loss(cc, flight)
    _set_cwnd(cc, cc.ssthresh)
    cc.rto_hold = 0
    cc.ss_after_rto = 0
    _end_epoch(cc)                     # the next CA stage starts a new curve (§4.2)


cdef void cc_on_rto(cc_state* cc, uint32_t flight, uint64_t now) noexcept nogil:
    if not cc.rto_hold:
        # First timeout of this segment: RFC 5681 §3.1 eq. 4 (CUBIC: beta_cubic, RFC 9438 §4.8,
        # "same as in Section 4.6"). Had it timed out before with no new data ACKed since,
        # FlightSize would now describe the collapsed window, and RFC 5681 §3.1 says ssthresh
        # "is held constant" on later retransmissions of the same segment.
        if cc.algo == CC_CUBIC:
            cc.cwnd_prior = _cwnd_d(cc)
            cc.w_last_max = cc.w_max
            # §4.8: the first CA stage after a timeout uses K = 0 and W_max = the window it
            # starts with; 0 marks W_max undefined until then (see _cubic_epoch_start).
            cc.w_max = 0.0
        cc.ssthresh = _ssthresh_after_loss(cc, flight)
        cc.rto_hold = 1
    # RFC 5681 §3.1: cwnd "MUST be set to no more than the loss window, LW, which equals 1
    # full-sized segment (regardless of the value of IW)"; slow start then restarts the ACK clock.
    _set_cwnd(cc, cc.smss)
    cc.ss_after_rto = 1
    _end_epoch(cc)


cdef void cc_on_recovery_exit(cc_state* cc, uint64_t now) noexcept nogil:
    # RFC 6582 §3.2 step 3, full acknowledgment, option (2): cwnd = ssthresh, "deflating" the
    # window (option (1) needs FlightSize, which this hook does not get; the TCB limits the burst).
    # With RFC 6675 cwnd was never inflated and is already ssthresh.
    _set_cwnd(cc, cc.ssthresh)
    cc.rto_hold = 0
    _end_epoch(cc)                     # CUBIC's CA stage (and t_epoch) begins with the next ACK


cdef void cc_on_idle_restart(cc_state* cc, uint64_t now) noexcept nogil:
    # RFC 5681 §4.1: after more than an RTO without sending, the ACK clock is gone and the path
    # may have changed, so "a TCP SHOULD set cwnd to no more than RW before beginning
    # transmission", RW = min(IW, cwnd). ssthresh keeps what was learned.
    cdef uint32_t rw = cc_initial_window(cc.smss)
    if cc.cwnd > rw:
        _set_cwnd(cc, rw)
    # RFC 9438 §4.2/§5.8: t must not include the idle period, or W_cubic(t) would be far above
    # the path's capacity on restart; CUBIC starts a new epoch from the restarted window.
    _end_epoch(cc)


# ---------------------------------------------------------------------------------------------
# Python wrapper (for users and tests)
# ---------------------------------------------------------------------------------------------

cdef inline uint32_t _u32(object v, str name) except? 0:
    v = operator.index(v)               # ints (and int-likes) only: a float is a TypeError
    if not 0 <= v <= 0xffffffff:
        raise ValueError(f"{name} must be a 32-bit unsigned value, got {v!r}")
    return <uint32_t>v


cdef inline uint64_t _u64(object v, str name) except? 0:
    v = operator.index(v)
    if not 0 <= v <= 0xffffffffffffffff:
        raise ValueError(f"{name} must be a 64-bit unsigned value, got {v!r}")
    return <uint64_t>v


_ALGOS = {"newreno": CC_NEWRENO, "cubic": CC_CUBIC}


def initial_window(smss) -> int:
    """initial_window(smss) -> int: RFC 6928's IW, min(10*SMSS, max(2*SMSS, 14600)) bytes."""
    return cc_initial_window(_u32(smss, "smss"))


cdef class CongestionControl:
    """CongestionControl(algo='cubic', smss=1460, *, fast_convergence=None, abc_limit=None)

    One connection's congestion window, driven by the same C functions ``_tcb`` calls. Byte
    counts are ints, times are microseconds (ints). ``flight`` arguments default to the current
    cwnd, i.e. a sender that fills its window. ``fast_convergence`` (RFC 9438 §4.7) and
    ``abc_limit`` (RFC 3465 L in segments, 1 or 2) keep ``cc_init``'s defaults (on, 2) unless given.
    """
    cdef cc_state st

    def __cinit__(self, algo="cubic", smss=1460, *, fast_convergence=None, abc_limit=None):
        if algo not in _ALGOS:
            raise ValueError(f"algo must be 'cubic' or 'newreno', got {algo!r}")
        cdef uint32_t s = _u32(smss, "smss")
        if abc_limit is not None:
            abc_limit = operator.index(abc_limit)
            if abc_limit not in (1, 2):
                raise ValueError("abc_limit (RFC 3465 L, in segments) must be 1 or 2")
        cc_init(&self.st, <cc_algo>_ALGOS[algo], s)
        if fast_convergence is not None:
            self.st.fast_convergence = 1 if fast_convergence else 0
        if abc_limit is not None:
            self.st.abc_l = <uint8_t>abc_limit

    def __repr__(self):
        return (f"<CongestionControl {self.algo} smss={self.st.smss} cwnd={self.st.cwnd} "
                f"ssthresh={self.st.ssthresh}>")

    # --- events -------------------------------------------------------------------------------

    def on_ack(self, acked, flight=None, rtt=0, now=0):
        """on_ack(acked, flight=None, rtt=0, now=0): ``acked`` new bytes were ACKed outside
        recovery; ``flight`` is FlightSize before the ACK, ``rtt`` SRTT (us), ``now`` (us)."""
        cdef uint32_t a = _u32(acked, "acked"), r = _u32(rtt, "rtt")
        cdef uint32_t f = self.st.cwnd if flight is None else _u32(flight, "flight")
        cdef uint64_t n = _u64(now, "now")
        cc_on_ack(&self.st, a, f, r, n)

    def on_congestion(self, flight=None, now=0):
        """on_congestion(flight=None, now=0): fast retransmit starts loss recovery."""
        cdef uint32_t f = self.st.cwnd if flight is None else _u32(flight, "flight")
        cc_on_congestion(&self.st, f, _u64(now, "now"))

    def on_rto(self, flight=None, now=0):
        """on_rto(flight=None, now=0): the retransmission timer expired."""
        cdef uint32_t f = self.st.cwnd if flight is None else _u32(flight, "flight")
        cc_on_rto(&self.st, f, _u64(now, "now"))

    def on_recovery_exit(self, now=0):
        """on_recovery_exit(now=0): fast recovery ended (full ACK)."""
        cc_on_recovery_exit(&self.st, _u64(now, "now"))

    def on_idle_restart(self, now=0):
        """on_idle_restart(now=0): about to send after more than an RTO idle."""
        cc_on_idle_restart(&self.st, _u64(now, "now"))

    def set_smss(self, smss):
        """set_smss(smss): the send MSS changed (PMTUD)."""
        cc_set_smss(&self.st, _u32(smss, "smss"))

    # --- state --------------------------------------------------------------------------------

    @property
    def algo(self) -> str:
        return "cubic" if self.st.algo == CC_CUBIC else "newreno"

    @property
    def smss(self) -> int:
        return self.st.smss

    @property
    def cwnd(self) -> int:
        """Congestion window, bytes. Settable (for tests that start from a given state)."""
        return self.st.cwnd

    @cwnd.setter
    def cwnd(self, value):
        cdef uint32_t v = _u32(value, "cwnd")
        _set_cwnd(&self.st, _clamp_window(v))

    @property
    def ssthresh(self) -> int:
        """Slow start threshold, bytes. Settable."""
        return self.st.ssthresh

    @ssthresh.setter
    def ssthresh(self, value):
        self.st.ssthresh = _u32(value, "ssthresh")

    @property
    def bytes_acked(self) -> int:
        return self.st.bytes_acked

    @property
    def in_slow_start(self) -> bool:
        return self.st.cwnd < self.st.ssthresh

    @property
    def fast_convergence(self) -> bool:
        return bool(self.st.fast_convergence)

    @property
    def abc_limit(self) -> int:
        return self.st.abc_l

    @property
    def w_max(self) -> float:
        """CUBIC W_max, bytes (0.0 = undefined)."""
        return self.st.w_max

    @property
    def w_last_max(self) -> float:
        return self.st.w_last_max

    @property
    def cwnd_prior(self) -> float:
        return self.st.cwnd_prior

    @property
    def k(self) -> float:
        """CUBIC K, seconds."""
        return self.st.k

    @property
    def cwnd_epoch(self) -> float:
        return self.st.cwnd_epoch

    @property
    def w_est(self) -> float:
        return self.st.w_est

    @property
    def epoch_start(self):
        """t_epoch in microseconds, or None when no CUBIC epoch is running."""
        return self.st.epoch_start if self.st.epoch_valid else None

    @property
    def min_rtt(self) -> int:
        return self.st.min_rtt

    @property
    def app_limited(self) -> bool:
        return bool(self.st.app_limited)

    @property
    def exact_cwnd(self) -> float:
        """cwnd including CUBIC's fractional bytes not yet applied."""
        return _cwnd_d(&self.st)


# =============================================================================================
# Proportional Rate Reduction (RFC 6937)
# =============================================================================================

cdef void prr_init(prr_state* p, uint32_t recover_fs) noexcept nogil:
    p.prr_delivered = 0
    p.prr_out = 0
    p.recover_fs = recover_fs if recover_fs else 1


cdef uint32_t prr_sndcnt(prr_state* p, uint32_t delivered, uint32_t pipe, uint32_t ssthresh,
                         uint32_t smss) noexcept nogil:
    cdef int64_t sndcnt, limit, banked
    p.prr_delivered += delivered
    if pipe > ssthresh:
        # Proportional Rate Reduction: sndcnt = CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out
        sndcnt = <int64_t>((<uint64_t>p.prr_delivered * ssthresh + p.recover_fs - 1) // p.recover_fs) \
            - p.prr_out
    else:
        # PRR-SSRB, the slow-start reduction bound: limit = MAX(prr_delivered - prr_out,
        # DeliveredData) + MSS; sndcnt = MIN(ssthresh - pipe, limit).
        banked = <int64_t>p.prr_delivered - p.prr_out
        limit = (banked if banked > delivered else <int64_t>delivered) + smss
        sndcnt = <int64_t>ssthresh - pipe
        if limit < sndcnt:
            sndcnt = limit
    return <uint32_t>sndcnt if sndcnt > 0 else 0


cdef void prr_on_send(prr_state* p, uint32_t n) noexcept nogil:
    p.prr_out += n


cdef class Prr:
    """Prr(recover_fs): RFC 6937 PRR-SSRB state, for tests (bytes)."""
    cdef prr_state p

    def __init__(self, recover_fs):
        prr_init(&self.p, recover_fs)

    def on_ack(self, delivered, pipe, ssthresh, smss) -> int:
        """on_ack(delivered, pipe, ssthresh, smss) -> sndcnt"""
        return prr_sndcnt(&self.p, delivered, pipe, ssthresh, smss)

    def on_send(self, n) -> None:
        prr_on_send(&self.p, n)

    @property
    def prr_delivered(self) -> int:
        return self.p.prr_delivered

    @property
    def prr_out(self) -> int:
        return self.p.prr_out

    @property
    def recover_fs(self) -> int:
        return self.p.recover_fs
