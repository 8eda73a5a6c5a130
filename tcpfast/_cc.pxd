# cython: language_level=3
"""Congestion control: RFC 5681 slow start and congestion avoidance with NewReno's window rules
(RFC 5681 §3, RFC 6582) or CUBIC (RFC 9438), chosen per connection; CUBIC is the default.

This module owns only ``cwnd`` and ``ssthresh`` arithmetic. *When* a loss is detected and how
recovery proceeds (fast retransmit, NewReno partial ACKs, RFC 6675 SACK recovery) is the
connection's business (``_tcb``), which calls these hooks. Byte counts, microseconds.

Contract with the caller:
- ``flight`` is RFC 5681's FlightSize, SND.NXT - SND.UNA, taken *before* the event is processed
  (for ``cc_on_ack``: with SND.UNA not yet advanced past this ACK, so it includes ``acked``).
  Segments sent by Limited Transmit (RFC 3042) are left out of it at ``cc_on_congestion``
  (RFC 5681 §3.2 step 2).
- ``cc_on_ack`` is called for every ACK of new data outside fast recovery, including the ACKs
  that follow a retransmission timeout (that is slow start, RFC 5681 §3.1).
- The cwnd left by ``cc_on_congestion`` is the *post-recovery* window (= ssthresh). Inflating it
  by 3*SMSS and per duplicate ACK (RFC 5681 §3.2 steps 3-4, RFC 6582 §3.2), or driving sending
  from RFC 6675's pipe instead, is the TCB's business; ``cc_on_recovery_exit`` deflates it again.
- A window grows only while it is used: an ACK that arrives with ``2 * flight < cwnd`` (less than
  half the window in flight, RFC 7661 §4.3's test for a non-validated window) leaves cwnd alone,
  and CUBIC's clock does not run during such periods (RFC 9438 §4.2, §5.8).
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t

ctypedef enum cc_algo:
    CC_NEWRENO = 0
    CC_CUBIC = 1

cdef enum:
    # cwnd never exceeds 2**30 bytes: above the largest window a peer can offer (65535 << 14,
    # RFC 7323 §2.3), and small enough that SND.UNA + cwnd stays a valid sequence comparison.
    CC_CWND_MAX = 0x40000000

ctypedef struct cc_state:
    cc_algo algo
    uint32_t smss                  # in [1, CC_CWND_MAX / 2]: 0 is taken as 1, larger values are bounded
    uint32_t cwnd
    uint32_t ssthresh              # UINT32_MAX until the first reduction (RFC 5681 §3.1)
    uint32_t bytes_acked           # RFC 5681 §3.1 / RFC 3465 §2.1 byte counting in congestion avoidance
    uint8_t abc_l                  # slow start limit L in segments, 1 or 2 (RFC 3465 §2.3); default 2
    uint8_t fast_convergence       # RFC 9438 §4.7 on (default) or off
    uint8_t rto_hold               # an RTO fired and no new data was ACKed since: a further RTO
                                   # is the same segment timing out again, ssthresh is held (RFC 5681 §3.1)
    uint8_t ss_after_rto           # in the slow start that follows an RTO: L = 1*SMSS (RFC 3465 §2.3)
    uint8_t app_limited            # the last ACK found less than half the window in use
    uint8_t epoch_valid            # a CUBIC congestion avoidance epoch is running
    uint64_t app_limited_start     # us, when the current application-limited period was noticed
    double cwnd_frac               # fractional bytes of CUBIC growth not yet in cwnd (0 <= x < 1)
    # CUBIC (RFC 9438 §4); windows in bytes, times in microseconds unless noted
    double w_max                   # W_max: the plateau of the current curve, i.e. cwnd before the
                                   # last reduction, lowered by fast convergence (§4.7); 0 = undefined
                                   # (after an RTO until the next epoch starts, §4.8)
    double w_last_max              # the W_max in force before the last congestion event or RTO
                                   # (what §4.7 compared cwnd against)
    double cwnd_prior              # cwnd just before the last reduction (§4.1.2); W_est reaching it
                                   # switches alpha to 1 (§4.3)
    double k                       # seconds (§4.2)
    double cwnd_epoch              # cwnd at the start of the epoch
    double w_est                   # Reno-friendly estimate (§4.3)
    uint64_t epoch_start           # t_epoch, us; meaningful only while epoch_valid
    uint32_t min_rtt               # smallest nonzero rtt passed to cc_on_ack, us (0 = none yet);
                                   # kept for diagnostics: the RTT of §4.2 is SRTT, i.e. ``rtt``

# RFC 6928 IW10, min(10*SMSS, max(2*SMSS, 14600)), bounded by CC_CWND_MAX.
cdef uint32_t cc_initial_window(uint32_t smss) noexcept nogil
# Initial window: RFC 6928 IW10, min(10*SMSS, max(2*SMSS, 14600)); ssthresh starts "arbitrarily
# high" (RFC 5681 §3.1), UINT32_MAX. Call it once the send MSS is known (RFC 9293 §3.7.1).
cdef void cc_init(cc_state* cc, cc_algo algo, uint32_t smss) noexcept nogil
# The send MSS changed (PMTUD). Smaller: cwnd is scaled by new/old so it holds as many segments
# (RFC 5681 §3.1, "reduced by the ratio of the old segment size to the new"). Larger: cwnd keeps
# its byte count, except that a connection still at its initial window gets the new IW.
cdef void cc_set_smss(cc_state* cc, uint32_t smss) noexcept nogil
# An ACK acknowledged ``acked`` new bytes outside loss recovery. ``flight`` is FlightSize before
# the ACK, ``rtt`` the smoothed RTT (SRTT, RFC 9438 §4.1.2; 0 if none yet), ``now`` the time, us.
# Slow start below ssthresh: cwnd += min(acked, L) with L = 2*SMSS (RFC 3465 §2.2-2.3; RFC 5681
# §3.1 eq. 2 uses L = SMSS), L = SMSS in the slow start after an RTO; growth stops at ssthresh
# and the rest of the ACK counts towards congestion avoidance. Congestion avoidance at or above
# ssthresh: NewReno byte counting, at most SMSS per window of ACKed bytes (RFC 5681 §3.1); CUBIC
# RFC 9438 §4.2-4.5. Nothing grows while less than half the window is in flight (see above).
cdef void cc_on_ack(cc_state* cc, uint32_t acked, uint32_t flight, uint32_t rtt,
                    uint64_t now) noexcept nogil
# A loss was detected by duplicate ACKs / SACK and recovery begins: ssthresh and cwnd are
# reduced (NewReno: max(FlightSize/2, 2*SMSS), RFC 5681 eq. 4; CUBIC: W_max per §4.7, then
# max(FlightSize*beta_cubic, 2*SMSS) with beta_cubic = 0.7, §4.6). cwnd = ssthresh afterwards.
cdef void cc_on_congestion(cc_state* cc, uint32_t flight, uint64_t now) noexcept nogil
# The retransmission timer expired: ssthresh as above (CUBIC: beta_cubic, RFC 9438 §4.8), held
# if this is the same segment timing out again (no new data ACKed since the last RTO, RFC 5681
# §3.1); cwnd = 1 SMSS, the loss window (RFC 5681 §3.1).
cdef void cc_on_rto(cc_state* cc, uint32_t flight, uint64_t now) noexcept nogil
# Leaving fast recovery (RFC 6582 §3.2 step 3 option 2 / RFC 6675 §5): cwnd = ssthresh.
cdef void cc_on_recovery_exit(cc_state* cc, uint64_t now) noexcept nogil
# Sending after an idle period longer than one RTO: cwnd = min(cwnd, restart window)
# (RFC 5681 §4.1, RW = min(IW, cwnd)); CUBIC restarts its epoch (RFC 9438 §5.8).
cdef void cc_on_idle_restart(cc_state* cc, uint64_t now) noexcept nogil


# --- Proportional Rate Reduction (RFC 6937), how much to send per ACK during fast recovery -----
ctypedef struct prr_state:
    uint32_t prr_delivered         # bytes delivered to the receiver during this recovery
    uint32_t prr_out               # bytes sent during this recovery
    uint32_t recover_fs            # RecoverFS: FlightSize when recovery began

# RFC 6937 §3 "at the beginning of recovery": prr_delivered = prr_out = 0, RecoverFS = FlightSize.
cdef void prr_init(prr_state* p, uint32_t recover_fs) noexcept nogil
# RFC 6937 §3 "on every ACK during recovery", PRR-SSRB: adds ``delivered`` (DeliveredData) to
# prr_delivered and returns sndcnt, the bytes this ACK allows to be sent (the caller sets
# cwnd = pipe + sndcnt). ``pipe`` is RFC 6675's pipe after the ACK.
cdef uint32_t prr_sndcnt(prr_state* p, uint32_t delivered, uint32_t pipe, uint32_t ssthresh,
                         uint32_t smss) noexcept nogil
# "On any data transmission or retransmission: prr_out += (data sent)".
cdef void prr_on_send(prr_state* p, uint32_t n) noexcept nogil
