#!/usr/bin/env python3
"""Fuzz ``tcpfast.wire`` with random and mutated packets.

    python fuzz/fuzz_wire.py --count 10000000 --seed 7          # a long run (progress on stderr)
    python fuzz/fuzz_wire.py --count 200000 --oracle tests/oracle.py   # + differential vs the oracle
    python fuzz/fuzz_wire.py --atheris -atheris_runs=1000000    # coverage-guided, if atheris is installed

Run it with the interpreter whose site-packages holds the built tcpfast (from the checkout, so that
the unbuilt ``tcpfast/`` source tree is not what gets imported: the script drops its own directory's
parent from ``sys.path``). ``tests/test_fuzz.py`` imports this file and runs the same engine.

What goes in. A pool of well-formed packets (IPv4 with and without IP options, IPv6 with chains of
hop-by-hop / routing / destination-options / fragment headers; TCP with every option in many
layouts and payloads up to 1460 bytes; ICMPv4 and ICMPv6 echo, errors quoting a packet, "frag
needed", "packet too big"; the kernel segments of ``tests/fixtures`` when present) is refreshed
from the seeded generator as the run goes. Each buffer is one of: a pool packet as is; a mutated one
(bit flips, interesting bytes, truncation, extension, insertion/deletion, edits of every length
field: IHL, total length, payload length, extension-header lengths, data offset, option lengths;
random option bytes; a new random extension-header chain; version/protocol changes; splices of two
packets), most of them with their checksums recomputed afterwards so that the parser gets past the
checksum into the structure; or plain random bytes.

What is checked, for every buffer (:meth:`Checker.check`):

* nothing raises but ``WireError`` (whose ``reason`` is a ``Reason`` other than ``OK``): not
  ``check_packet``, ``parse_packet`` (both checksum modes), ``parse_ipv4``/``parse_ipv6``,
  ``parse_tcp``/``parse_icmp`` at several offsets, the four views and all their accessors;
* nothing reads outside the buffer: each buffer is also placed right before, or right after, a
  ``PROT_NONE`` guard page, so a read past either end is a SIGSEGV, not a silent wrong answer;
* consistency: ``check_packet(b) == OK`` iff ``parse_packet(b)`` succeeds, and otherwise the
  ``WireError`` carries the same reason; the same without checksums; skipping checksums changes the
  verdict only of packets refused for BAD_CHECKSUM; ``parse_tcp``/``parse_icmp`` of the upper-layer
  bytes give what ``parse_packet`` gave; a view constructs iff its layer parser gets past the lengths,
  and its ``parse()`` agrees with the layer parser; ``TCPView.verify_checksum`` agrees with
  ``check_packet``; ``fill_checksum`` repairs exactly the checksum it fills;
* round trip: a packet that parses is rebuilt by ``build_packet`` (``ValueError`` is allowed only
  for SACK blocks that the emitter cannot fit beside the other options), the rebuild parses with
  checksums verified, and gives the same ``Packet`` (TCP) or the same message (ICMP);
* with ``--oracle``: ``check_packet`` agrees with the pure-Python oracle on every N-th buffer.

Exit status 0 when nothing failed; failures are printed with the buffer as hex.
"""
from __future__ import annotations

import argparse
import collections
import ctypes
import importlib.util
import mmap
import os
import random
import struct
import sys
import time
import traceback
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if __name__ == "__main__":
    # Never import the unbuilt source tree next to this directory.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() not in (_HERE, _HERE.parent)]

from tcpfast import checksum as _ck  # noqa: E402
from tcpfast import wire  # noqa: E402
from tcpfast.wire import (ICMPView, IPv4View, IPv6View, Reason, TCPView,  # noqa: E402
                          WireError)

OK = Reason.OK
FIXTURES = _HERE.parent / "tests" / "fixtures"
MAX_LEN = 1 << 16

_H = struct.Struct("!H")
_TCP = struct.Struct("!HHIIBBHHH")
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")

EXT_HEADERS = (0, 43, 60)          # hop-by-hop, routing, destination options (44: fragment)
INTERESTING = (0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x0A, 0x0F, 0x10, 0x14, 0x28, 0x2C, 0x3A,
               0x3C, 0x40, 0x45, 0x4F, 0x50, 0x5F, 0x60, 0x7F, 0x80, 0xA0, 0xF0, 0xFE, 0xFF)


# =============================================================================================
# Pure helpers: checksums, packet pieces (independent of tcpfast's emitter)
# =============================================================================================

def _sum(data, s: int = 0) -> int:
    n = len(data)
    if n & 1:
        data = bytes(data) + b"\0"
        n += 1
    s += sum(struct.unpack(f"!{n // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _csum(data, s: int = 0) -> int:
    return ~_sum(data, s) & 0xFFFF


def _walk_v6(b, end: int):
    """(upper protocol, offset) after the extension headers, or None when they do not fit."""
    nh, off = b[6], 40
    for _ in range(16):
        if nh not in (0, 43, 44, 60):
            return nh, off
        if off + 8 > end:
            return None
        hl = 8 if nh == 44 else (b[off + 1] + 1) * 8
        if off + hl > end:
            return None
        nh = b[off]
        off += hl
    return None


def l4_bounds(b):
    """(version, upper protocol, start, end, pseudo-header sum base or None) as far as they can be
    made out; None when the IP header itself cannot be read."""
    n = len(b)
    if n < 1:
        return None
    v = b[0] >> 4
    if v == 4 and n >= 20:
        ihl = (b[0] & 15) * 4
        if ihl < 20 or ihl > n:
            return None
        end = max(ihl, min(_H.unpack_from(b, 2)[0], n))
        return 4, b[9], ihl, end, b[12:20]
    if v == 6 and n >= 40:
        end = min(40 + _H.unpack_from(b, 4)[0], n)
        w = _walk_v6(b, end)
        if w is None:
            return None
        return 6, w[0], w[1], max(end, w[1]), b[8:40]
    return None


def fix_checksums(b: bytearray) -> bytearray:
    """Recompute the TCP/ICMP checksum and the IPv4 header checksum wherever the structure allows."""
    lb = l4_bounds(b)
    if lb is None:
        return b
    v, proto, start, end, addrs = lb
    ln = end - start
    if proto == 6 and ln >= 18:
        at = start + 16
        pseudo = _sum(addrs + (struct.pack("!BBH", 0, 6, ln) if v == 4 else struct.pack("!IxxxB", ln, 6)))
    elif (proto == 1 and v == 4 or proto == 58 and v == 6) and ln >= 4:
        at = start + 2
        pseudo = 0 if v == 4 else _sum(addrs + struct.pack("!IxxxB", ln, 58))
    else:
        at = None
    if at is not None:
        b[at:at + 2] = b"\0\0"
        b[at:at + 2] = _H.pack(_csum(b[start:end], pseudo))
    if v == 4:
        b[10:12] = b"\0\0"
        b[10:12] = _H.pack(_csum(b[:start]))
    return b


def tcp_options(rng: random.Random) -> bytes:
    """A well-formed option list (at most 40 bytes) in one of many layouts, padded to 4 bytes."""
    if rng.random() < 0.3:
        # Linux's layouts: SYN (MSS, SACKOK+TS, NOP+WS), data (NOP NOP TS), SACK (NOP NOP TS NOP NOP SACK).
        kind = rng.randrange(4)
        ts = struct.pack("!II", rng.getrandbits(32), rng.getrandbits(32))
        if kind == 0:
            return (b"\x02\x04" + _H.pack(rng.choice((536, 1220, 1440, 1460, 8960, 65535)))
                    + b"\x04\x02\x08\x0a" + ts + bytes([1, 3, 3, rng.randrange(15)]))
        if kind == 1:
            return b"\x01\x01\x08\x0a" + ts
        k = rng.randint(1, 3 if kind == 2 else 4)
        sack = bytes([1, 1, 5, 2 + 8 * k]) + rng.randbytes(8 * k)
        return (b"\x01\x01\x08\x0a" + ts + sack) if kind == 2 else sack
    out = bytearray()
    for _ in range(rng.randrange(7)):
        c = rng.randrange(9)
        if c == 0:
            o = b"\x02\x04" + rng.randbytes(2)
        elif c == 1:
            o = bytes([3, 3, rng.choice((0, 7, 14, 15, 255))])
        elif c == 2:
            o = b"\x04\x02"
        elif c == 3:
            o = b"\x08\x0a" + rng.randbytes(8)
        elif c == 4:
            o = bytes([5, 2 + 8 * (k := rng.randint(1, 4))]) + rng.randbytes(8 * k)
        elif c == 5:
            o = b"\x01" * rng.randint(1, 3)
        elif c == 6:   # an unknown kind, skipped by its length (RFC 9293 MUST-6)
            ln = rng.randint(2, 12)
            o = bytes([rng.choice((6, 7, 9, 19, 28, 29, 30, 34, 69, 253, 254, 255)), ln]) + rng.randbytes(ln - 2)
        elif c == 7:   # EOL then junk the parser must not read as options
            o = b"\x00" + rng.randbytes(rng.randrange(6))
        else:
            o = b""
        if len(out) + len(o) <= 40:
            out += o
    while len(out) % 4:
        out.append(rng.choice((0, 1)))
    return bytes(out)


def bad_tcp_options(rng: random.Random) -> bytes:
    """Option bytes with no respect for the grammar: random kinds and lengths, cut anywhere."""
    out = bytearray()
    n = rng.randrange(41)
    while len(out) < n:
        r = rng.random()
        if r < 0.6:
            kind = rng.choice((0, 1, 2, 3, 4, 5, 8, rng.randrange(256)))
            ln = rng.choice((0, 1, 2, 3, 4, 8, 10, 18, 26, 34, 42, rng.randrange(256)))
            out += bytes([kind, ln]) + rng.randbytes(max(0, min(ln - 2, 40)))
        else:
            out += rng.randbytes(rng.randint(1, 4))
    return bytes(out[:n])


def tcp_segment(rng: random.Random, options: bytes | None = None, payload: bytes | None = None) -> bytes:
    opts = tcp_options(rng) if options is None else options
    if payload is None:
        r = rng.random()
        payload = b"" if r < 0.4 else rng.randbytes(rng.randrange(64) if r < 0.9 else rng.randrange(1461))
    doff = (20 + len(opts) + 3) // 4
    flags = rng.choice((0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, 0xC2, rng.randrange(256)))
    return _TCP.pack(rng.randrange(65536), rng.randrange(65536), rng.getrandbits(32), rng.getrandbits(32),
                     doff << 4 | rng.choice((0, 0, 0, 1, rng.randrange(16))), flags, rng.randrange(65536), 0,
                     rng.choice((0, 0, rng.randrange(65536)))) + opts + payload


def ipv4(l4: bytes, proto: int, rng: random.Random, opts: bytes = b"", frag: int | None = None) -> bytearray:
    ihl = 5 + len(opts) // 4
    if frag is None:
        frag = rng.choice((0x4000, 0x4000, 0x0000))
    return bytearray(_IP4.pack(0x40 | ihl, rng.choice((0, 0, 0x10, 0x02, 0x03, rng.randrange(256))),
                               ihl * 4 + len(l4), rng.randrange(65536), frag, rng.randint(1, 255),
                               proto, 0, rng.randbytes(4), rng.randbytes(4)) + opts + l4)


def ext_chain(rng: random.Random, upper: int, count: int, valid: bool = True) -> tuple[int, bytes]:
    """A chain of ``count`` IPv6 extension headers in front of ``upper``: (first next header, bytes)."""
    kinds = [rng.choice(EXT_HEADERS + (44,)) for _ in range(count)]
    out = b""
    nh = upper
    for kind in reversed(kinds):
        if kind == 44:
            if valid:
                fo = rng.choice((0, 0, 1))                   # atomic fragment, or the first one
            else:
                fo = rng.randrange(65536)
            body = bytes([nh, 0]) + _H.pack(fo) + rng.randbytes(4)
        else:
            ln = rng.choice((0, 0, 1, 2, rng.randrange(8)))
            body = bytes([nh, ln]) + rng.randbytes(6 + 8 * ln)
        out = body + out
        nh = kind
    if not valid and out and rng.random() < 0.5:           # then break a length or a next header
        b = bytearray(out)
        i = rng.randrange(len(b))
        b[i] = rng.choice((0, 6, 44, 58, 59, 60, 255, rng.randrange(256)))
        out = bytes(b)
    return nh, out


def ipv6(l4: bytes, proto: int, rng: random.Random, ext: tuple[int, bytes] | None = None) -> bytearray:
    nh, chain = (proto, b"") if ext is None else ext
    vtf = 6 << 28 | rng.choice((0, 0, rng.randrange(256))) << 20 | rng.choice((0, rng.randrange(1 << 20)))
    return bytearray(_IP6.pack(vtf, len(chain) + len(l4), nh, rng.randint(1, 255), rng.randbytes(16),
                               rng.randbytes(16)) + chain + l4)


def icmp_message(rng: random.Random, v6: bool) -> bytes:
    """An ICMP/ICMPv6 message (checksum left 0): echo, an error quoting a packet, or anything."""
    r = rng.random()
    if r < 0.35:
        t = (128, 129) if v6 else (8, 0)
        return bytes([rng.choice(t), 0, 0, 0]) + rng.randbytes(4) + rng.randbytes(rng.randrange(64))
    if r < 0.85:
        if v6:
            t, c = rng.choice(((1, rng.randrange(8)), (2, 0), (3, rng.randrange(2)), (4, rng.randrange(4))))
        else:
            t, c = rng.choice(((3, rng.randrange(16)), (3, 4), (11, rng.randrange(2)), (12, 0), (4, 0), (5, 1)))
        inner_v6 = v6 if rng.random() < 0.9 else not v6
        seg = tcp_segment(rng)
        inner = ipv6(seg, 6, rng, ext_chain(rng, 6, rng.choice((0, 0, 1, 2)))) if inner_v6 \
            else ipv4(seg, rng.choice((6, 6, 17)), rng)
        fix_checksums(inner)
        quote = bytes(inner[:rng.choice((28, 48, 68, len(inner), rng.randrange(len(inner) + 1)))])
        return bytes([t, c, 0, 0]) + rng.randbytes(4) + quote
    return bytes([rng.randrange(256), rng.randrange(256), 0, 0]) + rng.randbytes(4 + rng.randrange(40))


def valid_packet(rng: random.Random) -> bytearray:
    """A well-formed IPv4 or IPv6 packet carrying TCP or ICMP, checksums right."""
    v6 = rng.random() < 0.45
    if rng.random() < 0.7:
        l4, proto = tcp_segment(rng), 6
    else:
        l4, proto = icmp_message(rng, v6), (58 if v6 else 1)
    if v6:
        count = rng.choice((0, 0, 0, 1, 2, 3, 8))
        pkt = ipv6(l4, proto, rng, ext_chain(rng, proto, count) if count else None)
    else:
        opts = b""
        if rng.random() < 0.15:
            opts = rng.choice((b"\x01\x01\x01\x00", b"\x94\x04\x00\x00", rng.randbytes(4 * rng.randint(1, 10))))
        pkt = ipv4(l4, proto, rng, opts)
    return fix_checksums(pkt)


# =============================================================================================
# Mutations
# =============================================================================================

def _tcp_start(b):
    lb = l4_bounds(b)
    if lb is None or lb[1] != 6 or lb[3] - lb[2] < 20:
        return None
    return lb[2]


def m_bitflip(b: bytearray, rng):
    if b:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    return b


def m_interesting(b: bytearray, rng):
    if b:
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(min(len(b), 80)) if rng.random() < 0.8 else rng.randrange(len(b))
            b[i] = rng.choice(INTERESTING)
    return b


def m_truncate(b: bytearray, rng):
    if b:
        cut = rng.choice((rng.randrange(len(b)), rng.randrange(min(len(b), 72)), len(b) - rng.randint(1, 8)))
        del b[max(cut, 0):]
    return b


def m_extend(b: bytearray, rng):
    b += rng.randbytes(rng.choice((1, 2, 7, 8, 40, rng.randrange(200))))
    return b


def m_insert_delete(b: bytearray, rng):
    if not b:
        return b
    i = rng.randrange(len(b))
    if rng.random() < 0.5:
        b[i:i] = rng.randbytes(rng.randint(1, 16))
    else:
        del b[i:i + rng.randint(1, 16)]
    return b


def m_length_field(b: bytearray, rng):
    """Edit one of the length fields to a boundary or random value."""
    if len(b) < 1:
        return b
    v = b[0] >> 4
    fields = []
    if v == 4 and len(b) >= 20:
        fields += ["ihl", "total"]
    if v == 6 and len(b) >= 40:
        fields += ["plen", "ext"]
    t = _tcp_start(b)
    if t is not None:
        fields += ["doff", "optlen"]
    if not fields:
        return m_bitflip(b, rng)
    f = rng.choice(fields)
    n = len(b)
    if f == "ihl":
        b[0] = 0x40 | rng.choice((0, 1, 4, 5, 6, 15, rng.randrange(16)))
    elif f == "total":
        b[2:4] = _H.pack(rng.choice((0, 19, 20, 39, 40, n - 1, n, n + 1, 65535, rng.randrange(65536))) & 0xFFFF)
    elif f == "plen":
        b[4:6] = _H.pack(rng.choice((0, 7, 8, 19, 20, n - 41, n - 40, n - 39, 65535, rng.randrange(65536))) & 0xFFFF)
    elif f == "ext":
        if n > 41 and b[6] in (0, 43, 60, 44):
            b[41] = rng.choice((0, 1, 2, 5, 255, rng.randrange(256)))
        else:
            b[6] = rng.choice((0, 43, 44, 60, 59, 17))
    elif f == "doff":
        b[t + 12] = (rng.choice((0, 4, 5, 6, 10, 15, rng.randrange(16))) << 4) | (b[t + 12] & 15)
    else:
        hl = (b[t + 12] >> 4) * 4
        if hl > 21 and t + hl <= n:
            i = t + 20 + rng.randrange(hl - 20)
            b[i] = rng.choice((0, 1, 2, 3, 4, 10, 18, 34, 40, 41, 255, rng.randrange(256)))
    return b


def m_options(b: bytearray, rng):
    """Replace the TCP options with random bytes, the data offset set to cover them (or not)."""
    t = _tcp_start(b)
    if t is None:
        return m_interesting(b, rng)
    hl = (b[t + 12] >> 4) * 4
    if hl < 20 or t + hl > len(b):
        hl = 20
    opts = bad_tcp_options(rng) if rng.random() < 0.7 else tcp_options(rng)
    pad = (-len(opts)) % 4
    opts += bytes(rng.choice((0, 1)) for _ in range(pad))
    b[t + 20:t + hl] = opts
    if rng.random() < 0.9:
        b[t + 12] = ((20 + len(opts)) // 4) << 4 | (b[t + 12] & 15)
    _relength(b)
    return b


def _relength(b: bytearray):
    """Make the IP length field cover the buffer again after a structural edit."""
    if len(b) >= 20 and b[0] >> 4 == 4:
        b[2:4] = _H.pack(min(len(b), 65535))
    elif len(b) >= 40 and b[0] >> 4 == 6:
        b[4:6] = _H.pack(min(len(b) - 40, 65535))


def m_ext_chain(b: bytearray, rng):
    """Put a random IPv6 extension-header chain (valid or not, up to 12 headers) in front of the
    upper layer of this packet, or of a fresh TCP segment."""
    lb = l4_bounds(b)
    if lb is not None and lb[1] in (6, 58):
        l4, proto = bytes(b[lb[2]:lb[3]]), lb[1]
    else:
        l4, proto = tcp_segment(rng), 6
    count = rng.choice((1, 2, 3, 7, 8, 9, 12, rng.randrange(13)))
    return ipv6(l4, proto, rng, ext_chain(rng, proto, count, valid=rng.random() < 0.5))


def m_protocol(b: bytearray, rng):
    if not b:
        return b
    if rng.random() < 0.3:
        b[0] = (rng.choice((0, 4, 5, 6, 7, 15)) << 4) | (b[0] & 15)
    elif b[0] >> 4 == 4 and len(b) >= 20:
        b[9] = rng.choice((0, 1, 6, 17, 58, 255))
    elif len(b) >= 40:
        b[6] = rng.choice((0, 1, 6, 17, 43, 44, 58, 59, 60, 255))
    return b


def m_fragment(b: bytearray, rng):
    if len(b) >= 20 and b[0] >> 4 == 4:
        b[6:8] = _H.pack(rng.choice((0x2000, 0x0001, 0x3FFF, 0x8000, 0x4001, rng.randrange(65536))))
        return b
    lb = l4_bounds(b)
    if lb is not None and lb[0] == 6:
        return ipv6(bytes(b[lb[2]:lb[3]]), lb[1], rng, ext_chain(rng, lb[1], 1, valid=False))
    return m_bitflip(b, rng)


MUTATIONS = (m_bitflip, m_interesting, m_truncate, m_extend, m_insert_delete, m_length_field,
             m_length_field, m_options, m_options, m_ext_chain, m_protocol, m_fragment)


def load_fixture_packets() -> list:
    out = []
    if FIXTURES.is_dir():
        for f in sorted(FIXTURES.glob("*.hex")):
            text = "".join(line for line in f.read_text().splitlines() if not line.startswith("#"))
            try:
                out.append(bytes.fromhex(text))
            except ValueError:
                pass
    return out


class Generator:
    """Seeded stream of fuzz buffers, each with the name of the recipe that made it."""

    POOL = 256

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.fixtures = load_fixture_packets()
        self.pool = [bytes(valid_packet(self.rng)) for _ in range(self.POOL)] + self.fixtures
        self.n = 0

    def __iter__(self):
        return self

    def __next__(self):
        rng = self.rng
        self.n += 1
        if self.n % 64 == 0:    # keep the pool fresh
            self.pool[rng.randrange(self.POOL)] = bytes(valid_packet(rng))
        r = rng.random()
        if r < 0.07:
            b = bytearray(rng.randbytes(rng.choice((rng.randrange(20), rng.randrange(100)))))
            if b and rng.random() < 0.7:
                b[0] = rng.choice((0x45, 0x46, 0x4F, 0x60, 0x40)) if rng.random() < 0.8 else b[0]
            return "random", bytes(b)
        base = bytearray(rng.choice(self.pool))
        if r < 0.17:
            return "valid", bytes(base)
        if r < 0.22:
            other = rng.choice(self.pool)
            cut = rng.randrange(len(base) + 1)
            b = base[:cut] + other[rng.randrange(len(other) + 1):]
            if rng.random() < 0.5:
                _relength(b)
                fix_checksums(b)
            return "splice", bytes(b)
        names = []
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            m = rng.choice(MUTATIONS)
            names.append(m.__name__[2:])
            base = m(base, rng)
        if rng.random() < 0.65:
            fix_checksums(base)
            names.append("fixed")
        return "+".join(names), bytes(base[:MAX_LEN])


# =============================================================================================
# Guard pages: a read one byte outside the buffer faults
# =============================================================================================

class GuardedBuffer:
    """An anonymous mapping ``guard | data (64 KiB) | guard`` with both guards ``PROT_NONE``.

    :meth:`place` copies a buffer so that it ends at the upper guard (``tail=True``) or starts at the
    lower one, and returns a writable memoryview of exactly those bytes.
    """

    def __init__(self, size: int = MAX_LEN):
        page = mmap.PAGESIZE
        self.size = (size + page - 1) // page * page
        self.mm = mmap.mmap(-1, self.size + 2 * page)
        holder = ctypes.c_char.from_buffer(self.mm)
        addr = ctypes.addressof(holder)
        del holder
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        for at in (addr, addr + page + self.size):
            if libc.mprotect(at, page, mmap.PROT_NONE if hasattr(mmap, "PROT_NONE") else 0) != 0:
                raise OSError(ctypes.get_errno(), "mprotect")
        self.data = memoryview(self.mm)[page:page + self.size]

    def place(self, b: bytes, tail: bool) -> memoryview:
        n = len(b)
        start = self.size - n if tail else 0
        mv = self.data[start:start + n]
        mv[:] = b
        return mv


# =============================================================================================
# The checks
# =============================================================================================

class Failure(AssertionError):
    pass


def _expect(cond, what):
    """Raise Failure(what) unless cond; ``what`` may be a callable, called only on failure."""
    if not cond:
        raise Failure(what() if callable(what) else what)


def _reason_of(fn, *args, **kw):
    """(result, None) or (None, reason) of a call that may raise WireError only."""
    try:
        return fn(*args, **kw), None
    except WireError as e:
        if type(e.reason) is not Reason or e.reason is OK:
            raise Failure(f"WireError with reason {e.reason!r}") from e
        return None, e.reason


def _read_all(view, names):
    return [getattr(view, n) for n in names]


_TCPV = ("src_port", "dst_port", "seq", "ack", "header_len", "flags", "window", "checksum", "urgent",
         "options", "payload", "readonly")
_IP4V = ("version", "header_len", "tos", "total_length", "ident", "dont_fragment", "more_fragments",
         "fragment_offset", "ttl", "protocol", "checksum", "src", "dst", "options", "payload")
_IP6V = ("version", "traffic_class", "flow_label", "payload_length", "next_header", "hop_limit", "src",
         "dst", "protocol", "header_len", "is_fragment", "payload")
_ICMPV = ("type", "code", "checksum", "rest", "ident", "seq", "body")


class Checker:
    """Runs every check on one buffer; raises :class:`Failure` (or whatever tcpfast raised)."""

    def __init__(self, oracle=None, oracle_every: int = 0):
        self.guard = GuardedBuffer()
        self.tail = False
        self.reasons = collections.Counter()
        self.stats = collections.Counter()
        self.oracle = oracle
        self.oracle_every = oracle_every
        self.count = 0

    def check(self, b: bytes) -> None:
        self.count += 1
        self.tail = not self.tail
        n = len(b)
        r = wire.check_packet(b)
        r_nv = wire.check_packet(b, verify_checksums=False)
        _expect(type(r) is Reason and type(r_nv) is Reason, "check_packet must return a Reason")
        self.reasons[r.name] += 1

        mv = self.guard.place(b, self.tail)
        _expect(wire.check_packet(mv) is r, "check_packet differs between bytes and a memoryview")

        # check_packet OK iff parse_packet succeeds; the WireError has the same reason.
        p, pr = _reason_of(wire.parse_packet, mv)
        _expect((p is not None) == (r is OK), lambda: f"check_packet says {r.name} but parse_packet "
                + ("succeeded" if p is not None else f"raised {pr.name}"))
        _expect(p is not None or pr is r, lambda: f"parse_packet raised {pr!r}, check_packet said {r.name}")
        q, qr = _reason_of(wire.parse_packet, mv, verify_checksums=False)
        _expect((q is not None) == (r_nv is OK) and (q is not None or qr is r_nv),
                lambda: f"verify_checksums=False: check_packet {r_nv.name}, parse_packet {qr!r}")
        # Checksums are checked after the lengths and before the options: skipping them changes
        # only the verdict of packets refused for a bad checksum.
        if r is OK:
            _expect(r_nv is OK and q == p and q.payload == p.payload, "OK with checksums, not without")
        elif r is not Reason.BAD_CHECKSUM:
            _expect(r_nv is r, lambda: f"{r.name} with checksums but {r_nv.name} without")

        if self.oracle is not None and self.oracle_every and self.count % self.oracle_every == 0:
            self._oracle(b, r, r_nv)

        # Layer parsers over the whole buffer.
        ip4, ip4r = _reason_of(wire.parse_ipv4, mv, verify_checksum=False)
        _reason_of(wire.parse_ipv4, mv)
        ip6, ip6r = _reason_of(wire.parse_ipv6, mv)
        self._ip_views(mv, ip4, ip4r, ip6, ip6r)

        # The upper layer at the offsets a confused caller (or the real header) would use.
        offsets = {(0, 20, 40)[self.count % 3]}
        if n and b[0] >> 4 == 4:
            offsets.add((b[0] & 15) * 4)
        elif n >= 40:
            offsets.add(40 + (self.count & 1) * 8)
        if q is not None:
            offsets.add(q.ip.header_len)
        for off in offsets:
            if off <= n:
                self._l4(mv[off:])
        if q is not None:
            self._packet(b, mv, p, q, r)

    # --- pieces ---

    def _ip_views(self, mv, ip4, ip4r, ip6, ip6r):
        v, vr = _reason_of(IPv4View, mv)
        _expect((v is None) == (ip4 is None), lambda: f"IPv4View {vr!r} vs parse_ipv4 {ip4r!r}")
        if v is not None:
            f = _read_all(v, _IP4V)
            _expect(f[1] == ip4.header_len and f[9] == ip4.protocol and f[11] == ip4.src, "IPv4View fields")
            _expect(v.parse(verify_checksum=False) == ip4, "IPv4View.parse()")
            _expect(len(f[14]) == ip4.payload_len, "IPv4View.payload length")
            v.verify_checksum()
            self.stats["ipv4view"] += 1
            v.release()
        v, vr = _reason_of(IPv6View, mv)
        _expect((v is None) == (ip6 is None), lambda: f"IPv6View {vr!r} vs parse_ipv6 {ip6r!r}")
        if v is not None:
            f = _read_all(v, _IP6V)
            got = v.parse()
            _expect(got == ip6 and vars(got) == vars(ip6), "IPv6View.parse()")
            _expect(f[9] == ip6.header_len and f[8] == ip6.protocol and len(f[11]) == ip6.payload_len,
                    "IPv6View fields")
            self.stats["ipv6view"] += 1
            v.release()

    def _l4(self, seg):
        t, tr = _reason_of(wire.parse_tcp, seg)
        v, vr = _reason_of(TCPView, seg)
        if v is None:
            _expect(t is None and tr is vr, lambda: f"TCPView {vr!r} but parse_tcp {tr!r}")
        else:
            f = _read_all(v, _TCPV)
            _expect(len(f[9]) + len(f[10]) + 20 == len(seg), "TCPView options + payload")
            vt, vtr = _reason_of(v.parse)
            _expect(vt == t and vtr is tr, lambda: f"TCPView.parse() {vtr!r} vs parse_tcp {tr!r}")
            if t is not None:
                _expect(vars(vt) == vars(t), "TCPView.parse() fields")
                _expect((t.src_port, t.dst_port, t.seq, t.ack, t.window) == tuple(f[i] for i in (0, 1, 2, 3, 6)),
                        "TCPView accessors vs parse_tcp")
            v.verify_checksum(0x1234)
            v.release()
        for version in (4, 6):
            m, mr = _reason_of(wire.parse_icmp, seg, version)
            v, vr = _reason_of(ICMPView, seg)
            _expect((v is None) == (m is None), lambda: f"ICMPView {vr!r} vs parse_icmp {mr!r}")
            if v is not None:
                f = _read_all(v, _ICMPV)
                _expect((f[0], f[1], bytes(f[6])) == (m.type, m.code, m.data), "ICMPView fields")
                vm = v.parse(version)
                _expect(vm == m and vm.quoted == m.quoted, "ICMPView.parse()")
                v.release()

    def _packet(self, b, mv, p, q, r):
        """A packet that parses (at least without checksums)."""
        hl = q.ip.header_len
        l4 = mv[hl:hl + q.ip.payload_len]
        if q.tcp is not None:
            self.stats["tcp"] += 1
            t = wire.parse_tcp(l4)
            _expect(t == q.tcp and vars(t) == vars(q.tcp), "parse_tcp of the segment vs parse_packet")
            _expect(bytes(l4[t.header_len:]) == q.payload, "payload")
            if q.ip.version == 4:
                pseudo = _ck.pseudo_header_sum_ipv4(q.ip.src, q.ip.dst, 6, len(l4))
            else:
                pseudo = _ck.pseudo_header_sum_ipv6(q.ip.src, q.ip.dst, 6, len(l4))
            with TCPView(l4) as tv:
                _expect(tv.verify_checksum(pseudo) == (r is OK), "TCPView.verify_checksum vs check_packet")
        else:
            self.stats["icmp"] += 1
            m = wire.parse_icmp(l4, q.ip.version)
            _expect(m == q.icmp and m.quoted == q.icmp.quoted, "parse_icmp of the message vs parse_packet")
        # Round trip through the emitter.
        try:
            out = wire.build_packet(q)
        except ValueError as e:
            _expect(q.tcp is not None and len(q.tcp.sack_blocks) > 0 and "SACK" in str(e),
                    lambda e=e: f"build_packet refused a parsed packet: {e}")
            self.stats["sack_does_not_fit"] += 1
        else:
            _expect(len(out) == wire.packet_len(q), "packet_len")
            p2, p2r = _reason_of(wire.parse_packet, out)
            _expect(p2 is not None, lambda: f"the rebuilt packet does not parse: {p2r!r} ({out.hex()})")
            if q.tcp is not None:
                _expect(p2 == q and p2.payload == q.payload, lambda: f"round trip changed the packet: {q} -> {p2}")
            else:
                a, c = q.icmp, p2.icmp
                _expect((a.type, a.code, a.data, a.quoted) == (c.type, c.code, c.data, c.quoted),
                        lambda: f"round trip changed the message: {a} -> {c}")
                _expect(wire.build_packet(p2) == out, "build is not idempotent")
            self.stats["round_trip"] += 1
        # fill_checksum repairs what it fills (mutates the guarded copy: do it last).
        if q.tcp is not None and r is Reason.BAD_CHECKSUM:
            with TCPView(l4) as tv:
                tv.fill_checksum(pseudo)
            _expect(wire.check_packet(mv) is OK, "TCPView.fill_checksum did not repair the packet")
            self.stats["fill_checksum"] += 1

    def _oracle(self, b, r, r_nv):
        o = self.oracle
        ro = o.check_packet(b)
        _expect(int(ro) == int(r), lambda: f"oracle says {ro.name}, check_packet {r.name}")
        ro = o.check_packet(b, verify_checksums=False)
        _expect(int(ro) == int(r_nv), lambda: f"verify_checksums=False: oracle says {ro.name}, check_packet {r_nv.name}")
        self.stats["oracle"] += 1


# =============================================================================================
# Driver
# =============================================================================================

class Result:
    def __init__(self):
        self.count = 0
        self.kinds = collections.Counter()
        self.failures = []          # (index, recipe, hex, error text)
        self.seconds = 0.0
        self.checker = None

    def summary(self) -> str:
        c = self.checker
        top = ", ".join(f"{k}={v}" for k, v in c.reasons.most_common())
        stats = ", ".join(f"{k}={v}" for k, v in sorted(c.stats.items()))
        rate = self.count / self.seconds if self.seconds else 0
        return (f"{self.count} buffers in {self.seconds:.1f}s ({rate:,.0f}/s), {len(self.failures)} failures\n"
                f"  check_packet: {top}\n  deeper checks: {stats}")


def run(count: int, seed: int, *, oracle=None, oracle_every: int = 0, max_failures: int = 10,
        progress: float = 0.0) -> Result:
    """Push ``count`` buffers from ``Generator(seed)`` through :class:`Checker`."""
    res = Result()
    gen = Generator(seed)
    chk = res.checker = Checker(oracle, oracle_every)
    t0 = last = time.monotonic()
    for i in range(count):
        kind, b = next(gen)
        res.kinds[kind.split("+")[0]] += 1
        try:
            chk.check(b)
        except Exception as e:  # noqa: BLE001 - anything but WireError escaping is the finding
            res.failures.append((i, kind, b.hex(), "".join(traceback.format_exception_only(type(e), e)).strip()
                                 + ("" if isinstance(e, Failure) else "\n" + traceback.format_exc())))
            if len(res.failures) >= max_failures:
                res.count = i + 1
                break
        res.count = i + 1
        if progress and time.monotonic() - last >= progress:
            last = time.monotonic()
            print(f"  {i + 1:,} buffers, {len(res.failures)} failures, {(i + 1) / (last - t0):,.0f}/s",
                  file=sys.stderr, flush=True)
    res.seconds = time.monotonic() - t0
    return res


def load_oracle(path: str | os.PathLike):
    spec = importlib.util.spec_from_file_location("oracle", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _atheris(argv):
    import atheris  # optional: pip install atheris
    chk = Checker()

    def one_input(data: bytes):
        chk.check(bytes(data))

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Fuzz tcpfast.wire with random and mutated packets.")
    ap.add_argument("--count", type=int, default=1_000_000, help="buffers to check (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=None, help="generator seed (default: random, printed)")
    ap.add_argument("--oracle", metavar="PATH", help="also compare check_packet with this oracle module "
                    "(e.g. tests/oracle.py)")
    ap.add_argument("--oracle-every", type=int, default=10, metavar="N", help="... on every N-th buffer")
    ap.add_argument("--max-failures", type=int, default=10)
    ap.add_argument("--atheris", action="store_true", help="coverage-guided fuzzing with atheris "
                    "(remaining arguments go to libFuzzer)")
    args, rest = ap.parse_known_args(argv)
    if args.atheris:
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("atheris is not installed (pip install atheris)", file=sys.stderr)
            return 2
        _atheris([sys.argv[0]] + rest)
        return 0
    if rest:
        ap.error(f"unrecognised arguments: {' '.join(rest)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    oracle = load_oracle(args.oracle) if args.oracle else None
    print(f"fuzz_wire: tcpfast from {Path(wire.__file__).parent}, seed {seed}, count {args.count:,}",
          file=sys.stderr)
    res = run(args.count, seed, oracle=oracle, oracle_every=args.oracle_every if oracle else 0,
              max_failures=args.max_failures, progress=10.0)
    print(res.summary())
    for i, kind, hx, err in res.failures:
        print(f"\nFAILURE at buffer {i} ({kind}): {err}\n  {hx}")
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
