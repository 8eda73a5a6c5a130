# cython: language_level=3
"""Retransmission timing: ``rtt_estimator``, RFC 6298 SRTT/RTTVAR/RTO with K=4, G (clock
granularity) = 1 ms, a lower and an upper bound (defaults 200 ms and 120 s as Linux), an initial
RTO (1 s, RFC 6298 §2.1), and exponential backoff (§5.5) kept apart from the estimate so Karn's
rule (§3) can be applied. Times are microseconds.
"""
from libc.stdint cimport uint8_t, uint32_t

cdef enum:
    RTO_INITIAL_US = 1000000       # RFC 6298 §2.1
    RTO_MIN_US = 200000            # Linux TCP_RTO_MIN (RFC 6298 §2.4 allows below 1 s)
    RTO_MAX_US = 120000000         # Linux TCP_RTO_MAX; RFC 6298 §2.5 asks for >= 60 s
    RTT_GRANULARITY_US = 1000      # G in RFC 6298 §2
    DUPTHRESH = 3                  # RFC 6675 §2 / RFC 5681 §3.2

ctypedef struct rtt_estimator:
    uint32_t srtt                  # us; valid when has_sample
    uint32_t rttvar                # us
    uint32_t rto                   # us, the un-backed-off RTO (bounded)
    uint32_t rto_min
    uint32_t rto_max
    uint8_t has_sample
    uint8_t backoff                # doublings since the last new-data ACK (RFC 6298 §5.5);
                                   # saturates at 255, so it also counts expiries

cdef void rtt_init(rtt_estimator* e, uint32_t rto_initial, uint32_t rto_min,
                   uint32_t rto_max) noexcept nogil
# Take one RTT measurement (RFC 6298 §2.2 first, §2.3 later); the caller applies Karn's rule
# (no samples from retransmitted segments unless timestamps disambiguate them, RFC 7323 §4).
cdef void rtt_sample(rtt_estimator* e, uint32_t r) noexcept nogil
# The RTO to arm now: rto << backoff, capped at rto_max (RFC 6298 §5.5-5.6).
cdef uint32_t rtt_current_rto(const rtt_estimator* e) noexcept nogil
cdef void rtt_backoff(rtt_estimator* e) noexcept nogil          # the timer expired (§5.5)
cdef void rtt_reset_backoff(rtt_estimator* e) noexcept nogil    # new data ACKed (note after §5.7)
