"""Stubs for the compiled path impairer (``tcpfast bench``'s WAN path)."""
from typing import Dict, Optional, Tuple

COUNTER_NAMES: Tuple[str, ...]
STOP_REASONS: Tuple[str, ...]

class Impairer:
    running: bool
    stop_reason: Optional[str]
    cpu_seconds: float
    def __init__(self, fd_a: int, fd_b: int, *, link_a: bytes = ..., link_b: bytes = ...,
                 delay: float = ..., loss: float = ..., duplicate: float = ..., reorder: float = ...,
                 seed: int = ..., limit: int = ..., limit_bytes: int = ..., batch: int = ...,
                 max_seconds: float = ...) -> None: ...
    def run(self) -> str: ...
    def stop(self) -> None: ...
    def counters(self) -> Dict[str, Dict[str, int]]: ...
    @property
    def delay(self) -> float: ...

def blast(fd: int, frame: bytes, count: int, seconds: float) -> Tuple[int, int, float]: ...
