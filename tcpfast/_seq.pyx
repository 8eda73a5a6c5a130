# cython: language_level=3
"""Python-visible wrappers of the sequence-number helpers in ``_seq.pxd`` (for tests and users).

Compiled modules ``cimport`` the inline versions from ``tcpfast._seq``; these wrappers check that
their arguments are 32-bit values and call exactly the same code.
"""
from libc.stdint cimport uint32_t, int32_t

import operator


cdef inline uint32_t _u32(object v) except? 0:
    v = operator.index(v)               # ints (and int-likes) only: a float is a TypeError
    if not 0 <= v <= 0xffffffff:
        raise ValueError(f"sequence numbers are 32-bit unsigned values, got {v!r}")
    return <uint32_t>v


def lt(a, b) -> bool:
    """lt(a, b) -> bool: a comes before b in sequence space."""
    return seq_lt(_u32(a), _u32(b))


def le(a, b) -> bool:
    """le(a, b) -> bool: a is b or comes before it."""
    return seq_le(_u32(a), _u32(b))


def gt(a, b) -> bool:
    """gt(a, b) -> bool: a comes after b."""
    return seq_gt(_u32(a), _u32(b))


def ge(a, b) -> bool:
    """ge(a, b) -> bool: a is b or comes after it."""
    return seq_ge(_u32(a), _u32(b))


def between(lo, x, hi) -> bool:
    """between(lo, x, hi) -> bool: lo =< x =< hi, walking forward from lo."""
    return seq_between(_u32(lo), _u32(x), _u32(hi))


def in_window(x, start, size) -> bool:
    """in_window(x, start, size) -> bool: start =< x < start + size."""
    return seq_in_window(_u32(x), _u32(start), _u32(size))


def add(a, n) -> int:
    """add(a, n) -> int: a + n modulo 2**32 (n may be negative, |n| < 2**32)."""
    n = operator.index(n)
    if not -0xffffffff <= n <= 0xffffffff:
        raise ValueError(f"increment out of range: {n!r}")
    return seq_add(_u32(a), <uint32_t>(n & 0xffffffff))


def sub(a, b) -> int:
    """sub(a, b) -> int: the signed distance a - b, in [-2**31, 2**31)."""
    return seq_sub(_u32(a), _u32(b))


def max(a, b) -> int:
    """max(a, b) -> int: the later of a and b in sequence space."""
    return seq_max(_u32(a), _u32(b))


def min(a, b) -> int:
    """min(a, b) -> int: the earlier of a and b in sequence space."""
    return seq_min(_u32(a), _u32(b))
