"""Pure-Python baselines for the benchmarks: what the compiled core is measured against.

Benchmarks do not import from ``tests/`` (the oracle there is a test's tool), so this module keeps
its own small, straightforward implementations, written the way a careful pure-Python stack would
write them (``struct``, ``int``; no C code beyond the standard library's):

* :func:`checksum`: RFC 1071 over 16-bit words with ``struct.unpack`` and ``sum``; also
  :func:`checksum_wordloop`, the word-at-a-time loop of ``tests/oracle.py`` (the issue states its
  speed target against it), and :func:`checksum_bigint`, the fastest pure form we know;
* :func:`parse_ipv4_tcp`: IPv4 + TCP header parse with all the checks the C parser makes (lengths,
  IHL, data offset, fragments, options, both checksums), returning a dict of fields;
* :func:`build_ipv4_tcp`: an IPv4 + TCP segment (NOP NOP TS, optional payload) with both
  checksums, and :func:`build_ipv4_ack`, the pure ACK it builds without payload;
* :func:`seq_lt` and the rest of RFC 9293 §3.4's sequence arithmetic (``seq_le`` ... ``seq_sub``),
  with :func:`seq_lt_rfc1982`, RFC 1982 §3.2's definition written out, to check them against;
* :class:`Scoreboard`: the sender's SACK scoreboard of RFC 6675 §3-4 as a sorted list of
  ranges (insert SACK blocks, release below the cumulative ACK).

The connection-level oracle (one TCB in ESTABLISHED, for the segment and retransmission-queue
benchmarks) is in ``pure_tcb.py``.
"""
from __future__ import annotations

import struct
from typing import Iterable, Tuple

__all__ = ["checksum", "checksum_wordloop", "checksum_bigint", "ones_complement_sum", "parse_ipv4_tcp",
           "build_ipv4_tcp", "build_ipv4_ack", "seq_lt", "seq_le", "seq_gt", "seq_ge", "seq_between",
           "seq_in_window", "seq_add", "seq_sub", "seq_lt_rfc1982", "Scoreboard", "PureWireError"]

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


# --- sequence numbers (RFC 9293 §3.4, RFC 1982) ------------------------------------------------
#
# Modular forms, as a pure-Python stack writes them: ``(a - b) & M`` is the distance from b to a
# in [0, 2**32), and "a before b" is that distance read as a negative 32-bit integer. For the one
# pair RFC 1982 leaves undefined (exactly 2**31 apart) they answer as Linux's before()/after() and
# tcpfast._seq do: each number is "before" the other.

_M = 0xFFFFFFFF
_H = 0x80000000


def seq_lt(a: int, b: int) -> bool:
    """``a`` comes before ``b`` in 32-bit sequence space."""
    return ((a - b) & 0xFFFFFFFF) >= 0x80000000


def seq_le(a: int, b: int) -> bool:
    """``a`` is ``b`` or comes before it."""
    d = (a - b) & _M
    return d == 0 or d >= _H


def seq_gt(a: int, b: int) -> bool:
    """``a`` comes after ``b``."""
    return ((b - a) & _M) >= _H


def seq_ge(a: int, b: int) -> bool:
    """``a`` is ``b`` or comes after it."""
    d = (b - a) & _M
    return d == 0 or d >= _H


def seq_between(lo: int, x: int, hi: int) -> bool:
    """lo =< x =< hi, walking forward from ``lo`` (both ends included)."""
    return ((x - lo) & _M) <= ((hi - lo) & _M)


def seq_in_window(x: int, start: int, size: int) -> bool:
    """start =< x < start + size: the window of RFC 9293 §3.10.7.4's acceptability test."""
    return ((x - start) & _M) < size


def seq_add(a: int, n: int) -> int:
    """a + n modulo 2**32."""
    return (a + n) & _M


def seq_sub(a: int, b: int) -> int:
    """The signed distance a - b, in [-2**31, 2**31)."""
    return ((a - b + _H) & _M) - _H


def seq_lt_rfc1982(a: int, b: int) -> bool:
    """RFC 1982 §3.2 verbatim (SERIAL_BITS = 32): "s1 is said to be less than s2 if, and only if,
    s1 is not equal to s2, and (i1 < i2 and i2 - i1 < 2^(SERIAL_BITS - 1)) or (i1 > i2 and
    i1 - i2 > 2^(SERIAL_BITS - 1))". Undefined (false both ways) for a pair 2**31 apart. The
    benchmarks check the fast forms against it; it is not itself timed."""
    return (a < b and b - a < _H) or (a > b and a - b > _H)


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


def build_ipv4_tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
                   window: int, tsval: int, tsecr: int, payload: bytes = b"", ident: int = 0,
                   ttl: int = 64) -> bytes:
    """An IPv4 (DF) + TCP segment with NOP NOP TS and ``payload``, both checksums filled."""
    tcp = bytearray(_TCP.pack(sport, dport, seq, ack, 8 << 4, flags, window, 0, 0)
                    + _TS.pack(1, 1, 8, 10, tsval, tsecr))
    tcp += payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    _HALF.pack_into(tcp, 16, checksum(tcp, ones_complement_sum(pseudo)))
    ip = bytearray(_IPV4.pack(0x45, 0, 20 + len(tcp), ident, 0x4000, ttl, 6, 0, src, dst))
    _HALF.pack_into(ip, 10, checksum(ip))
    return bytes(ip + tcp)


def build_ipv4_ack(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, window: int,
                   tsval: int, tsecr: int, ident: int = 0) -> bytes:
    """A pure ACK with NOP NOP TS, IPv4 header checksum and TCP checksum filled (52 bytes)."""
    return build_ipv4_tcp(src, dst, sport, dport, seq, ack, 0x10, window, tsval, tsecr, b"", ident)


# --- the sender's SACK scoreboard (RFC 6675 §3-4) ---------------------------------------------

class Scoreboard:
    """The SACKed ranges above SND.UNA, as a list of [start, end) kept in sequence order, merged
    when they overlap or touch, and bounded like tcpfast's (``max_ranges``; a block that would
    need one more range is ignored: SACK is advisory, RFC 2018 §3).

    The same operations as :class:`tcpfast._rtx.Scoreboard`: :meth:`update` records one ACK's
    SACK blocks clipped to [SND.UNA, SND.NXT) (RFC 6675 §4 Update(); D-SACK and never-sent octets
    carry nothing) and returns the bytes newly SACKed; :meth:`advance` releases what the
    cumulative ACK now covers."""

    __slots__ = ("ranges", "max_ranges")

    def __init__(self, snd_una: int, max_ranges: int = 16) -> None:
        # ``snd_una`` is not needed by an empty set; taken for the same signature as tcpfast's.
        self.ranges: list = []          # [start, end] lists, in sequence order
        self.max_ranges = max_ranges

    def advance(self, snd_una: int) -> None:
        """Forget the SACKed octets below ``snd_una`` (now cumulatively acknowledged)."""
        r = self.ranges
        k = 0
        while k < len(r) and seq_le(r[k][1], snd_una):
            k += 1
        if k:
            del r[:k]
        if r and seq_lt(r[0][0], snd_una):
            r[0][0] = snd_una

    def _add(self, start: int, end: int) -> int:
        """Insert [start, end), merging every range it overlaps or touches; bytes newly held."""
        r = self.ranges
        n = len(r)
        i = 0
        while i < n and seq_lt(r[i][1], start):
            i += 1
        j = i
        held = 0
        while j < n and seq_le(r[j][0], end):
            held += (r[j][1] - r[j][0]) & _M
            j += 1
        if i == j:
            if n >= self.max_ranges:
                return 0
            r.insert(i, [start, end])
            return (end - start) & _M
        s = start if seq_lt(start, r[i][0]) else r[i][0]
        e = r[j - 1][1] if seq_lt(end, r[j - 1][1]) else end
        r[i] = [s, e]
        del r[i + 1:j]
        return ((e - s) & _M) - held

    def update(self, snd_una: int, snd_nxt: int, blocks: Iterable[Tuple[int, int]]) -> int:
        """Record the SACK blocks of one ACK; returns the number of bytes newly SACKed."""
        self.advance(snd_una)
        if not seq_lt(snd_una, snd_nxt):
            return 0
        win = (snd_nxt - snd_una) & _M
        added = 0
        for left, right in blocks:
            if not seq_lt(left, right):
                continue
            lo = seq_sub(left, snd_una)
            hi = lo + ((right - left) & _M)
            if lo < 0:
                lo = 0
            if hi > win:
                hi = win
            if lo >= hi:
                continue
            added += self._add((snd_una + lo) & _M, (snd_una + hi) & _M)
        return added

    @property
    def sacked(self) -> list:
        return [(s, e) for s, e in self.ranges]
