"""Stubs for the compiled wire format: the Python face of the C parser's reasons."""
import enum
from typing import Union

from _typeshed import ReadableBuffer

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
def check_packet(buf: ReadableBuffer, *, verify_checksums: bool = True) -> Reason: ...
