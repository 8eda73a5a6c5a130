"""``tcpfast.socket``: TCP sockets on a tcpfast stack, shaped like ``socket.socket``.

Blocking, timeout and non-blocking modes, and the kernel's exception classes and errno values.
``fileno()`` is a real descriptor (one end of a socketpair whose other end the engine holds) that
polls readable when the connection has data, end of stream, an error or a connection to accept,
and writable when a connect has finished or send space is free: select, selectors, poll, epoll
and asyncio work with it, with no busy waiting.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket as _socket
import time
from typing import Any, Optional, Tuple

from tcpfast.stack import Stack, default_stack

AF_INET = _socket.AF_INET
AF_INET6 = _socket.AF_INET6
SOCK_STREAM = _socket.SOCK_STREAM
SHUT_RD = _socket.SHUT_RD
SHUT_WR = _socket.SHUT_WR
SHUT_RDWR = _socket.SHUT_RDWR
MSG_PEEK = int(_socket.MSG_PEEK)          # plain ints: flag tests on enums cost ~0.8 us each
MSG_DONTWAIT = int(_socket.MSG_DONTWAIT)

_SOCK_FLAGS = getattr(_socket, "SOCK_NONBLOCK", 0) | getattr(_socket, "SOCK_CLOEXEC", 0)

__all__ = ["socket"]


def _readiness_pair() -> Tuple[int, int]:
    """A connected AF_UNIX pair, non-blocking, with small buffers (so filling one end up, to
    make it unwritable, takes a write or two): (the socket's fd, the engine's end)."""
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    for s in (a, b):
        s.setblocking(False)
        s.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, 1024)
        s.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 1024)
    return a.detach(), b.detach()


def _shutdown_fd(fd: int) -> None:
    s = _socket.socket(fileno=fd)
    try:
        s.shutdown(SHUT_RDWR)
    except OSError:
        pass
    finally:
        s.detach()


def _error(code: int, what: Optional[str] = None) -> OSError:
    # OSError(errno, msg) picks the subclass (ConnectionResetError, ...) from the errno.
    return OSError(code, what or os.strerror(code))


class socket:
    """socket(family=AF_INET, type=SOCK_STREAM, proto=0, fileno=None, *, stack=None)

    A TCP socket on ``stack`` (the default stack when not given).
    """

    __slots__ = ("family", "type", "proto", "_stack", "_engine", "_timeout", "_tcb",
                 "_listener", "_fd", "_peer_fd", "_local", "_remote", "_closed", "_options", "_shut_rd",
                 "_error_reported", "_reuseaddr", "__weakref__")

    def __init__(self, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0,
                 fileno: Optional[int] = None, *, stack: Optional[Stack] = None) -> None:
        if fileno is not None:
            raise OSError(errno.EOPNOTSUPP, "tcpfast sockets cannot be made from a file descriptor")
        if family not in (AF_INET, AF_INET6):
            raise OSError(errno.EAFNOSUPPORT, "tcpfast sockets are AF_INET or AF_INET6")
        if (type & ~_SOCK_FLAGS) != SOCK_STREAM:
            raise OSError(errno.ESOCKTNOSUPPORT, "tcpfast sockets are SOCK_STREAM")
        if proto not in (0, _socket.IPPROTO_TCP):
            raise OSError(errno.EPROTONOSUPPORT, "tcpfast sockets are TCP")
        self._stack = stack if stack is not None else default_stack()
        self._engine = self._stack._require()
        self.family = family
        self.type = SOCK_STREAM
        self.proto = proto
        self._timeout: Optional[float] = _socket.getdefaulttimeout()
        if type & getattr(_socket, "SOCK_NONBLOCK", 0):
            self._timeout = 0.0
        self._tcb = None
        self._listener = None
        self._fd, self._peer_fd = _readiness_pair()
        self._local: Optional[Tuple[bytes, int]] = None
        self._remote: Optional[Tuple[bytes, int]] = None
        self._closed = False
        self._options: dict = {}
        self._shut_rd = False
        self._error_reported = False
        self._reuseaddr = False

    # --- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise _error(errno.EBADF, "Bad file descriptor")

    def _addr_bytes(self, address: Any) -> Tuple[bytes, int]:
        if not isinstance(address, tuple) or len(address) not in ((2,) if self.family == AF_INET
                                                                  else (2, 3, 4)):
            raise TypeError(f"{'AF_INET' if self.family == AF_INET else 'AF_INET6'} address "
                            "must be a tuple (host, port)")
        host, port = address[0], address[1]
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise OverflowError("port must be 0-65535.")
        if host in ("", None):
            host = "0.0.0.0" if self.family == AF_INET else "::"
        elif host == "<broadcast>":
            raise _error(errno.EACCES)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            infos = _socket.getaddrinfo(host, port, self.family, SOCK_STREAM)
            ip = ipaddress.ip_address(infos[0][4][0])
        if (ip.version == 4) != (self.family == AF_INET):
            raise _error(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return ip.packed, port

    def _deadline(self) -> Optional[float]:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _wait(self, deadline: Optional[float], write: bool = False) -> None:
        """Wait until the fd polls readable (or writable); TimeoutError at the deadline."""
        if self._timeout == 0.0:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        if deadline is None:
            timeout = -1
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            timeout = max(1, int(remaining * 1000 + 0.999))
        fd = self._fd
        if fd < 0:
            raise _error(errno.EBADF, "Bad file descriptor")
        p = select.poll()
        p.register(fd, select.POLLOUT if write else select.POLLIN)
        if not p.poll(timeout) and deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError("timed out")

    # --- addresses ----------------------------------------------------------------------------

    def bind(self, address: Any) -> None:
        self._check_open()
        if self._local is not None:
            raise _error(errno.EINVAL, "Invalid argument")
        addr, port = self._addr_bytes(address)
        zero = bytes(len(addr))
        if addr != zero and addr != self._stack.local_address(self.family):
            raise _error(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        port = self._stack._bind(self, addr, port)
        self._local = (addr, port)

    def getsockname(self):
        self._check_open()
        if self._local is None:
            return ("0.0.0.0", 0) if self.family == AF_INET else ("::", 0, 0, 0)
        return self._fmt(self._local)

    def getpeername(self):
        self._check_open()
        if self._remote is None or self._tcb is None:
            raise _error(errno.ENOTCONN, "Transport endpoint is not connected")
        return self._fmt(self._remote)

    def _fmt(self, ap: Tuple[bytes, int]):
        host = str(ipaddress.ip_address(ap[0]))
        return (host, ap[1]) if self.family == AF_INET else (host, ap[1], 0, 0)

    # --- connection set-up --------------------------------------------------------------------

    def connect(self, address: Any) -> None:
        err = self._connect(address, raise_=True)
        if err:
            raise _error(err)

    def connect_ex(self, address: Any) -> int:
        try:
            return self._connect(address, raise_=False)
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno

    def _connect(self, address: Any, raise_: bool) -> int:
        self._check_open()
        if self._listener is not None:
            return errno.EINVAL
        raddr, rport = self._addr_bytes(address)
        if self._tcb is not None:
            state, events, error, _, _ = self._engine.state_of(self._tcb)
            if state == "SYN-SENT":
                return errno.EALREADY if self._timeout == 0.0 else self._wait_connected()
            if error and not self._error_reported:
                self._error_reported = True
                return error
            return errno.EISCONN
        laddr = self._local[0] if self._local else self._stack.local_address(self.family)
        if laddr == bytes(len(laddr)):
            laddr = self._stack.local_address(self.family)
        lport = self._local[1] if self._local else 0
        self._tcb = self._engine.connect(laddr, lport, raddr, rport, self._options, self._fd,
                                         self._peer_fd)
        self._local = (laddr, self._tcb.local[1])
        self._remote = (raddr, rport)
        if self._timeout == 0.0:
            return errno.EINPROGRESS
        return self._wait_connected()

    def _wait_connected(self) -> int:
        deadline = self._deadline()
        while True:
            state, events, error, _, _ = self._engine.state_of(self._tcb)
            if error:
                self._error_reported = True
                return error
            if state != "SYN-SENT" and state != "SYN-RECEIVED":
                return 0
            self._wait(deadline, write=True)   # writable once the handshake is over

    def listen(self, backlog: int = 128) -> None:
        self._check_open()
        if self._tcb is not None:
            raise _error(errno.EINVAL, "Invalid argument")
        if self._listener is not None:
            return
        if self._local is None:
            self.bind(("", 0))
        backlog = max(1, min(int(backlog), 4096))
        self._listener = self._engine.listen(self._local[0], self._local[1], backlog,
                                             self._options, self._fd, self._peer_fd)

    def accept(self):
        self._check_open()
        if self._listener is None:
            raise _error(errno.EINVAL, "Invalid argument")
        deadline = self._deadline()
        while True:
            tcb = self._engine.accept(self._listener)
            if tcb is not None:
                break
            self._wait(deadline)
        sock = socket(self.family, SOCK_STREAM, self.proto, stack=self._stack)
        sock._tcb = tcb
        sock._options = dict(self._options)
        local, remote = tcb.local, tcb.remote
        sock._local = (ipaddress.ip_address(local[0]).packed, local[1])
        sock._remote = (ipaddress.ip_address(remote[0]).packed, remote[1])
        sock._timeout = _socket.getdefaulttimeout()
        self._engine.attach_fds(tcb, sock._fd, sock._peer_fd)
        return sock, sock.getpeername()

    # --- data --------------------------------------------------------------------------------

    def _connected(self):
        self._check_open()
        if not self._stack.running:
            raise _error(errno.ENETDOWN, "Network is down (the tcpfast stack is stopped)")
        if self._tcb is None:
            raise _error(errno.ENOTCONN if self._listener is None else errno.ENOTCONN,
                         "Transport endpoint is not connected")
        return self._tcb

    def send(self, data, flags: int = 0) -> int:
        tcb = self._connected()
        data = memoryview(data).cast("B")
        deadline = self._deadline()
        nonblocking = bool(flags & MSG_DONTWAIT)
        while True:
            r = self._engine.send(tcb, data)      # on EAGAIN it also arms the wake-up
            if r >= 0:
                return r
            if r == -errno.EAGAIN:
                if nonblocking:
                    raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
                self._wait(deadline, write=True)
                continue
            if r == -errno.ENOTCONN:
                raise _error(errno.ENOTCONN)
            # After our own shutdown or the peer's reset: EPIPE once the error was seen.
            if r in (-errno.ECONNRESET, -errno.ETIMEDOUT, -errno.ECONNREFUSED) and \
                    not self._error_reported:
                self._error_reported = True
                raise _error(-r)
            raise _error(errno.EPIPE, "Broken pipe")

    def sendall(self, data, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        deadline = self._deadline()
        saved = self._timeout
        try:
            while view:
                if deadline is not None:
                    self._timeout = max(0.0, deadline - time.monotonic())
                    if self._timeout == 0.0 and saved != 0.0:
                        raise TimeoutError("timed out")
                n = self.send(view, flags)
                view = view[n:]
        finally:
            self._timeout = saved

    def sendto(self, data, flags_or_address, address=None) -> int:
        flags = 0 if address is None else flags_or_address
        return self.send(data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        buf = bytearray(bufsize)
        n = self.recv_into(buf, bufsize, flags)
        return bytes(buf[:n])

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        tcb = self._connected()
        view = memoryview(buffer).cast("B")
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        if nbytes == 0:
            nbytes = len(view)
        if nbytes == 0:
            return 0
        if self._shut_rd:
            return 0
        deadline = self._deadline()
        nonblocking = bool(flags & MSG_DONTWAIT)
        peek = bool(flags & MSG_PEEK)
        while True:
            r = self._engine.recv_into(tcb, view, nbytes, peek)   # EAGAIN arms the wake-up
            if r >= 0:
                return r
            if r == -errno.EAGAIN:
                if nonblocking:
                    raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
                self._wait(deadline)
                continue
            if self._error_reported and r in (-errno.ECONNRESET, -errno.ETIMEDOUT,
                                              -errno.ECONNREFUSED, -errno.EHOSTUNREACH):
                return 0                # the kernel reports the error once, then end of stream
            self._error_reported = True
            raise _error(-r)

    def recvfrom(self, bufsize: int, flags: int = 0):
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer, nbytes: int = 0, flags: int = 0):
        return self.recv_into(buffer, nbytes, flags), None

    # --- shutdown and close ----------------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        tcb = self._connected()
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise _error(errno.EINVAL, "Invalid argument")
        if how in (SHUT_RD, SHUT_RDWR):
            self._shut_rd = True
        if how in (SHUT_WR, SHUT_RDWR):
            r = self._engine.shutdown(tcb)
            if r < 0:
                raise _error(-r)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._listener is not None:
                self._engine.unlisten(self._listener)
            elif self._tcb is not None and self._stack.running:
                self._engine.close(self._tcb)
        finally:
            self._stack._unbind(self)
            # The engine has let go of the pair (close/unlisten above). Shutting the peer end
            # down makes the fd readable and writable at once, which wakes every thread still
            # waiting on it; they then find the socket closed (EBADF).
            fd, peer = self._fd, self._peer_fd
            self._fd = self._peer_fd = -1
            try:
                _shutdown_fd(peer)
            finally:
                os.close(peer)
                os.close(fd)

    def detach(self) -> int:
        raise _error(errno.EOPNOTSUPP, "tcpfast sockets have no kernel descriptor to detach")

    def __enter__(self) -> "socket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:
                pass

    # --- modes and options -------------------------------------------------------------------

    def fileno(self) -> int:
        return -1 if self._closed else self._fd

    def settimeout(self, value: Optional[float]) -> None:
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    @property
    def timeout(self) -> Optional[float]:
        return self._timeout

    _SOCKOPTS = {
        (_socket.SOL_SOCKET, _socket.SO_KEEPALIVE): ("keepalive", bool, 1),
        (_socket.SOL_SOCKET, _socket.SO_SNDBUF): ("sndbuf", int, 1),
        (_socket.SOL_SOCKET, _socket.SO_RCVBUF): ("rcvbuf", int, 1),
        (_socket.IPPROTO_TCP, _socket.TCP_NODELAY): ("nodelay", bool, 1),
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_KEEPIDLE", 4)): ("keepidle", float, 1),
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_KEEPINTVL", 5)): ("keepintvl", float, 1),
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_KEEPCNT", 6)): ("keepcnt", int, 1),
    }

    def setsockopt(self, level: int, optname: int, value, optlen: Optional[int] = None) -> None:
        self._check_open()
        if isinstance(value, (bytes, bytearray)):
            value = int.from_bytes(bytes(value[:4]).ljust(4, b"\0"), "little", signed=True)
        if (level, optname) == (_socket.SOL_SOCKET, _socket.SO_REUSEADDR):
            self._reuseaddr = bool(value)
            return
        spec = self._SOCKOPTS.get((level, optname))
        if spec is None:
            raise _error(errno.ENOPROTOOPT, "Protocol not available")
        name, conv, _ = spec
        if name in ("sndbuf", "rcvbuf"):
            value = max(2048, int(value) * 2)  # Linux doubles the value (socket(7))
        self._options[name] = conv(value)
        if self._tcb is not None:
            self._engine.set_options(self._tcb, {name: conv(value)})

    def getsockopt(self, level: int, optname: int, buflen: Optional[int] = None):
        self._check_open()
        if (level, optname) == (_socket.SOL_SOCKET, _socket.SO_REUSEADDR):
            return int(self._reuseaddr)
        if (level, optname) == (_socket.SOL_SOCKET, _socket.SO_ERROR):
            if self._tcb is None:
                return 0
            _, _, error, _, _ = self._engine.state_of(self._tcb)
            if error and not self._error_reported:
                self._error_reported = True
                return error
            return 0
        if (level, optname) == (_socket.SOL_SOCKET, _socket.SO_TYPE):
            return SOCK_STREAM
        spec = self._SOCKOPTS.get((level, optname))
        if spec is None:
            raise _error(errno.ENOPROTOOPT, "Protocol not available")
        name, conv, _ = spec
        defaults = {"keepalive": 0, "nodelay": 0, "keepidle": 7200, "keepintvl": 75,
                    "keepcnt": 9, "sndbuf": 262144, "rcvbuf": 262144}
        value = self._options.get(name, self._stack.tcp_options.get(name, defaults[name]))
        return int(value)

    def __repr__(self) -> str:
        if self._closed:
            return f"<tcpfast.socket [closed] fd=-1, family={self.family}, type={self.type}, proto={self.proto}>"
        parts = [f"<tcpfast.socket fd={self._fd}, family={self.family}, type={self.type}, "
                 f"proto={self.proto}"]
        if self._local is not None:
            parts.append(f", laddr={self.getsockname()}")
        if self._remote is not None and self._tcb is not None:
            parts.append(f", raddr={self._fmt(self._remote)}")
        return "".join(parts) + ">"
