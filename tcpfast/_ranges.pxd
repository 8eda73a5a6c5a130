# cython: language_level=3
"""A bounded set of disjoint ranges of sequence space.

Two users: the receiver's out-of-order queue (which bytes beyond RCV.NXT are held, and the SACK
blocks that report them, RFC 2018 §4) and the sender's SACK scoreboard (which bytes beyond
SND.UNA the peer has SACKed, RFC 6675 §3). Ranges are half-open [start, end) in 32-bit sequence
space and always compared with the ``_seq`` helpers. At most ``RANGES_MAX`` ranges are held: a
range that would need a new slot when all are taken is refused (the caller drops and counts),
so a peer cannot make the set grow past its bound. Storage is allocated on the first add and grows
by doubling up to the bound; an empty set holds none.
"""
from libc.stdint cimport uint16_t, uint32_t

cdef enum:
    # The most ranges a set may hold. The out-of-order queue needs one per hole, and holes grow
    # with the window: 25 % reordering over an auto-tuned window of a few thousand segments
    # keeps hundreds open at once. Each costs 8 bytes of index, allocated only as needed.
    RANGES_MAX = 2048
    RANGES_INITIAL = 4          # slots allocated on the first add
    RANGES_NONE = 0xFFFF        # ``recent`` when no range is the most recent

ctypedef struct seq_ranges:
    uint32_t* start            # [cap] sorted in sequence order (seq_lt between themselves);
                               # disjoint, not adjacent. Sound because TCP keeps every range and
                               # argument within one window, a span < 2**31 (RFC 7323 §2.3)
    uint32_t* end              # [cap]
    uint16_t count
    uint16_t cap               # slots allocated (0: none yet; storage grows by doubling)
    uint16_t limit             # at most this many ranges (0 = RANGES_MAX)
    uint16_t recent            # index of the range that the last successful add touched;
                               # RANGES_NONE when there is none


# A zeroed struct is a valid empty set (no storage). ranges_init also sets the bound.
cdef void ranges_init(seq_ranges* r, uint16_t limit) noexcept nogil
# Free the storage (the set is empty afterwards and may be used again).
cdef void ranges_release(seq_ranges* r) noexcept nogil
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
