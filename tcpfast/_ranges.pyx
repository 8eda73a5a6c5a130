# cython: language_level=3
"""A bounded set of disjoint ranges of sequence space (declared in ``_ranges.pxd``).

Ordering in wrapped space
-------------------------
Sequence numbers wrap at 2**32, so "sorted" needs a definition. The ranges are kept sorted by the
``_seq`` comparisons *between themselves*: ``start[0]`` is the lowest, ``end[count - 1]`` the
highest. That is a sound total order only while every number involved (all starts and ends held,
and the arguments of a call) lies within one span shorter than 2**31, where ``seq_lt`` is
transitive. TCP guarantees this for both users: the receiver holds data only inside
[RCV.NXT, RCV.NXT + RCV.WND) and the sender's scoreboard only inside [SND.UNA, SND.NXT), and a
window is at most 2**30 bytes (RFC 7323 §2.3). No fixed base is needed, so a range may arrive
below the current ``start[0]`` (out-of-order data filling a hole before the first held block)
and the set may straddle 0xFFFFFFFF -> 0 freely. Callers outside that contract get a consistent
but meaningless set, never a memory error: every loop is bounded by ``count <= cap``.

``recent`` is an index into the arrays; any value >= ``count`` means "no recent range" (we store
``RANGES_NONE`` for that, which stays >= ``count`` however the set grows).

The Python class :class:`SeqRanges` at the bottom is a thin wrapper for tests and tools.
"""
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.stdlib cimport realloc, free

from tcpfast._seq cimport seq_lt, seq_le, seq_gt, seq_ge, seq_min, seq_max

import operator

cdef inline void _remove(seq_ranges* r, int i, int k) noexcept nogil:
    """Drop the ``k`` ranges at ``i .. i+k-1``, shifting the rest down and keeping ``recent``
    pointing at the same range (or at none if it was one of those dropped)."""
    cdef int n = r.count, j
    if k <= 0:
        return
    j = i
    while j + k < n:
        r.start[j] = r.start[j + k]
        r.end[j] = r.end[j + k]
        j += 1
    r.count = <uint16_t>(n - k)
    if r.recent < n:
        if r.recent >= i + k:
            r.recent = <uint16_t>(r.recent - k)
        elif r.recent >= i:
            r.recent = RANGES_NONE


cdef void ranges_init(seq_ranges* r, uint16_t limit) noexcept nogil:
    r.start = NULL
    r.end = NULL
    r.count = 0
    r.cap = 0
    r.limit = limit if 0 < limit <= RANGES_MAX else RANGES_MAX
    r.recent = RANGES_NONE


cdef void ranges_release(seq_ranges* r) noexcept nogil:
    free(r.start)
    free(r.end)
    r.start = NULL
    r.end = NULL
    r.count = 0
    r.cap = 0
    r.recent = RANGES_NONE


cdef void ranges_clear(seq_ranges* r) noexcept nogil:
    r.count = 0
    r.recent = RANGES_NONE


cdef bint _grow(seq_ranges* r) noexcept nogil:
    """One more slot (doubling the storage, up to the bound); False when refused."""
    cdef uint32_t limit = r.limit if r.limit else RANGES_MAX
    cdef uint32_t cap
    cdef uint32_t* p
    if r.count < r.cap:
        return True
    if r.cap >= limit:
        return False
    cap = r.cap * 2 if r.cap else RANGES_INITIAL
    if cap > limit:
        cap = limit
    p = <uint32_t*>realloc(r.start, cap * sizeof(uint32_t))
    if p == NULL:
        return False
    r.start = p
    p = <uint32_t*>realloc(r.end, cap * sizeof(uint32_t))
    if p == NULL:
        return False              # start keeps its larger block; cap stays: still consistent
    r.end = p
    r.cap = <uint16_t>cap
    return True


cdef long ranges_add(seq_ranges* r, uint32_t start, uint32_t end) noexcept nogil:
    """Insert [start, end), merging with every held range it overlaps *or touches* (so the set
    never holds two adjacent ranges: a SACK block, RFC 2018 §3, must describe a maximal
    contiguous block, and the receiver delivers a contiguous run in one piece)."""
    cdef int n = r.count, i, j, k
    cdef uint32_t s, e
    cdef uint64_t held = 0
    if not seq_lt(start, end):
        return 0                # empty (or inverted): nothing to add, nothing touched
    # i: the first range that is not wholly before [start, end) *with a gap*
    # (a range ending exactly at ``start`` touches it and is merged).
    i = 0
    while i < n and seq_lt(r.end[i], start):
        i += 1
    # [i, j): the ranges that overlap or touch [start, end).
    j = i
    while j < n and seq_le(r.start[j], end):
        held += <uint32_t>(r.end[j] - r.start[j])
        j += 1
    if i == j:
        # A new, separate range: it needs a slot. Refuse rather than grow or evict: the caller
        # drops the segment (receiver) or ignores the block (sender: SACK is advisory, RFC 2018
        # §3 / RFC 6675 §4, so losing a block only costs a needless retransmission), so a peer
        # cannot make us hold more ranges than the bound.
        if not _grow(r):
            return -1
        k = n
        while k > i:
            r.start[k] = r.start[k - 1]
            r.end[k] = r.end[k - 1]
            k -= 1
        r.start[i] = start
        r.end[i] = end
        r.count = <uint16_t>(n + 1)
        r.recent = <uint16_t>i
        return <long>(<uint32_t>(end - start))
    s = seq_min(start, r.start[i])
    e = seq_max(end, r.end[j - 1])
    r.start[i] = s
    r.end[i] = e
    # ``recent`` is set after the removal so the shift cannot disturb it.
    _remove(r, i + 1, j - i - 1)
    r.recent = <uint16_t>i
    return <long>(<uint64_t>(<uint32_t>(e - s)) - held)


cdef void ranges_trim_below(seq_ranges* r, uint32_t seq) noexcept nogil:
    cdef int n = r.count, k = 0
    while k < n and seq_le(r.end[k], seq):
        k += 1
    _remove(r, 0, k)
    if r.count and seq_lt(r.start[0], seq):
        r.start[0] = seq


cdef int ranges_pop_at(seq_ranges* r, uint32_t seq, uint32_t* end_out) noexcept nogil:
    cdef int i
    for i in range(r.count):
        if r.start[i] == seq:
            end_out[0] = r.end[i]
            _remove(r, i, 1)
            return 1
    return 0


cdef bint ranges_covers(const seq_ranges* r, uint32_t start, uint32_t end) noexcept nogil:
    """Empty [start, start) is trivially covered; an inverted range is not."""
    cdef int i
    if start == end:
        return True
    if not seq_lt(start, end):
        return False
    # Ranges are maximal (never adjacent), so a covered interval lies inside a single range.
    for i in range(r.count):
        if seq_le(r.start[i], start) and seq_le(end, r.end[i]):
            return True
    return False


cdef uint32_t ranges_bytes_above(const seq_ranges* r, uint32_t seq) noexcept nogil:
    cdef uint32_t total = 0
    cdef int i
    for i in range(r.count):
        if seq_le(seq, r.start[i]):
            total += r.end[i] - r.start[i]
        elif seq_lt(seq, r.end[i]):
            total += r.end[i] - seq
    return total


cdef uint32_t ranges_count_above(const seq_ranges* r, uint32_t seq) noexcept nogil:
    cdef uint32_t c = 0
    cdef int i
    for i in range(r.count):
        if seq_le(seq, r.start[i]):
            c += 1
    return c


cdef uint32_t ranges_highest(const seq_ranges* r) noexcept nogil:
    return r.end[r.count - 1] if r.count else 0


cdef int ranges_sack_blocks(const seq_ranges* r, uint32_t* left, uint32_t* right,
                            int max_blocks) noexcept nogil:
    """RFC 2018 §4: the first block MUST be the one holding the segment that triggered this ACK
    (``recent``, set by the ``ranges_add`` of that segment); the SACK option SHOULD carry as many
    distinct blocks as fit. The RFC suggests repeating previously reported blocks next; we send
    the others from the highest down instead (the order after the first is free, §4), which needs
    no history and reports the blocks nearest the sender's HighData, where RFC 6675 IsLost looks.
    Each range appears once: they are disjoint, and ``recent`` is skipped in the second pass."""
    cdef int w = 0, i
    cdef int rec = r.recent
    if max_blocks <= 0:
        return 0
    if rec < r.count:
        left[0] = r.start[rec]
        right[0] = r.end[rec]
        w = 1
    i = r.count - 1
    while i >= 0 and w < max_blocks:
        if i != rec:
            left[w] = r.start[i]
            right[w] = r.end[i]
            w += 1
        i -= 1
    return w


# =============================================================================================
# Python wrapper (tests and tools)
# =============================================================================================

cdef inline uint32_t _u32(object value, str name) except? 0:
    value = operator.index(value)
    if not 0 <= value <= 0xffffffff:
        raise ValueError(f"{name} must be a 32-bit sequence number, got {value!r}")
    return <uint32_t>value


cdef class SeqRanges:
    """SeqRanges(limit=MAX)

    A bounded set of disjoint half-open ranges of 32-bit sequence space; each method calls the
    C function of the same name (``add`` is ``ranges_add`` ...). At most ``limit`` ranges
    (1..MAX).
    """
    cdef seq_ranges r

    def __cinit__(self, limit=RANGES_MAX):
        limit = operator.index(limit)
        if not 1 <= limit <= RANGES_MAX:
            raise ValueError(f"limit must be in 1..{RANGES_MAX}")
        ranges_init(&self.r, <uint16_t>limit)

    def __dealloc__(self):
        ranges_release(&self.r)

    def clear(self) -> None:
        ranges_clear(&self.r)

    def add(self, start, end) -> int:
        """add(start, end) -> int

        Bytes newly covered, or -1 when [start, end) needed a new slot and all were taken."""
        return ranges_add(&self.r, _u32(start, "start"), _u32(end, "end"))

    def trim_below(self, seq) -> None:
        ranges_trim_below(&self.r, _u32(seq, "seq"))

    def pop_at(self, seq):
        """pop_at(seq) -> int | None

        The end of the range starting exactly at ``seq`` (which is removed), or None."""
        cdef uint32_t end
        if ranges_pop_at(&self.r, _u32(seq, "seq"), &end):
            return end
        return None

    def covers(self, start, end) -> bool:
        return ranges_covers(&self.r, _u32(start, "start"), _u32(end, "end"))

    def bytes_above(self, seq) -> int:
        return ranges_bytes_above(&self.r, _u32(seq, "seq"))

    def count_above(self, seq) -> int:
        return ranges_count_above(&self.r, _u32(seq, "seq"))

    def highest(self):
        """highest() -> int | None"""
        return ranges_highest(&self.r) if self.r.count else None

    def sack_blocks(self, max_blocks=4) -> list:
        """sack_blocks(max_blocks=4) -> list[tuple[int, int]]"""
        cdef uint32_t left[RANGES_MAX]
        cdef uint32_t right[RANGES_MAX]
        cdef int m = operator.index(max_blocks), n, i
        if m > RANGES_MAX:
            m = RANGES_MAX
        n = ranges_sack_blocks(&self.r, left, right, m)
        return [(left[i], right[i]) for i in range(n)]

    @property
    def limit(self) -> int:
        return self.r.limit

    def as_list(self) -> list:
        """as_list() -> list[tuple[int, int]]: the ranges in sequence order."""
        cdef int i
        return [(self.r.start[i], self.r.end[i]) for i in range(self.r.count)]

    @property
    def recent(self):
        """The range the last successful ``add`` touched, or None."""
        if self.r.recent < self.r.count:
            return (self.r.start[self.r.recent], self.r.end[self.r.recent])
        return None

    def __len__(self) -> int:
        return self.r.count

    def __repr__(self) -> str:
        return f"SeqRanges({self.as_list()!r})"


MAX = RANGES_MAX
