"""Header values ("reprs") for the Python-level wire API.

A repr holds what a header *means*; :func:`tcpfast.wire.parse_packet` makes them from bytes and
:func:`tcpfast.wire.emit_packet` writes them back (the smoltcp ``Repr`` idea). Fields that the
emitter derives (lengths, checksums) are filled in by parsing and ignored by emitting and by ``==``.

The per-packet path of the stack never builds these objects: it works on the C structs declared in
``_wire.pxd``. These are for users, tests and tools.

This module imports nothing of tcpfast. The codec between these values and bytes is the compiled
``tcpfast._wire_convert``, which imports this module for the classes it builds; it puts itself in
``_codec`` below as it loads (which ``import tcpfast`` always does), and :class:`Packet`'s
``parse``/``emit`` methods call it there.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Optional, Tuple, Union

__all__ = [
    "TCPFlags", "IPv4Header", "IPv6Header", "TCPHeader", "ICMPMessage", "QuotedPacket", "Packet",
    "PROTO_TCP", "PROTO_ICMP", "PROTO_ICMPV6",
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_ICMPV6 = 58

# The module tcpfast._wire_convert, once it has loaded (see the module's docstring).
_codec: Any = None


class TCPFlags(enum.IntFlag):
    """TCP control bits (RFC 9293 §3.1; ECE and CWR from RFC 3168)."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


@dataclass
class IPv4Header:
    """An IPv4 header (RFC 791). Options of received packets are skipped, never emitted."""

    src: IPv4Address
    dst: IPv4Address
    protocol: int = PROTO_TCP
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    dont_fragment: bool = True
    more_fragments: bool = False
    fragment_offset: int = 0            # bytes
    header_len: int = field(default=20, compare=False)
    payload_len: int = field(default=0, compare=False)
    checksum: int = field(default=0, compare=False)

    version = 4

    def __post_init__(self) -> None:
        # Only convert what is not an address yet: IPv4Address(IPv4Address) goes via a string.
        if type(self.src) is not IPv4Address:
            self.src = IPv4Address(self.src)
        if type(self.dst) is not IPv4Address:
            self.dst = IPv4Address(self.dst)

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.fragment_offset != 0


@dataclass
class IPv6Header:
    """An IPv6 header (RFC 8200); ``protocol`` is the upper layer after any extension headers."""

    src: IPv6Address
    dst: IPv6Address
    protocol: int = PROTO_TCP
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0
    is_fragment: bool = field(default=False, compare=False)
    header_len: int = field(default=40, compare=False)
    payload_len: int = field(default=0, compare=False)

    version = 6

    def __post_init__(self) -> None:
        if type(self.src) is not IPv6Address:
            self.src = IPv6Address(self.src)
        if type(self.dst) is not IPv6Address:
            self.dst = IPv6Address(self.dst)


IPHeader = Union[IPv4Header, IPv6Header]


@dataclass
class TCPHeader:
    """A TCP header with its options (RFC 9293 §3.1, RFC 7323, RFC 2018).

    ``mss``/``wscale``/``timestamps`` are ``None`` when the option is absent; ``timestamps`` is
    ``(tsval, tsecr)``; ``sack_blocks`` holds up to 4 ``(left, right)`` edges. Emitting a header
    whose SACK blocks do not all fit in the 40 option bytes beside its other options raises
    ``ValueError`` (the stack's C emitter instead keeps the first blocks that fit).
    """

    src_port: int
    dst_port: int
    seq: int = 0
    ack: int = 0
    flags: TCPFlags = TCPFlags(0)
    window: int = 0
    urgent: int = 0
    mss: Optional[int] = None
    wscale: Optional[int] = None
    sack_permitted: bool = False
    sack_blocks: Tuple[Tuple[int, int], ...] = ()
    timestamps: Optional[Tuple[int, int]] = None
    header_len: int = field(default=20, compare=False)
    checksum: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        self.flags = TCPFlags(self.flags)
        self.sack_blocks = tuple(tuple(b) for b in self.sack_blocks)  # type: ignore[misc]
        if self.timestamps is not None:
            self.timestamps = tuple(self.timestamps)  # type: ignore[assignment]


@dataclass
class QuotedPacket:
    """The start of the packet an ICMP error quotes: enough to find the connection it concerns."""

    src: Union[IPv4Address, IPv6Address]
    dst: Union[IPv4Address, IPv6Address]
    protocol: int
    src_port: Optional[int] = None
    dst_port: Optional[int] = None
    seq: Optional[int] = None           # TCP only


@dataclass
class ICMPMessage:
    """An ICMPv4 (RFC 792) or ICMPv6 (RFC 4443) message.

    Echo request/reply use ``ident``/``seq``; ICMPv4 "fragmentation needed" (RFC 1191) and ICMPv6
    "packet too big" use ``mtu``; other types carry their 4 raw bytes in ``rest``. ``data`` is the
    echo data or the quoted packet of an error; ``quoted`` is that quote, parsed.
    """

    type: int
    code: int = 0
    ident: int = 0
    seq: int = 0
    mtu: int = 0
    rest: int = 0
    data: bytes = b""
    quoted: Optional[QuotedPacket] = field(default=None, compare=False)
    checksum: int = field(default=0, compare=False)


@dataclass
class Packet:
    """A whole IP packet: the IP header, one of ``tcp``/``icmp`` and the TCP payload."""

    ip: IPHeader
    tcp: Optional[TCPHeader] = None
    icmp: Optional[ICMPMessage] = None
    payload: bytes = b""

    @classmethod
    def parse(cls, buf, *, verify_checksums: bool = True) -> "Packet":
        """Parse an IP packet; raises :class:`tcpfast.WireError` with the reason it is malformed."""
        return _codec.parse_packet(buf, verify_checksums=verify_checksums)

    def buffer_len(self) -> int:
        """The number of bytes :meth:`emit` writes."""
        return _codec.packet_len(self)

    def emit(self, buf, offset: int = 0) -> int:
        """Write the packet into ``buf`` at ``offset`` with all checksums filled; returns its length."""
        return _codec.emit_packet(self, buf, offset)

    def to_bytes(self) -> bytes:
        """The packet as a new ``bytes`` object."""
        return _codec.build_packet(self)
