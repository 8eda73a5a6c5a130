# cython: language_level=3
"""Retransmission timing (RFC 6298), declared in ``_rtx.pxd``.

Times are microseconds in ``uint32_t`` (up to ~71 minutes), computed with 64-bit intermediates.
The Python class :class:`RttEstimator` at the bottom is a thin wrapper for tests and tools; it
calls the same C functions.

(Loss detection is RACK-TLP, in ``_rack``. The RFC 6675 SACK scoreboard that came before it is
kept, unused by the stack, as a reference in ``tcpfast/testing/_scoreboard.pyx``.)
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t

import operator


# =============================================================================================
# RFC 6298 retransmission timer
# =============================================================================================

cdef inline uint32_t _clamp(uint64_t v, uint32_t lo, uint32_t hi) noexcept nogil:
    # Lower bound first, upper bound last: with a misconfigured lo > hi, the cap wins.
    if v < lo:
        v = lo
    if v > hi:
        v = hi
    return <uint32_t>v


cdef inline void _set_rto(rtt_estimator* e) noexcept nogil:
    """RTO <- SRTT + max(G, K*RTTVAR) (RFC 6298 §2.2/§2.3, with §4's G floor on the variance
    term), then bounded: below by ``rto_min`` (§2.4 asks for 1 s; like Linux we allow 200 ms)
    and above by ``rto_max`` (§2.5: a cap is allowed if at least 60 s)."""
    cdef uint64_t var = <uint64_t>e.rttvar * 4            # K = 4
    if var < RTT_GRANULARITY_US:
        var = RTT_GRANULARITY_US
    e.rto = _clamp(<uint64_t>e.srtt + var, e.rto_min, e.rto_max)


cdef void rtt_init(rtt_estimator* e, uint32_t rto_initial, uint32_t rto_min,
                   uint32_t rto_max) noexcept nogil:
    """No sample yet: RTO is the initial value (RFC 6298 §2.1, 1 s), itself kept within the
    bounds so that ``rto`` is always bounded."""
    e.srtt = 0
    e.rttvar = 0
    e.rto_min = rto_min
    e.rto_max = rto_max
    e.rto = _clamp(rto_initial, rto_min, rto_max)
    e.has_sample = 0
    e.backoff = 0


cdef void rtt_sample(rtt_estimator* e, uint32_t r) noexcept nogil:
    """Fold in one RTT measurement ``r`` (us). Integer arithmetic, truncating toward zero: at
    microsecond resolution the error is below 1 us per step. The backoff is not touched here:
    the caller resets it when new data is acknowledged (the note after RFC 6298 §5.7), which is
    also the only time a Karn-valid sample can arrive (§3)."""
    cdef uint64_t diff
    if not e.has_sample:
        # (2.2) first measurement: SRTT <- R, RTTVAR <- R/2.
        e.srtt = r
        e.rttvar = r // 2
        e.has_sample = 1
    else:
        # (2.3) RTTVAR first, with the *old* SRTT ("MUST be computed in the above order"):
        # RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|, SRTT <- 7/8 SRTT + 1/8 R'.
        diff = (e.srtt - r) if e.srtt >= r else (r - e.srtt)
        e.rttvar = <uint32_t>((<uint64_t>e.rttvar * 3 + diff) // 4)
        e.srtt = <uint32_t>((<uint64_t>e.srtt * 7 + r) // 8)
    _set_rto(e)


cdef uint32_t rtt_current_rto(const rtt_estimator* e) noexcept nogil:
    """RTO * 2**backoff (RFC 6298 §5.5 doubles on each expiry), capped at ``rto_max`` (§2.5).
    A 32-bit RTO shifted by fewer than 32 fits in 64 bits; 32 or more doublings of a non-zero
    RTO exceed any 32-bit cap, so no shift ever overflows."""
    cdef uint64_t v
    if e.rto == 0:
        return 0
    if e.backoff >= 32:
        return e.rto_max
    v = <uint64_t>e.rto << e.backoff
    return <uint32_t>v if v < e.rto_max else e.rto_max


cdef void rtt_backoff(rtt_estimator* e) noexcept nogil:
    """The timer expired (RFC 6298 §5.5). The estimate stays as it was (Karn: a retransmitted
    segment gives no sample, §3); only the exponent grows. It saturates at 255 rather than at
    the cap so that it still counts consecutive expiries for the caller's give-up rule."""
    if e.backoff < 255:
        e.backoff += 1


cdef void rtt_reset_backoff(rtt_estimator* e) noexcept nogil:
    """New data was acknowledged: the RTO "collapses" back to the estimate (note after §5.7)."""
    e.backoff = 0


# =============================================================================================
# Python wrapper (tests and tools)
# =============================================================================================

cdef inline uint32_t _u32(object value, str name) except? 0:
    value = operator.index(value)
    if not 0 <= value <= 0xffffffff:
        raise ValueError(f"{name} must be a 32-bit value, got {value!r}")
    return <uint32_t>value


RTO_INITIAL = RTO_INITIAL_US
RTO_MIN = RTO_MIN_US
RTO_MAX = RTO_MAX_US
RTT_GRANULARITY = RTT_GRANULARITY_US
DUP_THRESH = DUPTHRESH


cdef class RttEstimator:
    """RttEstimator(rto_initial=RTO_INITIAL, rto_min=RTO_MIN, rto_max=RTO_MAX)

    RFC 6298 estimator over an ``rtt_estimator`` struct; microseconds."""
    cdef rtt_estimator e

    def __init__(self, rto_initial=RTO_INITIAL_US, rto_min=RTO_MIN_US, rto_max=RTO_MAX_US):
        rtt_init(&self.e, _u32(rto_initial, "rto_initial"), _u32(rto_min, "rto_min"),
                 _u32(rto_max, "rto_max"))

    def sample(self, r) -> None:
        rtt_sample(&self.e, _u32(r, "r"))

    def current_rto(self) -> int:
        return rtt_current_rto(&self.e)

    def backoff(self) -> None:
        rtt_backoff(&self.e)

    def reset_backoff(self) -> None:
        rtt_reset_backoff(&self.e)

    @property
    def srtt(self) -> int:
        return self.e.srtt

    @property
    def rttvar(self) -> int:
        return self.e.rttvar

    @property
    def rto(self) -> int:
        return self.e.rto

    @property
    def rto_min(self) -> int:
        return self.e.rto_min

    @property
    def rto_max(self) -> int:
        return self.e.rto_max

    @property
    def has_sample(self) -> bool:
        return bool(self.e.has_sample)

    @property
    def backoff_count(self) -> int:
        return self.e.backoff

    def __repr__(self) -> str:
        return (f"RttEstimator(srtt={self.e.srtt}, rttvar={self.e.rttvar}, rto={self.e.rto}, "
                f"backoff={self.e.backoff})")
