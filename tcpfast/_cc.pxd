# cython: language_level=3
"""Congestion control: RFC 5681 slow start and congestion avoidance with NewReno's window rules
(RFC 5681 §3, RFC 6582) or CUBIC (RFC 9438), chosen per connection; CUBIC is the default.

This module owns only ``cwnd`` and ``ssthresh`` arithmetic. *When* a loss is detected and how
recovery proceeds (fast retransmit, NewReno partial ACKs, RFC 6675 SACK recovery) is the
connection's business (``_tcb``), which calls these hooks. Byte counts, microseconds.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t

ctypedef enum cc_algo:
    CC_NEWRENO = 0
    CC_CUBIC = 1

ctypedef struct cc_state:
    cc_algo algo
    uint32_t smss
    uint32_t cwnd
    uint32_t ssthresh
    uint32_t bytes_acked           # RFC 5681 §3.1 byte counting in congestion avoidance
    # CUBIC (RFC 9438 §4); windows in bytes, times in microseconds
    double w_max                   # window before the last reduction
    double w_last_max              # for fast convergence (§4.7)
    double k                       # seconds (§4.2)
    double cwnd_epoch              # cwnd at the start of the epoch
    double w_est                   # Reno-friendly estimate (§4.3)
    uint64_t epoch_start           # 0 = no epoch yet
    uint32_t min_rtt               # smallest RTT seen, for the Reno-friendly region's timing

# Initial window: RFC 6928 IW10, min(10*SMSS, max(2*SMSS, 14600)); ssthresh starts "arbitrarily
# high" (RFC 5681 §3.1).
cdef void cc_init(cc_state* cc, cc_algo algo, uint32_t smss) noexcept nogil
cdef void cc_set_smss(cc_state* cc, uint32_t smss) noexcept nogil
# An ACK acknowledged ``acked`` new bytes outside loss recovery. ``rtt`` is the latest RTT
# sample or SRTT (us), ``now`` the time (us). Slow start below ssthresh (RFC 5681 §3.1, with
# L = 2*SMSS per RFC 3465 / RFC 9438 §4.10); congestion avoidance above.
cdef void cc_on_ack(cc_state* cc, uint32_t acked, uint32_t flight, uint32_t rtt,
                    uint64_t now) noexcept nogil
# A loss was detected by duplicate ACKs / SACK and recovery begins: ssthresh and cwnd are
# reduced (NewReno: max(FlightSize/2, 2*SMSS), RFC 5681 eq. 4; CUBIC: beta_cubic = 0.7, §4.6).
cdef void cc_on_congestion(cc_state* cc, uint32_t flight, uint64_t now) noexcept nogil
# The retransmission timer expired: ssthresh as above, cwnd = 1 SMSS (RFC 5681 §3.1 eq. 4 and
# the loss window; RFC 9438 §4.8).
cdef void cc_on_rto(cc_state* cc, uint32_t flight, uint64_t now) noexcept nogil
# Leaving fast recovery (RFC 6582 §3.2 step 3 / RFC 6675 §5): cwnd = ssthresh.
cdef void cc_on_recovery_exit(cc_state* cc, uint64_t now) noexcept nogil
# Sending after an idle period longer than one RTO: cwnd = min(cwnd, restart window)
# (RFC 5681 §4.1); CUBIC restarts its epoch.
cdef void cc_on_idle_restart(cc_state* cc, uint64_t now) noexcept nogil
