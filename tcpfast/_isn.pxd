# cython: language_level=3
"""Initial sequence numbers (RFC 9293 §3.4.1, RFC 6528 §3).

ISN = M + F(localip, localport, remoteip, remoteport, secretkey): M is a 4-microsecond clock and F
is SipHash-2-4 keyed with a secret chosen at random per stack, so ISNs of one 4-tuple climb with
time (old duplicates fall below the new connection's window) while an off-path attacker cannot
predict another tuple's ISN. The same hash keys SYN cookies (RFC 4987 §3.6).
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

ctypedef struct isn_secret:
    uint64_t k0
    uint64_t k1

cdef uint64_t siphash24(const isn_secret* key, const uint8_t* data, size_t n) noexcept nogil
# The RFC 6528 ISN for a connection; addresses are 4 or 16 bytes (``addr_len``); ``now`` in us.
cdef uint32_t isn_generate(const isn_secret* key, const uint8_t* laddr, uint16_t lport,
                           const uint8_t* raddr, uint16_t rport, size_t addr_len,
                           uint64_t now) noexcept nogil
