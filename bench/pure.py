"""Pure-Python baselines for the benchmarks: what the compiled core is measured against.

Benchmarks do not import from ``tests/`` (the oracle there is a test's tool), so this module keeps
its own small, straightforward implementations, written the way a careful pure-Python stack would
write them (``struct``, ``int``; no C code beyond the standard library's):

* :func:`checksum`: RFC 1071 over 16-bit words with ``struct.unpack`` and ``sum``; also
  :func:`checksum_wordloop`, the word-at-a-time loop of ``tests/oracle.py`` (the issue states its
  speed target against it), and :func:`checksum_bigint`, the fastest pure form we know;
* :func:`parse_ipv4_tcp`: IPv4 + TCP header parse with all the checks the C parser makes (lengths,
  IHL, data offset, fragments, options, both checksums), returning a dict of fields;
* :func:`build_ipv4_ack`: a pure ACK (IPv4 + TCP with timestamps) with both checksums;
* :func:`seq_lt`: the sequence-number comparison of RFC 9293 §3.4.
"""
from __future__ import annotations

import struct

__all__ = ["checksum", "checksum_wordloop", "checksum_bigint", "ones_complement_sum", "parse_ipv4_tcp",
           "build_ipv4_ack", "seq_lt", "PureWireError"]

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_TS = struct.Struct("!BBBBII")          # NOP NOP TS(10)
_HALF = struct.Struct("!H")


def ones_complement_sum(data, initial: int = 0) -> int:
    """The folded 16-bit one's-complement sum of ``data`` plus ``initial`` (RFC 1071)."""
    n = len(data)
    if n & 1:
        data = bytes(data) + b"\0"
        n += 1
    s = initial + sum(struct.unpack(f"!{n // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def checksum(data, initial: int = 0) -> int:
    """The Internet checksum: the complement of the one's-complement sum."""
    return ~ones_complement_sum(data, initial) & 0xFFFF


def checksum_bigint(data, initial: int = 0) -> int:
    """The same checksum by big-integer arithmetic: 2**16 = 1 (mod 0xFFFF), so the one's-complement
    sum of the 16-bit words is the buffer read as one big integer, modulo 0xFFFF (RFC 1071 §2's
    "end-around carry" done by CPython's long division). The fastest plain-Python form we know."""
    b = bytes(data)
    if len(b) & 1:
        b += b"\x00"
    x = (int.from_bytes(b, "big") + initial) % 0xFFFF
    if x == 0 and (initial or b.strip(b"\x00")):
        x = 0xFFFF                      # a non-zero sum is never +0 in one's complement
    return ~x & 0xFFFF


def checksum_wordloop(data, initial: int = 0) -> int:
    """The same checksum the way ``tests/oracle.py`` computes it: word by word with
    ``struct.iter_unpack`` and an end-around carry after every addition (RFC 1071 §1 verbatim).
    The issue's speed target (>= 50x) is stated against this oracle."""
    b = bytes(data)
    if len(b) % 2:
        b += b"\x00"
    total = initial
    for (word,) in struct.iter_unpack("!H", b):
        s = total + word
        total = (s & 0xFFFF) + (s >> 16)
    return ~total & 0xFFFF


def seq_lt(a: int, b: int) -> bool:
    """``a`` comes before ``b`` in 32-bit sequence space."""
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


class PureWireError(ValueError):
    pass


def _tcp_options(opt: bytes) -> dict:
    out = {"mss": None, "wscale": None, "sack_permitted": False, "sack_blocks": (), "timestamps": None}
    i, n = 0, len(opt)
    while i < n:
        kind = opt[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n:
            raise PureWireError("option overrun")
        ln = opt[i + 1]
        if ln < 2 or i + ln > n:
            raise PureWireError("bad option length")
        if kind == 2:
            if ln != 4:
                raise PureWireError("bad MSS length")
            out["mss"] = _HALF.unpack_from(opt, i + 2)[0]
        elif kind == 3:
            if ln != 3:
                raise PureWireError("bad WS length")
            out["wscale"] = opt[i + 2]
        elif kind == 4:
            if ln != 2:
                raise PureWireError("bad SACK-permitted length")
            out["sack_permitted"] = True
        elif kind == 5:
            if (ln - 2) % 8 or ln < 10:
                raise PureWireError("bad SACK length")
            out["sack_blocks"] = tuple(struct.unpack_from("!II", opt, j) for j in range(i + 2, i + ln, 8))
        elif kind == 8:
            if ln != 10:
                raise PureWireError("bad timestamps length")
            out["timestamps"] = struct.unpack_from("!II", opt, i + 2)
        i += ln
    return out


def parse_ipv4_tcp(buf, verify_checksums: bool = True) -> dict:
    """Parse an IPv4/TCP packet; raises :class:`PureWireError` when it is malformed."""
    n = len(buf)
    if n < 20:
        raise PureWireError("truncated")
    vihl, tos, total, ident, frag, ttl, proto, ipsum, src, dst = _IPV4.unpack_from(buf, 0)
    if vihl >> 4 != 4:
        raise PureWireError("bad version")
    ihl = (vihl & 0xF) * 4
    if ihl < 20:
        raise PureWireError("bad IHL")
    if ihl > n:
        raise PureWireError("header overrun")
    if total < ihl or total > n:
        raise PureWireError("bad total length")
    if verify_checksums and ones_complement_sum(buf[:ihl]) != 0xFFFF:
        raise PureWireError("bad IP checksum")
    if frag & 0x3FFF:
        raise PureWireError("fragment")
    if proto != 6:
        raise PureWireError("unknown protocol")
    seg = buf[ihl:total]
    tlen = total - ihl
    if tlen < 20:
        raise PureWireError("truncated")
    sport, dport, seq, ack, off, flags, win, tsum, urg = _TCP.unpack_from(seg, 0)
    doff = (off >> 4) * 4
    if doff < 20:
        raise PureWireError("bad data offset")
    if doff > tlen:
        raise PureWireError("options overrun")
    if verify_checksums:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, tlen)
        if ones_complement_sum(seg, ones_complement_sum(pseudo)) != 0xFFFF:
            raise PureWireError("bad checksum")
    out = {
        "src": src, "dst": dst, "ttl": ttl, "tos": tos, "ident": ident, "df": bool(frag & 0x4000),
        "src_port": sport, "dst_port": dport, "seq": seq, "ack": ack, "flags": flags, "window": win,
        "urgent": urg, "header_len": doff, "payload": bytes(seg[doff:]),
    }
    out.update(_tcp_options(bytes(seg[20:doff])))
    return out


def build_ipv4_ack(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, window: int,
                   tsval: int, tsecr: int, ident: int = 0) -> bytes:
    """A pure ACK with NOP NOP TS, IPv4 header checksum and TCP checksum filled (52 bytes)."""
    tcp = bytearray(_TCP.pack(sport, dport, seq, ack, 8 << 4, 0x10, window, 0, 0)
                    + _TS.pack(1, 1, 8, 10, tsval, tsecr))
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    _HALF.pack_into(tcp, 16, checksum(tcp, ones_complement_sum(pseudo)))
    ip = bytearray(_IPV4.pack(0x45, 0, 20 + len(tcp), ident, 0x4000, 64, 6, 0, src, dst))
    _HALF.pack_into(ip, 10, checksum(ip))
    return bytes(ip + tcp)
