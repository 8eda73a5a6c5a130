# cython: language_level=3
"""Parse and emit IPv4, IPv6, TCP and ICMP packets in C (declared in ``_wire.pxd``).

This is what the engine uses per packet: no GIL, no Python object, malformation reported as a
``wire_reason``. The Python face of those reasons (:class:`Reason`, :class:`WireError`) and
:func:`check_packet` (the C parser run from Python) are at the bottom. Conversion to and from the
values of ``headers.py`` is ``_wire_convert.pyx``; typed views over buffers are ``_wire_views.pyx``.

Every length read from a packet is checked against the bytes actually present before anything is
read through it: a parser here never reads past ``b + n``.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from tcpfast._checksum cimport (csum_partial, csum_fold, csum_finish, csum_pseudo_ipv4,
                                csum_pseudo_ipv6)

import enum


# =============================================================================================
# Parsing (C level)
# =============================================================================================

cdef inline void _clear_addrs(ip_repr* ip) noexcept nogil:
    memset(ip.src, 0, sizeof(ip.src))
    memset(ip.dst, 0, sizeof(ip.dst))


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
    memcpy(ip.src, b + 12, IPV4_ADDR_LEN)
    memcpy(ip.dst, b + 16, IPV4_ADDR_LEN)
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
    memcpy(ip.src, b + 8, IPV6_ADDR_LEN)
    memcpy(ip.dst, b + 24, IPV6_ADDR_LEN)
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


cdef wire_reason tcp_parse(const uint8_t* b, size_t n, tcp_repr* t) noexcept nogil:
    """A TCP header and its options (RFC 9293 §3.1). The checksum is not checked here."""
    cdef wire_reason r = tcp_check_lengths(b, n)
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
        memcpy(q.src, b + 12, IPV4_ADDR_LEN)
        memcpy(q.dst, b + 16, IPV4_ADDR_LEN)
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
        memcpy(q.src, b + 8, IPV6_ADDR_LEN)
        memcpy(q.dst, b + 24, IPV6_ADDR_LEN)
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
    if icmp_has_mtu(version, m.type, m.code):
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
        r = tcp_check_lengths(l4, l4_len)
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

cdef size_t tcp_options_len(const tcp_repr* t) noexcept nogil:
    """Option bytes ``tcp_emit`` writes: a multiple of 4, at most ``TCP_MAX_OPTIONS_LEN``."""
    cdef size_t n = tcp_options_fixed_len(t)
    cdef size_t k = tcp_sack_blocks_that_fit(t, n)
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
        memcpy(b + 12, ip.src, IPV4_ADDR_LEN)
        memcpy(b + 16, ip.dst, IPV4_ADDR_LEN)
        csum = csum_finish(csum_partial(b, IPV4_HEADER_LEN, 0))
        memcpy(b + 10, &csum, 2)        # a native sum is stored as it lies (RFC 1071 §2(B))
        return IPV4_HEADER_LEN
    store32(b, (<uint32_t>6 << 28) | (<uint32_t>ip.tos << 20) | (ip.flow_label & 0xfffff))
    store16(b + 4, <uint16_t>payload_len)
    b[6] = protocol
    b[7] = ip.ttl
    memcpy(b + 8, ip.src, IPV6_ADDR_LEN)
    memcpy(b + 24, ip.dst, IPV6_ADDR_LEN)
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
    nblocks = tcp_sack_blocks_that_fit(t, tcp_options_fixed_len(t))
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
    if icmp_is_echo(version, m.type):
        return (<uint32_t>m.ident << 16) | m.seq
    if icmp_has_mtu(version, m.type, m.code):
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
# Python level: why a packet is malformed, and the C parser run from Python
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


def check_packet(buf, *, bint verify_checksums=True):
    """check_packet(buf, *, verify_checksums=True) -> Reason

    Run the C parser over an IP packet and return why it is malformed (``Reason.OK`` when it is
    not). Never raises for bad bytes; builds no header objects.
    """
    cdef Py_buffer view
    cdef pkt_repr p
    cdef wire_reason r
    cdef int flags = 0 if verify_checksums else PARSE_SKIP_L4_CHECKSUM
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    with nogil:
        r = packet_parse(<const uint8_t*>view.buf, <size_t>view.len, &p, flags)
    PyBuffer_Release(&view)
    return _REASONS[r]
