# cython: language_level=3
"""Parse and emit IPv4, IPv6, TCP and ICMP packets.

The C-level half (declared in ``_wire.pxd``) is what the engine uses per packet: no GIL, no Python
objects, malformation reported as a ``wire_reason``. The Python-level half at the bottom of this file
(``parse_packet``, ``emit_packet``, the views) converts to and from the reprs of ``headers.py`` for
users, tests and tools, and raises :class:`WireError` carrying the :class:`Reason`.

Every length read from a packet is checked against the bytes actually present before anything is
read through it: a parser here never reads past ``b + n``.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE)

from tcpfast._checksum cimport (csum_partial, csum_fold, csum_finish, csum_pseudo_ipv4,
                                csum_pseudo_ipv6, htons as _htons)

import enum
from ipaddress import IPv4Address, IPv6Address

from tcpfast.headers import (ICMPMessage, IPv4Header, IPv6Header, Packet, QuotedPacket, TCPFlags,
                             TCPHeader)


# =============================================================================================
# Parsing (C level)
# =============================================================================================

cdef inline void _clear_addrs(ip_repr* ip) noexcept nogil:
    memset(ip.src, 0, 16)
    memset(ip.dst, 0, 16)


cdef wire_reason ipv4_parse(const uint8_t* b, size_t n, ip_repr* ip, bint verify_checksum) noexcept nogil:
    """An IPv4 header (RFC 791 §3.1). Options are skipped by IHL; fragments are recognised."""
    cdef size_t ihl, total
    cdef uint16_t frag
    if n < IPV4_HEADER_LEN:
        return WIRE_TRUNCATED
    if (b[0] >> 4) != 4:
        return WIRE_BAD_VERSION
    ihl = <size_t>(b[0] & 0x0f) * 4
    if ihl < IPV4_HEADER_LEN:
        return WIRE_BAD_IHL
    if ihl > n:
        return WIRE_HEADER_OVERRUN
    total = load16(b + 2)
    if total > n or total < ihl:
        return WIRE_BAD_TOTAL_LENGTH
    # RFC 1071 §1: a header that includes its own checksum sums to all ones.
    if verify_checksum and csum_fold(csum_partial(b, ihl, 0)) != 0xffff:
        return WIRE_BAD_IP_CHECKSUM
    frag = load16(b + 6)
    ip.version = 4
    ip.tos = b[1]
    ip.ident = load16(b + 4)
    ip.dont_fragment = (frag >> 14) & 1
    ip.more_fragments = (frag >> 13) & 1
    ip.fragment_offset = <uint16_t>((frag & 0x1fff) * 8)
    ip.is_fragment = ip.more_fragments or ip.fragment_offset != 0
    ip.ttl = b[8]
    ip.protocol = b[9]
    ip.checksum = load16(b + 10)
    ip.header_len = <uint16_t>ihl
    ip.payload_len = <uint32_t>(total - ihl)
    ip.flow_label = 0
    _clear_addrs(ip)
    memcpy(ip.src, b + 12, 4)
    memcpy(ip.dst, b + 16, 4)
    return WIRE_OK


cdef wire_reason _ipv6_walk(const uint8_t* b, size_t end, ip_repr* ip) noexcept nogil:
    """Walk the IPv6 extension headers (RFC 8200 §4) from offset 40 up to ``end``.

    Hop-by-Hop, Routing and Destination Options headers are skipped by their length, (len+1)*8
    octets (RFC 8200 §4.3-4.6). A Fragment header (§4.5) marks the packet a fragment unless it is an
    atomic fragment (offset 0, M clear; RFC 6946), which is processed like a whole datagram.
    Sets ip.protocol, ip.header_len and the fragment fields.
    """
    cdef uint8_t nh = b[6]
    cdef size_t off = IPV6_HEADER_LEN, hl
    cdef int count = 0
    cdef uint16_t fo
    ip.is_fragment = 0
    ip.more_fragments = 0
    ip.fragment_offset = 0
    while nh == PROTO_HOPOPTS or nh == PROTO_ROUTING or nh == PROTO_DSTOPTS or nh == PROTO_FRAGMENT:
        if count == IPV6_MAX_EXT_HEADERS:
            return WIRE_EXT_HEADER_LIMIT
        count += 1
        if off + 8 > end:
            return WIRE_HEADER_OVERRUN
        if nh == PROTO_FRAGMENT:
            hl = 8
            fo = load16(b + off + 2)
            ip.fragment_offset = fo & 0xfff8
            ip.more_fragments = fo & 1
            ip.ident = <uint16_t>load32(b + off + 4)
            if ip.fragment_offset or ip.more_fragments:
                # What follows a real fragment header is fragment data, not more headers
                # (RFC 8200 §4.5): stop walking here.
                ip.is_fragment = 1
                ip.protocol = b[off]
                ip.header_len = <uint16_t>(off + hl)
                return WIRE_OK
        else:
            hl = (<size_t>b[off + 1] + 1) * 8
            if off + hl > end:
                return WIRE_HEADER_OVERRUN
        nh = b[off]
        off += hl
    ip.protocol = nh
    ip.header_len = <uint16_t>off
    return WIRE_OK


cdef wire_reason ipv6_parse(const uint8_t* b, size_t n, ip_repr* ip) noexcept nogil:
    """An IPv6 header (RFC 8200 §3) and its extension-header chain up to the upper layer."""
    cdef size_t end
    cdef uint32_t vtf
    cdef wire_reason r
    if n < IPV6_HEADER_LEN:
        return WIRE_TRUNCATED
    if (b[0] >> 4) != 6:
        return WIRE_BAD_VERSION
    end = IPV6_HEADER_LEN + <size_t>load16(b + 4)
    if end > n:
        return WIRE_BAD_TOTAL_LENGTH
    ip.ident = 0
    r = _ipv6_walk(b, end, ip)
    if r != WIRE_OK:
        return r
    vtf = load32(b)
    ip.version = 6
    ip.tos = <uint8_t>(vtf >> 20)
    ip.flow_label = vtf & 0xfffff
    ip.ttl = b[7]
    ip.dont_fragment = 0
    ip.checksum = 0
    ip.payload_len = <uint32_t>(end - ip.header_len)
    memcpy(ip.src, b + 8, 16)
    memcpy(ip.dst, b + 24, 16)
    return WIRE_OK


cdef wire_reason ip_parse(const uint8_t* b, size_t n, ip_repr* ip) noexcept nogil:
    """IPv4 or IPv6 by the version nibble; the IPv4 header checksum is verified."""
    if n == 0:
        return WIRE_TRUNCATED
    if (b[0] >> 4) == 4:
        return ipv4_parse(b, n, ip, True)
    if (b[0] >> 4) == 6:
        return ipv6_parse(b, n, ip)
    return WIRE_BAD_VERSION


cdef wire_reason tcp_parse_options(const uint8_t* opt, size_t n, tcp_repr* t) noexcept nogil:
    """The options of a TCP header (RFC 9293 §3.2, RFC 7323 §2-3, RFC 2018 §2-3).

    EOL ends the list, NOP is one byte; every other kind has a length octet that counts kind and
    length. Unknown kinds are skipped by that length (MUST-6). An illegal length (below 2, running
    past the header, or wrong for a kind we know) is reported, so that the segment is dropped and
    counted rather than half-understood (MUST-7 asks that it be handled, not ignored).
    """
    cdef size_t i = 0, olen, k
    cdef uint8_t kind
    t.has_mss = 0
    t.mss = 0
    t.has_wscale = 0
    t.wscale = 0
    t.sack_permitted = 0
    t.has_timestamps = 0
    t.tsval = 0
    t.tsecr = 0
    t.sack_count = 0
    while i < n:
        kind = opt[i]
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            return WIRE_OPTIONS_OVERRUN
        olen = opt[i + 1]
        if olen < 2:
            return WIRE_BAD_OPTION_LENGTH
        if i + olen > n:
            return WIRE_OPTIONS_OVERRUN
        if kind == TCPOPT_MSS:
            if olen != 4:
                return WIRE_BAD_OPTION_LENGTH
            t.has_mss = 1
            t.mss = load16(opt + i + 2)
        elif kind == TCPOPT_WSCALE:
            if olen != 3:
                return WIRE_BAD_OPTION_LENGTH
            t.has_wscale = 1
            t.wscale = opt[i + 2]
        elif kind == TCPOPT_SACK_PERMITTED:
            if olen != 2:
                return WIRE_BAD_OPTION_LENGTH
            t.sack_permitted = 1
        elif kind == TCPOPT_TIMESTAMPS:
            if olen != 10:
                return WIRE_BAD_OPTION_LENGTH
            t.has_timestamps = 1
            t.tsval = load32(opt + i + 2)
            t.tsecr = load32(opt + i + 6)
        elif kind == TCPOPT_SACK:
            # RFC 2018 §3: 2 + 8n octets, n blocks of left and right edge.
            if olen < 10 or (olen - 2) % 8 != 0 or (olen - 2) // 8 > TCP_MAX_SACK_BLOCKS:
                return WIRE_BAD_OPTION_LENGTH
            t.sack_count = <uint8_t>((olen - 2) // 8)
            for k in range(t.sack_count):
                t.sack_left[k] = load32(opt + i + 2 + 8 * k)
                t.sack_right[k] = load32(opt + i + 6 + 8 * k)
        i += olen
    return WIRE_OK


cdef inline wire_reason _tcp_lengths(const uint8_t* b, size_t n) noexcept nogil:
    cdef size_t doff
    if n < TCP_HEADER_LEN:
        return WIRE_TRUNCATED
    doff = <size_t>(b[12] >> 4) * 4
    if doff < TCP_HEADER_LEN:
        return WIRE_BAD_DATA_OFFSET
    if doff > n:
        return WIRE_OPTIONS_OVERRUN
    return WIRE_OK


cdef wire_reason tcp_parse(const uint8_t* b, size_t n, tcp_repr* t) noexcept nogil:
    """A TCP header and its options (RFC 9293 §3.1). The checksum is not checked here."""
    cdef wire_reason r = _tcp_lengths(b, n)
    if r != WIRE_OK:
        return r
    t.src_port = load16(b)
    t.dst_port = load16(b + 2)
    t.seq = load32(b + 4)
    t.ack = load32(b + 8)
    t.header_len = (b[12] >> 4) * 4
    t.flags = b[13]
    t.window = load16(b + 14)
    t.checksum = load16(b + 16)
    t.urgent = load16(b + 18)
    return tcp_parse_options(b + TCP_HEADER_LEN, t.header_len - TCP_HEADER_LEN, t)


cdef inline bint _icmp_is_echo(uint8_t version, uint8_t type) noexcept nogil:
    if version == 4:
        return type == 0 or type == 8          # RFC 792 echo reply / request
    return type == 128 or type == 129          # RFC 4443 §4.1-4.2


cdef inline bint _icmp_has_mtu(uint8_t version, uint8_t type, uint8_t code) noexcept nogil:
    if version == 4:
        return type == 3 and code == 4         # RFC 1191 §4 fragmentation needed and DF set
    return type == 2                           # RFC 4443 §3.2 packet too big


cdef inline bint _icmp_is_error(uint8_t version, uint8_t type) noexcept nogil:
    if version == 4:
        # RFC 792: destination unreachable, source quench, redirect, time exceeded, parameter problem.
        return type == 3 or type == 4 or type == 5 or type == 11 or type == 12
    # RFC 4443 §2.1: error messages have types 0-127 (1-4 defined).
    return type < 128


cdef void _parse_quote(const uint8_t* b, size_t n, uint8_t version, icmp_repr* m) noexcept nogil:
    """The invoking packet an ICMP error quotes (RFC 792; RFC 4443 §3): as much as is there.

    The quote is usually cut short, so its lengths are checked only against the bytes present,
    and no checksum is checked; the point is to find the connection it concerns.
    """
    cdef ip_repr* q = &m.quote_ip
    cdef size_t off
    m.has_quote = 0
    m.quote_has_ports = 0
    if n == 0 or (b[0] >> 4) != version:
        return
    if version == 4:
        if n < IPV4_HEADER_LEN:
            return
        off = <size_t>(b[0] & 0x0f) * 4
        if off < IPV4_HEADER_LEN or off > n:
            return
        q.version = 4
        q.tos = b[1]
        q.ident = load16(b + 4)
        q.fragment_offset = <uint16_t>((load16(b + 6) & 0x1fff) * 8)
        q.more_fragments = (b[6] >> 5) & 1
        q.dont_fragment = (b[6] >> 6) & 1
        q.is_fragment = q.more_fragments or q.fragment_offset != 0
        q.ttl = b[8]
        q.protocol = b[9]
        q.checksum = load16(b + 10)
        q.flow_label = 0
        _clear_addrs(q)
        memcpy(q.src, b + 12, 4)
        memcpy(q.dst, b + 16, 4)
        q.header_len = <uint16_t>off
    else:
        if n < IPV6_HEADER_LEN:
            return
        q.ident = 0
        if _ipv6_walk(b, n, q) != WIRE_OK:
            return
        off = q.header_len
        q.version = 6
        q.tos = <uint8_t>(load32(b) >> 20)
        q.flow_label = load32(b) & 0xfffff
        q.ttl = b[7]
        q.dont_fragment = 0
        q.checksum = 0
        memcpy(q.src, b + 8, 16)
        memcpy(q.dst, b + 24, 16)
    q.payload_len = <uint32_t>(n - off)
    m.has_quote = 1
    # RFC 792 guarantees 64 bits of the original datagram's data: ports and, for TCP, the sequence.
    if n - off >= 8:
        m.quote_has_ports = 1
        m.quote_src_port = load16(b + off)
        m.quote_dst_port = load16(b + off + 2)
        m.quote_seq = load32(b + off + 4)


cdef wire_reason icmp_parse(const uint8_t* b, size_t n, uint8_t version, icmp_repr* m) noexcept nogil:
    """An ICMPv4 (RFC 792) or ICMPv6 (RFC 4443) message; the checksum is not checked here."""
    if n < ICMP_HEADER_LEN:
        return WIRE_TRUNCATED
    m.type = b[0]
    m.code = b[1]
    m.checksum = load16(b + 2)
    m.rest = load32(b + 4)
    m.ident = <uint16_t>(m.rest >> 16)
    m.seq = <uint16_t>m.rest
    m.mtu = 0
    m.body_off = ICMP_HEADER_LEN
    m.body_len = <uint32_t>(n - ICMP_HEADER_LEN)
    m.has_quote = 0
    m.quote_has_ports = 0
    if _icmp_has_mtu(version, m.type, m.code):
        # RFC 1191 §4: the next-hop MTU in the low-order 16 bits; RFC 4443 §3.2: all 32 bits.
        m.mtu = m.rest & 0xffff if version == 4 else m.rest
    if _icmp_is_error(version, m.type):
        _parse_quote(b + ICMP_HEADER_LEN, n - ICMP_HEADER_LEN, version, m)
    return WIRE_OK


cdef uint64_t ip_pseudo_sum(const ip_repr* ip, uint32_t l4_len) noexcept nogil:
    if ip.version == 4:
        return csum_pseudo_ipv4(ip.src, ip.dst, ip.protocol, l4_len)
    return csum_pseudo_ipv6(ip.src, ip.dst, ip.protocol, l4_len)


cdef wire_reason packet_parse(const uint8_t* b, size_t n, pkt_repr* p, int flags) noexcept nogil:
    """A whole IP packet down to the TCP or ICMP header, checksums verified.

    Order of checks: IP header; fragments are refused (no reassembly); then the upper layer's fixed
    lengths, its checksum, and only then its options, so that a corrupted option in transit counts
    as a bad checksum rather than as a malformed sender.
    """
    cdef wire_reason r = ip_parse(b, n, &p.ip)
    cdef const uint8_t* l4
    cdef uint32_t l4_len
    cdef uint64_t s
    if r != WIRE_OK:
        return r
    if p.ip.is_fragment:
        return WIRE_FRAGMENT
    p.l4_off = p.ip.header_len
    p.l4_len = l4_len = p.ip.payload_len
    l4 = b + p.l4_off
    if p.ip.protocol == PROTO_TCP:
        r = _tcp_lengths(l4, l4_len)
        if r != WIRE_OK:
            return r
        if not (flags & PARSE_SKIP_L4_CHECKSUM):
            s = csum_partial(l4, l4_len, ip_pseudo_sum(&p.ip, l4_len))
            if csum_fold(s) != 0xffff:
                return WIRE_BAD_CHECKSUM
        r = tcp_parse(l4, l4_len, &p.tcp)
        if r != WIRE_OK:
            return r
        p.payload_off = p.l4_off + p.tcp.header_len
        p.payload_len = l4_len - p.tcp.header_len
        return WIRE_OK
    if (p.ip.protocol == PROTO_ICMP and p.ip.version == 4) or \
            (p.ip.protocol == PROTO_ICMPV6 and p.ip.version == 6):
        if l4_len < ICMP_HEADER_LEN:
            return WIRE_TRUNCATED
        if not (flags & PARSE_SKIP_L4_CHECKSUM):
            # ICMPv4 sums the message alone (RFC 792); ICMPv6 adds the pseudo-header (RFC 4443 §2.3).
            s = csum_partial(l4, l4_len, ip_pseudo_sum(&p.ip, l4_len) if p.ip.version == 6 else 0)
            if csum_fold(s) != 0xffff:
                return WIRE_BAD_CHECKSUM
        r = icmp_parse(l4, l4_len, p.ip.version, &p.icmp)
        if r != WIRE_OK:
            return r
        p.icmp.body_off += p.l4_off
        p.payload_off = p.icmp.body_off
        p.payload_len = p.icmp.body_len
        return WIRE_OK
    return WIRE_UNKNOWN_PROTOCOL


# =============================================================================================
# Emitting (C level)
# =============================================================================================

cdef inline size_t _sack_blocks_that_fit(const tcp_repr* t, size_t used) noexcept nogil:
    """How many SACK blocks fit in the 40 option bytes left after ``used`` (RFC 2018 §3)."""
    cdef size_t k = t.sack_count
    if k > TCP_MAX_SACK_BLOCKS:
        k = TCP_MAX_SACK_BLOCKS
    if used + 4 + 8 > 40:
        return 0
    if k > (40 - used - 4) // 8:
        k = (40 - used - 4) // 8
    return k


cdef inline size_t _tcp_options_fixed_len(const tcp_repr* t) noexcept nogil:
    cdef size_t n = 0
    if t.has_mss:
        n += 4
    if t.has_timestamps:
        n += 12                         # SACK-permitted + TS, or NOP NOP TS
    elif t.sack_permitted:
        n += 4                          # NOP NOP SACK-permitted
    if t.has_wscale:
        n += 4                          # NOP WS
    return n


cdef size_t tcp_options_len(const tcp_repr* t) noexcept nogil:
    """Option bytes ``emit_tcp`` writes: always a multiple of 4, at most 40."""
    cdef size_t n = _tcp_options_fixed_len(t)
    cdef size_t k = _sack_blocks_that_fit(t, n)
    if k:
        n += 4 + 8 * k                  # NOP NOP SACK
    return n


cdef size_t tcp_header_len(const tcp_repr* t) noexcept nogil:
    return TCP_HEADER_LEN + tcp_options_len(t)


cdef size_t ip_header_len(const ip_repr* ip) noexcept nogil:
    return IPV4_HEADER_LEN if ip.version == 4 else IPV6_HEADER_LEN


cdef size_t ip_emit(uint8_t* b, const ip_repr* ip, uint8_t protocol, size_t payload_len) noexcept nogil:
    """Write an IPv4 (no options) or IPv6 (no extension headers) header; returns its length."""
    cdef uint16_t csum
    if ip.version == 4:
        b[0] = 0x45
        b[1] = ip.tos
        store16(b + 2, <uint16_t>(IPV4_HEADER_LEN + payload_len))
        store16(b + 4, ip.ident)
        store16(b + 6, <uint16_t>((ip.dont_fragment & 1) << 14 | (ip.more_fragments & 1) << 13
                                  | ((ip.fragment_offset >> 3) & 0x1fff)))
        b[8] = ip.ttl
        b[9] = protocol
        b[10] = 0
        b[11] = 0
        memcpy(b + 12, ip.src, 4)
        memcpy(b + 16, ip.dst, 4)
        csum = csum_finish(csum_partial(b, IPV4_HEADER_LEN, 0))
        memcpy(b + 10, &csum, 2)        # a native sum is stored as it lies (RFC 1071 §2(B))
        return IPV4_HEADER_LEN
    store32(b, (<uint32_t>6 << 28) | (<uint32_t>ip.tos << 20) | (ip.flow_label & 0xfffff))
    store16(b + 4, <uint16_t>payload_len)
    b[6] = protocol
    b[7] = ip.ttl
    memcpy(b + 8, ip.src, 16)
    memcpy(b + 24, ip.dst, 16)
    return IPV6_HEADER_LEN


cdef size_t tcp_emit(uint8_t* b, const tcp_repr* t, size_t payload_len, uint64_t pseudo,
                     bint partial) noexcept nogil:
    """Write a TCP header with options at ``b`` and checksum it together with the ``payload_len``
    bytes already at ``b + header length``; ``pseudo`` is the pseudo-header sum. Returns the header
    length.

    Options are laid out as Linux lays them out, every one 4-byte aligned: MSS; SACK-permitted +
    timestamps (or NOP NOP + either); NOP + window scale; NOP NOP + SACK blocks (as many as fit).
    """
    cdef size_t optlen = tcp_options_len(t)
    cdef size_t hl = TCP_HEADER_LEN + optlen
    cdef uint8_t* o = b + TCP_HEADER_LEN
    cdef size_t k, nblocks
    cdef uint16_t csum
    store16(b, t.src_port)
    store16(b + 2, t.dst_port)
    store32(b + 4, t.seq)
    store32(b + 8, t.ack)
    b[12] = <uint8_t>((hl // 4) << 4)
    b[13] = t.flags
    store16(b + 14, t.window)
    b[16] = 0
    b[17] = 0
    store16(b + 18, t.urgent)
    if t.has_mss:
        o[0] = TCPOPT_MSS
        o[1] = 4
        store16(o + 2, t.mss)
        o += 4
    if t.has_timestamps:
        if t.sack_permitted:
            o[0] = TCPOPT_SACK_PERMITTED
            o[1] = 2
        else:
            o[0] = TCPOPT_NOP
            o[1] = TCPOPT_NOP
        o[2] = TCPOPT_TIMESTAMPS
        o[3] = 10
        store32(o + 4, t.tsval)
        store32(o + 8, t.tsecr)
        o += 12
    elif t.sack_permitted:
        o[0] = TCPOPT_NOP
        o[1] = TCPOPT_NOP
        o[2] = TCPOPT_SACK_PERMITTED
        o[3] = 2
        o += 4
    if t.has_wscale:
        o[0] = TCPOPT_NOP
        o[1] = TCPOPT_WSCALE
        o[2] = 3
        o[3] = t.wscale
        o += 4
    nblocks = _sack_blocks_that_fit(t, _tcp_options_fixed_len(t))
    if nblocks:
        o[0] = TCPOPT_NOP
        o[1] = TCPOPT_NOP
        o[2] = TCPOPT_SACK
        o[3] = <uint8_t>(2 + 8 * nblocks)
        o += 4
        for k in range(nblocks):
            store32(o, t.sack_left[k])
            store32(o + 4, t.sack_right[k])
            o += 8
    if partial:
        csum = csum_fold(pseudo)
    else:
        csum = csum_finish(csum_partial(b, hl + payload_len, pseudo))
    memcpy(b + 16, &csum, 2)
    return hl


cdef size_t tcp_packet_emit(uint8_t* b, size_t cap, const ip_repr* ip, const tcp_repr* t,
                            size_t payload_len, bint partial) noexcept nogil:
    """IP header + TCP header around the ``payload_len`` bytes the caller already placed at
    ``b + ip_header_len(ip) + tcp_header_len(t)``. Returns the packet length, or 0 when it does not
    fit in ``cap`` or in the IP length field.
    """
    cdef size_t ihl = ip_header_len(ip)
    cdef size_t l4_len = tcp_header_len(t) + payload_len
    cdef uint64_t pseudo
    if ihl + l4_len > cap or (ihl if ip.version == 4 else 0) + l4_len > 0xffff:
        return 0
    ip_emit(b, ip, PROTO_TCP, l4_len)
    if ip.version == 4:
        pseudo = csum_pseudo_ipv4(ip.src, ip.dst, PROTO_TCP, <uint32_t>l4_len)
    else:
        pseudo = csum_pseudo_ipv6(ip.src, ip.dst, PROTO_TCP, <uint32_t>l4_len)
    tcp_emit(b + ihl, t, payload_len, pseudo, partial)
    return ihl + l4_len


cdef inline uint32_t _icmp_rest(uint8_t version, const icmp_repr* m) noexcept nogil:
    if _icmp_is_echo(version, m.type):
        return (<uint32_t>m.ident << 16) | m.seq
    if _icmp_has_mtu(version, m.type, m.code):
        return m.mtu & 0xffff if version == 4 else m.mtu
    return m.rest


cdef size_t icmp_packet_emit(uint8_t* b, size_t cap, const ip_repr* ip, const icmp_repr* m,
                             size_t body_len) noexcept nogil:
    """IP header + ICMP header around the ``body_len`` bytes already at ``b + ihl + 8``.
    Returns the packet length, or 0 when it does not fit.
    """
    cdef size_t ihl = ip_header_len(ip)
    cdef size_t l4_len = ICMP_HEADER_LEN + body_len
    cdef uint8_t* c = b + ihl
    cdef uint8_t proto = PROTO_ICMP if ip.version == 4 else PROTO_ICMPV6
    cdef uint64_t s = 0
    cdef uint16_t csum
    if ihl + l4_len > cap or (ihl if ip.version == 4 else 0) + l4_len > 0xffff:
        return 0
    ip_emit(b, ip, proto, l4_len)
    c[0] = m.type
    c[1] = m.code
    c[2] = 0
    c[3] = 0
    store32(c + 4, _icmp_rest(ip.version, m))
    if ip.version == 6:
        s = csum_pseudo_ipv6(ip.src, ip.dst, proto, <uint32_t>l4_len)
    csum = csum_finish(csum_partial(c, l4_len, s))
    memcpy(c + 2, &csum, 2)
    return ihl + l4_len


# =============================================================================================
# Python level: Reason, WireError, conversions
# =============================================================================================

_REASON_TEXT = (
    ("OK", "well-formed"),
    ("TRUNCATED", "shorter than its fixed header"),
    ("BAD_VERSION", "IP version is neither 4 nor 6 (or not the one expected)"),
    ("BAD_IHL", "IPv4 header length (IHL) below 5"),
    ("HEADER_OVERRUN", "an IP header or extension header runs past the packet"),
    ("BAD_TOTAL_LENGTH", "IP total/payload length beyond the buffer or below the header"),
    ("BAD_IP_CHECKSUM", "IPv4 header checksum does not verify"),
    ("FRAGMENT", "IP fragment (not reassembled)"),
    ("EXT_HEADER_LIMIT", "too many IPv6 extension headers"),
    ("UNKNOWN_PROTOCOL", "upper-layer protocol is neither TCP nor ICMP"),
    ("BAD_DATA_OFFSET", "TCP data offset below 5"),
    ("OPTIONS_OVERRUN", "TCP header or an option runs past the segment"),
    ("BAD_OPTION_LENGTH", "TCP option with an illegal length"),
    ("BAD_CHECKSUM", "TCP or ICMP checksum does not verify"),
)
assert len(_REASON_TEXT) == WIRE_REASON_COUNT, "Reason table out of step with wire_reason"

Reason = enum.IntEnum("Reason", [(name, i) for i, (name, _) in enumerate(_REASON_TEXT)],
                      module=__name__)
Reason.__doc__ = "Why the wire parser rejected a packet (``Reason.OK`` when it did not)."
cdef tuple _REASONS = tuple(Reason)


class WireError(ValueError):
    """A packet is malformed; ``reason`` (a :class:`Reason`) says how."""

    def __init__(self, reason, message=None):
        self.reason = Reason(reason)
        super().__init__(message or f"{self.reason.name}: {_REASON_TEXT[self.reason][1]}")

    def __reduce__(self):
        return (type(self), (int(self.reason), str(self)))


def reason_description(reason) -> str:
    """reason_description(reason) -> str: one line saying what a :class:`Reason` means."""
    return _REASON_TEXT[Reason(reason)][1]


cdef object _addr(const uint8_t* a, uint8_t version):
    if version == 4:
        return IPv4Address((<const char*>a)[:4])
    return IPv6Address((<const char*>a)[:16])


cdef object _ip_to_py(const ip_repr* ip):
    if ip.version == 4:
        return IPv4Header(src=_addr(ip.src, 4), dst=_addr(ip.dst, 4), protocol=ip.protocol,
                          ttl=ip.ttl, tos=ip.tos, ident=ip.ident,
                          dont_fragment=bool(ip.dont_fragment),
                          more_fragments=bool(ip.more_fragments),
                          fragment_offset=ip.fragment_offset, header_len=ip.header_len,
                          payload_len=ip.payload_len, checksum=ip.checksum)
    return IPv6Header(src=_addr(ip.src, 6), dst=_addr(ip.dst, 6), protocol=ip.protocol,
                      hop_limit=ip.ttl, traffic_class=ip.tos, flow_label=ip.flow_label,
                      is_fragment=bool(ip.is_fragment), header_len=ip.header_len,
                      payload_len=ip.payload_len)


cdef inline uint32_t _field(object value, uint64_t limit, str name) except? 0xffffffff:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= limit:
        raise ValueError(f"{name} must be in 0..{limit}, got {value!r}")
    return <uint32_t>value


cdef inline bytes _packed4(object a):
    # An address object already: take its bytes (IPv4Address(IPv4Address) goes via a string).
    return a.packed if type(a) is IPv4Address else IPv4Address(a).packed


cdef inline bytes _packed6(object a):
    return a.packed if type(a) is IPv6Address else IPv6Address(a).packed


cdef inline Py_ssize_t _nbytes(object data) except -1:
    """Bytes in a buffer (not items: an array('H') of 2 items is 4 bytes)."""
    return memoryview(data).nbytes


cdef int _ip_from_py(object h, ip_repr* ip) except -1:
    cdef bytes src, dst
    memset(ip, 0, sizeof(ip_repr))
    if isinstance(h, IPv4Header):
        ip.version = 4
        src = _packed4(h.src)
        dst = _packed4(h.dst)
        ip.ttl = <uint8_t>_field(h.ttl, 0xff, "ttl")
        ip.tos = <uint8_t>_field(h.tos, 0xff, "tos")
        ip.ident = <uint16_t>_field(h.ident, 0xffff, "ident")
        ip.dont_fragment = bool(h.dont_fragment)
        ip.more_fragments = bool(h.more_fragments)
        if _field(h.fragment_offset, 0xfff8, "fragment_offset") % 8:
            raise ValueError("fragment_offset must be a multiple of 8")
        ip.fragment_offset = <uint16_t>h.fragment_offset
        memcpy(ip.src, <const char*>src, 4)
        memcpy(ip.dst, <const char*>dst, 4)
    elif isinstance(h, IPv6Header):
        ip.version = 6
        src = _packed6(h.src)
        dst = _packed6(h.dst)
        ip.ttl = <uint8_t>_field(h.hop_limit, 0xff, "hop_limit")
        ip.tos = <uint8_t>_field(h.traffic_class, 0xff, "traffic_class")
        ip.flow_label = _field(h.flow_label, 0xfffff, "flow_label")
        memcpy(ip.src, <const char*>src, 16)
        memcpy(ip.dst, <const char*>dst, 16)
    else:
        raise TypeError(f"ip must be an IPv4Header or IPv6Header, not {type(h).__name__}")
    return 0


cdef object _tcp_to_py(const tcp_repr* t):
    return TCPHeader(
        src_port=t.src_port, dst_port=t.dst_port, seq=t.seq, ack=t.ack, flags=TCPFlags(t.flags),
        window=t.window, urgent=t.urgent,
        mss=t.mss if t.has_mss else None,
        wscale=t.wscale if t.has_wscale else None,
        sack_permitted=bool(t.sack_permitted),
        sack_blocks=tuple((t.sack_left[k], t.sack_right[k]) for k in range(t.sack_count)),
        timestamps=(t.tsval, t.tsecr) if t.has_timestamps else None,
        header_len=t.header_len, checksum=t.checksum)


cdef int _tcp_from_py(object h, tcp_repr* t) except -1:
    cdef Py_ssize_t k
    if not isinstance(h, TCPHeader):
        raise TypeError(f"tcp must be a TCPHeader, not {type(h).__name__}")
    memset(t, 0, sizeof(tcp_repr))
    t.src_port = <uint16_t>_field(h.src_port, 0xffff, "src_port")
    t.dst_port = <uint16_t>_field(h.dst_port, 0xffff, "dst_port")
    t.seq = _field(h.seq, 0xffffffff, "seq")
    t.ack = _field(h.ack, 0xffffffff, "ack")
    t.flags = <uint8_t>_field(int(h.flags), 0xff, "flags")
    t.window = <uint16_t>_field(h.window, 0xffff, "window")
    t.urgent = <uint16_t>_field(h.urgent, 0xffff, "urgent")
    if h.mss is not None:
        t.has_mss = 1
        t.mss = <uint16_t>_field(h.mss, 0xffff, "mss")
    if h.wscale is not None:
        t.has_wscale = 1
        t.wscale = <uint8_t>_field(h.wscale, 0xff, "wscale")
    t.sack_permitted = bool(h.sack_permitted)
    if h.timestamps is not None:
        if len(h.timestamps) != 2:
            raise ValueError("timestamps must be (tsval, tsecr)")
        t.has_timestamps = 1
        t.tsval = _field(h.timestamps[0], 0xffffffff, "tsval")
        t.tsecr = _field(h.timestamps[1], 0xffffffff, "tsecr")
    blocks = tuple(h.sack_blocks)
    if len(blocks) > TCP_MAX_SACK_BLOCKS:
        raise ValueError(f"at most {TCP_MAX_SACK_BLOCKS} SACK blocks, got {len(blocks)}")
    t.sack_count = <uint8_t>len(blocks)
    for k, (left, right) in enumerate(blocks):
        t.sack_left[k] = _field(left, 0xffffffff, "SACK left edge")
        t.sack_right[k] = _field(right, 0xffffffff, "SACK right edge")
    # The C emitter, used by the stack, keeps the first blocks that fit (RFC 2018 §4: the first
    # reports the most recent data). A caller of the Python API asked for every block, so it is
    # told rather than given a different header.
    if _sack_blocks_that_fit(t, _tcp_options_fixed_len(t)) != t.sack_count:
        raise ValueError(f"{t.sack_count} SACK blocks do not fit in the 40 option bytes "
                         "beside the other options")
    return 0


cdef object _icmp_to_py(const icmp_repr* m, const uint8_t* base, uint8_t version):
    quoted = None
    if m.has_quote:
        q = &m.quote_ip
        quoted = QuotedPacket(
            src=_addr(q.src, q.version), dst=_addr(q.dst, q.version), protocol=q.protocol,
            src_port=m.quote_src_port if m.quote_has_ports else None,
            dst_port=m.quote_dst_port if m.quote_has_ports else None,
            seq=m.quote_seq if m.quote_has_ports and q.protocol == PROTO_TCP else None)
    # Each field only for the types it belongs to (see ICMPMessage), so that what is built
    # from a message parses back equal to it.
    ident = seq = mtu = rest = 0
    if _icmp_is_echo(version, m.type):
        ident, seq = m.ident, m.seq
    elif _icmp_has_mtu(version, m.type, m.code):
        mtu = m.mtu
    else:
        rest = m.rest
    return ICMPMessage(type=m.type, code=m.code, ident=ident, seq=seq, mtu=mtu, rest=rest,
                       data=(<const char*>base)[m.body_off:m.body_off + m.body_len],
                       quoted=quoted, checksum=m.checksum)


cdef int _icmp_from_py(object h, icmp_repr* m) except -1:
    if not isinstance(h, ICMPMessage):
        raise TypeError(f"icmp must be an ICMPMessage, not {type(h).__name__}")
    memset(m, 0, sizeof(icmp_repr))
    m.type = <uint8_t>_field(h.type, 0xff, "type")
    m.code = <uint8_t>_field(h.code, 0xff, "code")
    m.ident = <uint16_t>_field(h.ident, 0xffff, "ident")
    m.seq = <uint16_t>_field(h.seq, 0xffff, "seq")
    m.mtu = _field(h.mtu, 0xffffffff, "mtu")
    m.rest = _field(h.rest, 0xffffffff, "rest")
    return 0


# --- buffers --------------------------------------------------------------------------------

cdef int _get_read(object buf, Py_buffer* view) except -1:
    PyObject_GetBuffer(buf, view, PyBUF_SIMPLE)
    return 0


def check_packet(buf, *, bint verify_checksums=True):
    """check_packet(buf, *, verify_checksums=True) -> Reason

    Run the C parser over an IP packet and return why it is malformed (``Reason.OK`` when it is
    not). Never raises for bad bytes; builds no header objects.
    """
    cdef Py_buffer view
    cdef pkt_repr p
    cdef wire_reason r
    cdef int flags = 0 if verify_checksums else PARSE_SKIP_L4_CHECKSUM
    _get_read(buf, &view)
    with nogil:
        r = packet_parse(<const uint8_t*>view.buf, <size_t>view.len, &p, flags)
    PyBuffer_Release(&view)
    return _REASONS[r]


def parse_packet(buf, *, bint verify_checksums=True):
    """parse_packet(buf, *, verify_checksums=True) -> Packet

    Parse an IPv4 or IPv6 packet carrying TCP or ICMP. Raises :class:`WireError` with the
    :class:`Reason` when it is malformed (including fragments and bad checksums).
    """
    cdef Py_buffer view
    cdef pkt_repr p
    cdef wire_reason r
    cdef const uint8_t* b
    cdef int flags = 0 if verify_checksums else PARSE_SKIP_L4_CHECKSUM
    _get_read(buf, &view)
    try:
        b = <const uint8_t*>view.buf
        with nogil:
            r = packet_parse(b, <size_t>view.len, &p, flags)
        if r != WIRE_OK:
            raise WireError(r)
        ip = _ip_to_py(&p.ip)
        if p.ip.protocol == PROTO_TCP:
            return Packet(ip=ip, tcp=_tcp_to_py(&p.tcp),
                          payload=(<const char*>b)[p.payload_off:p.payload_off + p.payload_len])
        return Packet(ip=ip, icmp=_icmp_to_py(&p.icmp, b, p.ip.version))
    finally:
        PyBuffer_Release(&view)


def parse_ipv4(buf, *, bint verify_checksum=True):
    """parse_ipv4(buf, *, verify_checksum=True) -> IPv4Header

    The IPv4 header at the start of ``buf`` (the whole packet must be there: its total length is
    checked). Fragments parse; :func:`parse_packet` is the one that refuses them.
    """
    cdef Py_buffer view
    cdef ip_repr ip
    cdef wire_reason r
    _get_read(buf, &view)
    r = ipv4_parse(<const uint8_t*>view.buf, <size_t>view.len, &ip, verify_checksum)
    PyBuffer_Release(&view)
    if r != WIRE_OK:
        raise WireError(r)
    return _ip_to_py(&ip)


def parse_ipv6(buf):
    """parse_ipv6(buf) -> IPv6Header

    The IPv6 header at the start of ``buf`` with its extension headers walked to the upper layer.
    """
    cdef Py_buffer view
    cdef ip_repr ip
    cdef wire_reason r
    _get_read(buf, &view)
    r = ipv6_parse(<const uint8_t*>view.buf, <size_t>view.len, &ip)
    PyBuffer_Release(&view)
    if r != WIRE_OK:
        raise WireError(r)
    return _ip_to_py(&ip)


def parse_tcp(buf):
    """parse_tcp(buf) -> TCPHeader

    The TCP header and options at the start of ``buf`` (a segment without its IP header). The
    checksum needs the pseudo-header and is not checked: use :func:`parse_packet` or
    :meth:`TCPView.verify_checksum`.
    """
    cdef Py_buffer view
    cdef tcp_repr t
    cdef wire_reason r
    _get_read(buf, &view)
    r = tcp_parse(<const uint8_t*>view.buf, <size_t>view.len, &t)
    PyBuffer_Release(&view)
    if r != WIRE_OK:
        raise WireError(r)
    return _tcp_to_py(&t)


def parse_icmp(buf, int version=4):
    """parse_icmp(buf, version=4) -> ICMPMessage

    An ICMPv4 (``version=4``) or ICMPv6 (``version=6``) message without its IP header; the checksum
    is not checked.
    """
    cdef Py_buffer view
    cdef icmp_repr m
    cdef wire_reason r
    if version != 4 and version != 6:
        raise ValueError("version must be 4 or 6")
    _get_read(buf, &view)
    try:
        r = icmp_parse(<const uint8_t*>view.buf, <size_t>view.len, <uint8_t>version, &m)
        if r != WIRE_OK:
            raise WireError(r)
        return _icmp_to_py(&m, <const uint8_t*>view.buf, <uint8_t>version)
    finally:
        PyBuffer_Release(&view)


cdef int _packet_reprs(object packet, ip_repr* ip, tcp_repr* t, icmp_repr* m,
                       Py_ssize_t* l4_len) except -1:
    """Fill the C reprs from a Packet; returns 1 for TCP, 2 for ICMP."""
    if not isinstance(packet, Packet):
        raise TypeError(f"expected a Packet, not {type(packet).__name__}")
    _ip_from_py(packet.ip, ip)
    if (packet.tcp is None) == (packet.icmp is None):
        raise ValueError("a Packet to emit needs exactly one of tcp and icmp")
    if packet.tcp is not None:
        _tcp_from_py(packet.tcp, t)
        l4_len[0] = tcp_header_len(t) + _nbytes(packet.payload)
        kind = 1
    else:
        if _nbytes(packet.payload):
            raise ValueError("an ICMP packet carries its data in icmp.data, not payload")
        _icmp_from_py(packet.icmp, m)
        l4_len[0] = ICMP_HEADER_LEN + _nbytes(packet.icmp.data)
        kind = 2
    if l4_len[0] + (IPV4_HEADER_LEN if ip.version == 4 else 0) > 0xffff:
        raise ValueError("packet too large for the IP length field")
    return kind


def packet_len(packet) -> int:
    """packet_len(packet) -> int: the bytes :func:`emit_packet` writes for ``packet``."""
    cdef ip_repr ip
    cdef tcp_repr t
    cdef icmp_repr m
    cdef Py_ssize_t l4_len
    _packet_reprs(packet, &ip, &t, &m, &l4_len)
    return ip_header_len(&ip) + l4_len


def emit_packet(packet, buf, Py_ssize_t offset=0) -> int:
    """emit_packet(packet, buf, offset=0) -> int

    Write ``packet`` into the writable buffer ``buf`` at ``offset`` with every length and checksum
    filled in; returns the number of bytes written. ``ValueError`` if it does not fit.
    """
    cdef ip_repr ip
    cdef tcp_repr t
    cdef icmp_repr m
    cdef Py_ssize_t l4_len, total, ihl
    cdef Py_buffer view
    cdef uint8_t* b
    cdef const unsigned char[::1] body
    cdef size_t written
    cdef Py_ssize_t dlen
    kind = _packet_reprs(packet, &ip, &t, &m, &l4_len)
    ihl = ip_header_len(&ip)
    total = ihl + l4_len
    data = packet.payload if kind == 1 else packet.icmp.data
    dlen = _nbytes(data)
    body = memoryview(data).cast("B") if dlen else b"\0"
    PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
    try:
        # Written so that no sum can overflow, whatever offset a caller passes.
        if offset < 0 or offset > view.len or total > view.len - offset:
            raise ValueError(f"buffer too small: {total} bytes needed at offset {offset}, "
                             f"{view.len} in the buffer")
        b = <uint8_t*>view.buf + offset
        if dlen:
            memcpy(b + total - dlen, &body[0], dlen)
        if kind == 1:
            written = tcp_packet_emit(b, <size_t>total, &ip, &t, <size_t>dlen, False)
        else:
            written = icmp_packet_emit(b, <size_t>total, &ip, &m, <size_t>dlen)
        assert written == <size_t>total
        return total
    finally:
        PyBuffer_Release(&view)


def build_packet(packet) -> bytes:
    """build_packet(packet) -> bytes: ``packet`` emitted into a new ``bytes`` object."""
    out = bytearray(packet_len(packet))
    emit_packet(packet, out, 0)
    return bytes(out)


# =============================================================================================
# Views: typed access to the fields of a buffer in place
# =============================================================================================

cdef class _View:
    """A checked view over a buffer. Holds the buffer for its lifetime; writable when it is."""

    cdef Py_buffer _view
    cdef bint _held
    cdef uint8_t* _p
    cdef size_t _n
    cdef object _mv

    def __cinit__(self, buf, *args, **kwargs):
        mv = memoryview(buf)
        if mv.ndim != 1 or mv.format not in ("B", "b", "c"):
            mv = mv.cast("B")
        self._mv = mv
        if mv.readonly:
            PyObject_GetBuffer(mv, &self._view, PyBUF_SIMPLE)
        else:
            PyObject_GetBuffer(mv, &self._view, PyBUF_WRITABLE)
        self._held = True
        self._p = <uint8_t*>self._view.buf
        self._n = <size_t>self._view.len

    def __dealloc__(self):
        if self._held:
            PyBuffer_Release(&self._view)
            self._held = False

    def release(self) -> None:
        """Let go of the underlying buffer (so a bytearray may be resized again)."""
        if self._held:
            PyBuffer_Release(&self._view)
            self._held = False
        self._mv = None
        self._p = NULL
        self._n = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __len__(self):
        return self._n

    @property
    def readonly(self) -> bool:
        return bool(self._view.readonly) if self._held else True

    cdef inline const uint8_t* _r(self) except NULL:
        if not self._held:
            raise ValueError("operation on a released view")
        return self._p

    cdef inline uint8_t* _w(self) except NULL:
        if not self._held:
            raise ValueError("operation on a released view")
        if self._view.readonly:
            raise TypeError("the view's buffer is read-only")
        return self._p

    cdef object _slice(self, size_t start, size_t end):
        self._r()
        return self._mv[start:end]


cdef class TCPView(_View):
    """TCPView(buf): typed access to a TCP segment (header, options, payload) in ``buf``.

    The constructor checks the fixed header and the data offset against the buffer and raises
    :class:`WireError` otherwise; option contents are checked by :meth:`parse`.
    """

    def __init__(self, buf):
        cdef wire_reason r = _tcp_lengths(self._p, self._n)
        if r != WIRE_OK:
            self.release()
            raise WireError(r)

    @property
    def src_port(self) -> int:
        return load16(self._r())

    @property
    def dst_port(self) -> int:
        return load16(self._r() + 2)

    @property
    def seq(self) -> int:
        return load32(self._r() + 4)

    @seq.setter
    def seq(self, value):
        store32(self._w() + 4, _field(value, 0xffffffff, "seq"))

    @property
    def ack(self) -> int:
        return load32(self._r() + 8)

    @ack.setter
    def ack(self, value):
        store32(self._w() + 8, _field(value, 0xffffffff, "ack"))

    @property
    def header_len(self) -> int:
        return (self._r()[12] >> 4) * 4

    @property
    def flags(self):
        return TCPFlags(self._r()[13])

    @flags.setter
    def flags(self, value):
        self._w()[13] = <uint8_t>_field(int(value), 0xff, "flags")

    @property
    def window(self) -> int:
        return load16(self._r() + 14)

    @window.setter
    def window(self, value):
        store16(self._w() + 14, <uint16_t>_field(value, 0xffff, "window"))

    @property
    def checksum(self) -> int:
        return load16(self._r() + 16)

    @checksum.setter
    def checksum(self, value):
        store16(self._w() + 16, <uint16_t>_field(value, 0xffff, "checksum"))

    @property
    def urgent(self) -> int:
        return load16(self._r() + 18)

    @property
    def options(self):
        """The option bytes, as a memoryview into the buffer."""
        return self._slice(TCP_HEADER_LEN, (self._r()[12] >> 4) * 4)

    @property
    def payload(self):
        """The data after the header, as a memoryview into the buffer."""
        return self._slice((self._r()[12] >> 4) * 4, self._n)

    def parse(self):
        """parse() -> TCPHeader: the header's meaning, options included (may raise WireError)."""
        cdef tcp_repr t
        cdef wire_reason r = tcp_parse(self._r(), self._n, &t)
        if r != WIRE_OK:
            raise WireError(r)
        return _tcp_to_py(&t)

    def verify_checksum(self, int pseudo_sum) -> bool:
        """verify_checksum(pseudo_sum) -> bool

        True when the segment's checksum is right; ``pseudo_sum`` comes from
        :func:`tcpfast.checksum.pseudo_header_sum_ipv4` (or ``_ipv6``) with ``len(view)``.
        """
        cdef uint16_t ps = <uint16_t>_field(pseudo_sum, 0xffff, "pseudo_sum")
        return csum_fold(csum_partial(self._r(), self._n, _htons(ps))) == 0xffff

    def fill_checksum(self, int pseudo_sum) -> int:
        """fill_checksum(pseudo_sum) -> int: compute and store the checksum; returns it."""
        cdef uint16_t ps = <uint16_t>_field(pseudo_sum, 0xffff, "pseudo_sum")
        cdef uint8_t* p = self._w()
        cdef uint16_t csum
        p[16] = 0
        p[17] = 0
        csum = csum_finish(csum_partial(p, self._n, _htons(ps)))
        memcpy(p + 16, &csum, 2)
        return load16(p + 16)


cdef class IPv4View(_View):
    """IPv4View(buf): typed access to an IPv4 packet in ``buf``.

    The constructor checks version, IHL and total length against the buffer (not the checksum:
    see :meth:`verify_checksum`) and raises :class:`WireError` otherwise.
    """

    def __init__(self, buf):
        cdef ip_repr ip
        cdef wire_reason r = ipv4_parse(self._p, self._n, &ip, False)
        if r != WIRE_OK:
            self.release()
            raise WireError(r)

    version = property(lambda self: 4)

    @property
    def header_len(self) -> int:
        return (self._r()[0] & 0x0f) * 4

    @property
    def tos(self) -> int:
        return self._r()[1]

    @property
    def total_length(self) -> int:
        return load16(self._r() + 2)

    @property
    def ident(self) -> int:
        return load16(self._r() + 4)

    @property
    def dont_fragment(self) -> bool:
        return bool(self._r()[6] & 0x40)

    @property
    def more_fragments(self) -> bool:
        return bool(self._r()[6] & 0x20)

    @property
    def fragment_offset(self) -> int:
        return (load16(self._r() + 6) & 0x1fff) * 8

    @property
    def ttl(self) -> int:
        return self._r()[8]

    @ttl.setter
    def ttl(self, value):
        self._w()[8] = <uint8_t>_field(value, 0xff, "ttl")

    @property
    def protocol(self) -> int:
        return self._r()[9]

    @property
    def checksum(self) -> int:
        return load16(self._r() + 10)

    @checksum.setter
    def checksum(self, value):
        store16(self._w() + 10, <uint16_t>_field(value, 0xffff, "checksum"))

    @property
    def src(self):
        return _addr(self._r() + 12, 4)

    @property
    def dst(self):
        return _addr(self._r() + 16, 4)

    @property
    def options(self):
        return self._slice(IPV4_HEADER_LEN, (self._r()[0] & 0x0f) * 4)

    @property
    def payload(self):
        """The upper-layer bytes up to the total length, as a memoryview into the buffer."""
        cdef const uint8_t* p = self._r()
        return self._slice((p[0] & 0x0f) * 4, load16(p + 2))

    cdef size_t _ihl(self) except 0:
        # The buffer is writable and may have changed since the view checked it: check again.
        cdef size_t ihl = <size_t>(self._r()[0] & 0x0f) * 4
        if ihl < IPV4_HEADER_LEN:
            raise WireError(WIRE_BAD_IHL)
        if ihl > self._n:
            raise WireError(WIRE_HEADER_OVERRUN)
        return ihl

    def verify_checksum(self) -> bool:
        """verify_checksum() -> bool: the header checksum is right."""
        cdef size_t ihl = self._ihl()
        return csum_fold(csum_partial(self._p, ihl, 0)) == 0xffff

    def fill_checksum(self) -> int:
        """fill_checksum() -> int: compute and store the header checksum; returns it."""
        cdef size_t ihl = self._ihl()
        cdef uint8_t* p = self._w()
        cdef uint16_t csum
        p[10] = 0
        p[11] = 0
        csum = csum_finish(csum_partial(p, ihl, 0))
        memcpy(p + 10, &csum, 2)
        return load16(p + 10)

    def parse(self, *, bint verify_checksum=True):
        """parse(*, verify_checksum=True) -> IPv4Header"""
        return parse_ipv4(self._mv, verify_checksum=verify_checksum)


cdef class IPv6View(_View):
    """IPv6View(buf): typed access to an IPv6 packet in ``buf``, extension headers walked.

    The constructor checks the fixed header, the payload length and the extension-header chain
    against the buffer and raises :class:`WireError` otherwise.
    """

    cdef ip_repr _ip

    def __init__(self, buf):
        cdef wire_reason r = ipv6_parse(self._p, self._n, &self._ip)
        if r != WIRE_OK:
            self.release()
            raise WireError(r)

    version = property(lambda self: 6)

    @property
    def traffic_class(self) -> int:
        return <uint8_t>(load32(self._r()) >> 20)

    @property
    def flow_label(self) -> int:
        return load32(self._r()) & 0xfffff

    @property
    def payload_length(self) -> int:
        return load16(self._r() + 4)

    @property
    def next_header(self) -> int:
        """The Next Header field of the fixed header (the first extension header, if any)."""
        return self._r()[6]

    @property
    def hop_limit(self) -> int:
        return self._r()[7]

    @hop_limit.setter
    def hop_limit(self, value):
        self._w()[7] = <uint8_t>_field(value, 0xff, "hop_limit")

    @property
    def src(self):
        return _addr(self._r() + 8, 6)

    @property
    def dst(self):
        return _addr(self._r() + 24, 6)

    @property
    def protocol(self) -> int:
        """The upper-layer protocol, after the extension headers."""
        self._r()
        return self._ip.protocol

    @property
    def header_len(self) -> int:
        """40 plus the extension headers: the offset of the upper-layer header."""
        self._r()
        return self._ip.header_len

    @property
    def is_fragment(self) -> bool:
        self._r()
        return bool(self._ip.is_fragment)

    @property
    def payload(self):
        """The upper-layer bytes, as a memoryview into the buffer."""
        self._r()
        return self._slice(self._ip.header_len, IPV6_HEADER_LEN + load16(self._p + 4))

    def parse(self):
        """parse() -> IPv6Header"""
        return _ip_to_py(&self._ip)


cdef class ICMPView(_View):
    """ICMPView(buf): typed access to an ICMPv4/ICMPv6 message (without its IP header)."""

    def __init__(self, buf):
        if self._n < ICMP_HEADER_LEN:
            self.release()
            raise WireError(WIRE_TRUNCATED)

    @property
    def type(self) -> int:
        return self._r()[0]

    @property
    def code(self) -> int:
        return self._r()[1]

    @property
    def checksum(self) -> int:
        return load16(self._r() + 2)

    @property
    def rest(self) -> int:
        return load32(self._r() + 4)

    @property
    def ident(self) -> int:
        return load16(self._r() + 4)

    @property
    def seq(self) -> int:
        return load16(self._r() + 6)

    @property
    def body(self):
        """Echo data or the quoted packet, as a memoryview into the buffer."""
        return self._slice(ICMP_HEADER_LEN, self._n)

    def parse(self, int version=4):
        """parse(version=4) -> ICMPMessage"""
        return parse_icmp(self._mv, version)
