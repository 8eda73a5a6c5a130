# cython: language_level=3
"""A bounded byte ring: a connection's send buffer and its receive buffer.

The send ring holds the bytes from SND.UNA onward (sent-but-unacknowledged, then unsent); ACKs
``ring_consume`` them. The receive ring holds in-order bytes the application has not read yet
(``used``), and, beyond them, out-of-order bytes placed with ``ring_write_at`` at their offset from
RCV.NXT (which bytes are valid there is tracked by the connection's ``seq_ranges``). ``cap`` is the
bound (SO_SNDBUF / SO_RCVBUF); memory is allocated on first use, so an idle connection that never
moved data holds none, and can be given back with ``ring_release`` when empty.
"""
from libc.stdint cimport uint8_t, uint32_t

ctypedef struct ring:
    uint8_t* data                  # NULL until first use
    uint32_t cap
    uint32_t head                  # index of the first byte
    uint32_t used                  # bytes from head

cdef void ring_init(ring* r, uint32_t cap) noexcept nogil
# Allocate the storage if not done yet; 0 on success, -1 when out of memory.
cdef int ring_reserve(ring* r) noexcept nogil
# Free the storage if the ring is empty (or unconditionally with force); the capacity stays.
cdef void ring_release(ring* r, bint force) noexcept nogil
# Change the bound; only while the storage is not allocated. 0 on success, -1 otherwise.
cdef int ring_set_capacity(ring* r, uint32_t cap) noexcept nogil

cdef inline uint32_t ring_space(const ring* r) noexcept nogil:
    return r.cap - r.used

# Append up to ``n`` bytes at the tail; returns how many fit (0 when full or out of memory).
cdef uint32_t ring_append(ring* r, const uint8_t* src, uint32_t n) noexcept nogil
# Copy ``n`` bytes to ``off`` bytes past the head (off + n <= cap); ``used`` is unchanged.
cdef void ring_write_at(ring* r, uint32_t off, const uint8_t* src, uint32_t n) noexcept nogil
# Copy ``n`` bytes starting ``off`` bytes past the head into ``dst`` (off + n <= cap).
cdef void ring_read_at(const ring* r, uint32_t off, uint8_t* dst, uint32_t n) noexcept nogil
# Drop ``n`` bytes from the head (n <= used).
cdef void ring_consume(ring* r, uint32_t n) noexcept nogil
# Count ``n`` more bytes as used (after ring_write_at at off == used; used + n <= cap).
cdef void ring_commit(ring* r, uint32_t n) noexcept nogil
