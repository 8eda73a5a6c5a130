"""``tcpfast demo``: build the SYN a Linux kernel sends, parse it back with the compiled parser,
and time the compiled checksum against a pure-Python one on this machine. Needs no privilege."""
from __future__ import annotations

import argparse
import os
import struct
import sys
import time


def _pure_checksum(data: bytes) -> int:
    """RFC 1071 in plain Python, for the comparison only."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _rate(fn, data: bytes, min_time: float = 0.2) -> float:
    """Bytes per second of ``fn(data)``, timed over at least ``min_time`` seconds."""
    n, start = 0, time.perf_counter()
    while True:
        fn(data)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return n * len(data) / elapsed


def demo(out=sys.stdout) -> int:
    from tcpfast import checksum, wire

    syn = wire.Packet(
        ip=wire.IPv4Header("198.18.0.1", "198.18.0.2", ident=0x1c46),
        tcp=wire.TCPHeader(
            src_port=40000, dst_port=80, seq=0x2F1D3C4A, flags=wire.TCPFlags.SYN, window=64240,
            mss=1460, sack_permitted=True, timestamps=(3141592, 0), wscale=7,
        ),
    )
    raw = syn.to_bytes()
    print(f"A SYN as Linux sends it ({len(raw)} bytes):\n  {raw.hex()}", file=out)
    parsed = wire.parse_packet(raw)
    t = parsed.tcp
    print(f"parsed: {parsed.ip.src}:{t.src_port} -> {parsed.ip.dst}:{t.dst_port} "
          f"flags={t.flags!r} seq={t.seq:#x} win={t.window} mss={t.mss} wscale={t.wscale} "
          f"sackOK={t.sack_permitted} ts={t.timestamps}", file=out)
    bad = bytearray(raw)
    bad[-1] ^= 0xFF
    print(f"one flipped bit in the options: {wire.check_packet(bad).name}", file=out)

    data = os.urandom(65536)
    fast = _rate(checksum.checksum, data)
    slow = _rate(_pure_checksum, data)
    print(f"checksum of 64 KiB: compiled {fast / 1e9:.2f} GB/s, pure Python {slow / 1e9:.3f} GB/s "
          f"({fast / slow:.0f}x)", file=out)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``demo`` takes no options."""


def run(args: argparse.Namespace) -> int:
    return demo()
