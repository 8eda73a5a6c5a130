# cython: language_level=3
"""Sequence-number arithmetic modulo 2**32 (RFC 9293 §3.4, RFC 1982 serial numbers).

Every comparison of sequence numbers in the stack goes through these ``cdef inline`` helpers (the
idea of Linux's ``before()``/``after()``), never through a raw ``<``: sequence space wraps, and
``a < b`` means "b lies less than 2**31 ahead of a".

RFC 1982 leaves the comparison of two numbers exactly 2**31 apart undefined. Here, as in Linux,
``seq_lt(a, b)`` is ``(int32)(a - b) < 0``: for such a pair both ``seq_lt(a, b)`` and ``seq_lt(b, a)``
are true. TCP never compares numbers that far apart (windows are at most 2**30, RFC 7323 §2.3).
"""
from libc.stdint cimport uint32_t, int32_t


cdef inline bint seq_lt(uint32_t a, uint32_t b) noexcept nogil:
    return <int32_t>(a - b) < 0


cdef inline bint seq_le(uint32_t a, uint32_t b) noexcept nogil:
    return <int32_t>(a - b) <= 0


cdef inline bint seq_gt(uint32_t a, uint32_t b) noexcept nogil:
    return <int32_t>(b - a) < 0


cdef inline bint seq_ge(uint32_t a, uint32_t b) noexcept nogil:
    return <int32_t>(b - a) <= 0


cdef inline bint seq_between(uint32_t lo, uint32_t x, uint32_t hi) noexcept nogil:
    """lo =< x =< hi, inclusive at both ends, in the wrapped space that starts at lo."""
    return <uint32_t>(x - lo) <= <uint32_t>(hi - lo)


cdef inline bint seq_in_window(uint32_t x, uint32_t start, uint32_t size) noexcept nogil:
    """start =< x < start + size: the half-open window of RFC 9293 §3.10.7.4's acceptability test."""
    return <uint32_t>(x - start) < size


cdef inline uint32_t seq_add(uint32_t a, uint32_t n) noexcept nogil:
    return a + n


cdef inline int32_t seq_sub(uint32_t a, uint32_t b) noexcept nogil:
    """The signed distance from b to a (a - b), in [-2**31, 2**31)."""
    return <int32_t>(a - b)


cdef inline uint32_t seq_max(uint32_t a, uint32_t b) noexcept nogil:
    return b if seq_lt(a, b) else a


cdef inline uint32_t seq_min(uint32_t a, uint32_t b) noexcept nogil:
    return a if seq_lt(a, b) else b
