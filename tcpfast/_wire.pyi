"""Stubs for the compiled wire-format module."""
import enum
from ipaddress import IPv4Address, IPv6Address
from typing import Union

from typing_extensions import Buffer  # type: ignore[attr-defined]

from tcpfast.headers import ICMPMessage, IPv4Header, IPv6Header, Packet, TCPFlags, TCPHeader

class Reason(enum.IntEnum):
    OK = 0
    TRUNCATED = 1
    BAD_VERSION = 2
    BAD_IHL = 3
    HEADER_OVERRUN = 4
    BAD_TOTAL_LENGTH = 5
    BAD_IP_CHECKSUM = 6
    FRAGMENT = 7
    EXT_HEADER_LIMIT = 8
    UNKNOWN_PROTOCOL = 9
    BAD_DATA_OFFSET = 10
    OPTIONS_OVERRUN = 11
    BAD_OPTION_LENGTH = 12
    BAD_CHECKSUM = 13

class WireError(ValueError):
    reason: Reason
    def __init__(self, reason: Union[int, Reason], message: str | None = ...) -> None: ...

def reason_description(reason: Union[int, Reason]) -> str: ...
def check_packet(buf: Buffer, *, verify_checksums: bool = True) -> Reason: ...
def parse_packet(buf: Buffer, *, verify_checksums: bool = True) -> Packet: ...
def parse_ipv4(buf: Buffer, *, verify_checksum: bool = True) -> IPv4Header: ...
def parse_ipv6(buf: Buffer) -> IPv6Header: ...
def parse_tcp(buf: Buffer) -> TCPHeader: ...
def parse_icmp(buf: Buffer, version: int = 4) -> ICMPMessage: ...
def packet_len(packet: Packet) -> int: ...
def emit_packet(packet: Packet, buf: Buffer, offset: int = 0) -> int: ...
def build_packet(packet: Packet) -> bytes: ...

class _View:
    def __len__(self) -> int: ...
    @property
    def readonly(self) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> "_View": ...
    def __exit__(self, *exc: object) -> None: ...

class TCPView(_View):
    def __init__(self, buf: Buffer) -> None: ...
    src_port: int
    dst_port: int
    seq: int
    ack: int
    header_len: int
    flags: TCPFlags
    window: int
    checksum: int
    urgent: int
    options: memoryview
    payload: memoryview
    def parse(self) -> TCPHeader: ...
    def verify_checksum(self, pseudo_sum: int) -> bool: ...
    def fill_checksum(self, pseudo_sum: int) -> int: ...

class IPv4View(_View):
    def __init__(self, buf: Buffer) -> None: ...
    version: int
    header_len: int
    tos: int
    total_length: int
    ident: int
    dont_fragment: bool
    more_fragments: bool
    fragment_offset: int
    ttl: int
    protocol: int
    checksum: int
    src: IPv4Address
    dst: IPv4Address
    options: memoryview
    payload: memoryview
    def verify_checksum(self) -> bool: ...
    def fill_checksum(self) -> int: ...
    def parse(self, *, verify_checksum: bool = True) -> IPv4Header: ...

class IPv6View(_View):
    def __init__(self, buf: Buffer) -> None: ...
    version: int
    traffic_class: int
    flow_label: int
    payload_length: int
    next_header: int
    hop_limit: int
    src: IPv6Address
    dst: IPv6Address
    protocol: int
    header_len: int
    is_fragment: bool
    payload: memoryview
    def parse(self) -> IPv6Header: ...

class ICMPView(_View):
    def __init__(self, buf: Buffer) -> None: ...
    type: int
    code: int
    checksum: int
    rest: int
    ident: int
    seq: int
    body: memoryview
    def parse(self, version: int = 4) -> ICMPMessage: ...
