# cython: language_level=3
"""RACK-TLP loss detection (RFC 8985 §6): transmit records and the RACK state, declared in
``_rack.pxd``. TLP's timer and probe (§7) and what to do with a loss belong to the connection
(``_tcb``), which calls these functions.

Sequence numbers are compared only through the ``_seq`` helpers (they wrap). A record's flags say
which of the queue's byte counts it is in: a SACKed record is in ``sacked_out`` only (its LOST
and RXT_OUT flags are cleared when it is SACKed), a lost one in ``lost_out``, one whose
retransmission is in flight in ``retrans_out``; LOST and RXT_OUT exclude each other, since a
retransmission sets Segment.lost = FALSE (RFC 8985 §6.1).

The Python class :class:`TxQueue` at the bottom is a thin wrapper for tests.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memmove

from tcpfast._seq cimport seq_lt, seq_le, seq_gt, seq_ge


# =============================================================================================
# The queue of transmit records
# =============================================================================================

cdef void txq_init(tx_queue* q) noexcept nogil:
    q.segs = NULL
    q.head = q.count = q.cap = 0
    q.sacked_out = q.lost_out = q.retrans_out = q.sacked_segs = 0
    q.lost_hint = 0


cdef void txq_release(tx_queue* q) noexcept nogil:
    free(q.segs)
    txq_init(q)


cdef bint txq_room(tx_queue* q, uint32_t n) noexcept nogil:
    cdef uint32_t cap
    cdef tx_seg* segs
    if q.head + q.count + n <= q.cap:
        return True
    if q.count + n > TXQ_MAX:
        return False
    if q.count + n <= q.cap:
        # Room at the front: slide the records down.
        memmove(q.segs, q.segs + q.head, q.count * sizeof(tx_seg))
        q.head = 0
        return True
    cap = q.cap if q.cap else TXQ_INITIAL
    while cap < q.count + n:
        cap *= 2
    if cap > TXQ_MAX:
        cap = TXQ_MAX
    if q.head:
        memmove(q.segs, q.segs + q.head, q.count * sizeof(tx_seg))
        q.head = 0
    segs = <tx_seg*>realloc(q.segs, cap * sizeof(tx_seg))
    if segs == NULL:
        return False
    q.segs = segs
    q.cap = cap
    return True


cdef inline uint32_t _len(const tx_seg* s) noexcept nogil:
    return s.end - s.start


cdef uint32_t txq_find(const tx_queue* q, uint32_t seq) noexcept nogil:
    """Index of the first record whose end lies above ``seq`` (records are in order)."""
    cdef uint32_t lo = 0, hi = q.count, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if seq_gt(q.segs[q.head + mid].end, seq):
            hi = mid
        else:
            lo = mid + 1
    return lo


cdef bint _split(tx_queue* q, uint32_t i, uint32_t at) noexcept nogil:
    """Cut record i in two at sequence ``at`` (strictly inside it); both halves keep its state."""
    cdef tx_seg* s
    if not txq_room(q, 1):
        return False
    s = &q.segs[q.head + i]
    memmove(s + 1, s, (q.count - i) * sizeof(tx_seg))
    q.count += 1
    s.end = at
    (s + 1).start = at
    if q.sacked_segs and s.flags & TXS_SACKED:
        q.sacked_segs += 1
    return True


cdef int txq_mark_lost(tx_queue* q, uint32_t i) noexcept nogil:
    cdef tx_seg* s = &q.segs[q.head + i]
    if s.flags & (TXS_SACKED | TXS_LOST):
        return 0
    if s.flags & TXS_RXT_OUT:
        # A retransmission judged lost in its turn (RFC 8985 §6.2: judged by its new xmit_ts).
        s.flags &= ~TXS_RXT_OUT
        q.retrans_out -= _len(s)
    s.flags |= TXS_LOST
    q.lost_out += _len(s)
    if i < q.lost_hint:
        q.lost_hint = i
    return 1


cdef void txq_mark_all_lost(tx_queue* q) noexcept nogil:
    cdef uint32_t i
    for i in range(q.count):
        txq_mark_lost(q, i)


cdef void txq_clear_lost(tx_queue* q) noexcept nogil:
    cdef uint32_t i
    if q.lost_out == 0:
        return
    for i in range(q.count):
        q.segs[q.head + i].flags &= ~TXS_LOST
    q.lost_out = 0
    q.lost_hint = q.count


cdef uint32_t txq_retransmitted(tx_queue* q, uint32_t start, uint32_t end, uint64_t now,
                                uint8_t extra_flags) noexcept nogil:
    """RFC 8985 §6.1 RACK_retransmit_data for every record in [start, end)."""
    cdef uint32_t i = txq_find(q, start), touched = 0
    cdef tx_seg* s
    if i < q.count and seq_lt(q.segs[q.head + i].start, start):
        if _split(q, i, start):
            i += 1
    while i < q.count:
        s = &q.segs[q.head + i]
        if seq_ge(s.start, end):
            break
        if seq_gt(s.end, end):
            _split(q, i, end)
            s = &q.segs[q.head + i]
        if not (s.flags & TXS_SACKED):
            if s.flags & TXS_LOST:
                s.flags &= ~TXS_LOST
                q.lost_out -= _len(s)
            if not (s.flags & TXS_RXT_OUT):
                s.flags |= TXS_RXT_OUT
                q.retrans_out += _len(s)
            s.flags |= TXS_RETRANS | extra_flags
            s.xmit_ts = now
            touched += 1
        i += 1
    return touched


cdef int txq_sent(tx_queue* q, uint32_t start, uint32_t end, uint64_t now, uint32_t smss,
                  uint8_t extra_flags) noexcept nogil:
    cdef uint32_t last_end, n, k, step
    cdef tx_seg* s
    if smss == 0:
        smss = 1
    if q.count:
        last_end = q.segs[q.head + q.count - 1].end
        if seq_lt(start, last_end):
            # Part of it was sent before: that part is a retransmission.
            txq_retransmitted(q, start, end if seq_lt(end, last_end) else last_end, now,
                              extra_flags)
            start = last_end
    if seq_ge(start, end):
        return 0
    n = (end - start + smss - 1) // smss
    if not txq_room(q, n):
        return -1
    for k in range(n):
        s = &q.segs[q.head + q.count]
        step = end - start
        if step > smss:
            step = smss
        s.start = start
        s.end = start + step
        s.xmit_ts = now
        s.flags = extra_flags
        q.count += 1
        start += step
    return 0


cdef int txq_next_lost(tx_queue* q, uint32_t smss, uint32_t* start, uint32_t* end) noexcept nogil:
    cdef uint32_t i = q.lost_hint
    cdef tx_seg* s
    if q.lost_out == 0:
        q.lost_hint = q.count
        return 0
    while i < q.count:
        s = &q.segs[q.head + i]
        if s.flags & TXS_LOST:
            q.lost_hint = i
            start[0] = s.start
            end[0] = s.end if _len(s) <= smss else s.start + smss
            return 1
        i += 1
    q.lost_hint = q.count
    return 0


cdef uint32_t txq_pipe(const tx_queue* q, uint32_t snd_una, uint32_t snd_max) noexcept nogil:
    cdef uint32_t out = snd_max - snd_una if seq_gt(snd_max, snd_una) else 0
    cdef uint32_t gone = q.sacked_out + q.lost_out
    return out - gone if out > gone else 0


cdef inline void _forget(tx_queue* q, tx_seg* s, uint32_t n) noexcept nogil:
    """``n`` bytes of record ``s`` leave the queue: take them out of its counts."""
    if s.flags & TXS_SACKED:
        q.sacked_out -= n
    elif s.flags & TXS_LOST:
        q.lost_out -= n
    elif s.flags & TXS_RXT_OUT:
        q.retrans_out -= n


cdef uint32_t txq_cum_ack(tx_queue* q, rack_state* r, uint32_t snd_una, uint64_t now,
                          int64_t tsecr_ms) noexcept nogil:
    cdef tx_seg* s
    cdef uint32_t was_sacked = 0, cut
    while q.count:
        s = &q.segs[q.head]
        if seq_le(s.end, snd_una):
            if s.flags & TXS_SACKED:
                was_sacked += _len(s)
                q.sacked_segs -= 1
            else:
                rack_delivered(r, s, now, tsecr_ms)
            _forget(q, s, _len(s))
            q.head += 1
            q.count -= 1
            if q.lost_hint:
                q.lost_hint -= 1
        else:
            if seq_lt(s.start, snd_una):
                cut = snd_una - s.start
                if s.flags & TXS_SACKED:
                    was_sacked += cut
                _forget(q, s, cut)
                s.start = snd_una
            break
    if q.count == 0:
        q.head = 0
        q.lost_hint = 0
        if q.cap > 4 * TXQ_INITIAL:
            # Idle again: give the storage back (an idle connection keeps none).
            txq_release(q)
    return was_sacked


cdef uint32_t txq_sack(tx_queue* q, rack_state* r, uint32_t left, uint32_t right, uint64_t now,
                       int64_t tsecr_ms) noexcept nogil:
    cdef uint32_t i = txq_find(q, left), newly = 0
    cdef tx_seg* s
    while i < q.count:
        s = &q.segs[q.head + i]
        if seq_ge(s.start, right):
            break
        if seq_ge(s.start, left) and seq_le(s.end, right) and not (s.flags & TXS_SACKED):
            _forget(q, s, _len(s))
            s.flags = (s.flags & ~(TXS_LOST | TXS_RXT_OUT)) | TXS_SACKED
            q.sacked_out += _len(s)
            q.sacked_segs += 1
            newly += _len(s)
            rack_delivered(r, s, now, tsecr_ms)
        i += 1
    return newly


# =============================================================================================
# RACK (RFC 8985 §6.2)
# =============================================================================================

cdef void rack_init(rack_state* r, uint32_t snd_una) noexcept nogil:
    r.xmit_ts = 0
    r.end_seq = snd_una
    r.rtt = 0
    r.min_rtt = 0
    r.min_rtt_ts = 0
    r.fack = snd_una
    r.reo_wnd = 0
    r.dsack_round = snd_una
    r.dsack_round_set = 0
    r.reordering_seen = 0
    r.reo_wnd_mult = 1
    r.reo_wnd_persist = 0
    r.has_seg = 0
    r.advanced = 0


cdef void rack_rtt_sample(rack_state* r, uint32_t rtt, uint64_t now) noexcept nogil:
    # Step 1: a windowed minimum, so that a move to a longer path is followed (within 5 min).
    if rtt == 0:
        rtt = 1
    if r.min_rtt == 0 or rtt <= r.min_rtt or now - r.min_rtt_ts > RACK_MIN_RTT_WIN_US:
        r.min_rtt = rtt
        r.min_rtt_ts = now


cdef inline bint _sent_after(uint64_t t1, uint32_t seq1, uint64_t t2, uint32_t seq2) noexcept nogil:
    """RACK_sent_after (§6.2 step 2): later, or at the same time and higher in sequence."""
    return t1 > t2 or (t1 == t2 and seq_gt(seq1, seq2))


cdef void rack_delivered(rack_state* r, const tx_seg* s, uint64_t now,
                         int64_t tsecr_ms) noexcept nogil:
    cdef uint64_t rtt = now - s.xmit_ts if now > s.xmit_ts else 0
    # Step 3 first (it looks at every delivered segment): an original transmission delivered
    # below the highest delivered sequence was reordered.
    if seq_gt(s.end, r.fack):
        r.fack = s.end
    elif seq_lt(s.end, r.fack) and not (s.flags & TXS_RETRANS):
        r.reordering_seen = 1
    # Step 2: ignore a retransmitted segment whose ACK may be for an earlier transmission.
    if s.flags & TXS_RETRANS:
        if tsecr_ms >= 0 and seq_lt(<uint32_t>tsecr_ms, <uint32_t>(s.xmit_ts // 1000)):
            return
        if rtt < r.min_rtt:
            return
    r.rtt = <uint32_t>rtt if rtt < 0xffffffffULL else 0xffffffffU
    if not r.has_seg or _sent_after(s.xmit_ts, s.end, r.xmit_ts, r.end_seq):
        r.xmit_ts = s.xmit_ts
        r.end_seq = s.end
        r.has_seg = 1
        r.advanced = 1


cdef uint32_t rack_update_reo_wnd(rack_state* r, tx_queue* q, bint dsack, bint in_recovery,
                                  uint32_t snd_una, uint32_t snd_nxt, uint32_t srtt) noexcept nogil:
    cdef uint64_t w
    if r.dsack_round_set and seq_ge(snd_una, r.dsack_round):
        r.dsack_round_set = 0
    # Grow the window once per round trip that sees a D-SACK (RFC 8985 §6.2 step 4).
    if not r.dsack_round_set and dsack:
        r.dsack_round = snd_nxt
        r.dsack_round_set = 1
        if r.reo_wnd_mult < 255:
            r.reo_wnd_mult += 1
        r.reo_wnd_persist = REO_WND_PERSIST
    if not r.reordering_seen:
        if in_recovery or q.sacked_segs >= RACK_DUPTHRESH:
            r.reo_wnd = 0
            return 0
    w = <uint64_t>r.reo_wnd_mult * r.min_rtt // 4
    if srtt and w > srtt:
        w = srtt
    r.reo_wnd = <uint32_t>w
    return r.reo_wnd


cdef void rack_recovery_done(rack_state* r) noexcept nogil:
    if r.reo_wnd_persist:
        r.reo_wnd_persist -= 1
    if r.reo_wnd_persist == 0:
        r.reo_wnd_mult = 1


cdef uint64_t rack_detect_loss(rack_state* r, tx_queue* q, uint64_t now,
                               uint32_t* newly) noexcept nogil:
    cdef uint64_t timeout = 0, due
    cdef uint32_t i, marked = 0
    cdef tx_seg* s
    r.advanced = 0
    if r.has_seg:
        for i in range(q.count):
            s = &q.segs[q.head + i]
            if s.flags & (TXS_SACKED | TXS_LOST):
                continue              # delivered, or already waiting for its retransmission
            if not _sent_after(r.xmit_ts, r.end_seq, s.xmit_ts, s.end):
                if not (s.flags & TXS_RETRANS):
                    # Original transmissions leave in sequence order, and a retransmission
                    # leaves after its original: nothing further on was sent before RACK.segment.
                    break
                continue
            due = s.xmit_ts + r.rtt + r.reo_wnd
            if due <= now:
                marked += txq_mark_lost(q, i)
            elif due - now > timeout:
                timeout = due - now
    newly[0] = marked
    return timeout


cdef uint32_t rack_mark_losses_on_rto(rack_state* r, tx_queue* q, uint32_t snd_una,
                                      uint64_t now) noexcept nogil:
    cdef uint32_t i, marked = 0
    cdef tx_seg* s
    for i in range(q.count):
        s = &q.segs[q.head + i]
        if s.start == snd_una or i == 0 or s.xmit_ts + r.rtt + r.reo_wnd <= now:
            marked += txq_mark_lost(q, i)
    return marked


# =============================================================================================
# Python-level views (tests and tools)
# =============================================================================================

cdef list txq_as_list(const tx_queue* q):
    cdef const tx_seg* s
    cdef uint32_t i
    out = []
    for i in range(q.count):
        s = &q.segs[q.head + i]
        names = []
        for bit, name in ((TXS_SACKED, "sacked"), (TXS_LOST, "lost"),
                          (TXS_RETRANS, "retransmitted"), (TXS_RXT_OUT, "rxt_out"),
                          (TXS_TLP, "tlp")):
            if s.flags & bit:
                names.append(name)
        out.append((s.start, s.end, s.xmit_ts, frozenset(names)))
    return out



cdef class TxQueue:
    """TxQueue(snd_una): transmit records and RACK state, as a connection keeps them (tests).

    Sequence numbers are ints modulo 2**32; times are microseconds.
    """
    cdef tx_queue q
    cdef rack_state r
    cdef uint32_t snd_una

    def __cinit__(self):
        txq_init(&self.q)

    def __init__(self, snd_una=0):
        self.snd_una = snd_una & 0xffffffff
        rack_init(&self.r, self.snd_una)

    def __dealloc__(self):
        txq_release(&self.q)

    def sent(self, start, end, now, smss=1000, retrans=False) -> int:
        if retrans:
            return txq_retransmitted(&self.q, start & 0xffffffff, end & 0xffffffff, now, 0)
        return txq_sent(&self.q, start & 0xffffffff, end & 0xffffffff, now, smss, 0)

    def cum_ack(self, snd_una, now, tsecr_ms=-1) -> int:
        self.snd_una = snd_una & 0xffffffff
        return txq_cum_ack(&self.q, &self.r, self.snd_una, now, tsecr_ms)

    def sack(self, left, right, now, tsecr_ms=-1) -> int:
        return txq_sack(&self.q, &self.r, left & 0xffffffff, right & 0xffffffff, now, tsecr_ms)

    def rtt_sample(self, rtt, now) -> None:
        rack_rtt_sample(&self.r, rtt, now)

    def update_reo_wnd(self, dsack, in_recovery, snd_nxt, srtt) -> int:
        return rack_update_reo_wnd(&self.r, &self.q, dsack, in_recovery, self.snd_una,
                                   snd_nxt & 0xffffffff, srtt)

    def detect_loss(self, now):
        """-> (timeout_us, newly_lost): RFC 8985 RACK_detect_loss()."""
        cdef uint32_t newly = 0
        cdef uint64_t t = rack_detect_loss(&self.r, &self.q, now, &newly)
        return t, newly

    def mark_losses_on_rto(self, now) -> int:
        return rack_mark_losses_on_rto(&self.r, &self.q, self.snd_una, now)

    def recovery_done(self) -> None:
        rack_recovery_done(&self.r)

    def next_lost(self, smss=1000):
        cdef uint32_t a, b
        if txq_next_lost(&self.q, smss, &a, &b):
            return (a, b)
        return None

    def pipe(self, snd_max) -> int:
        return txq_pipe(&self.q, self.snd_una, snd_max & 0xffffffff)

    @property
    def records(self) -> list:
        """[(start, end, xmit_ts, flags)] in sequence order; flags a set of names."""
        return txq_as_list(&self.q)

    @property
    def counts(self) -> dict:
        return dict(sacked_out=self.q.sacked_out, lost_out=self.q.lost_out,
                    retrans_out=self.q.retrans_out, sacked_segs=self.q.sacked_segs,
                    records=self.q.count)

    @property
    def rack(self) -> dict:
        return dict(xmit_ts=self.r.xmit_ts, end_seq=self.r.end_seq, rtt=self.r.rtt,
                    min_rtt=self.r.min_rtt, fack=self.r.fack, reo_wnd=self.r.reo_wnd,
                    reordering_seen=bool(self.r.reordering_seen),
                    reo_wnd_mult=self.r.reo_wnd_mult, reo_wnd_persist=self.r.reo_wnd_persist,
                    has_seg=bool(self.r.has_seg))


TXQ_CAPACITY = TXQ_MAX
