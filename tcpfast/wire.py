"""Packets on the wire: parse and emit IPv4, IPv6, TCP and ICMP; views over packet buffers.

The compiled core is in three modules, one job each: :mod:`tcpfast._wire` (the C parser and
emitter, :class:`Reason`, :class:`WireError`, :func:`check_packet`), :mod:`tcpfast._wire_convert`
(bytes to and from the header values) and :mod:`tcpfast._wire_views` (typed views over buffers).
The header values live in :mod:`tcpfast.headers`.
"""
from tcpfast._wire import Reason, WireError, check_packet, reason_description  # noqa: F401
from tcpfast._wire_convert import (  # noqa: F401
    build_packet, emit_packet, packet_len, parse_icmp, parse_ipv4, parse_ipv6, parse_packet,
    parse_tcp,
)
from tcpfast._wire_views import ICMPView, IPv4View, IPv6View, TCPView  # noqa: F401
from tcpfast.headers import (  # noqa: F401
    PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, ICMPMessage, IPv4Header, IPv6Header, Packet,
    QuotedPacket, TCPFlags, TCPHeader,
)

__all__ = [
    "Reason", "WireError", "reason_description",
    "parse_packet", "check_packet", "parse_ipv4", "parse_ipv6", "parse_tcp", "parse_icmp",
    "emit_packet", "build_packet", "packet_len",
    "IPv4View", "IPv6View", "TCPView", "ICMPView",
    "Packet", "IPv4Header", "IPv6Header", "TCPHeader", "ICMPMessage", "QuotedPacket", "TCPFlags",
    "PROTO_TCP", "PROTO_ICMP", "PROTO_ICMPV6",
]
