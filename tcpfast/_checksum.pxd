# cython: language_level=3
"""C-level API of the Internet checksum (RFC 1071, RFC 1624).

Sums here are *native* one's-complement sums: they are accumulated over the bytes exactly as they sit
in memory, so a folded 16-bit result can be stored back into a packet with ``memcpy`` and is then
correct on the wire whatever the host's byte order (RFC 1071 §2(B), "Byte Order Independence").
Host integers that take part in a sum (protocol number, length) go through ``htons``/``htonl`` first.

``csum_partial`` returns an unfolded 64-bit accumulator; fold it with ``csum_fold`` and complement it
with ``csum_finish`` only at the end, so partial sums of consecutive, *even-length* pieces can simply
be added with ``csum_add``. A piece that starts at an odd offset must be combined with
``csum_block_add`` (RFC 1071 §2(B): its sum is byte-swapped).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)
    uint32_t htonl(uint32_t)
    uint32_t ntohl(uint32_t)


cdef uint64_t csum_partial(const uint8_t* buf, size_t n, uint64_t initial) noexcept nogil


cdef inline uint64_t csum_add(uint64_t a, uint64_t b) noexcept nogil:
    """One's-complement addition of two accumulators (end-around carry out of bit 63)."""
    cdef uint64_t s = a + b
    return s + (s < a)


cdef inline uint16_t csum_fold(uint64_t s) noexcept nogil:
    """Fold a 64-bit accumulator to the 16-bit one's-complement sum (RFC 1071 §2(C))."""
    s = (s & 0xffffffffULL) + (s >> 32)
    s = (s & 0xffffffffULL) + (s >> 32)
    s = (s & 0xffff) + (s >> 16)
    s = (s & 0xffff) + (s >> 16)
    return <uint16_t>s


cdef inline uint16_t csum_finish(uint64_t s) noexcept nogil:
    """The checksum field value: the one's complement of the folded sum."""
    return <uint16_t>(~csum_fold(s))


cdef inline uint16_t csum_swap16(uint16_t v) noexcept nogil:
    return <uint16_t>((v >> 8) | (v << 8))


cdef inline uint64_t csum_block_add(uint64_t s, uint64_t block, size_t offset) noexcept nogil:
    """Add the sum of a block that starts at ``offset`` bytes into the checksummed data.

    RFC 1071 §2(B): a sum taken from an odd offset is the byte-swapped sum of the same bytes taken
    from an even one, so it is folded and swapped before it is added.
    """
    if offset & 1:
        return csum_add(s, csum_swap16(csum_fold(block)))
    return csum_add(s, block)


cdef inline uint64_t csum_pseudo_ipv4(const uint8_t* src, const uint8_t* dst, uint8_t proto,
                                      uint32_t length) noexcept nogil:
    """Sum of the IPv4 pseudo-header (RFC 9293 §3.1: source, destination, zero, PTCL, TCP length)."""
    cdef uint64_t s = csum_partial(src, 4, 0)
    s = csum_partial(dst, 4, s)
    return s + htons(proto) + htons(<uint16_t>length)


cdef inline uint64_t csum_pseudo_ipv6(const uint8_t* src, const uint8_t* dst, uint8_t next_header,
                                      uint32_t length) noexcept nogil:
    """Sum of the IPv6 pseudo-header (RFC 8200 §8.1: addresses, 32-bit length, next header)."""
    cdef uint64_t s = csum_partial(src, 16, 0)
    s = csum_partial(dst, 16, s)
    return s + htonl(length) + htonl(next_header)


cdef inline uint16_t csum_update16(uint16_t hc, uint16_t old, uint16_t new) noexcept nogil:
    """RFC 1624 eqn. 3: the checksum after a 16-bit field changes from ``old`` to ``new``.

    HC' = ~(~HC + ~m + m').  Byte-order independent: pass all three in the same order.
    """
    cdef uint32_t s = <uint16_t>(~hc) + <uint32_t><uint16_t>(~old) + new
    s = (s & 0xffff) + (s >> 16)
    s = (s & 0xffff) + (s >> 16)
    return <uint16_t>(~s)
