# cython: language_level=3
"""The sender's SACK scoreboard of RFC 6675 (declared in ``_scoreboard.pxd``): a reference.

The stack does not use it: its loss detection is RACK-TLP (RFC 8985, ``tcpfast._rack``), which
replaced this scoreboard. It is kept, with its tests (``tests/test_rtx.py``) and its
micro-benchmark, as a worked implementation of RFC 6675's rules (IsLost, SetPipe, NextSeg,
HighRxt/RescueRxt) to compare the stack's choices with.

Conventions
-----------
Sequence numbers are half-open like the rest of the stack, which shifts RFC 6675's inclusive
variables by one. RFC 6675 §2 names the *last* byte: HighACK is SND.UNA - 1, HighData is
SND.NXT - 1, HighRxt/RescueRxt the last byte retransmitted. Here ``snd_una`` and ``high_data``
(= SND.NXT) are the usual exclusive bounds, and ``high_rxt`` / ``rescue_rxt`` hold *one past*
the RFC's value: ``high_rxt == snd_una`` means "nothing retransmitted in this recovery" (the
RFC's HighRxt = HighACK). Translated once, the tests read:

    RFC 6675                          here
    S1 <= HighRxt    (SetPipe b)      seq_lt(s1, high_rxt)
    S2 >  HighRxt    (NextSeg 1.a)    seq_ge(s2, high_rxt)
    HighACK > RescueRxt (NextSeg 4)   seq_gt(snd_una, rescue_rxt)

The Python class :class:`Scoreboard` at the bottom is a thin wrapper over the same C functions.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t

from tcpfast._seq cimport seq_lt, seq_le, seq_gt, seq_ge, seq_sub, seq_min, seq_max
from tcpfast._ranges cimport (seq_ranges, ranges_clear, ranges_release, ranges_add,
                              ranges_trim_below, ranges_bytes_above, ranges_count_above,
                              RANGES_MAX)
from tcpfast._rtx cimport DUPTHRESH

import operator


# =============================================================================================
# RFC 6675 scoreboard
# =============================================================================================

cdef void sb_init(scoreboard* sb, uint32_t snd_una) noexcept nogil:
    """Empty scoreboard. HighRxt = HighACK (nothing retransmitted, RFC 6675 §5 (3.1)), i.e.
    ``high_rxt = snd_una`` here. RescueRxt starts "undefined" (NextSeg (4) allowed), stored as
    ``snd_una - 1`` so that ``HighACK > RescueRxt`` holds. ``in_use`` is cleared: the caller
    sets it when SACK-permitted was exchanged (RFC 2018 §2)."""
    ranges_clear(&sb.sacked)
    sb.high_rxt = snd_una
    sb.rescue_rxt = snd_una - 1
    sb.in_use = 0


cdef void sb_advance(scoreboard* sb, uint32_t snd_una) noexcept nogil:
    """The cumulative ACK moved to ``snd_una``: SACKed bytes below it are now simply ACKed
    (RFC 6675 §4 Update()). HighRxt and RescueRxt are pulled up so that they stay within a
    window of SND.UNA (a value left 2**31 behind would compare as "ahead"); neither move changes
    any RFC 6675 test, since all of them only look at octets at or above SND.UNA:
    - ``high_rxt`` below ``snd_una`` means "no octet >= snd_una was retransmitted", the same
      as ``high_rxt == snd_una``;
    - ``rescue_rxt`` below ``snd_una`` means "HighACK > RescueRxt", which ``snd_una - 1`` keeps
      true (and SND.UNA never moves back)."""
    ranges_trim_below(&sb.sacked, snd_una)
    if seq_lt(sb.high_rxt, snd_una):
        sb.high_rxt = snd_una
    if seq_lt(sb.rescue_rxt, snd_una):
        sb.rescue_rxt = snd_una - 1


cdef uint32_t sb_update(scoreboard* sb, uint32_t snd_una, uint32_t snd_nxt, const uint32_t* left,
                        const uint32_t* right, int n) noexcept nogil:
    """RFC 6675 §4 Update(): mark what this ACK cumulatively ACKs and SACKs.

    Each block is intersected with [snd_una, snd_nxt), the only octets a SACK can usefully tell
    us about: octets below SND.UNA are already ACKed (a block ending at or below SND.UNA is a
    D-SACK, RFC 2883, reporting a duplicate; it carries nothing for the scoreboard), and octets
    at or beyond SND.NXT were never sent (a block claiming them is bogus). The part of a block
    inside the window is kept, as any SACK is: it is advisory (RFC 2018 §3), and if the receiver
    does not in fact hold that data the RTO recovers it (RFC 2018 §5, RFC 6675 §5.1).
    Empty or inverted blocks are ignored.
    The intersection is taken on 64-bit offsets from SND.UNA so that no wrap can fool it.
    A block that would need a 17th range is dropped (the set is bounded, see ``_ranges``)."""
    cdef uint32_t added = 0, win
    cdef int64_t lo, hi
    cdef long got
    cdef int k
    sb_advance(sb, snd_una)
    if not seq_lt(snd_una, snd_nxt):
        return 0
    win = snd_nxt - snd_una
    for k in range(n):
        if not seq_lt(left[k], right[k]):
            continue
        lo = seq_sub(left[k], snd_una)
        hi = lo + <uint32_t>(right[k] - left[k])
        if lo < 0:
            lo = 0
        if hi > win:
            hi = win
        if lo >= hi:
            continue
        got = ranges_add(&sb.sacked, snd_una + <uint32_t>lo, snd_una + <uint32_t>hi)
        if got > 0:
            added += <uint32_t>got
    return added


cdef bint sb_is_lost(const scoreboard* sb, uint32_t seq, uint32_t smss) noexcept nogil:
    """RFC 6675 §4 IsLost(SeqNum): DupThresh discontiguous SACKed sequences lie above ``seq``, or
    more than (DupThresh - 1) * SMSS SACKed bytes have sequence numbers greater than ``seq``.

    "Above" is strictly greater, so we count from ``seq + 1``. Ranges are maximal (never
    adjacent), so each one is a discontiguous SACKed sequence. For an unSACKed ``seq`` (the only
    kind the RFC asks about) the answer is the same for every octet of the hole holding it: no
    SACKed byte lies between them. So "the segment starting at seq" and "the octet seq" agree."""
    cdef uint32_t above = seq + 1
    if ranges_count_above(&sb.sacked, above) >= DUPTHRESH:
        return True
    return <uint64_t>ranges_bytes_above(&sb.sacked, above) > <uint64_t>(DUPTHRESH - 1) * smss


cdef inline uint64_t _hole_pipe(const scoreboard* sb, uint32_t hs, uint32_t he,
                                uint32_t smss) noexcept nogil:
    """SetPipe's contribution of the unSACKed octets [hs, he), a hole between SACKed ranges.
    IsLost is constant over a hole (see sb_is_lost), so rule (a) is one test; rule (b) counts
    the octets below high_rxt."""
    cdef uint64_t p = 0
    if not sb_is_lost(sb, hs, smss):
        p += <uint32_t>(he - hs)                            # (a) still in the network
    if seq_lt(hs, sb.high_rxt):
        p += <uint32_t>(seq_min(he, sb.high_rxt) - hs)      # (b) retransmitted copy
    return p


cdef uint32_t sb_pipe(const scoreboard* sb, uint32_t snd_una, uint32_t high_data,
                      uint32_t smss) noexcept nogil:
    """RFC 6675 §4 SetPipe(): for each octet S1 in [HighACK + 1, HighData] = [snd_una, high_data)
    not SACKed, +1 if not IsLost(S1) and +1 more if S1 <= HighRxt. Computed per hole between
    SACKed ranges rather than per octet or per segment: the result is exactly the RFC's octet
    sum, in at most RANGES_MAX + 1 steps, and independent of how segments were cut."""
    cdef const seq_ranges* r = &sb.sacked
    cdef uint64_t pipe = 0
    cdef uint32_t cur = snd_una, stop
    cdef int i
    if not seq_lt(snd_una, high_data):
        return 0
    for i in range(r.count):
        if seq_le(r.end[i], cur):
            continue                        # wholly below SND.UNA (not yet trimmed)
        if seq_ge(r.start[i], high_data):
            break
        if seq_lt(cur, r.start[i]):
            pipe += _hole_pipe(sb, cur, r.start[i], smss)
        cur = r.end[i]
        if seq_ge(cur, high_data):
            break
    if seq_lt(cur, high_data):
        pipe += _hole_pipe(sb, cur, high_data, smss)
    return <uint32_t>pipe


cdef inline bint _first_hole_above(const scoreboard* sb, uint32_t from_seq, uint32_t* s_out,
                                   uint32_t* end_out) noexcept nogil:
    """The lowest unSACKed octet S >= from_seq that lies below some SACKed octet (NextSeg (1.b)),
    and the start of the SACKed range just above it (where a segment from S must stop)."""
    cdef const seq_ranges* r = &sb.sacked
    cdef uint32_t s = from_seq
    cdef int i
    for i in range(r.count):
        if seq_le(r.end[i], s):
            continue                        # below s
        if seq_le(r.start[i], s):
            s = r.end[i]                    # s is SACKed: the hole starts after this range
            continue
        s_out[0] = s
        end_out[0] = r.start[i]
        return True
    return False                            # no SACKed octet above: (1.b) fails


cdef inline int _rule_1_3(scoreboard* sb, uint32_t snd_una, uint32_t high_data, uint32_t smss,
                          bint need_lost, uint32_t* seq_out, uint32_t* len_out) noexcept nogil:
    """NextSeg (1) (``need_lost``) or (3): the smallest unSACKed S > HighRxt below the highest
    SACKed octet, [and IsLost(S)]. IsLost only weakens as S grows (fewer SACKed bytes and ranges
    lie above), so if the smallest candidate is not lost, no larger one is: the first hole is
    the only one to test. One segment of up to SMSS octets, cut where SACKed data begins; then
    HighRxt moves to its last octet (§5 (C.2), which applies to rules (1) and (3))."""
    cdef uint32_t s, hole_end, n
    if not _first_hole_above(sb, seq_max(snd_una, sb.high_rxt), &s, &hole_end):
        return 0
    # Only sent data can be retransmitted (SACKed ranges never reach past SND.NXT after
    # sb_update, so this guards only against a caller passing a smaller high_data).
    if not seq_lt(s, high_data):
        return 0
    hole_end = seq_min(hole_end, high_data)
    if need_lost and not sb_is_lost(sb, s, smss):
        return 0
    n = hole_end - s
    if n > smss:
        n = smss
    seq_out[0] = s
    len_out[0] = n
    sb.high_rxt = s + n
    return 1


cdef int sb_next_lost(scoreboard* sb, uint32_t snd_una, uint32_t high_data, uint32_t smss,
                      uint32_t* seq_out, uint32_t* len_out) noexcept nogil:
    if smss == 0 or not seq_lt(snd_una, high_data):
        return 0
    return _rule_1_3(sb, snd_una, high_data, smss, True, seq_out, len_out)


cdef int sb_next_seg(scoreboard* sb, uint32_t snd_una, uint32_t high_data, uint32_t smss,
                     uint32_t* seq_out, uint32_t* len_out) noexcept nogil:
    """RFC 6675 §4 NextSeg() rules (1), (3) and (4), in that order (rule (2) is the caller's,
    see the .pxd for how to interleave it)."""
    cdef const seq_ranges* r = &sb.sacked
    cdef uint32_t top, low, n
    cdef int i
    if smss == 0 or not seq_lt(snd_una, high_data):
        return 0
    if _rule_1_3(sb, snd_una, high_data, smss, True, seq_out, len_out):
        return 1
    if _rule_1_3(sb, snd_una, high_data, smss, False, seq_out, len_out):
        return 1
    # (4) Rescue retransmission: once per recovery (while HighACK > RescueRxt), one segment
    # that MUST include the highest outstanding unSACKed octet. Find the top hole
    # [low, top): walk the ranges down from HighData, skipping any that reach it.
    if not seq_gt(snd_una, sb.rescue_rxt):
        return 0
    top = high_data
    low = snd_una
    i = r.count - 1
    while i >= 0:
        if seq_ge(r.end[i], top):
            if seq_lt(r.start[i], top):
                top = r.start[i]            # SACKed up to the top: the hole ends where it starts
        else:
            low = seq_max(r.end[i], snd_una)
            break
        i -= 1
    if not seq_lt(low, top):
        return 0                            # everything outstanding is SACKed
    n = top - low
    if n > smss:
        n = smss
    seq_out[0] = top - n
    len_out[0] = n
    # "RescueRxt set to RecoveryPoint. HighRxt MUST NOT be updated." RecoveryPoint is HighData
    # when recovery began (§5 (4.1)); we do not keep it, and use the current HighData, which is
    # at or beyond it. Either way HighACK > RescueRxt cannot hold again before the cumulative
    # ACK passes RecoveryPoint, which ends recovery: one rescue per recovery, as intended.
    sb.rescue_rxt = high_data
    return 1


# =============================================================================================
# Python wrapper (tests and tools)
# =============================================================================================

cdef inline uint32_t _u32(object value, str name) except? 0:
    value = operator.index(value)
    if not 0 <= value <= 0xffffffff:
        raise ValueError(f"{name} must be a 32-bit value, got {value!r}")
    return <uint32_t>value


cdef class Scoreboard:
    """Scoreboard(snd_una)

    RFC 6675 scoreboard over a ``scoreboard`` struct; ``high_rxt`` and ``rescue_rxt`` are one
    past the RFC's HighRxt / RescueRxt (see the module docstring)."""
    cdef scoreboard sb

    def __dealloc__(self):
        ranges_release(&self.sb.sacked)

    def __init__(self, snd_una):
        sb_init(&self.sb, _u32(snd_una, "snd_una"))

    def update(self, snd_una, snd_nxt, blocks) -> int:
        """update(snd_una, snd_nxt, blocks) -> int

        ``blocks``: an iterable of (left, right) pairs (at most RANGES_MAX)."""
        cdef uint32_t left[RANGES_MAX]
        cdef uint32_t right[RANGES_MAX]
        cdef int n = 0
        cdef uint32_t una = _u32(snd_una, "snd_una"), nxt = _u32(snd_nxt, "snd_nxt")
        for l, r in blocks:
            if n >= RANGES_MAX:
                raise ValueError(f"at most {RANGES_MAX} blocks")
            left[n] = _u32(l, "left")
            right[n] = _u32(r, "right")
            n += 1
        return sb_update(&self.sb, una, nxt, left, right, n)

    def advance(self, snd_una) -> None:
        sb_advance(&self.sb, _u32(snd_una, "snd_una"))

    def is_lost(self, seq, smss) -> bool:
        return sb_is_lost(&self.sb, _u32(seq, "seq"), _u32(smss, "smss"))

    def pipe(self, snd_una, high_data, smss) -> int:
        return sb_pipe(&self.sb, _u32(snd_una, "snd_una"), _u32(high_data, "high_data"),
                       _u32(smss, "smss"))

    def next_seg(self, snd_una, high_data, smss):
        """next_seg(snd_una, high_data, smss) -> (seq, len) | None   (rules 1, 3, 4)"""
        cdef uint32_t s, n
        if sb_next_seg(&self.sb, _u32(snd_una, "snd_una"), _u32(high_data, "high_data"),
                       _u32(smss, "smss"), &s, &n):
            return (s, n)
        return None

    def next_lost(self, snd_una, high_data, smss):
        """next_lost(snd_una, high_data, smss) -> (seq, len) | None   (rule 1 only)"""
        cdef uint32_t s, n
        if sb_next_lost(&self.sb, _u32(snd_una, "snd_una"), _u32(high_data, "high_data"),
                        _u32(smss, "smss"), &s, &n):
            return (s, n)
        return None

    @property
    def sacked(self) -> list:
        """The SACKed ranges, in sequence order."""
        cdef int i
        return [(self.sb.sacked.start[i], self.sb.sacked.end[i])
                for i in range(self.sb.sacked.count)]

    @property
    def high_rxt(self) -> int:
        return self.sb.high_rxt

    @high_rxt.setter
    def high_rxt(self, value):
        self.sb.high_rxt = _u32(value, "high_rxt")

    @property
    def rescue_rxt(self) -> int:
        return self.sb.rescue_rxt

    @rescue_rxt.setter
    def rescue_rxt(self, value):
        self.sb.rescue_rxt = _u32(value, "rescue_rxt")

    @property
    def in_use(self) -> bool:
        return bool(self.sb.in_use)

    @in_use.setter
    def in_use(self, value):
        self.sb.in_use = 1 if value else 0

    def __repr__(self) -> str:
        return (f"Scoreboard(sacked={self.sacked!r}, high_rxt={self.sb.high_rxt}, "
                f"rescue_rxt={self.sb.rescue_rxt})")
