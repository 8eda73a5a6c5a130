"""Wire format: parse a 1500-byte TCP/IPv4 packet, emit a pure ACK; compiled against pure Python.
(Sequence-number arithmetic is in ``bench_seq.py``.)

Run with ``pytest microbench --benchmark-only`` (see ``microbench/conftest.py``).
"""
import random
from ipaddress import IPv4Address

import pytest

import pure
from tcpfast import checksum as C
from tcpfast import wire
from tcpfast.wire import IPv4Header, Packet, TCPFlags, TCPHeader, TCPView

SRC, DST = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2")


@pytest.fixture(scope="module")
def segment():
    """A full-size data segment: 20 + 32 (NOP NOP TS) + 1448 = 1500 bytes, checksums valid."""
    rng = random.Random(9293)
    p = Packet(ip=IPv4Header(SRC, DST, ident=0x1234),
               tcp=TCPHeader(40000, 80, seq=0x01020304, ack=0x0A0B0C0D,
                             flags=TCPFlags.ACK | TCPFlags.PSH, window=502, timestamps=(1000, 2000)),
               payload=rng.randbytes(1448))
    b = wire.build_packet(p)
    assert len(b) == 1500
    return b


# --- parse ------------------------------------------------------------------------------------

def test_parse_check_packet(benchmark, segment):
    assert wire.check_packet(segment) is wire.Reason.OK
    benchmark.group = "parse 1500 B TCP/IPv4"
    benchmark.extra_info["impl"] = "compiled-check_packet"
    benchmark(wire.check_packet, segment)


def test_parse_parse_packet(benchmark, segment):
    benchmark.group = "parse 1500 B TCP/IPv4"
    benchmark.extra_info["impl"] = "compiled-parse_packet"
    p = benchmark(wire.parse_packet, segment)
    assert p.tcp.timestamps == (1000, 2000) and len(p.payload) == 1448


def test_parse_pure(benchmark, segment):
    ref = wire.parse_packet(segment)
    got = pure.parse_ipv4_tcp(segment)
    assert (got["src_port"], got["seq"], got["ack"], got["timestamps"], got["payload"]) == \
        (ref.tcp.src_port, ref.tcp.seq, ref.tcp.ack, ref.tcp.timestamps, ref.payload)
    benchmark.group = "parse 1500 B TCP/IPv4"
    benchmark.extra_info["impl"] = "pure-struct"
    benchmark(pure.parse_ipv4_tcp, segment)


# --- emit a pure ACK --------------------------------------------------------------------------

ACK = Packet(ip=IPv4Header(SRC, DST, ident=0),
             tcp=TCPHeader(80, 40000, seq=0x0A0B0C0D, ack=0x01020304 + 1448, flags=TCPFlags.ACK,
                           window=502, timestamps=(2001, 1000)))


def _pure_ack():
    return pure.build_ipv4_ack(SRC.packed, DST.packed, 80, 40000, 0x0A0B0C0D, 0x01020304 + 1448, 502,
                               2001, 1000)


def test_emit_ack_compiled(benchmark):
    buf = bytearray(2048)
    n = wire.emit_packet(ACK, buf, 0)
    assert n == 52 and bytes(buf[:n]) == _pure_ack()
    benchmark.group = "emit pure ACK"
    benchmark.extra_info["impl"] = "compiled-emit_packet"
    benchmark(wire.emit_packet, ACK, buf, 0)


def test_emit_ack_view_patch(benchmark):
    """The per-packet path's idea from Python: an ACK template patched in place through a view."""
    buf = bytearray(wire.build_packet(ACK))
    view = TCPView(memoryview(buf)[20:])
    pseudo = C.pseudo_header_sum_ipv4(SRC, DST, 6, len(view))

    def patch(seq=0x0A0B0C0D, ack=0x01020304 + 1448):
        view.seq = seq
        view.ack = ack
        view.fill_checksum(pseudo)

    patch()
    assert bytes(buf) == _pure_ack()
    benchmark.group = "emit pure ACK"
    benchmark.extra_info["impl"] = "compiled-view-patch"
    benchmark(patch)


def test_emit_ack_pure(benchmark):
    benchmark.group = "emit pure ACK"
    benchmark.extra_info["impl"] = "pure-struct"
    assert len(benchmark(_pure_ack)) == 52

