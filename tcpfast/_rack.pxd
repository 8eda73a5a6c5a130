# cython: language_level=3
"""RACK-TLP loss detection (RFC 8985): the sender's per-segment transmit records and the RACK
state that judges them.

- ``tx_queue``: one record per segment sent and not yet cumulatively acknowledged, in sequence
  order, covering [SND.UNA, SND.MAX) with no gap. Each holds RFC 8985 §5.2's per-segment
  variables (Segment.xmit_ts, .end_seq, .lost, .retransmitted) and whether it was SACKed. The
  queue keeps the byte counts that RFC 6675's pipe needs (SACKed, lost, retransmitted and still
  in flight), so pipe costs O(1): pipe = outstanding - sacked_out - lost_out.
  The data itself stays in the connection's send ring.
- ``rack_state``: RFC 8985 §5.3's per-connection variables (RACK.xmit_ts, RACK.end_seq,
  RACK.rtt, RACK.min_RTT, RACK.fack, RACK.reordering_seen, RACK.reo_wnd_mult/persist,
  RACK.dsack_round) and the steps of §6.2 over the records.

Times are microseconds. The queue is bounded (``TXQ_MAX`` records); its storage is allocated on
first use and grows by doubling, so an idle connection holds none.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t

cdef enum:
    TXQ_MAX = 16384                # records: 23 MB of 1448-byte segments, more than any window
    TXQ_INITIAL = 16
    # Record flags
    TXS_SACKED = 1                 # selectively acknowledged
    TXS_LOST = 2                   # RFC 8985 Segment.lost: the last (re)transmission is lost
    TXS_RETRANS = 4                # RFC 8985 Segment.retransmitted: ever sent again
    TXS_RXT_OUT = 8                # a retransmission of it is in flight (counted in retrans_out)
    TXS_TLP = 16                   # sent by a tail loss probe
    REO_WND_PERSIST = 16           # RFC 8985 §6.2 step 4: recoveries an inflated window persists
    RACK_MIN_RTT_WIN_US = 300000000  # min_RTT is a windowed minimum (§6.2 step 1): 5 minutes
    RACK_DUPTHRESH = 3

ctypedef struct tx_seg:
    uint32_t start
    uint32_t end                   # Segment.end_seq
    uint64_t xmit_ts               # Segment.xmit_ts (of the latest transmission)
    uint8_t flags

ctypedef struct tx_queue:
    tx_seg* segs                   # segs[head .. head+count), in sequence order
    uint32_t head
    uint32_t count
    uint32_t cap
    uint32_t sacked_out            # bytes of SACKed records
    uint32_t lost_out              # bytes of records marked lost and not SACKed
    uint32_t retrans_out           # bytes of records whose retransmission is in flight
    uint32_t sacked_segs           # RACK.segs_sacked
    uint32_t lost_hint             # no lost, unsent record lies below this index (relative)

ctypedef struct rack_state:
    uint64_t xmit_ts               # RACK.xmit_ts
    uint32_t end_seq               # RACK.end_seq
    uint32_t rtt                   # RACK.rtt
    uint32_t min_rtt               # RACK.min_RTT (0 = none yet)
    uint64_t min_rtt_ts            # when min_rtt was taken
    uint32_t fack                  # RACK.fack
    uint32_t reo_wnd               # RACK.reo_wnd, as last computed
    uint32_t dsack_round           # RACK.dsack_round (valid when dsack_round_set)
    uint8_t dsack_round_set
    uint8_t reordering_seen        # RACK.reordering_seen
    uint8_t reo_wnd_mult           # RACK.reo_wnd_mult (starts at 1)
    uint8_t reo_wnd_persist        # RACK.reo_wnd_persist
    uint8_t has_seg                # RACK.segment exists (xmit_ts/end_seq meaningful)
    uint8_t advanced               # this ACK moved RACK.xmit_ts forward

# --- the queue ---------------------------------------------------------------------------------
cdef void txq_init(tx_queue* q) noexcept nogil
cdef void txq_release(tx_queue* q) noexcept nogil
cdef inline tx_seg* txq_at(tx_queue* q, uint32_t i) noexcept nogil:
    return &q.segs[q.head + i]
# Room for ``n`` more records (allocating as needed); 0 when the bound or memory says no.
cdef bint txq_room(tx_queue* q, uint32_t n) noexcept nogil
# [start, end) was sent at ``now`` (RFC 8985 §6.1): the part above the last record becomes new
# records of at most ``smss`` sequence numbers each; any part already recorded is a
# retransmission (txq_retransmitted). Returns 0, or -1 when the queue is full (nothing recorded).
cdef int txq_sent(tx_queue* q, uint32_t start, uint32_t end, uint64_t now, uint32_t smss,
                  uint8_t extra_flags) noexcept nogil
# [start, end) was sent again at ``now`` (RACK_retransmit_data): records are split at the
# range's edges so that each keeps one transmit time. Returns the records touched.
cdef uint32_t txq_retransmitted(tx_queue* q, uint32_t start, uint32_t end, uint64_t now,
                                uint8_t extra_flags) noexcept nogil
# The next lost record to retransmit (lost, not SACKed, no retransmission in flight): its range
# clipped to ``smss``; 1 if found.
cdef int txq_next_lost(tx_queue* q, uint32_t smss, uint32_t* start, uint32_t* end) noexcept nogil
# Mark record i lost (counts kept); returns 1 if it was not already.
cdef int txq_mark_lost(tx_queue* q, uint32_t i) noexcept nogil
# Every record not SACKed is lost (the segment size shrank: all must go again, re-cut).
cdef void txq_mark_all_lost(tx_queue* q) noexcept nogil
# No record is lost any more (an undo: the losses assumed were not real).
cdef void txq_clear_lost(tx_queue* q) noexcept nogil
# RFC 6675 pipe, from the counts: outstanding less SACKed less lost (a retransmitted record is
# no longer lost, RFC 8985 §6.1, so its retransmission counts once, as in flight).
cdef uint32_t txq_pipe(const tx_queue* q, uint32_t snd_una, uint32_t snd_max) noexcept nogil
# Index of the first record whose end lies above ``seq`` (binary search); count if none.
cdef uint32_t txq_find(const tx_queue* q, uint32_t seq) noexcept nogil

# --- RACK -------------------------------------------------------------------------------------
cdef void rack_init(rack_state* r, uint32_t snd_una) noexcept nogil
# RFC 8985 §6.2 step 1: an RTT sample (RFC 6298 / RFC 7323) for the windowed RACK.min_RTT.
cdef void rack_rtt_sample(rack_state* r, uint32_t rtt, uint64_t now) noexcept nogil
# Steps 2 and 3 for one segment newly delivered (cumulatively or selectively acknowledged).
# ``tsecr_ms`` as for txq_cum_ack (the §6.2 step 2 check 1 compares it with the segment's last
# transmission).
cdef void rack_delivered(rack_state* r, const tx_seg* s, uint64_t now,
                         int64_t tsecr_ms) noexcept nogil
# The cumulative ACK moved to ``snd_una``: every record wholly below it is delivered (steps 2-3)
# and removed; a record cut by it is trimmed. ``tsecr_ms`` is the ACK's TSecr less our timestamp
# offset, i.e. our millisecond clock when the echoed segment left (-1: no timestamps). Returns
# the bytes of removed records that had been SACKed before (delivered earlier, not now).
cdef uint32_t txq_cum_ack(tx_queue* q, rack_state* r, uint32_t snd_una, uint64_t now,
                          int64_t tsecr_ms) noexcept nogil
# A SACK block [left, right) (clipped by the caller to [SND.UNA, SND.MAX)): records it wholly
# covers become SACKed and are delivered (steps 2-3). Returns the bytes newly SACKed.
cdef uint32_t txq_sack(tx_queue* q, rack_state* r, uint32_t left, uint32_t right, uint64_t now,
                       int64_t tsecr_ms) noexcept nogil
# §6.2 step 4: the reordering window for this ACK. ``dsack`` when the ACK carried a D-SACK,
# ``in_recovery`` in fast or RTO recovery, ``snd_una``/``snd_nxt`` now, ``srtt`` in us.
cdef uint32_t rack_update_reo_wnd(rack_state* r, tx_queue* q, bint dsack, bint in_recovery,
                                  uint32_t snd_una, uint32_t snd_nxt, uint32_t srtt) noexcept nogil
# §6.2 step 5: mark lost every record sent before RACK.segment whose time is up; returns the
# time still to wait for the next one (0: none), for the reordering timer. ``*newly`` gets the
# number of records newly marked lost.
cdef uint64_t rack_detect_loss(rack_state* r, tx_queue* q, uint64_t now,
                               uint32_t* newly) noexcept nogil
# Recovery ended (fast or RTO): the persistence of an inflated reordering window counts down.
cdef void rack_recovery_done(rack_state* r) noexcept nogil
# §6.3 RACK_mark_losses_on_RTO; returns the records newly marked lost.
cdef uint32_t rack_mark_losses_on_rto(rack_state* r, tx_queue* q, uint32_t snd_una,
                                      uint64_t now) noexcept nogil

# The records as Python values [(start, end, xmit_ts, frozenset of flag names)], for tests and
# tools (needs the GIL).
cdef list txq_as_list(const tx_queue* q)
