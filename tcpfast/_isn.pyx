# cython: language_level=3
"""RFC 6528 initial sequence numbers with SipHash-2-4 as the keyed function (see ``_isn.pxd``)."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

import os


cdef inline uint64_t _rotl(uint64_t x, int b) noexcept nogil:
    return (x << b) | (x >> (64 - b))


cdef inline uint64_t _load64le(const uint8_t* p) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v |= (<uint64_t>p[i]) << (8 * i)
    return v


cdef uint64_t siphash24(const isn_secret* key, const uint8_t* data, size_t n) noexcept nogil:
    """SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed PRF fast on short inputs."""
    cdef uint64_t v0 = key.k0 ^ 0x736f6d6570736575ULL
    cdef uint64_t v1 = key.k1 ^ 0x646f72616e646f6dULL
    cdef uint64_t v2 = key.k0 ^ 0x6c7967656e657261ULL
    cdef uint64_t v3 = key.k1 ^ 0x7465646279746573ULL
    cdef uint64_t m, b = (<uint64_t>n) << 56
    cdef size_t i = 0, left
    cdef int r
    while i + 8 <= n:
        m = _load64le(data + i)
        v3 ^= m
        for r in range(2):
            v0 += v1; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
            v2 += v3; v3 = _rotl(v3, 16); v3 ^= v2
            v0 += v3; v3 = _rotl(v3, 21); v3 ^= v0
            v2 += v1; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
        v0 ^= m
        i += 8
    left = n - i
    while left:
        left -= 1
        b |= (<uint64_t>data[i + left]) << (8 * left)
    v3 ^= b
    for r in range(2):
        v0 += v1; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
        v2 += v3; v3 = _rotl(v3, 16); v3 ^= v2
        v0 += v3; v3 = _rotl(v3, 21); v3 ^= v0
        v2 += v1; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
    v0 ^= b
    v2 ^= 0xff
    for r in range(4):
        v0 += v1; v1 = _rotl(v1, 13); v1 ^= v0; v0 = _rotl(v0, 32)
        v2 += v3; v3 = _rotl(v3, 16); v3 ^= v2
        v0 += v3; v3 = _rotl(v3, 21); v3 ^= v0
        v2 += v1; v1 = _rotl(v1, 17); v1 ^= v2; v2 = _rotl(v2, 32)
    return v0 ^ v1 ^ v2 ^ v3


cdef uint32_t isn_generate(const isn_secret* key, const uint8_t* laddr, uint16_t lport,
                           const uint8_t* raddr, uint16_t rport, size_t addr_len,
                           uint64_t now) noexcept nogil:
    cdef uint8_t buf[36]
    cdef size_t n = 0
    memcpy(buf, laddr, addr_len)
    n += addr_len
    memcpy(buf + n, raddr, addr_len)
    n += addr_len
    buf[n] = <uint8_t>(lport >> 8)
    buf[n + 1] = <uint8_t>lport
    buf[n + 2] = <uint8_t>(rport >> 8)
    buf[n + 3] = <uint8_t>rport
    n += 4
    # RFC 6528 §3: M is a timer that ticks every 4 microseconds.
    return <uint32_t>(now // 4) + <uint32_t>siphash24(key, buf, n)


def new_secret() -> tuple:
    """new_secret() -> (k0, k1): a fresh random 128-bit key from the OS."""
    raw = os.urandom(16)
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def siphash(k0: int, k1: int, data: bytes) -> int:
    """siphash(k0, k1, data) -> int: SipHash-2-4 of ``data`` (for tests against the reference)."""
    cdef isn_secret key
    key.k0 = k0
    key.k1 = k1
    cdef const uint8_t[::1] d = data if len(data) else b"\0"
    return siphash24(&key, &d[0], len(data))


def isn(k0: int, k1: int, laddr: bytes, lport: int, raddr: bytes, rport: int, now_us: int) -> int:
    """isn(k0, k1, laddr, lport, raddr, rport, now_us) -> int: the RFC 6528 ISN."""
    cdef isn_secret key
    if len(laddr) != len(raddr) or len(laddr) not in (4, 16):
        raise ValueError("addresses must both be 4 or both be 16 bytes")
    key.k0 = k0
    key.k1 = k1
    return isn_generate(&key, laddr, lport, raddr, rport, len(laddr), now_us)
