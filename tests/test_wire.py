"""The wire format (tcpfast.wire): literal packets, round trips, every Reason, views, emission.

The fixtures are hand-written byte strings; their checksums were computed with the oracle, whose
checksums agree with segments the Linux kernel wrote (tests/fixtures/kernel_*.hex). Every case in
the Reason table is also run through the oracle, so fixture and oracle check each other.
"""
import pickle
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

import oracle
import tcpfast
from tcpfast import checksum as C
from tcpfast import seq as S
from tcpfast import wire
from tcpfast.wire import (ICMPMessage, IPv4Header, IPv6Header, Packet, QuotedPacket, Reason,
                          TCPFlags, TCPHeader, WireError)

F = TCPFlags


def hexb(*parts: str) -> bytes:
    return bytes.fromhex("".join(parts))


# =============================================================================================
# Literal packets
# =============================================================================================

# 192.0.2.1:49152 -> 192.0.2.2:80 SYN, options in Linux's layout: MSS 1460, SACK-permitted +
# timestamps (0x11223344, 0), NOP + window scale 7.
SYN = hexb(
    "4500003c1c46400040069a72c0000201c0000202",    # IPv4: len 60, id 0x1c46, DF, TTL 64, TCP
    "c00000500102030400000000a002faf0c04e0000",    # TCP: seq 0x01020304, doff 10, SYN, win 64240
    "020405b40402080a112233440000000001030307",    # MSS | SACKOK TS | NOP WS
)
SYN_PACKET = Packet(
    ip=IPv4Header(src=IPv4Address("192.0.2.1"), dst=IPv4Address("192.0.2.2"), ident=0x1C46),
    tcp=TCPHeader(src_port=49152, dst_port=80, seq=0x01020304, flags=F.SYN, window=64240,
                  mss=1460, sack_permitted=True, timestamps=(0x11223344, 0), wscale=7))

# The pure ACK back: NOP NOP TS, no data.
ACK = hexb(
    "45000034000040004006b6c0c0000202c0000201",
    "0050c000a0b0c0d001020305801001f6b9950000",    # seq 0xa0b0c0d0 ack 0x01020305, doff 8, ACK
    "0101080a5566778811223344",                    # NOP NOP TS(0x55667788, 0x11223344)
)
ACK_PACKET = Packet(
    ip=IPv4Header(src="192.0.2.2", dst="192.0.2.1"),
    tcp=TCPHeader(src_port=80, dst_port=49152, seq=0xA0B0C0D0, ack=0x01020305, flags=F.ACK,
                  window=502, timestamps=(0x55667788, 0x11223344)))

# A data segment (PSH|ACK) with 27 bytes of payload (odd: the checksum pads it).
HTTP = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
DATA = hexb(
    "4500004f1c47400040069a5ec0000201c0000202",
    "c000005001020305a0b0c0d1801801f665bb0000",
    "0101080a1122334555667788",
    "474554202f20485454502f312e310d0a486f73743a20780d0a0d0a",
)
DATA_PACKET = Packet(
    ip=IPv4Header(src="192.0.2.1", dst="192.0.2.2", ident=0x1C47),
    tcp=TCPHeader(src_port=49152, dst_port=80, seq=0x01020305, ack=0xA0B0C0D1,
                  flags=F.PSH | F.ACK, window=502, timestamps=(0x11223345, 0x55667788)),
    payload=HTTP)

# An ACK with two SACK blocks: NOP NOP TS, NOP NOP SACK.
SACK = hexb(
    "45000048000140004006b6abc0000202c0000201",
    "0050c000a0b0c0d101020305d01001f6e34e0000",    # doff 13
    "0101080a5566778911223345",
    "01010512",                                    # NOP NOP SACK len 18
    "01021305010219050102250501022b05",
)
SACK_PACKET = Packet(
    ip=IPv4Header(src="192.0.2.2", dst="192.0.2.1", ident=1),
    tcp=TCPHeader(src_port=80, dst_port=49152, seq=0xA0B0C0D1, ack=0x01020305, flags=F.ACK,
                  window=502, timestamps=(0x55667789, 0x11223345),
                  sack_blocks=((0x01021305, 0x01021905), (0x01022505, 0x01022B05))))

# No options, TOS 0x10, DF clear, FIN|PSH|ACK with 3 bytes of data.
PLAIN = hexb(
    "4510002b1c4800004006da71c0000201c0000202",
    "c000005001020320a0b0c0d1501901f630750000",
    "6f6464",
)
PLAIN_PACKET = Packet(
    ip=IPv4Header(src="192.0.2.1", dst="192.0.2.2", ident=0x1C48, tos=0x10, dont_fragment=False),
    tcp=TCPHeader(src_port=49152, dst_port=80, seq=0x01020320, ack=0xA0B0C0D1,
                  flags=F.FIN | F.PSH | F.ACK, window=502),
    payload=b"odd")

# IPv6 SYN [2001:db8::1]:40000 -> [2001:db8::2]:443, traffic class 2, flow label 0x12345,
# ECE|CWR|SYN (an ECN setup SYN), MSS 1440, SACKOK TS, WS 10.
V6SYN = hexb(
    "6021234500280640",                            # v6 tc 0x02 fl 0x12345, plen 40, TCP, hop 64
    "20010db8000000000000000000000001",
    "20010db8000000000000000000000002",
    "9c4001bbfedcba9800000000a0c2fd20f9ac0000",
    "020405a00402080adeadbeef000000000103030a",
)
V6SYN_PACKET = Packet(
    ip=IPv6Header(src=IPv6Address("2001:db8::1"), dst=IPv6Address("2001:db8::2"),
                  traffic_class=0x02, flow_label=0x12345),
    tcp=TCPHeader(src_port=40000, dst_port=443, seq=0xFEDCBA98, flags=F.SYN | F.ECE | F.CWR,
                  window=64800, mss=1440, sack_permitted=True, timestamps=(0xDEADBEEF, 0),
                  wscale=10))

# ICMPv4 echo request, id 0x1234 seq 1, the 32 bytes Windows' ping sends.
ECHO4 = hexb(
    "4500003c0bad40004001ab10c0000201c0000202",
    "08003b2712340001",
    "6162636465666768696a6b6c6d6e6f7071727374757677616263646566676869",
)
ECHO4_PACKET = Packet(
    ip=IPv4Header(src="192.0.2.1", dst="192.0.2.2", protocol=1, ident=0x0BAD),
    icmp=ICMPMessage(type=8, code=0, ident=0x1234, seq=1,
                     data=b"abcdefghijklmnopqrstuvwabcdefghi"))

# ICMPv6 echo request, id 0x4321 seq 7, data "ping6" (checksum over the pseudo-header too).
ECHO6 = hexb(
    "60000000000d3a40",
    "20010db8000000000000000000000001",
    "20010db8000000000000000000000002",
    "8000cc4943210007",
    "70696e6736",
)
ECHO6_PACKET = Packet(
    ip=IPv6Header(src="2001:db8::1", dst="2001:db8::2", protocol=58),
    icmp=ICMPMessage(type=128, code=0, ident=0x4321, seq=7, data=b"ping6"))

# ICMPv4 destination unreachable / fragmentation needed (RFC 1191), next-hop MTU 1400, quoting
# the IP header of a 1500-byte segment of ours and the first 8 bytes of its TCP header.
FRAG_NEEDED = hexb(
    "4500003800000000ff01cf8ec6336401c0000201",    # 198.51.100.1 -> 192.0.2.1, TTL 255, ICMP
    "0304332c00000578",                            # type 3 code 4, unused 0, MTU 1400
    "450005dc1c474000400694d1c0000201c0000202",    # quoted IPv4 header, total length 1500
    "c000005001020305",                            # ports 49152 -> 80, seq 0x01020305
)
FRAG_NEEDED_PACKET = Packet(
    ip=IPv4Header(src="198.51.100.1", dst="192.0.2.1", protocol=1, ttl=255, dont_fragment=False),
    icmp=ICMPMessage(type=3, code=4, mtu=1400, data=FRAG_NEEDED[28:]))

# ICMPv6 packet too big, MTU 1280, quoting an IPv6 header (payload length 1440: the quote is cut
# short) and the first 8 bytes of its TCP header.
PTB = hexb(
    "6000000000383aff",
    "20010db80000000000000000000000fe",
    "20010db8000000000000000000000001",
    "02007d5400000500",                            # type 2 code 0, MTU 1280
    "6000000005a00640",                            # quoted IPv6 header: plen 1440, TCP
    "20010db8000000000000000000000001",
    "20010db8000000000000000000000002",
    "9c4001bbfedcba99",                            # ports 40000 -> 443, seq 0xfedcba99
)
PTB_PACKET = Packet(
    ip=IPv6Header(src="2001:db8::fe", dst="2001:db8::1", protocol=58, hop_limit=255),
    icmp=ICMPMessage(type=2, code=0, mtu=1280, data=PTB[48:]))

CANONICAL = {
    "syn": (SYN, SYN_PACKET),
    "ack": (ACK, ACK_PACKET),
    "data": (DATA, DATA_PACKET),
    "sack": (SACK, SACK_PACKET),
    "plain": (PLAIN, PLAIN_PACKET),
    "ipv6_syn": (V6SYN, V6SYN_PACKET),
    "icmp_echo": (ECHO4, ECHO4_PACKET),
    "icmpv6_echo": (ECHO6, ECHO6_PACKET),
    "frag_needed": (FRAG_NEEDED, FRAG_NEEDED_PACKET),
    "packet_too_big": (PTB, PTB_PACKET),
}
CASES = sorted(CANONICAL)


# =============================================================================================
# Helpers that craft packets (checksums fixed with the oracle)
# =============================================================================================

SRC4, DST4 = IPv4Address("192.0.2.1").packed, IPv4Address("192.0.2.2").packed
SRC6, DST6 = IPv6Address("2001:db8::1").packed, IPv6Address("2001:db8::2").packed


def v4(l4: bytes, protocol: int = 6, *, flags_frag: int = 0x4000, total=None, ihl: int = 5,
       ip_options: bytes = b"", fix_l4: bool = True) -> bytearray:
    """An IPv4 packet around ``l4`` with a correct header checksum (and L4 checksum)."""
    total = 4 * ihl + len(l4) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 0x1234, flags_frag, 64, protocol, 0,
                      SRC4, DST4) + ip_options
    pkt = bytearray(hdr + l4)
    if fix_l4 and protocol in (1, 6) and len(l4) >= (20 if protocol == 6 else 8):
        oracle.fix_l4_checksum(pkt)
    return oracle.fix_ipv4_checksum(pkt)


def v6(chain, l4: bytes, protocol: int = 6, *, plen=None, fix_l4: bool = True) -> bytearray:
    """An IPv6 packet: ``chain`` is a list of (header type, header bytes) extension headers, each
    header's own Next Header byte is filled in here; ``l4`` follows with ``protocol``."""
    types = [t for t, _ in chain] + [protocol]
    body = b""
    for (t, h), nxt in zip(chain, types[1:]):
        body += bytes([nxt]) + h[1:]
    if fix_l4 and protocol in (6, 58) and len(l4) >= (20 if protocol == 6 else 8):
        at = 16 if protocol == 6 else 2
        l4 = bytearray(l4)
        l4[at:at + 2] = b"\0\0"
        csum = oracle.checksum(l4, oracle.pseudo_header_sum_ipv6(SRC6, DST6, protocol, len(l4)))
        l4[at:at + 2] = struct.pack("!H", csum)
    payload = body + bytes(l4)
    plen = len(payload) if plen is None else plen
    return bytearray(struct.pack("!IHBB16s16s", 0x60000000, plen, types[0], 64, SRC6, DST6)
                     + payload)


def tcp(options: bytes = b"", payload: bytes = b"", *, doff=None, flags: int = 0x10) -> bytes:
    doff = (20 + len(options)) // 4 if doff is None else doff
    return struct.pack("!HHIIBBHHH", 49152, 80, 1000, 2000, doff << 4, flags, 8192, 0, 0) + \
        options + payload


def v4_tcp_options(options: bytes) -> bytearray:
    assert len(options) % 4 == 0
    return v4(tcp(options))


def opt(kind: int, length: int, body: bytes = b"") -> bytes:
    return bytes([kind, length]) + body


def ext(length_units: int = 0, fill: int = 0) -> bytes:
    """An 8*(length_units+1)-byte hop-by-hop/dest-opts/routing header (Next Header filled by v6()).
    ``fill`` 0 makes the options Pad1s; 1 makes the first option a PadN."""
    size = 8 * (length_units + 1)
    if fill:
        return bytes([0, length_units, 1, size - 4]) + bytes(size - 4)
    return bytes([0, length_units]) + bytes(size - 2)


def frag(offset_bytes: int, more: bool, ident: int = 0x01020304) -> bytes:
    return struct.pack("!BBHI", 0, 0, offset_bytes | int(more), ident)


# =============================================================================================
# Parsing the literal packets
# =============================================================================================

def test_parse_syn():
    p = wire.parse_packet(SYN)
    assert p == SYN_PACKET
    assert p.ip.header_len == 20 and p.ip.payload_len == 40 and p.ip.checksum == 0x9A72
    assert p.ip.ttl == 64 and p.ip.dont_fragment and not p.ip.more_fragments
    assert p.tcp.header_len == 40 and p.tcp.checksum == 0xC04E
    assert p.tcp.flags == F.SYN and isinstance(p.tcp.flags, TCPFlags)
    assert (p.tcp.mss, p.tcp.wscale, p.tcp.sack_permitted) == (1460, 7, True)
    assert p.tcp.timestamps == (0x11223344, 0) and p.tcp.sack_blocks == ()
    assert p.payload == b"" and p.icmp is None
    assert type(p.ip.src) is IPv4Address and p.ip.src == IPv4Address("192.0.2.1")


def test_parse_pure_ack():
    p = wire.parse_packet(ACK)
    assert p == ACK_PACKET
    assert p.tcp.mss is None and p.tcp.wscale is None and not p.tcp.sack_permitted
    assert p.tcp.header_len == 32 and p.payload == b""


def test_parse_data_segment():
    p = wire.parse_packet(DATA)
    assert p == DATA_PACKET
    assert p.payload == HTTP and type(p.payload) is bytes
    assert p.ip.payload_len == 32 + len(HTTP)


def test_parse_sack_blocks():
    p = wire.parse_packet(SACK)
    assert p.tcp.sack_blocks == ((0x01021305, 0x01021905), (0x01022505, 0x01022B05))
    assert p == SACK_PACKET


def test_parse_no_options_tos_and_flags():
    p = wire.parse_packet(PLAIN)
    assert p == PLAIN_PACKET
    assert p.ip.tos == 0x10 and not p.ip.dont_fragment
    assert p.tcp.flags == F.FIN | F.PSH | F.ACK and p.tcp.header_len == 20


def test_parse_ipv6_syn():
    p = wire.parse_packet(V6SYN)
    assert p == V6SYN_PACKET
    assert p.ip.version == 6 and p.ip.header_len == 40 and p.ip.payload_len == 40
    assert (p.ip.traffic_class, p.ip.flow_label, p.ip.hop_limit) == (2, 0x12345, 64)
    assert p.tcp.flags == F.SYN | F.ECE | F.CWR
    assert not p.ip.is_fragment


def test_parse_icmp_echo_v4():
    p = wire.parse_packet(ECHO4)
    assert p.tcp is None and p.payload == b""
    m = p.icmp
    assert (m.type, m.code, m.ident, m.seq) == (8, 0, 0x1234, 1)
    assert m.checksum == 0x3B27 and m.data == b"abcdefghijklmnopqrstuvwabcdefghi"
    assert m.quoted is None
    assert p.ip.protocol == 1


def test_parse_icmp_echo_v6():
    p = wire.parse_packet(ECHO6)
    m = p.icmp
    assert (m.type, m.code, m.ident, m.seq, m.data) == (128, 0, 0x4321, 7, b"ping6")
    assert m.checksum == 0xCC49 and p.ip.protocol == 58


def test_parse_frag_needed_with_quote():
    p = wire.parse_packet(FRAG_NEEDED)
    m = p.icmp
    assert (m.type, m.code, m.mtu) == (3, 4, 1400)
    assert m.data == FRAG_NEEDED[28:]
    assert m.quoted == QuotedPacket(src=IPv4Address("192.0.2.1"), dst=IPv4Address("192.0.2.2"),
                                    protocol=6, src_port=49152, dst_port=80, seq=0x01020305)


def test_parse_packet_too_big_with_truncated_quote():
    p = wire.parse_packet(PTB)
    m = p.icmp
    assert (m.type, m.code, m.mtu) == (2, 0, 1280)
    assert m.quoted == QuotedPacket(src=IPv6Address("2001:db8::1"), dst=IPv6Address("2001:db8::2"),
                                    protocol=6, src_port=40000, dst_port=443, seq=0xFEDCBA99)


def test_quote_with_only_the_ip_header_has_no_ports():
    p = wire.parse_packet(v4(bytes([3, 1, 0, 0, 0, 0, 0, 0]) + FRAG_NEEDED[28:48], 1))
    assert p.icmp.quoted == QuotedPacket(src=IPv4Address("192.0.2.1"),
                                         dst=IPv4Address("192.0.2.2"), protocol=6)
    assert p.icmp.quoted.src_port is None and p.icmp.quoted.seq is None


def test_echo_has_no_quote_and_garbage_quote_is_none():
    assert wire.parse_packet(ECHO4).icmp.quoted is None
    # A destination unreachable whose body is not an IPv4 header.
    p = wire.parse_packet(v4(bytes([3, 1, 0, 0, 0, 0, 0, 0]) + b"\x99" * 28, 1))
    assert p.icmp.quoted is None and p.icmp.data == b"\x99" * 28


@pytest.mark.parametrize("case", CASES)
def test_literal_parse_matches_oracle(case):
    raw, expected = CANONICAL[case]
    got = wire.parse_packet(raw)
    assert got == expected
    assert oracle.parse_packet(raw) == expected
    # Fields that == ignores are checked too.
    ref = oracle.parse_packet(raw)
    assert got.ip.header_len == ref.ip.header_len and got.ip.payload_len == ref.ip.payload_len
    if got.tcp:
        assert (got.tcp.header_len, got.tcp.checksum) == (ref.tcp.header_len, ref.tcp.checksum)
    else:
        assert got.icmp.checksum == ref.icmp.checksum and got.icmp.quoted == ref.icmp.quoted


@pytest.mark.parametrize("case", CASES)
def test_parse_accepts_any_buffer(case):
    raw, _ = CANONICAL[case]
    expected = wire.parse_packet(raw)
    assert wire.parse_packet(bytearray(raw)) == expected
    assert wire.parse_packet(memoryview(raw)) == expected
    big = b"\xee" * 3 + raw + b"\xdd" * 5
    assert wire.parse_packet(memoryview(big)[3:3 + len(raw)]) == expected


def test_trailing_bytes_beyond_total_length_are_ignored():
    for raw in (DATA, ECHO4):
        padded = raw + b"\x00" * 6 + b"\xff" * 7          # e.g. Ethernet padding
        p = wire.parse_packet(padded)
        assert p == wire.parse_packet(raw)
        assert wire.check_packet(padded) == Reason.OK
    p = wire.parse_packet(DATA + b"junk")
    assert p.payload == HTTP
    assert wire.parse_ipv4(DATA + b"junk").payload_len == len(DATA) - 20


def test_ipv6_trailing_bytes_are_ignored():
    p = wire.parse_packet(V6SYN + b"\xff" * 9)
    assert p == V6SYN_PACKET and p.payload == b""


def test_ipv4_options_are_skipped():
    pkt = v4(tcp(payload=b"hello"), ihl=6, ip_options=b"\x01\x01\x01\x00")
    p = wire.parse_packet(pkt)
    assert p.ip.header_len == 24 and p.ip.payload_len == 25
    assert p.payload == b"hello" and p.tcp.seq == 1000
    assert oracle.parse_packet(pkt) == p


def test_ipv6_hop_by_hop_and_destination_options():
    seg = tcp(opt(2, 4, b"\x05\x8c"), b"data")
    pkt = v6([(0, ext(0, fill=1)), (60, ext(1, fill=1))], seg)
    assert len(pkt) == 40 + 8 + 16 + len(seg)
    ip = wire.parse_ipv6(pkt)
    assert (ip.protocol, ip.header_len, ip.payload_len) == (6, 64, len(seg))
    assert not ip.is_fragment
    p = wire.parse_packet(pkt)
    assert p.tcp.mss == 1420 and p.payload == b"data"
    assert p == oracle.parse_packet(pkt)
    assert wire.check_packet(pkt) == Reason.OK


def test_ipv6_routing_header_is_walked():
    pkt = v6([(43, ext(2))], tcp())
    ip = wire.parse_ipv6(pkt)
    assert ip.protocol == 6 and ip.header_len == 40 + 24
    assert wire.check_packet(pkt) == Reason.OK


def test_ipv6_eight_extension_headers_is_the_limit():
    eight = [(60, ext())] * 8
    assert wire.check_packet(v6(eight, tcp())) == Reason.OK
    assert wire.parse_ipv6(v6(eight, tcp())).header_len == 40 + 64
    assert wire.check_packet(v6(eight + [(60, ext())], tcp())) == Reason.EXT_HEADER_LIMIT


def test_ipv6_atomic_fragment_is_a_whole_datagram():
    # RFC 6946: a fragment header with offset 0 and M clear.
    pkt = v6([(44, frag(0, False))], tcp(payload=b"x"))
    ip = wire.parse_ipv6(pkt)
    assert not ip.is_fragment and ip.header_len == 48 and ip.protocol == 6
    assert wire.parse_packet(pkt).payload == b"x"


def test_ipv6_fragments_parse_as_fragments():
    for offset, more in ((0, True), (1232, True), (1232, False)):
        pkt = v6([(44, frag(offset, more))], tcp(), fix_l4=False)
        ip = wire.parse_ipv6(pkt)
        assert ip.is_fragment and ip.protocol == 6
        assert wire.check_packet(pkt) == Reason.FRAGMENT


def test_ipv6_later_fragment_data_is_not_walked_as_headers():
    # A non-first fragment of a datagram whose fragmentable part began with a Destination
    # Options header: the fragment header says 60, but what follows it is data from the middle
    # of the datagram (RFC 8200 §4.5), here bytes that would overrun as an extension header.
    pkt = v6([(44, frag(1232, False))], b"\x06\xff" + b"\xab" * 30, protocol=60, fix_l4=False)
    ip = wire.parse_ipv6(pkt)
    assert ip.is_fragment
    assert ip.header_len == 48
    assert wire.check_packet(pkt) == Reason.FRAGMENT


def test_ipv4_fragment_parses_with_fragment_fields():
    pkt = v4(tcp(), flags_frag=0x2000 | (1480 // 8))
    ip = wire.parse_ipv4(pkt)
    assert ip.more_fragments and ip.fragment_offset == 1480 and ip.is_fragment
    assert not ip.dont_fragment
    with pytest.raises(WireError) as ei:
        wire.parse_packet(pkt)
    assert ei.value.reason == Reason.FRAGMENT


def test_parse_ipv4_fields():
    ip = wire.parse_ipv4(SYN)
    assert ip == SYN_PACKET.ip
    assert (ip.header_len, ip.payload_len, ip.checksum) == (20, 40, 0x9A72)
    assert ip.version == 4 and not ip.is_fragment


def test_parse_ipv4_verify_checksum_flag():
    bad = bytearray(SYN)
    bad[8] = 63                                          # TTL changed, checksum not fixed
    with pytest.raises(WireError) as ei:
        wire.parse_ipv4(bad)
    assert ei.value.reason == Reason.BAD_IP_CHECKSUM
    ip = wire.parse_ipv4(bad, verify_checksum=False)
    assert ip.ttl == 63 and ip.checksum == 0x9A72


def test_parse_ipv4_rejects_ipv6():
    with pytest.raises(WireError) as ei:
        wire.parse_ipv4(V6SYN)
    assert ei.value.reason == Reason.BAD_VERSION
    with pytest.raises(WireError) as ei:
        wire.parse_ipv6(SYN + bytes(20))
    assert ei.value.reason == Reason.BAD_VERSION


def test_parse_tcp_segment_alone():
    h = wire.parse_tcp(SYN[20:])
    assert h == SYN_PACKET.tcp and h.header_len == 40 and h.checksum == 0xC04E
    # No checksum check: a corrupted checksum field still parses.
    seg = bytearray(DATA[20:])
    seg[16] ^= 0xFF
    assert wire.parse_tcp(seg) == DATA_PACKET.tcp
    # Trailing payload is fine.
    assert wire.parse_tcp(DATA[20:]).header_len == 32


def test_parse_tcp_errors():
    for seg, reason in ((SYN[20:39], Reason.TRUNCATED),
                        (tcp(doff=4), Reason.BAD_DATA_OFFSET),
                        (tcp(doff=6), Reason.OPTIONS_OVERRUN),
                        (tcp(opt(2, 3, b"\x00") + b"\x01"), Reason.BAD_OPTION_LENGTH)):
        with pytest.raises(WireError) as ei:
            wire.parse_tcp(seg)
        assert ei.value.reason == reason


def test_parse_icmp_alone():
    m = wire.parse_icmp(ECHO4[20:])
    assert m == ECHO4_PACKET.icmp
    m6 = wire.parse_icmp(ECHO6[40:], version=6)
    assert m6 == ECHO6_PACKET.icmp
    ptb = wire.parse_icmp(PTB[40:], 6)
    assert ptb.mtu == 1280 and ptb.quoted.dst_port == 443
    with pytest.raises(WireError) as ei:
        wire.parse_icmp(ECHO4[20:27])
    assert ei.value.reason == Reason.TRUNCATED
    with pytest.raises(ValueError):
        wire.parse_icmp(ECHO4[20:], version=5)


def test_icmp_mtu_uses_only_low_16_bits_in_v4():
    # RFC 1191 §4: the high 16 bits of the word are unused.
    msg = bytearray(FRAG_NEEDED[20:])
    msg[4:6] = b"\xab\xcd"
    m = wire.parse_icmp(msg)
    assert m.mtu == 1400


def test_unknown_tcp_options_are_skipped():
    opts = opt(0xFE, 6, b"\x01\x02\x03\x04") + opt(2, 4, b"\x05\xb4") + b"\x01\x01"
    p = wire.parse_packet(v4_tcp_options(opts))
    assert p.tcp.mss == 1460 and p.tcp.header_len == 32


def test_eol_ends_the_option_list():
    # After End of Option List the rest is padding, even bytes that would be invalid options.
    opts = opt(2, 4, b"\x05\xb4") + b"\x00" + b"\x03\x09\x02\x01"[:3]
    p = wire.parse_packet(v4_tcp_options(opts))
    assert p.tcp.mss == 1460 and p.tcp.wscale is None


def test_sack_with_four_blocks():
    blocks = ((1, 2), (3, 4), (5, 6), (0xFFFFFFF0, 0x10))
    body = b"".join(struct.pack("!II", *b) for b in blocks)
    p = wire.parse_packet(v4_tcp_options(b"\x01\x01" + opt(5, 34, body)))
    assert p.tcp.sack_blocks == blocks


# =============================================================================================
# Every Reason, exactly
# =============================================================================================

def _bad_ihl():
    b = bytearray(SYN)
    b[0] = 0x44
    return b


def _ihl_past_buffer():
    b = bytearray(SYN[:40])
    b[0] = 0x4F                                          # 60 header bytes, 40 present
    return b


def _total_length(n):
    b = bytearray(SYN)
    b[2:4] = struct.pack("!H", n)
    return oracle.fix_ipv4_checksum(b)


def _flip(raw, i, mask=0x01):
    b = bytearray(raw)
    b[i] ^= mask
    return b


def _v6_plen(n):
    b = bytearray(V6SYN)
    b[4:6] = struct.pack("!H", n)
    return b


def _icmp6_src_changed():
    b = bytearray(ECHO6)
    b[23] ^= 0x01                                        # src 2001:db8::1 -> ::0
    return b


def _icmp4_src_changed():
    b = bytearray(ECHO4)
    b[15] ^= 0x01
    return oracle.fix_ipv4_checksum(b)


def _bad_option_and_bad_checksum():
    b = v4_tcp_options(opt(2, 3, b"\x05") + b"\x01")
    b[-1] ^= 0x01                                        # now the checksum is wrong too
    return b


REASON_CASES = [
    # (id, packet, reason)
    ("empty", b"", Reason.TRUNCATED),
    ("ipv4_19_bytes", SYN[:19], Reason.TRUNCATED),
    ("ipv4_1_byte", b"\x45", Reason.TRUNCATED),
    ("ipv6_39_bytes", V6SYN[:39], Reason.TRUNCATED),
    ("tcp_19_bytes", v4(SYN[20:39]), Reason.TRUNCATED),
    ("tcp_empty", v4(b""), Reason.TRUNCATED),
    ("icmp_7_bytes", v4(ECHO4[20:27], 1), Reason.TRUNCATED),
    ("icmpv6_7_bytes", v6([], ECHO6[40:47], 58), Reason.TRUNCATED),
    ("ipv6_tcp_19_bytes", v6([], V6SYN[40:59]), Reason.TRUNCATED),
    ("version_5", b"\x55" + SYN[1:], Reason.BAD_VERSION),
    ("version_0", bytes(40), Reason.BAD_VERSION),
    ("version_15_one_byte", b"\xf0", Reason.BAD_VERSION),
    ("version_1_one_byte", b"\x10", Reason.BAD_VERSION),
    ("ihl_4", _bad_ihl(), Reason.BAD_IHL),
    ("ihl_0", b"\x40" + SYN[1:], Reason.BAD_IHL),
    ("ihl_past_buffer", _ihl_past_buffer(), Reason.HEADER_OVERRUN),
    ("ipv6_ext_header_past_payload", v6([(0, bytes([0, 10]) + bytes(14))], b""),
     Reason.HEADER_OVERRUN),
    ("ipv6_ext_header_no_room", v6([(60, b"")], b""), Reason.HEADER_OVERRUN),
    ("ipv6_fragment_header_cut", v6([(44, b"\x00\x00\x00\x00")], b""), Reason.HEADER_OVERRUN),
    ("ipv6_second_ext_header_past_payload",
     v6([(0, ext()), (60, bytes([0, 1]) + bytes(6))], b""), Reason.HEADER_OVERRUN),
    ("total_length_past_buffer", _total_length(61), Reason.BAD_TOTAL_LENGTH),
    ("total_length_below_header", _total_length(19), Reason.BAD_TOTAL_LENGTH),
    ("total_length_zero", _total_length(0), Reason.BAD_TOTAL_LENGTH),
    ("truncated_capture", SYN[:59], Reason.BAD_TOTAL_LENGTH),
    ("ipv6_payload_length_past_buffer", _v6_plen(41), Reason.BAD_TOTAL_LENGTH),
    ("ipv4_checksum", _flip(SYN, 8), Reason.BAD_IP_CHECKSUM),
    ("ipv4_checksum_field", _flip(SYN, 11, 0x80), Reason.BAD_IP_CHECKSUM),
    ("ipv4_checksum_in_options", v4(tcp(), ihl=6, ip_options=b"\x01\x01\x01\x00")[:20]
     + b"\x01\x01\x01\x01" + tcp(), Reason.BAD_IP_CHECKSUM),
    ("ipv4_more_fragments", v4(tcp(), flags_frag=0x2000), Reason.FRAGMENT),
    ("ipv4_offset", v4(tcp(), flags_frag=185), Reason.FRAGMENT),
    ("ipv4_last_fragment_df", v4(b"\xaa" * 8, flags_frag=0x4000 | 1), Reason.FRAGMENT),
    ("ipv4_fragment_of_udp", v4(b"\x00" * 8, 17, flags_frag=0x2000), Reason.FRAGMENT),
    ("ipv6_first_fragment", v6([(44, frag(0, True))], tcp(), fix_l4=False), Reason.FRAGMENT),
    ("ipv6_last_fragment", v6([(44, frag(2048, False))], b"\x01" * 16), Reason.FRAGMENT),
    ("ipv6_fragment_after_hop_by_hop", v6([(0, ext()), (44, frag(8, True))], b"\x00" * 8),
     Reason.FRAGMENT),
    ("ipv6_nine_ext_headers", v6([(60, ext())] * 9, tcp()), Reason.EXT_HEADER_LIMIT),
    ("ipv6_nine_mixed_ext_headers",
     v6([(0, ext()), (43, ext(1)), (60, ext())] * 3 + [(60, ext())], tcp()),
     Reason.EXT_HEADER_LIMIT),
    ("ipv4_udp", v4(b"\x04\xd2\x00\x35\x00\x08\x00\x00", 17), Reason.UNKNOWN_PROTOCOL),
    ("ipv4_icmpv6", v4(ECHO6[40:], 58), Reason.UNKNOWN_PROTOCOL),
    ("ipv4_protocol_255", v4(b"", 255), Reason.UNKNOWN_PROTOCOL),
    ("ipv6_udp", v6([], b"\x04\xd2\x00\x35\x00\x08\x00\x00", 17), Reason.UNKNOWN_PROTOCOL),
    ("ipv6_no_next_header", v6([], b"", 59), Reason.UNKNOWN_PROTOCOL),
    ("ipv6_icmpv4", v6([], ECHO4[20:], 1), Reason.UNKNOWN_PROTOCOL),
    ("ipv6_udp_after_dest_opts", v6([(60, ext())], b"\x00" * 8, 17), Reason.UNKNOWN_PROTOCOL),
    ("data_offset_4", v4(tcp(doff=4)), Reason.BAD_DATA_OFFSET),
    ("data_offset_0", v4(tcp(doff=0, options=b"")), Reason.BAD_DATA_OFFSET),
    ("ipv6_data_offset_3", v6([], tcp(doff=3)), Reason.BAD_DATA_OFFSET),
    ("data_offset_past_segment", v4(tcp(doff=6)), Reason.OPTIONS_OVERRUN),
    ("data_offset_15_on_40_bytes", v4(tcp(bytes(20), doff=15)), Reason.OPTIONS_OVERRUN),
    ("option_past_header", v4_tcp_options(b"\x01\x01\x01" + opt(8, 10, bytes(3))),
     Reason.OPTIONS_OVERRUN),
    ("option_kind_without_length", v4_tcp_options(b"\x01\x01\x01\x02"), Reason.OPTIONS_OVERRUN),
    ("unknown_option_past_header", v4_tcp_options(opt(0xFE, 8, b"\x00\x00")),
     Reason.OPTIONS_OVERRUN),
    ("sack_past_header", v4_tcp_options(b"\x01\x01" + opt(5, 18, bytes(8))),
     Reason.OPTIONS_OVERRUN),
    ("option_length_0", v4_tcp_options(opt(2, 0, b"\x00\x00")), Reason.BAD_OPTION_LENGTH),
    ("option_length_1", v4_tcp_options(opt(0xFE, 1, b"\x00\x00")), Reason.BAD_OPTION_LENGTH),
    ("mss_length_3", v4_tcp_options(opt(2, 3, b"\x05") + b"\x01"), Reason.BAD_OPTION_LENGTH),
    ("mss_length_6", v4_tcp_options(opt(2, 6, b"\x05\xb4\x00\x00") + b"\x00\x00"),
     Reason.BAD_OPTION_LENGTH),
    ("wscale_length_2", v4_tcp_options(opt(3, 2) + b"\x01\x01"), Reason.BAD_OPTION_LENGTH),
    ("wscale_length_4", v4_tcp_options(opt(3, 4, b"\x07\x00")), Reason.BAD_OPTION_LENGTH),
    ("sackok_length_3", v4_tcp_options(opt(4, 3, b"\x00") + b"\x01"), Reason.BAD_OPTION_LENGTH),
    ("timestamps_length_8", v4_tcp_options(opt(8, 8, bytes(6))), Reason.BAD_OPTION_LENGTH),
    ("timestamps_length_12", v4_tcp_options(opt(8, 12, bytes(10))), Reason.BAD_OPTION_LENGTH),
    ("sack_no_blocks", v4_tcp_options(opt(5, 2) + b"\x01\x01"), Reason.BAD_OPTION_LENGTH),
    ("sack_length_11", v4_tcp_options(opt(5, 11, bytes(9)) + b"\x00"), Reason.BAD_OPTION_LENGTH),
    ("sack_length_9", v4_tcp_options(opt(5, 9, bytes(7)) + bytes(3)), Reason.BAD_OPTION_LENGTH),
    ("bad_option_after_good_ones",
     v4_tcp_options(opt(2, 4, b"\x05\xb4") + b"\x01" + opt(3, 4, b"\x07\x00") + bytes(3)),
     Reason.BAD_OPTION_LENGTH),
    ("tcp_payload", _flip(DATA, len(DATA) - 1), Reason.BAD_CHECKSUM),
    ("tcp_header", _flip(SYN, 24), Reason.BAD_CHECKSUM),
    ("tcp_checksum_field", _flip(ACK, 36, 0xFF), Reason.BAD_CHECKSUM),
    ("tcp_pseudo_header_address", oracle.fix_ipv4_checksum(_flip(SYN, 19)), Reason.BAD_CHECKSUM),
    ("tcp_bad_option_and_checksum", _bad_option_and_bad_checksum(), Reason.BAD_CHECKSUM),
    ("ipv6_tcp", _flip(V6SYN, 50), Reason.BAD_CHECKSUM),
    ("ipv6_tcp_pseudo_header", _flip(V6SYN, 39), Reason.BAD_CHECKSUM),
    ("icmp_data", _flip(ECHO4, 40), Reason.BAD_CHECKSUM),
    ("icmp_quote", _flip(FRAG_NEEDED, 50), Reason.BAD_CHECKSUM),
    ("icmpv6_data", _flip(ECHO6, 50), Reason.BAD_CHECKSUM),
    ("icmpv6_pseudo_header", _icmp6_src_changed(), Reason.BAD_CHECKSUM),
] + [(f"ok_{name}", CANONICAL[name][0], Reason.OK) for name in CASES] + [
    ("ok_icmpv4_has_no_pseudo_header", _icmp4_src_changed(), Reason.OK),
    ("ok_option_list_ends_early", v4_tcp_options(b"\x00\xff\xff\xff"), Reason.OK),
    ("ok_nops_only", v4_tcp_options(b"\x01" * 40), Reason.OK),
]


@pytest.mark.parametrize("raw, reason", [c[1:] for c in REASON_CASES],
                         ids=[c[0] for c in REASON_CASES])
def test_reason(raw, reason):
    raw = bytes(raw)
    assert oracle.check_packet(raw) == reason, "the fixture or the oracle is wrong"
    got = wire.check_packet(raw)
    assert got == reason
    assert isinstance(got, Reason)
    if reason == Reason.OK:
        assert isinstance(wire.parse_packet(raw), Packet)
        return
    with pytest.raises(WireError) as ei:
        wire.parse_packet(raw)
    assert ei.value.reason == reason
    assert isinstance(ei.value.reason, Reason)
    assert isinstance(ei.value, ValueError)


def test_every_reason_is_reached():
    reached = {reason for _, _, reason in REASON_CASES}
    assert reached == set(Reason)


def test_reason_enum_matches_the_c_enum_order():
    assert [(r.name, int(r)) for r in Reason] == [(r.name, int(r)) for r in oracle.Reason]
    assert issubclass(Reason, int)


def test_wire_error():
    assert tcpfast.WireError is WireError
    assert issubclass(WireError, ValueError)
    e = WireError(Reason.BAD_CHECKSUM)
    assert e.reason is Reason.BAD_CHECKSUM
    assert "BAD_CHECKSUM" in str(e)
    e2 = WireError(3)
    assert e2.reason is Reason.BAD_IHL
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is WireError and again.reason is Reason.BAD_CHECKSUM


@pytest.mark.parametrize("fn", [wire.parse_packet, wire.check_packet, wire.parse_ipv4,
                                wire.parse_ipv6, wire.parse_tcp, wire.parse_icmp])
def test_non_buffer_argument_is_type_error(fn):
    with pytest.raises(TypeError):
        fn("4500")
    with pytest.raises(TypeError):
        fn(None)


def test_verify_checksums_false_skips_the_upper_layer_checksum():
    for raw in (_flip(DATA, len(DATA) - 1), _flip(ECHO4, 40), _icmp6_src_changed(),
                _flip(V6SYN, 50)):
        assert wire.check_packet(raw) == Reason.BAD_CHECKSUM
        assert wire.check_packet(raw, verify_checksums=False) == Reason.OK
        assert oracle.check_packet(raw, verify_checksums=False) == Reason.OK
        p = wire.parse_packet(raw, verify_checksums=False)
        assert p == oracle.parse_packet(raw, verify_checksums=False)
    # With the checksum skipped the option error beneath it shows.
    raw = _bad_option_and_bad_checksum()
    assert wire.check_packet(raw, verify_checksums=False) == Reason.BAD_OPTION_LENGTH


def test_verify_checksums_false_still_verifies_the_ipv4_header():
    # The flag stands for "the device verified the upper-layer checksum" (virtio DATA_VALID);
    # the IPv4 header checksum is part of parsing IP and is always checked.
    raw = _flip(SYN, 8)
    assert wire.check_packet(raw, verify_checksums=False) == Reason.BAD_IP_CHECKSUM


def test_packet_classmethods_delegate():
    assert Packet.parse(SYN) == SYN_PACKET
    with pytest.raises(WireError):
        Packet.parse(SYN[:30])
    assert SYN_PACKET.buffer_len() == len(SYN)
    assert SYN_PACKET.to_bytes() == SYN
    buf = bytearray(len(SYN) + 2)
    assert SYN_PACKET.emit(buf, 2) == len(SYN)
    assert buf[2:] == SYN


# =============================================================================================
# Building and round trips
# =============================================================================================

@pytest.mark.parametrize("case", CASES)
def test_build_gives_the_literal_bytes(case):
    raw, packet = CANONICAL[case]
    assert wire.build_packet(packet) == raw
    assert oracle.build_packet(packet) == raw
    assert wire.packet_len(packet) == len(raw)


@pytest.mark.parametrize("case", CASES)
def test_parse_then_build_is_identity(case):
    raw, _ = CANONICAL[case]
    assert wire.build_packet(wire.parse_packet(raw)) == raw


@pytest.mark.parametrize("case", CASES)
def test_build_then_parse_is_identity(case):
    _, packet = CANONICAL[case]
    assert wire.parse_packet(wire.build_packet(packet)) == packet


def test_build_uses_the_upper_layer_for_the_protocol_field():
    raw = wire.build_packet(Packet(ip=IPv4Header("192.0.2.1", "192.0.2.2"),
                                   icmp=ICMPMessage(type=8, ident=1, seq=2)))
    assert raw[9] == 1
    raw = wire.build_packet(Packet(ip=IPv6Header("::1", "::2"), icmp=ICMPMessage(type=129)))
    assert raw[6] == 58


def test_build_fragment_fields():
    p = Packet(ip=IPv4Header("192.0.2.1", "192.0.2.2", dont_fragment=False, more_fragments=True,
                             fragment_offset=2960, ident=77),
               tcp=TCPHeader(1, 2))
    raw = wire.build_packet(p)
    assert raw[6:8] == struct.pack("!H", 0x2000 | 370)
    assert wire.parse_ipv4(raw) == p.ip
    assert wire.check_packet(raw) == Reason.FRAGMENT


def test_option_layout_each_combination():
    def opts(**kw):
        raw = wire.build_packet(Packet(ip=IPv4Header("10.0.0.1", "10.0.0.2"),
                                       tcp=TCPHeader(1, 2, **kw)))
        return raw[40:20 + (raw[32] >> 4) * 4]
    assert opts() == b""
    assert opts(mss=536) == hexb("02040218")
    assert opts(sack_permitted=True) == hexb("01010402")
    assert opts(timestamps=(1, 2)) == hexb("0101080a0000000100000002")
    assert opts(sack_permitted=True, timestamps=(1, 2)) == hexb("0402080a0000000100000002")
    assert opts(wscale=14) == hexb("0103030e")
    assert opts(wscale=0) == hexb("01030300")
    assert opts(sack_blocks=((5, 9),)) == hexb("0101050a", "0000000500000009")
    assert opts(mss=1460, sack_permitted=True, wscale=7) == hexb("020405b4", "01010402",
                                                                 "01030307")
    assert opts(timestamps=(7, 8), sack_blocks=((1, 2), (3, 4), (5, 6))) == hexb(
        "0101080a0000000700000008", "0101051a", "00000001000000020000000300000004",
        "0000000500000006")


def test_sack_blocks_that_do_not_fit_are_refused_by_the_python_api():
    # MSS 4 + SACKOK/TS 12 + NOP WS 4 = 20 bytes, leaving room for NOP NOP SACK with 2 blocks:
    # asking the Python API for 4 is an error rather than a silently different header.
    h = TCPHeader(1, 2, flags=F.ACK, mss=1460, sack_permitted=True, timestamps=(1, 2), wscale=7,
                  sack_blocks=((10, 20), (30, 40), (50, 60), (70, 80)))
    p = Packet(ip=IPv4Header("10.0.0.1", "10.0.0.2"), tcp=h)
    with pytest.raises(ValueError, match="do not fit"):
        wire.build_packet(p)
    with pytest.raises(ValueError, match="do not fit"):
        wire.packet_len(p)
    # Exactly as many as fit is fine: 2 here (data offset 15), 3 beside timestamps alone.
    h.sack_blocks = ((10, 20), (30, 40))
    raw = wire.build_packet(p)
    assert raw == oracle.build_packet(p)
    assert raw[32] >> 4 == 15
    assert wire.parse_packet(raw).tcp.sack_blocks == ((10, 20), (30, 40))
    h3 = TCPHeader(1, 2, flags=F.ACK, timestamps=(1, 2), sack_blocks=((10, 20), (30, 40), (50, 60)))
    raw3 = wire.build_packet(Packet(ip=IPv4Header("10.0.0.1", "10.0.0.2"), tcp=h3))
    assert wire.parse_packet(raw3).tcp.sack_blocks == ((10, 20), (30, 40), (50, 60))
    h3.sack_blocks += ((70, 80),)
    with pytest.raises(ValueError, match="do not fit"):
        wire.build_packet(Packet(ip=IPv4Header("10.0.0.1", "10.0.0.2"), tcp=h3))


def test_icmp_echo_round_trip_keeps_ident_and_seq_only():
    # headers.py: echo uses ident/seq, "other types carry their 4 raw bytes in rest".
    m = ICMPMessage(type=8, ident=0x1234, seq=0x5678, data=b"x")
    p = Packet(ip=IPv4Header("10.0.0.1", "10.0.0.2", protocol=1), icmp=m)
    got = wire.parse_packet(wire.build_packet(p)).icmp
    assert (got.ident, got.seq, got.mtu, got.rest) == (0x1234, 0x5678, 0, 0)
    assert got == m


def test_icmp_other_type_round_trip_keeps_rest_only():
    # A redirect (type 5): the 4 bytes are the gateway address.
    quote = FRAG_NEEDED[28:]
    m = ICMPMessage(type=5, code=1, rest=0xC6336401, data=quote)
    p = Packet(ip=IPv4Header("198.51.100.1", "192.0.2.1", protocol=1), icmp=m)
    raw = wire.build_packet(p)
    assert raw[24:28] == hexb("c6336401")
    got = wire.parse_packet(raw).icmp
    assert (got.ident, got.seq, got.mtu, got.rest) == (0, 0, 0, 0xC6336401)
    assert got == m


def test_icmp_emission_of_the_rest_word():
    def rest(version, **kw):
        ip = (IPv4Header("10.0.0.1", "10.0.0.2") if version == 4
              else IPv6Header("2001:db8::1", "2001:db8::2"))
        raw = wire.build_packet(Packet(ip=ip, icmp=ICMPMessage(**kw)))
        at = 20 if version == 4 else 40
        return struct.unpack_from("!I", raw, at + 4)[0]
    assert rest(4, type=8, ident=1, seq=2, rest=0xFFFFFFFF, mtu=9) == 0x00010002
    assert rest(4, type=0, ident=0xFFFF, seq=0xFFFE) == 0xFFFFFFFE
    assert rest(6, type=128, ident=3, seq=4) == 0x00030004
    assert rest(6, type=129, ident=3, seq=4) == 0x00030004
    assert rest(4, type=3, code=4, mtu=1400, rest=0xFFFF0000) == 1400
    assert rest(4, type=3, code=3, mtu=1400, rest=0xAB) == 0xAB
    assert rest(6, type=2, mtu=0x12345678) == 0x12345678
    assert rest(6, type=1, rest=0xCAFE, mtu=1280) == 0xCAFE
    assert rest(4, type=11, rest=7, ident=1) == 7
    # Type 128 is echo only in ICMPv6; in ICMPv4 it is some other type, which carries rest.
    assert rest(4, type=128, ident=3, seq=4, rest=5) == 5


def test_icmpv6_checksum_covers_the_pseudo_header():
    raw = bytearray(wire.build_packet(ECHO6_PACKET))
    msg = raw[40:]
    pseudo = C.pseudo_header_sum_ipv6(raw[8:24], raw[24:40], 58, len(msg))
    assert C.checksum(msg, pseudo) == 0
    assert C.checksum(msg) != 0
    raw4 = wire.build_packet(ECHO4_PACKET)
    assert C.checksum(raw4[20:]) == 0                     # ICMPv4: the message alone


def test_built_checksums_verify_independently():
    for raw, _ in CANONICAL.values():
        p = wire.build_packet(wire.parse_packet(raw))
        if p[0] >> 4 == 4:
            assert C.checksum(p[:20]) == 0


@pytest.mark.parametrize("bad_packet, exc", [
    (Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8")), ValueError),                    # no upper layer
    (Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8"), tcp=TCPHeader(1, 2),
            icmp=ICMPMessage(type=8)), ValueError),                               # both
    (Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8"), tcp=TCPHeader(70000, 2)), ValueError),
    (Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8"), tcp=TCPHeader(1, 2, seq=1 << 32)), ValueError),
    (Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8"), tcp=TCPHeader(1, 2, seq=-1)), ValueError),
    (Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8"), tcp=TCPHeader(1, 2, window=65536)), ValueError),
    (Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8"), tcp=TCPHeader(1, 2, mss=65536)), ValueError),
    (Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8", ttl=256), tcp=TCPHeader(1, 2)), ValueError),
    (Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8", fragment_offset=3), tcp=TCPHeader(1, 2)),
     ValueError),
    (Packet(ip=IPv6Header("::1", "::2", flow_label=1 << 20), tcp=TCPHeader(1, 2)), ValueError),
    (Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8"), tcp=TCPHeader(1, 2),
            payload=b"x" * 65516), ValueError),                                    # > 65535
    (Packet(ip=IPv6Header("::1", "::2"), tcp=TCPHeader(1, 2),
            payload=b"x" * 65516), ValueError),                                    # plen > 65535
    (Packet(ip=IPv6Header("::1", "::2"), icmp=ICMPMessage(type=128, data=b"x" * 65528)),
     ValueError),
    (Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8"), tcp=TCPHeader(1, 2, seq="1")), TypeError),
    (Packet(ip=None, tcp=TCPHeader(1, 2)), TypeError),
    ("not a packet", TypeError),
])
def test_build_rejects_bad_values(bad_packet, exc):
    with pytest.raises(exc):
        wire.build_packet(bad_packet)


def test_largest_packets_build():
    p = Packet(ip=IPv4Header("1.2.3.4", "5.6.7.8"), tcp=TCPHeader(1, 2), payload=b"x" * 65495)
    raw = wire.build_packet(p)
    assert len(raw) == 65535
    assert wire.parse_packet(raw) == p
    # IPv6's Payload Length excludes the fixed header: 65535 bytes of TCP fit.
    p6 = Packet(ip=IPv6Header("::1", "::2"), tcp=TCPHeader(1, 2), payload=b"x" * 65515)
    raw6 = wire.build_packet(p6)
    assert len(raw6) == 40 + 65535 and raw6[4:6] == b"\xff\xff"
    assert wire.parse_packet(raw6) == p6


# =============================================================================================
# emit_packet into caller buffers
# =============================================================================================

def test_emit_into_exact_buffer():
    buf = bytearray(len(DATA))
    assert wire.emit_packet(DATA_PACKET, buf) == len(DATA)
    assert buf == DATA


def test_emit_at_an_offset_leaves_the_rest_alone():
    buf = bytearray(b"\xaa" * 7 + b"\x00" * len(DATA) + b"\xbb" * 5)
    assert wire.emit_packet(DATA_PACKET, buf, 7) == len(DATA)
    assert buf[:7] == b"\xaa" * 7
    assert buf[7:7 + len(DATA)] == DATA
    assert buf[7 + len(DATA):] == b"\xbb" * 5


def test_emit_overwrites_stale_bytes():
    buf = bytearray(b"\xff" * (len(ECHO6) + 3))
    assert wire.emit_packet(ECHO6_PACKET, buf, 3) == len(ECHO6)
    assert buf[3:] == ECHO6


def test_emit_into_a_memoryview_slice():
    backing = bytearray(200)
    n = wire.emit_packet(SYN_PACKET, memoryview(backing)[50:150])
    assert n == len(SYN) and backing[50:50 + n] == SYN
    assert backing[:50] == bytes(50) and backing[50 + n:] == bytes(200 - 50 - n)


@pytest.mark.parametrize("size, offset", [(len(SYN) - 1, 0), (0, 0), (len(SYN), 1),
                                          (len(SYN) + 10, 11), (100, 100), (100, -1)])
def test_emit_too_small_raises_value_error(size, offset):
    buf = bytearray(b"\x5a" * size)
    with pytest.raises(ValueError):
        wire.emit_packet(SYN_PACKET, buf, offset)
    assert buf == bytearray(b"\x5a" * size)             # nothing written


def test_emit_into_read_only_buffer_fails():
    with pytest.raises((TypeError, BufferError)):
        wire.emit_packet(SYN_PACKET, bytes(100))


# =============================================================================================
# Views
# =============================================================================================

def test_tcp_view_reads_what_parse_reads():
    seg = DATA[20:]
    v = wire.TCPView(seg)
    h = wire.parse_tcp(seg)
    assert (v.src_port, v.dst_port, v.seq, v.ack) == (h.src_port, h.dst_port, h.seq, h.ack)
    assert (v.header_len, v.flags, v.window, v.checksum, v.urgent) == \
        (h.header_len, h.flags, h.window, h.checksum, h.urgent)
    assert v.flags == F.PSH | F.ACK
    assert bytes(v.options) == DATA[40:52]
    assert bytes(v.payload) == HTTP
    assert isinstance(v.options, memoryview) and isinstance(v.payload, memoryview)


def test_tcp_view_of_syn_without_payload():
    v = wire.TCPView(memoryview(SYN)[20:])
    assert v.header_len == 40 and bytes(v.payload) == b""
    assert bytes(v.options) == SYN[40:]
    assert v.seq == 0x01020304 and v.window == 64240


def test_ipv4_view_reads_what_parse_reads():
    v = wire.IPv4View(DATA + b"trailer")
    ip = wire.parse_ipv4(DATA)
    assert v.version == 4
    assert (v.header_len, v.tos, v.ident, v.ttl, v.protocol, v.checksum) == \
        (ip.header_len, ip.tos, ip.ident, ip.ttl, ip.protocol, ip.checksum)
    assert (v.dont_fragment, v.more_fragments, v.fragment_offset) == \
        (ip.dont_fragment, ip.more_fragments, ip.fragment_offset)
    assert v.total_length == len(DATA)
    assert v.src == ip.src and v.dst == ip.dst
    assert bytes(v.payload) == DATA[20:]                 # stops at the total length


def test_ipv4_view_of_fragment():
    pkt = v4(tcp(), flags_frag=0x2000 | 5)
    v = wire.IPv4View(pkt)
    assert v.more_fragments and v.fragment_offset == 40 and not v.dont_fragment


def test_ipv6_view_reads_what_parse_reads():
    v = wire.IPv6View(V6SYN)
    ip = wire.parse_ipv6(V6SYN)
    assert v.version == 6
    assert (v.traffic_class, v.flow_label, v.hop_limit) == (2, 0x12345, 64)
    assert (v.src, v.dst, v.protocol, v.header_len) == (ip.src, ip.dst, ip.protocol, 40)
    assert bytes(v.payload) == V6SYN[40:]


def test_ipv6_view_with_extension_headers():
    seg = tcp(payload=b"abc")
    pkt = v6([(0, ext(0, fill=1)), (60, ext(1, fill=1))], seg)
    v = wire.IPv6View(pkt)
    assert v.next_header == 0 and v.protocol == 6 and v.header_len == 64
    assert bytes(v.payload) == pkt[64:] and len(v.payload) == len(seg)
    assert v.src == IPv6Address("2001:db8::1") and v.dst == IPv6Address("2001:db8::2")


def test_icmp_view():
    v = wire.ICMPView(ECHO4[20:])
    assert (v.type, v.code, v.checksum, v.ident, v.seq) == (8, 0, 0x3B27, 0x1234, 1)
    assert bytes(v.body) == ECHO4[28:]
    p = wire.ICMPView(PTB[40:])
    assert (p.type, p.code) == (2, 0)


def test_views_are_views_not_copies():
    buf = bytearray(DATA)
    v = wire.IPv4View(buf)
    pl = v.payload
    buf[20] = 0x12
    assert pl[0] == 0x12
    t = wire.TCPView(memoryview(buf)[20:])
    buf[24:28] = b"\x00\x00\x00\x09"
    assert t.seq == 9


@pytest.mark.parametrize("cls, raw, reason", [
    (wire.TCPView, b"", Reason.TRUNCATED),
    (wire.TCPView, SYN[20:39], Reason.TRUNCATED),
    (wire.TCPView, tcp(doff=4), Reason.BAD_DATA_OFFSET),
    (wire.TCPView, tcp(doff=6), Reason.OPTIONS_OVERRUN),
    (wire.TCPView, SYN[20:59], Reason.OPTIONS_OVERRUN),
    (wire.IPv4View, SYN[:19], Reason.TRUNCATED),
    (wire.IPv4View, _bad_ihl(), Reason.BAD_IHL),
    (wire.IPv4View, _ihl_past_buffer(), Reason.HEADER_OVERRUN),
    (wire.IPv4View, SYN[:59], Reason.BAD_TOTAL_LENGTH),
    (wire.IPv4View, V6SYN, Reason.BAD_VERSION),
    (wire.IPv6View, V6SYN[:39], Reason.TRUNCATED),
    (wire.IPv6View, V6SYN[:79], Reason.BAD_TOTAL_LENGTH),
    (wire.IPv6View, SYN + bytes(20), Reason.BAD_VERSION),
    (wire.ICMPView, ECHO4[20:27], Reason.TRUNCATED),
])
def test_view_constructors_check_lengths(cls, raw, reason):
    with pytest.raises(WireError) as ei:
        cls(raw)
    assert ei.value.reason == reason


def test_tcp_view_setters_and_checksum_fix_up():
    pkt = bytearray(DATA)
    t = wire.TCPView(memoryview(pkt)[20:])
    # seq: RFC 1624 update of the checksum, then the packet verifies again.
    old = t.seq
    new = S.add(old, 0xFFFFFFFF - 5)                      # wraps
    t.seq = new
    assert wire.check_packet(pkt) == Reason.BAD_CHECKSUM
    t.checksum = C.update32(t.checksum, old, new)
    assert wire.check_packet(pkt) == Reason.OK
    # ack
    old = t.ack
    t.ack = 0x7FFFFFFF
    t.checksum = C.update32(t.checksum, old, 0x7FFFFFFF)
    # window
    old = t.window
    t.window = 0xFFFF
    t.checksum = C.update16(t.checksum, old, 0xFFFF)
    # flags share a 16-bit word with the data offset (bytes 12-13).
    old_word = (t.header_len // 4) << 12 | int(t.flags)
    t.flags = F.ACK | F.FIN
    new_word = (t.header_len // 4) << 12 | int(t.flags)
    t.checksum = C.update16(t.checksum, old_word, new_word)
    p = wire.parse_packet(pkt)
    assert (p.tcp.seq, p.tcp.ack, p.tcp.window, p.tcp.flags) == (new, 0x7FFFFFFF, 0xFFFF,
                                                                 F.ACK | F.FIN)
    assert p.payload == HTTP
    # The fixed-up checksum equals a fresh build of the same header.
    expect = Packet(ip=DATA_PACKET.ip, tcp=p.tcp, payload=HTTP)
    assert bytes(pkt) == wire.build_packet(expect)


def test_tcp_view_setters_reject_bad_values():
    t = wire.TCPView(bytearray(SYN[20:]))
    for name, value in (("seq", 1 << 32), ("seq", -1), ("ack", 1 << 32), ("window", 65536),
                        ("flags", 256), ("checksum", 65536), ("checksum", -1)):
        with pytest.raises(ValueError):
            setattr(t, name, value)
    with pytest.raises(TypeError):
        t.seq = "1"
    with pytest.raises(TypeError):
        t.window = 1.5
    assert bytes(t.options) == SYN[40:] and t.seq == 0x01020304    # nothing changed


def test_tcp_view_over_read_only_buffer_cannot_be_written():
    t = wire.TCPView(SYN[20:])
    before = bytes(SYN)
    for name in ("seq", "ack", "window", "flags", "checksum"):
        with pytest.raises((TypeError, BufferError, AttributeError)):
            setattr(t, name, 1)
    assert SYN == before


def test_tcp_view_read_only_properties():
    t = wire.TCPView(bytearray(SYN[20:]))
    for name in ("src_port", "dst_port", "header_len", "urgent"):
        with pytest.raises(AttributeError):
            setattr(t, name, 1)
