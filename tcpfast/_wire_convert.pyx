# cython: language_level=3
"""The header values of ``headers.py`` from and to the C reprs of ``_wire``: the Python-level API.

``parse_packet`` and friends run the C parser and build :class:`~tcpfast.headers.Packet` and its
headers; ``emit_packet`` fills the C reprs from those values and runs the C emitter. Malformed
bytes raise :class:`~tcpfast._wire.WireError` with the :class:`~tcpfast._wire.Reason`. For users,
tests and tools: the stack's per-packet path never builds these values.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE

from tcpfast._wire cimport (ip_repr, tcp_repr, icmp_repr, pkt_repr, wire_reason, WIRE_OK,
                            PARSE_SKIP_L4_CHECKSUM, PROTO_TCP, TCP_MAX_SACK_BLOCKS,
                            TCP_MAX_OPTIONS_LEN, IPV4_HEADER_LEN, ICMP_HEADER_LEN, IPV4_ADDR_LEN,
                            IPV6_ADDR_LEN, ipv4_parse, ipv6_parse, tcp_parse,
                            icmp_parse, packet_parse, tcp_header_len, ip_header_len,
                            tcp_packet_emit, icmp_packet_emit, icmp_is_echo, icmp_has_mtu,
                            tcp_options_fixed_len, tcp_sack_blocks_that_fit)

import sys
from ipaddress import IPv4Address, IPv6Address

from tcpfast import headers
from tcpfast._wire import WireError
from tcpfast.headers import (ICMPMessage, IPv4Header, IPv6Header, Packet, QuotedPacket, TCPFlags,
                             TCPHeader)


cdef object addr_to_py(const uint8_t* a, uint8_t version):
    if version == 4:
        return IPv4Address((<const char*>a)[:4])
    return IPv6Address((<const char*>a)[:16])


cdef object ip_to_py(const ip_repr* ip):
    if ip.version == 4:
        return IPv4Header(src=addr_to_py(ip.src, 4), dst=addr_to_py(ip.dst, 4),
                          protocol=ip.protocol, ttl=ip.ttl, tos=ip.tos, ident=ip.ident,
                          dont_fragment=bool(ip.dont_fragment),
                          more_fragments=bool(ip.more_fragments),
                          fragment_offset=ip.fragment_offset, header_len=ip.header_len,
                          payload_len=ip.payload_len, checksum=ip.checksum)
    return IPv6Header(src=addr_to_py(ip.src, 6), dst=addr_to_py(ip.dst, 6),
                      protocol=ip.protocol, hop_limit=ip.ttl, traffic_class=ip.tos,
                      flow_label=ip.flow_label, is_fragment=bool(ip.is_fragment),
                      header_len=ip.header_len, payload_len=ip.payload_len)


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
        ip.ttl = <uint8_t>field_value(h.ttl, 0xff, "ttl")
        ip.tos = <uint8_t>field_value(h.tos, 0xff, "tos")
        ip.ident = <uint16_t>field_value(h.ident, 0xffff, "ident")
        ip.dont_fragment = bool(h.dont_fragment)
        ip.more_fragments = bool(h.more_fragments)
        if field_value(h.fragment_offset, 0xfff8, "fragment_offset") % 8:
            raise ValueError("fragment_offset must be a multiple of 8")
        ip.fragment_offset = <uint16_t>h.fragment_offset
        memcpy(ip.src, <const char*>src, IPV4_ADDR_LEN)
        memcpy(ip.dst, <const char*>dst, IPV4_ADDR_LEN)
    elif isinstance(h, IPv6Header):
        ip.version = 6
        src = _packed6(h.src)
        dst = _packed6(h.dst)
        ip.ttl = <uint8_t>field_value(h.hop_limit, 0xff, "hop_limit")
        ip.tos = <uint8_t>field_value(h.traffic_class, 0xff, "traffic_class")
        ip.flow_label = field_value(h.flow_label, 0xfffff, "flow_label")
        memcpy(ip.src, <const char*>src, IPV6_ADDR_LEN)
        memcpy(ip.dst, <const char*>dst, IPV6_ADDR_LEN)
    else:
        raise TypeError(f"ip must be an IPv4Header or IPv6Header, not {type(h).__name__}")
    return 0


cdef object tcp_to_py(const tcp_repr* t):
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
    t.src_port = <uint16_t>field_value(h.src_port, 0xffff, "src_port")
    t.dst_port = <uint16_t>field_value(h.dst_port, 0xffff, "dst_port")
    t.seq = field_value(h.seq, 0xffffffff, "seq")
    t.ack = field_value(h.ack, 0xffffffff, "ack")
    t.flags = <uint8_t>field_value(int(h.flags), 0xff, "flags")
    t.window = <uint16_t>field_value(h.window, 0xffff, "window")
    t.urgent = <uint16_t>field_value(h.urgent, 0xffff, "urgent")
    if h.mss is not None:
        t.has_mss = 1
        t.mss = <uint16_t>field_value(h.mss, 0xffff, "mss")
    if h.wscale is not None:
        t.has_wscale = 1
        t.wscale = <uint8_t>field_value(h.wscale, 0xff, "wscale")
    t.sack_permitted = bool(h.sack_permitted)
    if h.timestamps is not None:
        if len(h.timestamps) != 2:
            raise ValueError("timestamps must be (tsval, tsecr)")
        t.has_timestamps = 1
        t.tsval = field_value(h.timestamps[0], 0xffffffff, "tsval")
        t.tsecr = field_value(h.timestamps[1], 0xffffffff, "tsecr")
    blocks = tuple(h.sack_blocks)
    if len(blocks) > TCP_MAX_SACK_BLOCKS:
        raise ValueError(f"at most {TCP_MAX_SACK_BLOCKS} SACK blocks, got {len(blocks)}")
    t.sack_count = <uint8_t>len(blocks)
    for k, (left, right) in enumerate(blocks):
        t.sack_left[k] = field_value(left, 0xffffffff, "SACK left edge")
        t.sack_right[k] = field_value(right, 0xffffffff, "SACK right edge")
    # The C emitter, used by the stack, keeps the first blocks that fit (RFC 2018 §4: the first
    # reports the most recent data). A caller of the Python API asked for every block, so it is
    # told rather than given a different header.
    if tcp_sack_blocks_that_fit(t, tcp_options_fixed_len(t)) != t.sack_count:
        raise ValueError(f"{t.sack_count} SACK blocks do not fit in the {TCP_MAX_OPTIONS_LEN} "
                         "option bytes beside the other options")
    return 0


cdef object icmp_to_py(const icmp_repr* m, const uint8_t* base, uint8_t version):
    quoted = None
    if m.has_quote:
        q = &m.quote_ip
        quoted = QuotedPacket(
            src=addr_to_py(q.src, q.version), dst=addr_to_py(q.dst, q.version), protocol=q.protocol,
            src_port=m.quote_src_port if m.quote_has_ports else None,
            dst_port=m.quote_dst_port if m.quote_has_ports else None,
            seq=m.quote_seq if m.quote_has_ports and q.protocol == PROTO_TCP else None)
    # Each field only for the types it belongs to (see ICMPMessage), so that what is built
    # from a message parses back equal to it.
    ident = seq = mtu = rest = 0
    if icmp_is_echo(version, m.type):
        ident, seq = m.ident, m.seq
    elif icmp_has_mtu(version, m.type, m.code):
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
    m.type = <uint8_t>field_value(h.type, 0xff, "type")
    m.code = <uint8_t>field_value(h.code, 0xff, "code")
    m.ident = <uint16_t>field_value(h.ident, 0xffff, "ident")
    m.seq = <uint16_t>field_value(h.seq, 0xffff, "seq")
    m.mtu = field_value(h.mtu, 0xffffffff, "mtu")
    m.rest = field_value(h.rest, 0xffffffff, "rest")
    return 0


# --- buffers --------------------------------------------------------------------------------

cdef int _get_read(object buf, Py_buffer* view) except -1:
    PyObject_GetBuffer(buf, view, PyBUF_SIMPLE)
    return 0


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
        ip = ip_to_py(&p.ip)
        if p.ip.protocol == PROTO_TCP:
            return Packet(ip=ip, tcp=tcp_to_py(&p.tcp),
                          payload=(<const char*>b)[p.payload_off:p.payload_off + p.payload_len])
        return Packet(ip=ip, icmp=icmp_to_py(&p.icmp, b, p.ip.version))
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
    return ip_to_py(&ip)


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
    return ip_to_py(&ip)


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
    return tcp_to_py(&t)


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
        return icmp_to_py(&m, <const uint8_t*>view.buf, <uint8_t>version)
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


# headers.Packet's parse, buffer_len, emit and to_bytes are this module's functions. headers.py
# cannot import this module (it imports headers.py for the classes it builds: an import cycle),
# so this module hands itself over as it loads; `import tcpfast` always loads it.
headers._codec = sys.modules[__name__]
