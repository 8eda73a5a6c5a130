"""A small pure-Python oracle for tcpfast's checksum, sequence arithmetic and wire format.

Written from the RFCs with ``struct`` and plain integers, deliberately slow and obvious, and
independent of the Cython code it checks (it never imports ``tcpfast._*``). It returns the value
classes of :mod:`tcpfast.headers` so results compare directly with ``tcpfast.wire``'s.

Malformed input raises :class:`Malformed` carrying a :class:`Reason`; :func:`check_packet` turns
that into a return value. This module is a test tool: the package never imports it.

Sources:
  RFC 1071 (Internet checksum), RFC 1624 (incremental update), RFC 1982 / RFC 9293 §3.4 (sequence
  numbers), RFC 791 (IPv4), RFC 8200 (IPv6, extension headers, pseudo-header), RFC 9293 §3.1-3.2
  (TCP header, options, pseudo-header), RFC 7323 (window scale, timestamps), RFC 2018 (SACK),
  RFC 792 / RFC 1191 (ICMPv4, next-hop MTU), RFC 4443 (ICMPv6).
"""
from __future__ import annotations

import enum
import struct
from ipaddress import IPv4Address, IPv6Address
from typing import Optional, Tuple

from tcpfast.headers import (
    ICMPMessage,
    IPv4Header,
    IPv6Header,
    Packet,
    QuotedPacket,
    TCPFlags,
    TCPHeader,
)

PROTO_HOPOPTS = 0
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_ICMPV6 = 58
PROTO_NONE = 59
PROTO_DSTOPTS = 60

IPV6_MAX_EXT_HEADERS = 8
TCP_MAX_OPTIONS_LEN = 40

# ICMP error types whose body quotes the offending packet.
# RFC 792: destination unreachable, source quench, redirect, time exceeded, parameter problem.
ICMPV4_ERRORS = frozenset({3, 4, 5, 11, 12})
# RFC 4443 §2.1: types 0-127 are error messages (1-4 defined: unreachable, packet too big, time
# exceeded, parameter problem).
ICMPV6_ERRORS = frozenset(range(128))
ICMPV4_ECHO = frozenset({0, 8})
ICMPV6_ECHO = frozenset({128, 129})


class Reason(enum.IntEnum):
    """Why a packet is malformed; the same numbering as ``tcpfast.wire.Reason``."""

    OK = 0
    TRUNCATED = 1
    BAD_VERSION = 2
    BAD_IHL = 3
    HEADER_OVERRUN = 4
    BAD_TOTAL_LENGTH = 5
    BAD_IP_CHECKSUM = 6
    FRAGMENT = 7
    EXT_HEADER_LIMIT = 8
    UNKNOWN_PROTOCOL = 9
    BAD_DATA_OFFSET = 10
    OPTIONS_OVERRUN = 11
    BAD_OPTION_LENGTH = 12
    BAD_CHECKSUM = 13


class Malformed(Exception):
    def __init__(self, reason: Reason):
        super().__init__(reason.name)
        self.reason = reason


# =============================================================================================
# Checksum (RFC 1071, RFC 1624)
# =============================================================================================

def _add16(a: int, b: int) -> int:
    """One's-complement addition of two 16-bit values (end-around carry)."""
    s = a + b
    return (s & 0xFFFF) + (s >> 16)


def ones_complement_sum(data, initial: int = 0) -> int:
    """RFC 1071 §1: the 16-bit one's-complement sum of big-endian words, odd byte padded with 0."""
    b = bytes(data)
    if len(b) % 2:
        b += b"\x00"
    total = initial
    for (word,) in struct.iter_unpack("!H", b):
        total = _add16(total, word)
    return total


def combine(sum_a: int, sum_b: int, len_a: int) -> int:
    """The sum of a + b; RFC 1071 §2(B): b's sum is byte-swapped when b starts at an odd offset."""
    if len_a % 2:
        sum_b = ((sum_b & 0xFF) << 8) | (sum_b >> 8)
    return _add16(sum_a, sum_b)


def checksum(data, initial: int = 0) -> int:
    """The checksum field value: the one's complement of the one's-complement sum."""
    return ~ones_complement_sum(data, initial) & 0xFFFF


def _addr_bytes(addr, size: int) -> bytes:
    if isinstance(addr, (bytes, bytearray, memoryview)):
        b = bytes(addr)
    elif size == 4:
        b = IPv4Address(addr).packed
    else:
        b = IPv6Address(addr).packed
    assert len(b) == size
    return b


def pseudo_header_ipv4(src, dst, protocol: int, length: int) -> bytes:
    """RFC 9293 §3.1: source, destination, zero, PTCL, TCP length (12 bytes)."""
    return _addr_bytes(src, 4) + _addr_bytes(dst, 4) + struct.pack("!BBH", 0, protocol, length)


def pseudo_header_ipv6(src, dst, next_header: int, length: int) -> bytes:
    """RFC 8200 §8.1: source, destination, upper-layer length (32 bits), 3 zero bytes, NH."""
    return (_addr_bytes(src, 16) + _addr_bytes(dst, 16)
            + struct.pack("!I3xB", length, next_header))


def pseudo_header_sum_ipv4(src, dst, protocol: int, length: int) -> int:
    return ones_complement_sum(pseudo_header_ipv4(src, dst, protocol, length))


def pseudo_header_sum_ipv6(src, dst, next_header: int, length: int) -> int:
    return ones_complement_sum(pseudo_header_ipv6(src, dst, next_header, length))


def update16(hc: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')."""
    s = _add16(~hc & 0xFFFF, ~old & 0xFFFF)
    s = _add16(s, new)
    return ~s & 0xFFFF


def update32(hc: int, old: int, new: int) -> int:
    hc = update16(hc, old >> 16, new >> 16)
    return update16(hc, old & 0xFFFF, new & 0xFFFF)


# =============================================================================================
# Sequence numbers (RFC 9293 §3.4, RFC 1982 with Linux's tie-break at exactly 2**31)
# =============================================================================================

MOD32 = 1 << 32
HALF32 = 1 << 31


def seq_sub(a: int, b: int) -> int:
    """The signed distance a - b, in [-2**31, 2**31)."""
    d = (a - b) % MOD32
    return d - MOD32 if d >= HALF32 else d


def seq_lt(a: int, b: int) -> bool:
    return seq_sub(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    return seq_sub(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    return seq_sub(b, a) < 0


def seq_ge(a: int, b: int) -> bool:
    return seq_sub(b, a) <= 0


def seq_between(lo: int, x: int, hi: int) -> bool:
    """lo <= x <= hi walking forward from lo."""
    return (x - lo) % MOD32 <= (hi - lo) % MOD32


def seq_in_window(x: int, start: int, size: int) -> bool:
    """start <= x < start + size."""
    return (x - start) % MOD32 < size


def seq_add(a: int, n: int) -> int:
    return (a + n) % MOD32


def seq_max(a: int, b: int) -> int:
    return b if seq_lt(a, b) else a


def seq_min(a: int, b: int) -> int:
    return a if seq_lt(a, b) else b


# =============================================================================================
# Parsing
# =============================================================================================

def _fail(reason: Reason):
    raise Malformed(reason)


def parse_ipv4(buf, verify_checksum: bool = True) -> IPv4Header:
    """RFC 791 §3.1. The whole datagram (total length) must fit ``buf``; bytes after it
    are ignored."""
    b = bytes(buf)
    if len(b) < 20:
        _fail(Reason.TRUNCATED)
    (ver_ihl, tos, total_length, ident, flags_frag, ttl, protocol, csum,
     src, dst) = struct.unpack_from("!BBHHHBBH4s4s", b)
    if ver_ihl >> 4 != 4:
        _fail(Reason.BAD_VERSION)
    ihl = (ver_ihl & 0x0F) * 4
    if ihl < 20:
        _fail(Reason.BAD_IHL)
    if ihl > len(b):
        _fail(Reason.HEADER_OVERRUN)
    if total_length > len(b) or total_length < ihl:
        _fail(Reason.BAD_TOTAL_LENGTH)
    # RFC 1071: summing a header that includes its checksum gives all ones when it is intact.
    if verify_checksum and ones_complement_sum(b[:ihl]) != 0xFFFF:
        _fail(Reason.BAD_IP_CHECKSUM)
    return IPv4Header(
        src=IPv4Address(src), dst=IPv4Address(dst), protocol=protocol, ttl=ttl, tos=tos,
        ident=ident,
        dont_fragment=bool(flags_frag & 0x4000),
        more_fragments=bool(flags_frag & 0x2000),
        fragment_offset=(flags_frag & 0x1FFF) * 8,
        header_len=ihl, payload_len=total_length - ihl, checksum=csum,
    )


def walk_ipv6_extension_headers(b: bytes, end: int) -> Tuple[int, int, bool]:
    """RFC 8200 §4: from the Next Header field of the fixed header, skip hop-by-hop (0), routing
    (43) and destination options (60) headers, (Hdr Ext Len + 1) * 8 octets each (§4.3, §4.4,
    §4.6), and fragment headers (44), 8 octets (§4.5), all within ``b[:end]``.

    Returns (upper-layer protocol, offset of the upper-layer header, is a fragment). A fragment
    header with offset 0 and M clear is an atomic fragment (RFC 6946), a whole datagram: the walk
    goes on. Any other fragment ends the walk: what follows it is fragment data, not headers."""
    next_header = b[6]
    off = 40
    count = 0
    while next_header in (PROTO_HOPOPTS, PROTO_ROUTING, PROTO_DSTOPTS, PROTO_FRAGMENT):
        if count == IPV6_MAX_EXT_HEADERS:
            _fail(Reason.EXT_HEADER_LIMIT)
        count += 1
        if next_header == PROTO_FRAGMENT:
            if off + 8 > end:
                _fail(Reason.HEADER_OVERRUN)
            nh, _reserved, off_m = struct.unpack_from("!BBH", b, off)
            off += 8
            next_header = nh
            if (off_m >> 3) != 0 or (off_m & 1):
                return next_header, off, True
            continue
        if off + 2 > end:
            _fail(Reason.HEADER_OVERRUN)
        nh, hdr_ext_len = b[off], b[off + 1]
        length = (hdr_ext_len + 1) * 8
        if off + length > end:
            _fail(Reason.HEADER_OVERRUN)
        off += length
        next_header = nh
    return next_header, off, False


def parse_ipv6(buf) -> IPv6Header:
    """RFC 8200 §3: the fixed header and the extension headers up to the upper layer. The
    payload (Payload Length) must fit ``buf``; bytes after it are ignored."""
    b = bytes(buf)
    if len(b) < 40:
        _fail(Reason.TRUNCATED)
    vtf, payload_length, _nh, hop_limit, src, dst = struct.unpack_from("!IHBB16s16s", b)
    if vtf >> 28 != 6:
        _fail(Reason.BAD_VERSION)
    end = 40 + payload_length
    if end > len(b):
        _fail(Reason.BAD_TOTAL_LENGTH)
    protocol, off, is_fragment = walk_ipv6_extension_headers(b, end)
    return IPv6Header(
        src=IPv6Address(src), dst=IPv6Address(dst), protocol=protocol, hop_limit=hop_limit,
        traffic_class=(vtf >> 20) & 0xFF, flow_label=vtf & 0xFFFFF,
        is_fragment=is_fragment, header_len=off, payload_len=end - off,
    )


def parse_tcp_options(opts: bytes) -> dict:
    """RFC 9293 §3.2 option list; RFC 7323 §2.2/§3.2; RFC 2018 §2-3. Returns TCPHeader
    fields."""
    out: dict = {}
    n = len(opts)
    i = 0
    while i < n:
        kind = opts[i]
        if kind == 0:                   # End of Option List
            break
        if kind == 1:                   # No-Operation
            i += 1
            continue
        if i + 1 >= n:
            _fail(Reason.OPTIONS_OVERRUN)
        length = opts[i + 1]
        if length < 2:
            _fail(Reason.BAD_OPTION_LENGTH)
        if i + length > n:
            _fail(Reason.OPTIONS_OVERRUN)
        body = opts[i + 2:i + length]
        if kind == 2:                   # Maximum Segment Size
            if length != 4:
                _fail(Reason.BAD_OPTION_LENGTH)
            out["mss"] = struct.unpack("!H", body)[0]
        elif kind == 3:                 # Window Scale
            if length != 3:
                _fail(Reason.BAD_OPTION_LENGTH)
            out["wscale"] = body[0]
        elif kind == 4:                 # SACK-Permitted
            if length != 2:
                _fail(Reason.BAD_OPTION_LENGTH)
            out["sack_permitted"] = True
        elif kind == 5:                 # SACK
            blocks = (length - 2) // 8
            if (length - 2) % 8 or not 1 <= blocks <= 4:
                _fail(Reason.BAD_OPTION_LENGTH)
            out["sack_blocks"] = tuple(struct.unpack_from("!II", body, 8 * k)
                                       for k in range(blocks))
        elif kind == 8:                 # Timestamps
            if length != 10:
                _fail(Reason.BAD_OPTION_LENGTH)
            out["timestamps"] = struct.unpack("!II", body)
        i += length
    return out


def parse_tcp(buf) -> TCPHeader:
    """RFC 9293 §3.1: the fixed header and options at the start of ``buf`` (a whole segment)."""
    b = bytes(buf)
    if len(b) < 20:
        _fail(Reason.TRUNCATED)
    src_port, dst_port, seq, ack, off_byte, flags, window, csum, urgent = struct.unpack_from(
        "!HHIIBBHHH", b)
    header_len = (off_byte >> 4) * 4
    if header_len < 20:
        _fail(Reason.BAD_DATA_OFFSET)
    if header_len > len(b):
        _fail(Reason.OPTIONS_OVERRUN)
    opts = parse_tcp_options(b[20:header_len])
    return TCPHeader(src_port=src_port, dst_port=dst_port, seq=seq, ack=ack,
                     flags=TCPFlags(flags), window=window, urgent=urgent,
                     header_len=header_len, checksum=csum, **opts)


def _parse_quote(body: bytes, version: int) -> Optional[QuotedPacket]:
    """The invoking packet quoted by an ICMP error (RFC 792: IP header + 64 bits of data;
    RFC 4443 §2.4(c): as much as fits). The quote is usually cut short, so its lengths are checked
    only against the bytes present. Ports come from the first 8 bytes after the IP header (for TCP
    and UDP alike, RFC 792 guarantees them); the sequence number only for TCP."""
    if not body or body[0] >> 4 != version:
        return None
    if version == 4:
        if len(body) < 20:
            return None
        ihl = (body[0] & 0x0F) * 4
        if ihl < 20 or ihl > len(body):
            return None
        protocol, off = body[9], ihl
        src, dst = IPv4Address(body[12:16]), IPv4Address(body[16:20])
    else:
        if len(body) < 40:
            return None
        try:
            protocol, off, _frag = walk_ipv6_extension_headers(body, len(body))
        except Malformed:
            return None
        src, dst = IPv6Address(body[8:24]), IPv6Address(body[24:40])
    q = QuotedPacket(src=src, dst=dst, protocol=protocol)
    if len(body) - off >= 8:
        q.src_port, q.dst_port, seq = struct.unpack_from("!HHI", body, off)
        if protocol == PROTO_TCP:
            q.seq = seq
    return q


def parse_icmp(buf, version: int = 4) -> ICMPMessage:
    """RFC 792 / RFC 4443 message: type, code, checksum, 4 bytes, body. No checksum check.

    Echo messages fill ``ident``/``seq``; v4 "fragmentation needed" (3/4, RFC 1191 §4) and v6
    "packet too big" (2) fill ``mtu``; every other type keeps its 4 raw bytes in ``rest``."""
    b = bytes(buf)
    if len(b) < 8:
        _fail(Reason.TRUNCATED)
    mtype, code, csum, rest = struct.unpack_from("!BBHI", b)
    msg = ICMPMessage(type=mtype, code=code, checksum=csum, data=b[8:])
    echo = ICMPV4_ECHO if version == 4 else ICMPV6_ECHO
    errors = ICMPV4_ERRORS if version == 4 else ICMPV6_ERRORS
    if mtype in echo:
        msg.ident, msg.seq = rest >> 16, rest & 0xFFFF
    elif version == 4 and mtype == 3 and code == 4:
        msg.mtu = rest & 0xFFFF
    elif version == 6 and mtype == 2:
        msg.mtu = rest
    else:
        msg.rest = rest
    if mtype in errors:
        msg.quoted = _parse_quote(msg.data, version)
    return msg


def _l4_sum(ip, protocol: int, l4_len: int) -> int:
    """The pseudo-header sum for an upper-layer packet of ``l4_len`` bytes under ``ip``."""
    if ip.version == 4:
        return pseudo_header_sum_ipv4(ip.src.packed, ip.dst.packed, protocol, l4_len)
    return pseudo_header_sum_ipv6(ip.src.packed, ip.dst.packed, protocol, l4_len)


def parse_packet(buf, verify_checksums: bool = True) -> Packet:
    """A whole IPv4 or IPv6 packet carrying TCP, ICMP or ICMPv6.

    Order of checks: the IP header (the IPv4 header checksum is always verified: the flag is about
    the upper layer, whose checksum a device may have verified already); fragments are refused;
    the upper layer's fixed lengths; its checksum; only then the TCP options, so that an option
    corrupted in transit counts as a bad checksum."""
    b = bytes(buf)
    if not b:
        _fail(Reason.TRUNCATED)
    version = b[0] >> 4
    if version == 4:
        ip = parse_ipv4(b, verify_checksum=True)
        upper = PROTO_ICMP
    elif version == 6:
        ip = parse_ipv6(b)
        upper = PROTO_ICMPV6
    else:
        _fail(Reason.BAD_VERSION)
    if ip.is_fragment:
        _fail(Reason.FRAGMENT)
    if ip.protocol not in (PROTO_TCP, upper):
        _fail(Reason.UNKNOWN_PROTOCOL)
    l4 = b[ip.header_len:ip.header_len + ip.payload_len]
    if ip.protocol == PROTO_TCP:
        if len(l4) < 20:
            _fail(Reason.TRUNCATED)
        header_len = (l4[12] >> 4) * 4
        if header_len < 20:
            _fail(Reason.BAD_DATA_OFFSET)
        if header_len > len(l4):
            _fail(Reason.OPTIONS_OVERRUN)
        pseudo = _l4_sum(ip, ip.protocol, len(l4))
        if verify_checksums and ones_complement_sum(l4, pseudo) != 0xFFFF:
            _fail(Reason.BAD_CHECKSUM)
        tcp = parse_tcp(l4)
        return Packet(ip=ip, tcp=tcp, payload=l4[tcp.header_len:])
    if len(l4) < 8:
        _fail(Reason.TRUNCATED)
    # RFC 792: ICMPv4's checksum covers the message only; RFC 4443 §2.3: ICMPv6's includes the
    # IPv6 pseudo-header.
    initial = 0 if version == 4 else _l4_sum(ip, ip.protocol, len(l4))
    if verify_checksums and ones_complement_sum(l4, initial) != 0xFFFF:
        _fail(Reason.BAD_CHECKSUM)
    return Packet(ip=ip, icmp=parse_icmp(l4, version=version))


def check_packet(buf, verify_checksums: bool = True) -> Reason:
    try:
        parse_packet(buf, verify_checksums=verify_checksums)
    except Malformed as e:
        return e.reason
    return Reason.OK


# =============================================================================================
# Building
# =============================================================================================

def tcp_options(h: TCPHeader) -> bytes:
    """The option bytes in Linux's layout (``tcp_options_write``): every option 32-bit aligned."""
    out = b""
    if h.mss is not None:
        out += struct.pack("!BBH", 2, 4, h.mss)
    if h.sack_permitted and h.timestamps is not None:
        out += struct.pack("!BBBBII", 4, 2, 8, 10, *h.timestamps)
    elif h.timestamps is not None:
        out += struct.pack("!BBBBII", 1, 1, 8, 10, *h.timestamps)
    elif h.sack_permitted:
        out += bytes([1, 1, 4, 2])
    if h.wscale is not None:
        out += bytes([1, 3, 3, h.wscale])
    if h.sack_blocks:
        room = (TCP_MAX_OPTIONS_LEN - len(out) - 4) // 8
        blocks = h.sack_blocks[:max(0, min(room, 4))]
        if blocks:
            out += bytes([1, 1, 5, 2 + 8 * len(blocks)])
            for left, right in blocks:
                out += struct.pack("!II", left, right)
    assert len(out) % 4 == 0 and len(out) <= TCP_MAX_OPTIONS_LEN
    return out


def emitted_sack_blocks(h: TCPHeader) -> Tuple[Tuple[int, int], ...]:
    """The SACK blocks that survive the 40-byte option limit (what a parse of the build sees)."""
    opts = parse_tcp_options(tcp_options(h))
    return tuple(opts.get("sack_blocks", ()))


def build_tcp(h: TCPHeader, payload: bytes, pseudo_sum: int) -> bytes:
    opts = tcp_options(h)
    header_len = 20 + len(opts)
    seg = struct.pack("!HHIIBBHHH", h.src_port, h.dst_port, h.seq, h.ack, (header_len // 4) << 4,
                      int(h.flags), h.window, 0, h.urgent) + opts + bytes(payload)
    csum = checksum(seg, pseudo_sum)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def icmp_rest(m: ICMPMessage, version: int) -> int:
    if (version == 4 and m.type in ICMPV4_ECHO) or (version == 6 and m.type in ICMPV6_ECHO):
        return (m.ident << 16) | m.seq
    if version == 4 and m.type == 3 and m.code == 4:
        return m.mtu & 0xFFFF
    if version == 6 and m.type == 2:
        return m.mtu
    return m.rest


def build_icmp(m: ICMPMessage, version: int, pseudo_sum: int = 0) -> bytes:
    msg = struct.pack("!BBHI", m.type, m.code, 0, icmp_rest(m, version)) + bytes(m.data)
    csum = checksum(msg, pseudo_sum if version == 6 else 0)
    return msg[:2] + struct.pack("!H", csum) + msg[4:]


def build_ipv4_header(ip: IPv4Header, protocol: int, l4_len: int) -> bytes:
    flags_frag = ((0x4000 if ip.dont_fragment else 0) | (0x2000 if ip.more_fragments else 0)
                  | (ip.fragment_offset // 8))
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, ip.tos, 20 + l4_len, ip.ident, flags_frag, ip.ttl,
                      protocol, 0, ip.src.packed, ip.dst.packed)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]


def build_ipv6_header(ip: IPv6Header, protocol: int, l4_len: int) -> bytes:
    vtf = (6 << 28) | (ip.traffic_class << 20) | ip.flow_label
    return struct.pack("!IHBB16s16s", vtf, l4_len, protocol, ip.hop_limit,
                       ip.src.packed, ip.dst.packed)


def build_packet(p: Packet) -> bytes:
    """IP header (IPv4 without options, IPv6 without extension headers) + TCP or ICMP. The IP
    protocol field comes from the upper layer that is present, not from ``p.ip.protocol``."""
    ip = p.ip
    if p.tcp is not None:
        protocol = PROTO_TCP
        l4_len = 20 + len(tcp_options(p.tcp)) + len(p.payload)
        l4 = build_tcp(p.tcp, p.payload, _l4_sum(ip, protocol, l4_len))
    else:
        protocol = PROTO_ICMP if ip.version == 4 else PROTO_ICMPV6
        l4_len = 8 + len(p.icmp.data)
        pseudo = _l4_sum(ip, protocol, l4_len) if ip.version == 6 else 0
        l4 = build_icmp(p.icmp, ip.version, pseudo)
    assert len(l4) == l4_len
    if ip.version == 4:
        return build_ipv4_header(ip, protocol, l4_len) + l4
    return build_ipv6_header(ip, protocol, l4_len) + l4


def packet_len(p: Packet) -> int:
    return len(build_packet(p))


# =============================================================================================
# Small helpers for hand-made fixtures
# =============================================================================================

def fix_ipv4_checksum(pkt: bytearray) -> bytearray:
    """Recompute the IPv4 header checksum in place (after a test edited the header)."""
    ihl = (pkt[0] & 0x0F) * 4
    pkt[10:12] = b"\x00\x00"
    pkt[10:12] = struct.pack("!H", checksum(pkt[:ihl]))
    return pkt


def fix_l4_checksum(pkt: bytearray) -> bytearray:
    """Recompute the TCP / ICMP / ICMPv6 checksum of a packet with no IPv6 extension headers."""
    if pkt[0] >> 4 == 4:
        start = (pkt[0] & 0x0F) * 4
        end = struct.unpack_from("!H", pkt, 2)[0]
        proto = pkt[9]
        pseudo = pseudo_header_sum_ipv4(pkt[12:16], pkt[16:20], proto, end - start)
        initial = 0 if proto == PROTO_ICMP else pseudo
    else:
        start = 40
        end = 40 + struct.unpack_from("!H", pkt, 4)[0]
        proto = pkt[6]
        initial = pseudo_header_sum_ipv6(pkt[8:24], pkt[24:40], proto, end - start)
    at = start + (16 if proto == PROTO_TCP else 2)
    pkt[at:at + 2] = b"\x00\x00"
    pkt[at:at + 2] = struct.pack("!H", checksum(pkt[start:end], initial))
    return pkt
