"""Hypothesis properties of tcpfast.wire against the pure-Python oracle (tests/oracle.py).

- build(x) is byte for byte the oracle's build(x), and packet_len(x) is its length;
- parse(build(x)) == x, and every derived field (lengths, checksums, quotes) agrees with the oracle;
- on valid and on mutated bytes, check_packet / parse_packet give the oracle's Reason.
"""
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

import oracle
from tcpfast import wire
from tcpfast.wire import (ICMPMessage, IPv4Header, IPv6Header, Packet, Reason, TCPFlags,
                          TCPHeader, WireError)

SETTINGS = settings(max_examples=300, deadline=None)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


# =============================================================================================
# Strategies
# =============================================================================================

def ipv4_headers(protocol=6):
    return st.builds(
        IPv4Header,
        src=st.ip_addresses(v=4), dst=st.ip_addresses(v=4), protocol=st.just(protocol),
        ttl=u8, tos=u8, ident=u16, dont_fragment=st.booleans(),
        more_fragments=st.just(False), fragment_offset=st.just(0))


def ipv6_headers(protocol=6):
    return st.builds(
        IPv6Header,
        src=st.ip_addresses(v=6), dst=st.ip_addresses(v=6), protocol=st.just(protocol),
        hop_limit=u8, traffic_class=u8, flow_label=st.integers(0, 0xFFFFF))


@st.composite
def tcp_headers(draw):
    h = TCPHeader(
        src_port=draw(u16), dst_port=draw(u16), seq=draw(u32), ack=draw(u32),
        flags=TCPFlags(draw(u8)), window=draw(u16), urgent=draw(u16),
        mss=draw(st.none() | u16),
        wscale=draw(st.none() | st.integers(0, 14) | u8),
        sack_permitted=draw(st.booleans()),
        timestamps=draw(st.none() | st.tuples(u32, u32)))
    # As many SACK blocks as fit beside the other options (too many is tested in test_wire).
    fixed = len(oracle.tcp_options(h))
    room = max(0, min(4, (40 - fixed - 4) // 8))
    h.sack_blocks = tuple(draw(st.lists(st.tuples(u32, u32), max_size=room)))
    return h


payloads = st.binary(max_size=200)


@st.composite
def quotes(draw, version):
    """The start of an invoking packet: an IP header (v4 possibly with options) and 0-12 bytes."""
    proto = draw(st.sampled_from([6, 17, 1, 58]))
    tail = draw(st.binary(max_size=12))
    if version == 4:
        ihl = draw(st.integers(5, 7))
        hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, draw(u8), draw(u16), draw(u16), draw(u16),
                          draw(u8), proto, draw(u16), draw(st.ip_addresses(v=4)).packed,
                          draw(st.ip_addresses(v=4)).packed) + bytes(4 * (ihl - 5))
    else:
        hdr = struct.pack("!IHBB16s16s", 0x60000000 | draw(st.integers(0, 0xFFFFFFF)), draw(u16),
                          proto, draw(u8), draw(st.ip_addresses(v=6)).packed,
                          draw(st.ip_addresses(v=6)).packed)
    return hdr + tail


@st.composite
def icmp_messages(draw, version):
    """ICMP messages in the repr's convention: echo -> ident/seq; v4 3/4 and v6 2 -> mtu; any
    other type -> rest. Error types carry a quote (or junk) as data."""
    echo = (0, 8) if version == 4 else (128, 129)
    errors = (3, 4, 5, 11, 12) if version == 4 else (1, 2, 3, 4)
    kind = draw(st.sampled_from(["echo", "mtu", "error", "other"]))
    if kind == "echo":
        return ICMPMessage(type=draw(st.sampled_from(echo)), code=draw(u8), ident=draw(u16),
                           seq=draw(u16), data=draw(st.binary(max_size=100)))
    data = draw(quotes(version) | st.binary(max_size=60))
    if kind == "mtu":
        if version == 4:
            return ICMPMessage(type=3, code=4, mtu=draw(u16), data=data)
        return ICMPMessage(type=2, code=draw(u8), mtu=draw(u32), data=data)
    if kind == "error":
        mtype = draw(st.sampled_from(errors))
        code = draw(u8)
        if (version, mtype) == (6, 2) or (version, mtype, code) == (4, 3, 4):
            code = 0 if version == 4 else code
            mtype = 11 if version == 4 else 1
        return ICMPMessage(type=mtype, code=code, rest=draw(u32), data=data)
    mtype = draw(u8.filter(lambda t: t not in echo and not (version == 6 and t == 2)))
    code = draw(u8)
    if version == 4 and mtype == 3 and code == 4:
        code = 3
    return ICMPMessage(type=mtype, code=code, rest=draw(u32), data=data)


@st.composite
def tcp_packets(draw, version=None):
    version = draw(st.sampled_from([4, 6])) if version is None else version
    ip = draw(ipv4_headers(6) if version == 4 else ipv6_headers(6))
    return Packet(ip=ip, tcp=draw(tcp_headers()), payload=draw(payloads))


@st.composite
def icmp_packets(draw, version=None):
    version = draw(st.sampled_from([4, 6])) if version is None else version
    ip = draw(ipv4_headers(1) if version == 4 else ipv6_headers(58))
    return Packet(ip=ip, icmp=draw(icmp_messages(version)))


packets = st.one_of(tcp_packets(), icmp_packets())


# --- mutations --------------------------------------------------------------------------------

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6),
              st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128])),
    st.tuples(st.just("set"), st.integers(0, 10**6),
              st.sampled_from([0, 1, 2, 3, 4, 5, 6, 8, 10, 0x44, 0x45, 0x4F, 0x50, 0x60, 0xFF])
              | u8),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=8), st.just(0)),
)


def mutate(raw: bytes, ops, start: int = 0) -> bytearray:
    """Apply ``ops`` to the bytes of ``raw`` from offset ``start`` on."""
    b = bytearray(raw)
    for op, a, v in ops:
        if op == "extend":
            b += a
            continue
        if len(b) <= start:
            continue
        i = start + a % (len(b) - start)
        if op == "flip":
            b[i] ^= v
        elif op == "set":
            b[i] = v
        else:
            del b[i:]
    return b


def reason_of(raw, **kw) -> Reason:
    try:
        wire.parse_packet(raw, **kw)
    except WireError as e:
        return e.reason
    return Reason.OK


def assert_same_as_oracle(raw, verify_checksums=True):
    raw = bytes(raw)
    expected = oracle.check_packet(raw, verify_checksums=verify_checksums)
    assert wire.check_packet(raw, verify_checksums=verify_checksums) == expected
    assert reason_of(raw, verify_checksums=verify_checksums) == expected
    if expected == Reason.OK:
        assert_parses_agree(wire.parse_packet(raw, verify_checksums=verify_checksums),
                            oracle.parse_packet(raw, verify_checksums=verify_checksums))
    return expected


def assert_parses_agree(got: Packet, ref: Packet):
    assert got == ref
    # The fields == leaves out.
    assert (got.ip.header_len, got.ip.payload_len) == (ref.ip.header_len, ref.ip.payload_len)
    if ref.ip.version == 4:
        assert got.ip.checksum == ref.ip.checksum
    else:
        assert got.ip.is_fragment == ref.ip.is_fragment
    if ref.tcp is not None:
        assert (got.tcp.header_len, got.tcp.checksum) == (ref.tcp.header_len, ref.tcp.checksum)
    else:
        assert got.icmp.checksum == ref.icmp.checksum
        assert got.icmp.quoted == ref.icmp.quoted


# =============================================================================================
# Building
# =============================================================================================

@SETTINGS
@given(packets)
def test_build_matches_oracle_byte_for_byte(p):
    raw = wire.build_packet(p)
    assert type(raw) is bytes
    assert raw == oracle.build_packet(p)
    assert wire.packet_len(p) == len(raw)


@SETTINGS
@given(packets)
def test_parse_of_build_is_identity(p):
    assert wire.parse_packet(wire.build_packet(p)) == p


@SETTINGS
@given(packets)
def test_parse_of_build_agrees_with_oracle_on_every_field(p):
    raw = wire.build_packet(p)
    assert_parses_agree(wire.parse_packet(raw), oracle.parse_packet(raw))


@SETTINGS
@given(packets)
def test_build_of_parse_is_identity(p):
    raw = oracle.build_packet(p)
    assert wire.build_packet(wire.parse_packet(raw)) == raw


@SETTINGS
@given(packets, st.integers(0, 64), st.integers(0, 64))
def test_emit_at_offset_matches_build(p, before, after):
    n = wire.packet_len(p)
    buf = bytearray(b"\xc3" * (before + n + after))
    assert wire.emit_packet(p, buf, before) == n
    assert buf[before:before + n] == wire.build_packet(p)
    assert buf[:before] == b"\xc3" * before and buf[before + n:] == b"\xc3" * after


@SETTINGS
@given(tcp_headers())
def test_parse_tcp_of_built_segment(h):
    p = Packet(ip=IPv4Header("10.0.0.1", "10.0.0.2"), tcp=h)
    seg = wire.build_packet(p)[20:]
    assert wire.parse_tcp(seg) == h == oracle.parse_tcp(seg)


@SETTINGS
@given(st.sampled_from([4, 6]).flatmap(lambda v: st.tuples(st.just(v), icmp_messages(v))))
def test_parse_icmp_agrees_with_oracle(vm):
    version, m = vm
    ip = IPv4Header("10.0.0.1", "10.0.0.2") if version == 4 else IPv6Header("::1", "::2")
    msg = wire.build_packet(Packet(ip=ip, icmp=m))[20 if version == 4 else 40:]
    got, ref = wire.parse_icmp(msg, version), oracle.parse_icmp(msg, version)
    assert got == ref == m
    assert got.quoted == ref.quoted


# =============================================================================================
# Parsing valid and mutated bytes: the same Reason as the oracle
# =============================================================================================

@settings(max_examples=500, deadline=None)
@given(packets, st.lists(mutation, min_size=1, max_size=4))
def test_mutated_packets_agree_with_oracle(p, ops):
    raw = mutate(wire.build_packet(p), ops)
    assert_same_as_oracle(raw)
    assert_same_as_oracle(raw, verify_checksums=False)


@SETTINGS
@given(packets, st.lists(mutation, min_size=1, max_size=3))
def test_mutated_headers_with_fixed_checksums_agree_with_oracle(p, ops):
    # Mutate the IP header, then make its checksum right again, so the checks behind it run.
    raw = wire.build_packet(p)
    ihl = 20 if p.ip.version == 4 else 40
    b = mutate(raw[:ihl], ops) + raw[ihl:]
    if len(b) >= 20 and b[0] >> 4 == 4:
        oracle.fix_ipv4_checksum(b)
    assert_same_as_oracle(b)


@SETTINGS
@given(tcp_packets(), st.lists(mutation, min_size=1, max_size=6), st.booleans())
def test_mutated_tcp_headers_with_fixed_checksums_agree_with_oracle(p, ops, fix):
    # Mutations inside the TCP header (offset, flags, option bytes), checksum made right again.
    raw = bytearray(wire.build_packet(p))
    ihl = 20 if p.ip.version == 4 else 40
    hl = (raw[ihl + 12] >> 4) * 4
    seg = mutate(raw[ihl:ihl + hl], [op for op in ops if op[0] != "truncate"]) + raw[ihl + hl:]
    b = raw[:ihl] + seg
    if p.ip.version == 4:
        b[2:4] = struct.pack("!H", len(b))
        oracle.fix_ipv4_checksum(b)
    else:
        b[4:6] = struct.pack("!H", len(b) - 40)
    if fix:
        oracle.fix_l4_checksum(b)
    assert_same_as_oracle(b)
    assert_same_as_oracle(b, verify_checksums=False)


option_byte = st.sampled_from([0, 1, 2, 3, 4, 5, 8, 10, 18, 26, 34, 40, 0xFE, 0xFF]) | u8


@SETTINGS
@given(tcp_packets(), st.lists(st.tuples(st.integers(0, 39), option_byte), min_size=1,
                               max_size=8), st.integers(0, 10))
def test_random_option_bytes_agree_with_oracle(p, writes, extra_words):
    # Option areas written byte by byte, with checksums right: exercises the option parser.
    raw = bytearray(wire.build_packet(p))
    ihl = 20 if p.ip.version == 4 else 40
    hl = (raw[ihl + 12] >> 4) * 4
    optlen = min(40, hl - 20 + 4 * extra_words)
    opts = bytearray(raw[ihl + 20:ihl + hl]) + bytes(optlen - (hl - 20))
    opts = opts[:optlen]
    for i, v in writes:
        if optlen:
            opts[i % optlen] = v
    seg = raw[ihl:ihl + 20] + opts + raw[ihl + hl:]
    seg[12] = ((20 + optlen) // 4) << 4 | (seg[12] & 0x0F)
    b = raw[:ihl] + seg
    if p.ip.version == 4:
        b[2:4] = struct.pack("!H", len(b))
        oracle.fix_ipv4_checksum(b)
    else:
        b[4:6] = struct.pack("!H", len(b) - 40)
    oracle.fix_l4_checksum(b)
    reason = assert_same_as_oracle(b)
    assert reason in (Reason.OK, Reason.OPTIONS_OVERRUN, Reason.BAD_OPTION_LENGTH)


ext_header = st.one_of(
    st.tuples(st.sampled_from([0, 43, 60]), st.integers(0, 3)),
    st.tuples(st.just(44), st.just(0)),                     # atomic fragment
)


@SETTINGS
@given(tcp_packets(version=6), st.lists(ext_header, max_size=10),
       st.none() | st.tuples(st.integers(0, 0x1FFF), st.booleans()))
def test_ipv6_extension_header_chains_agree_with_oracle(p, chain, last_fragment):
    # Extension headers do not enter the upper-layer checksum (the pseudo-header carries the
    # upper-layer length and protocol), so the TCP checksum stays right.
    raw = wire.build_packet(p)
    kinds = [k for k, _ in chain] + ([44] if last_fragment else [])
    body = b""
    for i, k in enumerate(kinds):
        nxt = kinds[i + 1] if i + 1 < len(kinds) else 6
        if k == 44:
            if i == len(kinds) - 1 and last_fragment:
                off, more = last_fragment
                body += struct.pack("!BBHI", nxt, 0, (off << 3) | more, 7)
            else:
                body += struct.pack("!BBHI", nxt, 0, 0, 7)
        else:
            units = chain[i][1]
            body += bytes([nxt, units]) + bytes(8 * units + 6)
    b = bytearray(raw[:40] + body + raw[40:])
    b[4:6] = struct.pack("!H", len(b) - 40)
    if kinds:
        b[6] = kinds[0]
    reason = assert_same_as_oracle(b)
    fragment = bool(last_fragment) and (last_fragment[0] or last_fragment[1])
    if len(kinds) > 8:
        assert reason == Reason.EXT_HEADER_LIMIT
    elif fragment:
        assert reason == Reason.FRAGMENT
    else:
        assert reason == Reason.OK
        assert wire.parse_packet(b) == p
        assert wire.parse_ipv6(b).header_len == 40 + len(body)


@SETTINGS
@given(st.binary(max_size=80), st.sampled_from([b"", b"\x45", b"\x46", b"\x4f", b"\x60"]))
def test_random_bytes_agree_with_oracle(junk, prefix):
    assert_same_as_oracle(prefix + junk)
    assert_same_as_oracle(prefix + junk, verify_checksums=False)


# =============================================================================================
# Views against parse
# =============================================================================================

@SETTINGS
@given(tcp_packets())
def test_views_read_what_parse_reads(p):
    raw = wire.build_packet(p)
    ihl = 20 if p.ip.version == 4 else 40
    t = wire.TCPView(memoryview(raw)[ihl:])
    h = wire.parse_tcp(raw[ihl:])
    assert (t.src_port, t.dst_port, t.seq, t.ack, t.flags, t.window, t.urgent, t.header_len,
            t.checksum) == (h.src_port, h.dst_port, h.seq, h.ack, h.flags, h.window, h.urgent,
                            h.header_len, h.checksum)
    assert bytes(t.options) == oracle.tcp_options(p.tcp)
    assert bytes(t.payload) == p.payload
    if p.ip.version == 4:
        v = wire.IPv4View(raw)
        assert (v.src, v.dst, v.ttl, v.tos, v.ident, v.dont_fragment, v.protocol) == \
            (p.ip.src, p.ip.dst, p.ip.ttl, p.ip.tos, p.ip.ident, p.ip.dont_fragment, 6)
        assert v.total_length == len(raw) and bytes(v.payload) == raw[20:]
    else:
        v = wire.IPv6View(raw)
        assert (v.src, v.dst, v.hop_limit, v.traffic_class, v.flow_label, v.protocol) == \
            (p.ip.src, p.ip.dst, p.ip.hop_limit, p.ip.traffic_class, p.ip.flow_label, 6)
        assert bytes(v.payload) == raw[40:]


@SETTINGS
@given(tcp_packets(), u32, u32, u16, u8)
def test_view_setters_with_incremental_checksum(p, seq, ack, window, flags):
    from tcpfast import checksum as C
    buf = bytearray(wire.build_packet(p))
    ihl = 20 if p.ip.version == 4 else 40
    t = wire.TCPView(memoryview(buf)[ihl:])
    csum = t.checksum
    csum = C.update32(csum, t.seq, seq)
    t.seq = seq
    csum = C.update32(csum, t.ack, ack)
    t.ack = ack
    csum = C.update16(csum, t.window, window)
    t.window = window
    hl_word = (t.header_len // 4) << 12
    csum = C.update16(csum, hl_word | int(t.flags), hl_word | flags)
    t.flags = flags
    t.checksum = csum
    got = wire.parse_packet(buf)
    p.tcp.seq, p.tcp.ack, p.tcp.window, p.tcp.flags = seq, ack, window, TCPFlags(flags)
    assert got == p
