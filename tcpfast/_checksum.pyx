# cython: language_level=3
"""The Internet checksum: RFC 1071 sums, pseudo-headers, RFC 1624 incremental update.

The C-level functions are declared in ``_checksum.pxd`` for other modules to ``cimport``.
The Python functions below are thin wrappers for users and tests; they speak in *network order*
16-bit integers, i.e. the value you would pack with ``struct.pack("!H", v)`` into a header.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

import ipaddress
import operator

# Fold every 2**30 bytes: 2**28 32-bit words of at most 2**32 - 1 each stay below 2**60, so the four
# 64-bit lanes below can never overflow between folds, however large the buffer.
DEF CHUNK = 1 << 30


cdef inline uint64_t _fold32(uint64_t s) noexcept nogil:
    s = (s & 0xffffffffULL) + (s >> 32)
    return (s & 0xffffffffULL) + (s >> 32)


cdef uint64_t csum_partial(const uint8_t* buf, size_t n, uint64_t initial) noexcept nogil:
    """Native one's-complement sum of ``n`` bytes at ``buf`` added to ``initial``.

    Wide-word accumulation (RFC 1071 §2(C), "Parallel Summation"): 32-bit words are added into
    64-bit lanes, so carries collect in the upper half and are folded back once at the end; four
    independent lanes keep the CPU's adders busy and let the compiler vectorise the loop. Loads go
    through ``memcpy`` so any alignment is fine. A trailing odd byte is summed as if followed by a
    zero byte (RFC 1071 §1: "the last octet is padded on the right with zeros").
    """
    cdef uint64_t s0 = _fold32(initial), s1 = 0, s2 = 0, s3 = 0
    cdef uint32_t w[8]
    cdef uint32_t tail
    cdef size_t chunk, i
    while n >= 32:
        chunk = n if n < CHUNK else CHUNK
        chunk &= ~(<size_t>31)
        n -= chunk
        i = 0
        while i < chunk:
            memcpy(w, buf + i, 32)
            s0 += w[0]
            s1 += w[1]
            s2 += w[2]
            s3 += w[3]
            s0 += w[4]
            s1 += w[5]
            s2 += w[6]
            s3 += w[7]
            i += 32
        buf += chunk
        s0 = _fold32(s0) + _fold32(s1) + _fold32(s2) + _fold32(s3)
        s1 = s2 = s3 = 0
    while n >= 4:
        memcpy(&tail, buf, 4)
        s0 += tail
        buf += 4
        n -= 4
    if n:
        tail = 0
        memcpy(&tail, buf, n)
        s0 += tail
    return _fold32(s0)


# ---------------------------------------------------------------------------------------------
# Python wrappers (network-order 16-bit values)
# ---------------------------------------------------------------------------------------------

cdef uint64_t _sum_object(object data, uint64_t initial) except? 0xffffffffffffffff:
    cdef Py_buffer view
    cdef uint64_t s
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        with nogil:
            s = csum_partial(<const uint8_t*>view.buf, <size_t>view.len, initial)
    finally:
        PyBuffer_Release(&view)
    return s


cdef inline uint16_t _check16(object value, str name) except? 0:
    value = operator.index(value)       # ints (and int-likes) only: a float is a TypeError
    if not 0 <= value <= 0xffff:
        raise ValueError(f"{name} must be a 16-bit value, got {value!r}")
    return <uint16_t>value


def ones_complement_sum(data, initial=0) -> int:
    """ones_complement_sum(data, initial=0) -> int

    The folded 16-bit one's-complement sum of ``data`` (any buffer: bytes, bytearray, memoryview,
    a slice of a larger buffer), added to ``initial``, itself such a sum. Not complemented.
    ``ones_complement_sum(b, ones_complement_sum(a)) == ones_complement_sum(a + b)`` when ``len(a)``
    is even; for odd ``len(a)`` use :func:`combine`.
    """
    cdef uint16_t init = _check16(initial, "initial")
    return ntohs(csum_fold(_sum_object(data, htons(init))))


def combine(sum_a, sum_b, len_a) -> int:
    """combine(sum_a, sum_b, len_a) -> int

    The sum of ``a + b`` from the sums of ``a`` and ``b``; when ``len(a)`` is odd, ``b``'s sum is
    byte-swapped first (RFC 1071 §2(B)).
    """
    cdef uint16_t a = htons(_check16(sum_a, "sum_a")), b = htons(_check16(sum_b, "sum_b"))
    len_a = operator.index(len_a)
    if len_a < 0:
        raise ValueError("len_a must not be negative")
    return ntohs(csum_fold(csum_block_add(a, b, <size_t>len_a)))


def checksum(data, initial=0) -> int:
    """checksum(data, initial=0) -> int

    The Internet checksum of ``data``: the one's complement of its one's-complement sum, with
    ``initial`` (for example a pseudo-header sum) added in. Verifying a received header or segment
    that includes its checksum field gives 0.
    """
    cdef uint16_t init = _check16(initial, "initial")
    return ntohs(csum_finish(_sum_object(data, htons(init))))


cdef bytes _packed(object addr, int size):
    if isinstance(addr, (bytes, bytearray, memoryview)):
        b = bytes(addr)
    else:
        b = ipaddress.ip_address(addr).packed
    if len(b) != size:
        raise ValueError(f"expected a {size}-byte address, got {len(b)} bytes")
    return b


def pseudo_header_sum_ipv4(src, dst, protocol, length) -> int:
    """pseudo_header_sum_ipv4(src, dst, protocol, length) -> int

    The one's-complement sum of the IPv4 pseudo-header (RFC 9293 §3.1). ``src`` and ``dst`` are
    4-byte buffers or anything :func:`ipaddress.ip_address` accepts.
    """
    cdef bytes s = _packed(src, 4), d = _packed(dst, 4)
    protocol, length = operator.index(protocol), operator.index(length)
    if not 0 <= protocol <= 255 or not 0 <= length <= 0xffff:
        raise ValueError("protocol must fit 8 bits and length 16 bits")
    return ntohs(csum_fold(csum_pseudo_ipv4(<const uint8_t*><char*>s, <const uint8_t*><char*>d,
                                            <uint8_t>protocol, <uint32_t>length)))


def pseudo_header_sum_ipv6(src, dst, next_header, length) -> int:
    """pseudo_header_sum_ipv6(src, dst, next_header, length) -> int

    The one's-complement sum of the IPv6 pseudo-header (RFC 8200 §8.1).
    """
    cdef bytes s = _packed(src, 16), d = _packed(dst, 16)
    next_header, length = operator.index(next_header), operator.index(length)
    if not 0 <= next_header <= 255 or not 0 <= length <= 0xffffffff:
        raise ValueError("next_header must fit 8 bits and length 32 bits")
    return ntohs(csum_fold(csum_pseudo_ipv6(<const uint8_t*><char*>s, <const uint8_t*><char*>d,
                                            <uint8_t>next_header, <uint32_t>length)))


def update16(checksum, old, new) -> int:
    """update16(checksum, old, new) -> int

    RFC 1624 eqn. 3: the checksum field after a 16-bit word it covers changes from ``old`` to
    ``new`` (the word must sit at an even offset of the checksummed data).
    """
    return csum_update16(_check16(checksum, "checksum"), _check16(old, "old"), _check16(new, "new"))


def update32(checksum, old, new) -> int:
    """update32(checksum, old, new) -> int

    RFC 1624 applied to both halves of a 32-bit field at an even offset (a sequence number, an
    IPv4 address).
    """
    old, new = operator.index(old), operator.index(new)
    if not 0 <= old <= 0xffffffff or not 0 <= new <= 0xffffffff:
        raise ValueError("old and new must be 32-bit values")
    cdef uint16_t hc = _check16(checksum, "checksum")
    hc = csum_update16(hc, <uint16_t>(old >> 16), <uint16_t>(new >> 16))
    return csum_update16(hc, <uint16_t>(old & 0xffff), <uint16_t>(new & 0xffff))
