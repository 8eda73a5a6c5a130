"""Segments captured from the Linux kernel, parsed and rebuilt by tcpfast.wire.

The bytes are in ``tests/fixtures/kernel_*.hex`` (see the README there): SYNs the kernel sent for a
``connect()``, SYN-ACKs it sent in reply to hand-made SYNs, captured by
``tools/capture_kernel_syn.py`` on a TUN device (MTU 1500) inside a private network namespace.
Every field is asserted exactly, so the parser is checked against an implementation it shares no
code with; and since Linux lays out its SYN options the way ``emit_packet`` does (MSS; SACK-permitted
+ timestamps; NOP + window scale), ``build_packet(parse_packet(b)) == b`` byte for byte.
"""
from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from tcpfast import checksum as ck
from tcpfast import wire
from tcpfast.wire import (IPv4Header, IPv4View, IPv6Header, IPv6View, Packet, Reason, TCPFlags,
                          TCPHeader, TCPView, WireError)

FIXTURES = Path(__file__).parent / "fixtures"

V4_LOCAL, V4_PEER = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2")
V6_LOCAL, V6_PEER = IPv6Address("fd00:18::1"), IPv6Address("fd00:18::2")

# Linux's option block for a SYN: MSS, SACK-permitted + timestamps, NOP + window scale (20 bytes).
LINUX_SYN_OPTIONS = "0204{mss:04x}0402080a{tsval:08x}{tsecr:08x}010303{ws:02x}"


def load(name: str) -> bytes:
    """The packet in ``fixtures/kernel_<name>.hex`` (``#`` lines are comments)."""
    text = (FIXTURES / f"kernel_{name}.hex").read_text()
    return bytes.fromhex("".join(line for line in text.splitlines() if not line.startswith("#")))


# What each fixture holds, field by field, read off the hex by hand (see the README for the layout).
EXPECTED = {
    "syn_ipv4": Packet(
        ip=IPv4Header(src=V4_LOCAL, dst=V4_PEER, protocol=6, ttl=64, tos=0, ident=0x9167,
                      dont_fragment=True, more_fragments=False, fragment_offset=0,
                      header_len=20, payload_len=40, checksum=0x1D2D),
        tcp=TCPHeader(src_port=57556, dst_port=80, seq=0x1633C5A3, ack=0, flags=TCPFlags.SYN,
                      window=64240, urgent=0, mss=1460, wscale=10, sack_permitted=True,
                      sack_blocks=(), timestamps=(0x638C9366, 0), header_len=40, checksum=0x0CF6),
        payload=b""),
    "syn_ipv6": Packet(
        ip=IPv6Header(src=V6_LOCAL, dst=V6_PEER, protocol=6, hop_limit=64, traffic_class=0,
                      flow_label=0xAAF94, is_fragment=False, header_len=40, payload_len=40),
        tcp=TCPHeader(src_port=57196, dst_port=80, seq=0x29C8EE57, ack=0, flags=TCPFlags.SYN,
                      window=64800, urgent=0, mss=1440, wscale=10, sack_permitted=True,
                      sack_blocks=(), timestamps=(0xEC02DA22, 0), header_len=40, checksum=0x92B9),
        payload=b""),
    "syn_in_ipv4": Packet(
        ip=IPv4Header(src=V4_PEER, dst=V4_LOCAL, protocol=6, ttl=64, tos=0, ident=0x1111,
                      dont_fragment=True, header_len=20, payload_len=40, checksum=0x9D83),
        tcp=TCPHeader(src_port=40000, dst_port=8080, seq=0x12345678, ack=0, flags=TCPFlags.SYN,
                      window=64240, mss=1460, wscale=7, sack_permitted=True,
                      timestamps=(0x01020304, 0), header_len=40, checksum=0x9864)),
    "synack_ipv4": Packet(
        ip=IPv4Header(src=V4_LOCAL, dst=V4_PEER, protocol=6, ttl=64, tos=0, ident=0,
                      dont_fragment=True, more_fragments=False, fragment_offset=0,
                      header_len=20, payload_len=40, checksum=0xAE94),
        tcp=TCPHeader(src_port=8080, dst_port=40000, seq=0x4B60C194, ack=0x12345679,
                      flags=TCPFlags.SYN | TCPFlags.ACK, window=65160, urgent=0, mss=1460,
                      wscale=10, sack_permitted=True, sack_blocks=(),
                      timestamps=(0x51010194, 0x01020304), header_len=40, checksum=0x352E),
        payload=b""),
    "syn_in_ipv6": Packet(
        ip=IPv6Header(src=V6_PEER, dst=V6_LOCAL, protocol=6, hop_limit=64, traffic_class=0,
                      flow_label=0, header_len=40, payload_len=40),
        tcp=TCPHeader(src_port=40000, dst_port=8080, seq=0x12345678, ack=0, flags=TCPFlags.SYN,
                      window=64240, mss=1440, wscale=7, sack_permitted=True,
                      timestamps=(0x01020304, 0), header_len=40, checksum=0x2A6C)),
    "synack_ipv6": Packet(
        ip=IPv6Header(src=V6_LOCAL, dst=V6_PEER, protocol=6, hop_limit=64, traffic_class=0,
                      flow_label=0x5AAF9, is_fragment=False, header_len=40, payload_len=40),
        tcp=TCPHeader(src_port=8080, dst_port=40000, seq=0xD6E39DEA, ack=0x12345679,
                      flags=TCPFlags.SYN | TCPFlags.ACK, window=64260, urgent=0, mss=1440,
                      wscale=10, sack_permitted=True, sack_blocks=(),
                      timestamps=(0xB318B1B9, 0x01020304), header_len=40, checksum=0x50A3),
        payload=b""),
}
KERNEL = ["syn_ipv4", "syn_ipv6", "synack_ipv4", "synack_ipv6"]   # written by the kernel
ALL = sorted(EXPECTED)


def _fields(h) -> dict:
    """Every dataclass field, including the compare=False ones (lengths, checksums)."""
    return dict(vars(h))


# --- the fixtures themselves --------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_fixture_shape(name):
    b = load(name)
    v6 = name.endswith("ipv6")
    assert len(b) == (80 if v6 else 60)
    assert b[0] >> 4 == (6 if v6 else 4)
    # Data offset 10: 20 option bytes, Linux's layout for a SYN.
    tcp = b[40:] if v6 else b[20:]
    assert tcp[12] == 0xA0


@pytest.mark.parametrize("name", ALL)
def test_checksums_verify_independently(name):
    """The fixtures are intact: both checksums verify by plain RFC 1071 arithmetic."""
    b = load(name)

    def csum(data: bytes) -> int:
        s = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return ~s & 0xFFFF

    if b[0] >> 4 == 4:
        assert csum(b[:20]) == 0
        pseudo = b[12:20] + struct.pack("!BBH", 0, 6, len(b) - 20)
        assert csum(pseudo + b[20:]) == 0
    else:
        pseudo = b[8:40] + struct.pack("!IxxxB", len(b) - 40, 6)
        assert csum(pseudo + b[40:]) == 0


# --- parse_packet: every field ------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_parse_packet_every_field(name):
    b = load(name)
    p = wire.parse_packet(b)
    want = EXPECTED[name]
    assert type(p.ip) is type(want.ip)
    assert _fields(p.ip) == _fields(want.ip)
    assert _fields(p.tcp) == _fields(want.tcp)
    assert isinstance(p.tcp.flags, TCPFlags)
    assert p.icmp is None
    assert p.payload == b""
    assert p == want


@pytest.mark.parametrize("name", KERNEL)
def test_linux_syn_options(name):
    """What the kernel advertises: MSS = MTU - 40 (v4) / - 60 (v6), SACK, timestamps, WS."""
    p = wire.parse_packet(load(name))
    t = p.tcp
    assert t.flags & TCPFlags.SYN
    assert not t.flags & (TCPFlags.FIN | TCPFlags.RST | TCPFlags.PSH | TCPFlags.URG)
    assert t.mss == (1460 if p.ip.version == 4 else 1440)
    assert t.sack_permitted is True
    assert t.sack_blocks == ()
    assert t.timestamps is not None and t.timestamps[0] != 0
    assert t.wscale is not None and 0 <= t.wscale <= 14     # RFC 7323 §2.3
    assert t.header_len == 40
    # The option bytes are exactly Linux's canonical layout.
    opts = load(name)[(20 if p.ip.version == 4 else 40) + 20:]
    assert opts.hex() == LINUX_SYN_OPTIONS.format(mss=t.mss, tsval=t.timestamps[0],
                                                  tsecr=t.timestamps[1], ws=t.wscale)


@pytest.mark.parametrize("version", ["ipv4", "ipv6"])
def test_synack_answers_the_handmade_syn(version):
    syn = wire.parse_packet(load("syn_in_" + version))
    synack = wire.parse_packet(load("synack_" + version))
    assert synack.tcp.flags == TCPFlags.SYN | TCPFlags.ACK
    assert (synack.ip.src, synack.ip.dst) == (syn.ip.dst, syn.ip.src)
    assert (synack.tcp.src_port, synack.tcp.dst_port) == (syn.tcp.dst_port, syn.tcp.src_port)
    assert synack.tcp.ack == (syn.tcp.seq + 1) & 0xFFFFFFFF
    assert synack.tcp.timestamps[1] == syn.tcp.timestamps[0]   # TSecr echoes our TSval (RFC 7323 §4.3)
    assert synack.tcp.sack_permitted and synack.tcp.wscale is not None


@pytest.mark.parametrize("name", ALL)
def test_check_packet_ok(name):
    b = load(name)
    assert wire.check_packet(b) is Reason.OK
    assert wire.check_packet(b, verify_checksums=False) is Reason.OK
    assert wire.check_packet(bytearray(b)) is Reason.OK
    assert wire.check_packet(memoryview(b)) is Reason.OK


@pytest.mark.parametrize("name", ALL)
def test_parse_accepts_any_buffer(name):
    b = load(name)
    want = wire.parse_packet(b)
    assert wire.parse_packet(bytearray(b)) == want
    assert wire.parse_packet(memoryview(b)) == want
    # A slice of a larger buffer.
    big = b"\xee" * 7 + b + b"\xee" * 5
    assert wire.parse_packet(memoryview(big)[7:7 + len(b)]) == want


# --- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_build_reproduces_the_kernel_bytes(name):
    b = load(name)
    p = wire.parse_packet(b)
    assert wire.packet_len(p) == len(b)
    assert wire.build_packet(p) == b
    assert p.to_bytes() == b


@pytest.mark.parametrize("name", ALL)
def test_build_from_expected_values(name):
    """Emitting the hand-written header values gives the kernel's bytes: lengths and checksums
    the emitter derives agree with the kernel's."""
    assert wire.build_packet(EXPECTED[name]) == load(name)


@pytest.mark.parametrize("name", ALL)
def test_emit_into_preallocated_buffer_at_offset(name):
    b = load(name)
    p = wire.parse_packet(b)
    buf = bytearray(b"\x55" * (len(b) + 19))
    assert wire.emit_packet(p, buf, 11) == len(b)
    assert buf[11:11 + len(b)] == b
    assert buf[:11] == b"\x55" * 11 and buf[11 + len(b):] == b"\x55" * 8
    with pytest.raises(ValueError):
        wire.emit_packet(p, bytearray(len(b) - 1))
    with pytest.raises(ValueError):
        wire.emit_packet(p, bytearray(len(b) + 3), 4)


# --- the lower-level parsers and views ----------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_layer_parsers(name):
    b = load(name)
    want = EXPECTED[name]
    if want.ip.version == 4:
        ip = wire.parse_ipv4(b)
        hl = 20
    else:
        ip = wire.parse_ipv6(b)
        hl = 40
    assert _fields(ip) == _fields(want.ip)
    assert _fields(wire.parse_tcp(b[hl:])) == _fields(want.tcp)


@pytest.mark.parametrize("name", ALL)
def test_views(name):
    b = load(name)
    want = EXPECTED[name]
    if want.ip.version == 4:
        v = IPv4View(b)
        assert (v.version, v.header_len, v.total_length, v.tos, v.ttl) == (4, 20, 60, 0, 64)
        assert (v.ident, v.dont_fragment, v.more_fragments, v.fragment_offset) == \
            (want.ip.ident, True, False, 0)
        assert (v.protocol, v.checksum, v.src, v.dst) == (6, want.ip.checksum, want.ip.src, want.ip.dst)
        assert v.verify_checksum()
        assert len(v.options) == 0
        seg = v.payload
        pseudo = ck.pseudo_header_sum_ipv4(v.src, v.dst, 6, len(seg))
    else:
        v = IPv6View(b)
        assert (v.version, v.traffic_class, v.flow_label, v.payload_length) == \
            (6, 0, want.ip.flow_label, 40)
        assert (v.next_header, v.hop_limit, v.protocol, v.header_len, v.is_fragment) == \
            (6, 64, 6, 40, False)
        assert (v.src, v.dst) == (want.ip.src, want.ip.dst)
        seg = v.payload
        pseudo = ck.pseudo_header_sum_ipv6(v.src, v.dst, 6, len(seg))
    assert v.parse() == want.ip
    assert bytes(seg) == b[v.header_len:]
    t = TCPView(seg)
    w = want.tcp
    assert (t.src_port, t.dst_port, t.seq, t.ack) == (w.src_port, w.dst_port, w.seq, w.ack)
    assert (t.header_len, t.flags, t.window, t.checksum, t.urgent) == \
        (40, w.flags, w.window, w.checksum, 0)
    assert bytes(t.options) == b[v.header_len + 20:]
    assert bytes(t.payload) == b""
    assert t.parse() == w
    assert t.verify_checksum(pseudo)
    assert not t.verify_checksum(pseudo ^ 1)


@pytest.mark.parametrize("name", ALL)
def test_views_rewrite_checksums(name):
    """fill_checksum over a writable copy with the checksum zeroed gives the kernel's value back."""
    b = load(name)
    buf = bytearray(b)
    hl = 20 if b[0] >> 4 == 4 else 40
    if hl == 20:
        buf[10:12] = b"\0\0"
        with IPv4View(buf) as v:
            assert v.fill_checksum() == EXPECTED[name].ip.checksum
        pseudo = ck.pseudo_header_sum_ipv4(b[12:16], b[16:20], 6, len(b) - hl)
    else:
        pseudo = ck.pseudo_header_sum_ipv6(b[8:24], b[24:40], 6, len(b) - hl)
    buf[hl + 16:hl + 18] = b"\0\0"
    with TCPView(memoryview(buf)[hl:]) as t:
        assert t.fill_checksum(pseudo) == EXPECTED[name].tcp.checksum
    assert bytes(buf) == b


# --- damaged copies -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", KERNEL)
def test_damaged_copies_are_refused(name):
    b = load(name)
    v4 = b[0] >> 4 == 4
    hl = 20 if v4 else 40

    def reason(buf, **kw):
        r = wire.check_packet(bytes(buf), **kw)
        with pytest.raises(WireError) as ei:
            wire.parse_packet(bytes(buf), **kw)
        assert ei.value.reason == r
        return r

    # A flipped bit in an option is a bad checksum, not a malformed option (checksum first).
    bad = bytearray(b)
    bad[hl + 22] ^= 0x01                     # inside the MSS value
    assert reason(bad) is Reason.BAD_CHECKSUM
    assert wire.parse_packet(bytes(bad), verify_checksums=False).tcp.mss == \
        EXPECTED[name].tcp.mss ^ 0x0100
    # Cut short: the IP length now exceeds the buffer.
    assert reason(b[:-1]) is Reason.BAD_TOTAL_LENGTH
    assert reason(b[:hl - 1]) is Reason.TRUNCATED
    # The MSS option's length byte broken (checksum not verified, so the option check is reached).
    bad = bytearray(b)
    bad[hl + 21] = 5
    assert reason(bad, verify_checksums=False) is Reason.BAD_OPTION_LENGTH
    bad[hl + 21] = 21                        # runs past the 20 option bytes
    assert reason(bad, verify_checksums=False) is Reason.OPTIONS_OVERRUN
    if v4:
        bad = bytearray(b)
        bad[8] -= 1                          # TTL changed, header checksum not updated
        assert reason(bad) is Reason.BAD_IP_CHECKSUM
