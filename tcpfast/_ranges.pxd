# cython: language_level=3
"""A bounded set of disjoint ranges of sequence space.

Two users: the receiver's out-of-order queue (which bytes beyond RCV.NXT are held, and the SACK
blocks that report them, RFC 2018 §4) and the sender's SACK scoreboard (which bytes beyond
SND.UNA the peer has SACKed, RFC 6675 §3). Ranges are half-open [start, end) in 32-bit sequence
space and always compared with the ``_seq`` helpers. At most ``RANGES_MAX`` ranges are held: a
range that would need a new slot when all are taken is refused (the caller drops and counts),
so a peer cannot make the set grow.
"""
from libc.stdint cimport uint8_t, uint32_t

cdef enum:
    RANGES_MAX = 64

ctypedef struct seq_ranges:
    uint8_t count
    uint8_t recent             # index of the range that the last successful add touched;
                               # >= count (RANGES_MAX is stored) when there is none
    uint32_t start[64]         # sorted in sequence order (seq_lt between themselves); disjoint,
                               # not adjacent. Sound because TCP keeps every range and argument
                               # within one window, a span < 2**31 (RFC 7323 §2.3: <= 2**30)
    uint32_t end[64]


cdef void ranges_clear(seq_ranges* r) noexcept nogil

# Add [start, end); merges with every range it overlaps or touches. Returns the number of bytes
# newly covered (0 when all were already held), or -1 when a new slot was needed and none was
# free (the set is unchanged then). Sets ``recent`` to the merged range (also when 0 bytes were
# new: a duplicate segment still names its block first, RFC 2018 §4). An empty or inverted
# range returns 0 and changes nothing.
cdef long ranges_add(seq_ranges* r, uint32_t start, uint32_t end) noexcept nogil

# Forget everything before ``seq`` (ranges below are dropped, a straddling one is cut;
# ``recent`` follows its range, or becomes none if that range was dropped). pop_at likewise.
cdef void ranges_trim_below(seq_ranges* r, uint32_t seq) noexcept nogil

# If a range starts exactly at ``seq``, remove it and return its end through ``end_out``
# (the receiver uses this when RCV.NXT reaches held data). Returns 1 when found, else 0.
cdef int ranges_pop_at(seq_ranges* r, uint32_t seq, uint32_t* end_out) noexcept nogil

# Is every byte of [start, end) in the set? (Empty: true; inverted: false.)
cdef bint ranges_covers(const seq_ranges* r, uint32_t start, uint32_t end) noexcept nogil

# Total bytes held at or after ``seq``; and the number of ranges lying wholly at or after it.
cdef uint32_t ranges_bytes_above(const seq_ranges* r, uint32_t seq) noexcept nogil
cdef uint32_t ranges_count_above(const seq_ranges* r, uint32_t seq) noexcept nogil

# The highest end in the set (meaningful only when count > 0; 0 otherwise).
cdef uint32_t ranges_highest(const seq_ranges* r) noexcept nogil

# Up to ``max_blocks`` SACK blocks, the most recently touched range first, then the others from
# the highest down (RFC 2018 §4). Returns how many were written.
cdef int ranges_sack_blocks(const seq_ranges* r, uint32_t* left, uint32_t* right,
                            int max_blocks) noexcept nogil
