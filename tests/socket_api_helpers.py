"""Helpers for tests/test_socket_api.py: the socket implementation under test, and its kernel peers.

``Impl`` stands for one implementation of the socket API: ``"kernel"`` (``socket.socket``, the
reference) or ``"tcpfast"`` (``tcpfast.socket`` on the test stack). The socket under test lives on
``impl.addr(family)``: the kernel's end of the TUN device (198.18.0.1 / fd00:18::1) for the kernel,
the stack (198.18.0.2 / fd00:18::2) for tcpfast. Its peer is always a kernel socket on the kernel's
address. Every socket made here is shut down and closed at teardown, which also wakes any thread a
failed test left blocked in one of them.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import select
import socket
import time
from typing import Callable, List, Optional, Tuple

from conftest import KERNEL_IP, KERNEL_IP6, STACK_IP, STACK_IP6

IO = 10.0          # seconds any one blocking call may take before the test fails
SHORT = 0.2        # a timeout that is meant to expire
QUIET = 0.15       # how long to watch for readiness that must NOT come

KERNEL_ADDR = {socket.AF_INET: KERNEL_IP, socket.AF_INET6: KERNEL_IP6}
STACK_ADDR = {socket.AF_INET: STACK_IP, socket.AF_INET6: STACK_IP6}
# On the TUN link but owned by nobody: packets to it vanish (no RST, no ICMP).
BLACKHOLE = {socket.AF_INET: "198.18.0.3", socket.AF_INET6: "fd00:18::3"}


def sockaddr(family: int, host: str, port: int) -> tuple:
    """The address as getsockname()/getpeername()/accept() give it for ``family``."""
    return (host, port) if family == socket.AF_INET else (host, port, 0, 0)


class Impl:
    def __init__(self, name: str) -> None:
        import tcpfast

        self.name = name
        self.kernel = name == "kernel"
        self.module = socket if self.kernel else tcpfast
        self.cls = socket.socket if self.kernel else tcpfast.socket
        self._made: List[object] = []

    def __repr__(self) -> str:
        return f"<Impl {self.name}>"

    # --- sockets under test ------------------------------------------------------------------

    def make(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0):
        """A fresh socket under test, as the constructor gives it (no timeout set here)."""
        return self.track(self.cls(family, type, proto))

    def addr(self, family: int = socket.AF_INET) -> str:
        """The address the socket under test has."""
        return (KERNEL_ADDR if self.kernel else STACK_ADDR)[family]

    def track(self, sock):
        self._made.append(sock)
        return sock

    def listener(self, family: int = socket.AF_INET, backlog: int = 16, reuse: bool = False,
                 port: int = 0, timeout: Optional[float] = IO):
        """A listening socket under test on ``addr(family)``."""
        s = self.make(family)
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.addr(family), port))
        s.listen(backlog)
        s.settimeout(timeout)
        return s

    def pair(self, family: int = socket.AF_INET, timeout: Optional[float] = IO,
             before_connect: Optional[Callable] = None, peer_rcvbuf: Optional[int] = None):
        """(socket under test connected as the client, the kernel peer accepted for it)."""
        lst = self.peer_listener(family, rcvbuf=peer_rcvbuf)
        s = self.make(family)
        if before_connect is not None:
            before_connect(s)
        s.settimeout(IO)
        s.connect(lst.getsockname())
        peer, _ = lst.accept()
        peer.settimeout(IO)
        self.track(peer)
        lst.close()
        s.settimeout(timeout)
        return s, peer

    def accepted_pair(self, family: int = socket.AF_INET, timeout: Optional[float] = IO):
        """(socket under test accepted by a listener under test, the kernel client)."""
        lst = self.listener(family)
        client = self.kernel_socket(family)
        client.connect(lst.getsockname())
        conn, _ = lst.accept()
        self.track(conn)
        lst.close()
        conn.settimeout(timeout)
        return conn, client

    # --- kernel peers ------------------------------------------------------------------------

    def kernel_socket(self, family: int = socket.AF_INET, timeout: Optional[float] = IO):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        return self.track(s)

    def peer_listener(self, family: int = socket.AF_INET, rcvbuf: Optional[int] = None):
        s = self.kernel_socket(family)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.bind((KERNEL_ADDR[family], 0))
        s.listen(16)
        return s

    def peer_addr(self, family: int = socket.AF_INET) -> str:
        return KERNEL_ADDR[family]

    def closed_port(self, family: int = socket.AF_INET) -> tuple:
        """An address on the kernel where nothing listens (connections to it are refused)."""
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((KERNEL_ADDR[family], 0))
        addr = s.getsockname()
        s.close()
        return addr[:2]

    def blackhole(self, family: int = socket.AF_INET) -> tuple:
        return (BLACKHOLE[family], 9)

    def cleanup(self) -> None:
        for s in reversed(self._made):
            with contextlib.suppress(Exception):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                s.close()
        self._made.clear()


# --- small tools -----------------------------------------------------------------------------------

def raises(cls, code, fn, *args, **kwargs):
    """Call fn; it must raise exactly ``cls`` (not a subclass) with errno ``code``. Returns it."""
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - compared below
        assert type(exc) is cls and getattr(exc, "errno", None) == code, (
            f"expected {cls.__name__}(errno={code} {errno.errorcode.get(code, '')}), "
            f"got {type(exc).__name__}{exc.args!r}")
        return exc
    raise AssertionError(f"expected {cls.__name__}(errno={code} {errno.errorcode.get(code, '')}), "
                         f"got the result {result!r}")


def outcome(fn, *args, **kwargs):
    """fn's result, or ``(exception class, errno)`` when it raises (for comparing sequences)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        return (type(exc), getattr(exc, "errno", None))


def readable(sock, timeout: float) -> bool:
    return bool(select.select([sock], [], [], timeout)[0])


def writable(sock, timeout: float) -> bool:
    return bool(select.select([], [sock], [], timeout)[1])


def wait_readable(sock, timeout: float = IO) -> None:
    assert readable(sock, timeout), f"not readable after {timeout} s"


def wait_writable(sock, timeout: float = IO) -> None:
    assert writable(sock, timeout), f"not writable after {timeout} s"


def poll_mask(sock, events: int = select.POLLIN | select.POLLOUT, timeout_ms: int = 0) -> int:
    p = select.poll()
    p.register(sock, events)
    got = p.poll(timeout_ms)
    return got[0][1] if got else 0


def poll_until(sock, want: int, events: int = select.POLLIN | select.POLLOUT,
               timeout: float = IO) -> int:
    """Poll until the mask has every bit of ``want``; returns the last mask seen."""
    deadline = time.monotonic() + timeout
    mask = 0
    while time.monotonic() < deadline:
        mask = poll_mask(sock, events, 20)
        if mask & want == want:
            return mask
        time.sleep(0.01)
    return mask


def recv_exactly(sock, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise AssertionError(f"end of stream after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def recv_all(sock) -> bytes:
    """Everything up to end of stream."""
    out = bytearray()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(out)
        out += chunk


def fill_send_buffer(sock, limit: int = 64 << 20) -> int:
    """Send from a non-blocking socket until it refuses (EAGAIN); returns the bytes taken. The
    peer must not be reading. Restores the socket's timeout."""
    saved = sock.gettimeout()
    sock.setblocking(False)
    chunk = b"\x5a" * 65536
    total = 0
    try:
        idle_until = None
        while total < limit:
            try:
                total += sock.send(chunk)
                idle_until = None
            except BlockingIOError:
                # Segments in flight may still be acknowledged; refused twice 50 ms apart is full.
                if idle_until is None:
                    idle_until = time.monotonic() + 0.05
                elif time.monotonic() >= idle_until:
                    return total
                time.sleep(0.01)
        raise AssertionError(f"the send buffer took {limit} bytes without filling up")
    finally:
        sock.settimeout(saved)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def elapsed(fn, *args) -> Tuple[object, float]:
    t0 = time.monotonic()
    r = outcome(fn, *args)
    return r, time.monotonic() - t0
