"""Stubs for the compiled simulated link (tests and benchmarks)."""
from typing import Any, Dict

from tcpfast._tcb import Tcb

def stream_bytes(seed: int, start: int, n: int) -> bytes: ...

class SimPair:
    a: Tcb
    b: Tcb
    now: int
    def __init__(self, *, mtu: int = ..., delay: float = ..., jitter: float = ..., rate: int = ...,
                 loss: float = ..., reorder: float = ..., duplicate: float = ..., corrupt: float = ...,
                 seed: int = ..., queue: int = ..., read_rate: float = ..., duplex: bool = ...,
                 **tcb_options: Any) -> None: ...
    def run(self, a_to_b: int = ..., b_to_a: int = ..., *, shutdown: bool = ..., timeout: float = ...,
            sha256: bool = ...) -> Dict[str, Any]: ...
    def advance_to(self, seconds: float) -> float: ...
