# cython: language_level=3
"""Bounded byte ring buffers (see ``_ring.pxd``)."""
from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy


cdef void ring_init(ring* r, uint32_t cap) noexcept nogil:
    r.data = NULL
    r.cap = cap
    r.head = 0
    r.used = 0


cdef int ring_reserve(ring* r) noexcept nogil:
    if r.data == NULL and r.cap:
        r.data = <uint8_t*>malloc(r.cap)
        if r.data == NULL:
            return -1
        r.head = 0
    return 0


cdef void ring_release(ring* r, bint force) noexcept nogil:
    if r.data != NULL and (force or r.used == 0):
        free(r.data)
        r.data = NULL
        r.head = 0
        if force:
            r.used = 0


cdef int ring_set_capacity(ring* r, uint32_t cap) noexcept nogil:
    if r.data != NULL:
        return -1
    r.cap = cap
    return 0


cdef inline void _copy_in(ring* r, uint32_t pos, const uint8_t* src, uint32_t n) noexcept nogil:
    # ``pos`` is an index into the storage; the copy wraps at most once.
    cdef uint32_t first
    if pos >= r.cap:
        pos -= r.cap
    first = r.cap - pos
    if n <= first:
        memcpy(r.data + pos, src, n)
    else:
        memcpy(r.data + pos, src, first)
        memcpy(r.data, src + first, n - first)


cdef uint32_t ring_append(ring* r, const uint8_t* src, uint32_t n) noexcept nogil:
    cdef uint32_t space = r.cap - r.used
    if n > space:
        n = space
    if n == 0 or ring_reserve(r) != 0:
        return 0
    _copy_in(r, r.head + r.used, src, n)
    r.used += n
    return n


cdef void ring_write_at(ring* r, uint32_t off, const uint8_t* src, uint32_t n) noexcept nogil:
    if n == 0 or ring_reserve(r) != 0:
        return
    _copy_in(r, r.head + off, src, n)


cdef void ring_read_at(const ring* r, uint32_t off, uint8_t* dst, uint32_t n) noexcept nogil:
    cdef uint32_t pos, first
    if n == 0 or r.data == NULL:
        return
    pos = r.head + off
    if pos >= r.cap:
        pos -= r.cap
    first = r.cap - pos
    if n <= first:
        memcpy(dst, r.data + pos, n)
    else:
        memcpy(dst, r.data + pos, first)
        memcpy(dst + first, r.data, n - first)


cdef void ring_consume(ring* r, uint32_t n) noexcept nogil:
    if n > r.used:
        n = r.used
    r.used -= n
    r.head += n
    if r.head >= r.cap:
        r.head -= r.cap


cdef void ring_commit(ring* r, uint32_t n) noexcept nogil:
    r.used += n
