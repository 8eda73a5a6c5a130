"""The pcap format of the engine's captures (classic pcap, microsecond timestamps, native byte
order, LINKTYPE_RAW), defined here once: the engine writes ``file_header()`` and then records of
``RECORD`` cut to ``SNAPLEN``; this module reads them back (counting records, cutting a file to
its first N records)."""
from __future__ import annotations

import os
import struct
from typing import BinaryIO, Iterator, Tuple

__all__ = ["PcapError", "records", "count", "truncate", "file_header", "LINKTYPE_RAW", "SNAPLEN"]

HEADER = struct.Struct("=IHHiIII")      # magic, version, thiszone, sigfigs, snaplen, linktype
RECORD = struct.Struct("=IIII")         # ts_sec, ts_usec, incl_len, orig_len
MAGIC_US = 0xA1B2C3D4                   # microsecond timestamps
VERSION = (2, 4)
SNAPLEN = 65535                         # the longest part of a packet a record keeps
LINKTYPE_RAW = 101                      # raw IPv4/IPv6, no link header


def file_header() -> bytes:
    """The header a capture file starts with (thiszone and sigfigs 0)."""
    return HEADER.pack(MAGIC_US, VERSION[0], VERSION[1], 0, 0, SNAPLEN, LINKTYPE_RAW)


class PcapError(ValueError):
    """Not a pcap file of the kind the engine writes."""


def records(f: BinaryIO) -> Iterator[Tuple[int, int]]:
    """(offset, end) of each complete record of an open pcap file, after checking its header;
    a torn last record (a capture cut short) ends the iteration."""
    f.seek(0)
    head = f.read(HEADER.size)
    if len(head) < HEADER.size:
        raise PcapError("shorter than a pcap file header")
    magic, major, minor, _, _, snaplen, _ = HEADER.unpack(head)
    if magic != MAGIC_US or (major, minor) != VERSION:
        raise PcapError(f"not a pcap 2.4 file in native byte order (magic {magic:#x})")
    size = os.fstat(f.fileno()).st_size
    offset = HEADER.size
    while offset + RECORD.size <= size:
        f.seek(offset)
        _, _, incl, _ = RECORD.unpack(f.read(RECORD.size))
        if incl > max(snaplen, SNAPLEN):
            raise PcapError(f"the record at byte {offset} claims {incl} bytes")
        end = offset + RECORD.size + incl
        if end > size:
            return
        yield offset, end
        offset = end


def count(f: BinaryIO) -> int:
    """The number of complete records in an open pcap file."""
    return sum(1 for _ in records(f))


def truncate(f: BinaryIO, keep: int) -> int:
    """Cut an open pcap file (opened for writing too) to its first ``keep`` records, and any torn
    record after them; returns how many records it holds."""
    n, end = 0, HEADER.size
    for _, record_end in records(f):
        if n == keep:
            break
        n, end = n + 1, record_end
    f.truncate(end)
    return n
