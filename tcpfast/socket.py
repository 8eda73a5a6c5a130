"""``tcpfast.socket``: TCP sockets on a tcpfast stack, shaped like ``socket.socket``.

Blocking, timeout and non-blocking modes, and the kernel's exception classes and errno values.
``fileno()`` is a real descriptor (one end of a socketpair whose other end the engine holds) that
polls readable when the connection has data, end of stream, an error or a connection to accept,
and writable when a connect has finished or send space is free: select, selectors, poll, epoll
and asyncio work with it, with no busy waiting.
"""
from __future__ import annotations

import builtins
import errno
import io
import ipaddress
import os
import select
import socket as _socket
import _socket as _csocket
import struct
import time
from typing import Any, Optional, Tuple

from tcpfast._engine import TCPI_STATE
from tcpfast.stack import Stack, default_stack, register_socket_class

AF_INET = _socket.AF_INET
AF_INET6 = _socket.AF_INET6
SOCK_STREAM = _socket.SOCK_STREAM
SHUT_RD = _socket.SHUT_RD
SHUT_WR = _socket.SHUT_WR
SHUT_RDWR = _socket.SHUT_RDWR
MSG_PEEK = int(_socket.MSG_PEEK)          # plain ints: flag tests on enums cost ~0.8 us each
MSG_DONTWAIT = int(_socket.MSG_DONTWAIT)
MSG_WAITALL = int(_socket.MSG_WAITALL)

_SOCK_FLAGS = getattr(_socket, "SOCK_NONBLOCK", 0) | getattr(_socket, "SOCK_CLOEXEC", 0)

__all__ = ["socket", "create_connection", "create_server", "has_dualstack_ipv6"]

_CC_NAMES = {"cubic": b"cubic", "newreno": b"reno"}
# What TCP_MAXSEG reads before there is a connection, unless it was set: Linux's TCP_MSS_DEFAULT
# (a property of the socket API, not of a connection: a connection's MSS comes from the MTU).
_TCP_MSS_DEFAULT = 536


_V4MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def _readiness_pair() -> Tuple[int, int]:
    """A connected AF_UNIX pair, non-blocking, with small buffers (so filling one end up, to
    make it unwritable, takes a write or two): (the socket's fd, the engine's end)."""
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    for s in (a, b):
        s.setblocking(False)
        s.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, 1024)
        s.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 1024)
    return a.detach(), b.detach()


def _arm_pair(fd: int) -> int:
    """Swap the fd number ``fd`` over to a new readiness pair; returns the engine's end."""
    a, b = _readiness_pair()
    os.dup2(a, fd, inheritable=False)
    os.close(a)
    return b


def _clear_fd_error(fd: int) -> None:
    """Read a pending error off the socket's end (the engine set it to show POLLERR), as the
    kernel clears sk_err once it has been reported."""
    try:
        s = _socket.socket(fileno=fd)
    except OSError:
        return
    try:
        while s.recv(4096, _socket.MSG_DONTWAIT):   # tokens first, then the error (or EOF)
            pass
    except OSError:
        pass
    finally:
        s.detach()


def _shutdown_fd(fd: int) -> None:
    try:
        s = _socket.socket(fileno=fd)
    except OSError:
        return                  # the engine already let the pair go (it names /dev/null now)
    try:
        s.shutdown(SHUT_RDWR)
    except OSError:
        pass
    finally:
        s.detach()


def _unknown_option(level: int):
    if level in (_socket.SOL_SOCKET, _socket.IPPROTO_TCP, _socket.IPPROTO_IP,
                 _socket.IPPROTO_IPV6):
        return errno.ENOPROTOOPT, "Protocol not available"
    return errno.EOPNOTSUPP, "Operation not supported"


def _int_opt(value) -> int:
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(bytes(value[:4]).ljust(4, b"\0"), "little", signed=True)
    if not isinstance(value, int):          # bool is an int, as the kernel socket takes it
        raise TypeError("an integer is required")
    return int(value)


def _int_out(value: int, buflen: Optional[int]):
    if buflen is None:
        return value
    return struct.pack("i", value)[:buflen].ljust(buflen, b"\0")


def timeout_value(value) -> Optional[float]:
    """timeout_value(value) -> None or float: a settimeout() argument checked as the kernel
    socket checks it (TypeError, ValueError with the same messages); for tcpfast.ssl too."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError("Timeout value must be int, float or None")
    value = float(value)
    if value != value:
        raise ValueError("Invalid value NaN (not a number)")
    if value < 0:
        raise ValueError("Timeout value out of range")
    return value


def _error(code: int, what: Optional[str] = None) -> OSError:
    # OSError(errno, msg) picks the subclass (ConnectionResetError, ...) from the errno.
    return OSError(code, what or os.strerror(code))


class socket:
    """socket(family=AF_INET, type=SOCK_STREAM, proto=0, fileno=None, *, stack=None)

    A TCP socket on ``stack`` (the default stack when not given).
    """

    __slots__ = ("_family", "_type", "proto", "_stack", "_engine", "_timeout", "_tcb",
                 "_listener", "_fd", "_peer_fd", "_local", "_io_refs", "_linger", "_remote", "_closed", "_options", "_shut_rd",
                 "_binding", "_v6only", "_stopped_listening",
                 "_inflight", "_close_deferred", "_listener4",
                 "__weakref__")

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
        self._family = family
        self._type = SOCK_STREAM
        self.proto = proto
        self._io_refs = 0
        self._linger = (0, 0)
        self._timeout: Optional[float] = _socket.getdefaulttimeout()
        if type & getattr(_socket, "SOCK_NONBLOCK", 0):
            self._timeout = 0.0
        self._tcb = None
        self._listener = None
        # Until it connects or listens, the socket's fd is an unconnected kernel TCP socket of the
        # same family: it polls exactly as a fresh socket does (POLLOUT | POLLHUP). connect() and
        # listen() put a readiness pair in its place under the same number (_arm).
        self._fd = _csocket.socket(family, SOCK_STREAM).detach()   # the C type: patch()-proof
        self._peer_fd = -1
        self._local: Optional[Tuple[bytes, int]] = None
        self._remote: Optional[Tuple[bytes, int]] = None
        self._closed = False
        self._options: dict = {}
        self._shut_rd = False
        # The socket's hold on local ports in the engine's bind table, with SO_REUSEADDR and
        # SO_REUSEPORT.
        self._binding = self._engine.binding(family)
        # Linux's default (net.ipv6.bindv6only = 0): an AF_INET6 socket also speaks IPv4, through
        # IPv4-mapped addresses (::ffff:a.b.c.d).
        self._v6only = False
        self._listener4 = None
        self._stopped_listening = False
        self._inflight = 0              # threads waiting inside a blocking call
        self._close_deferred = False

    # --- attributes as socket.socket has them -------------------------------------------------

    @property
    def family(self) -> _socket.AddressFamily:
        """The socket's address family (AF_INET or AF_INET6)."""
        return _socket.AddressFamily(self._family)

    @property
    def type(self) -> _socket.SocketKind:
        """The socket's type (SOCK_STREAM)."""
        return _socket.SocketKind(self._type)

    # --- helpers ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        # As socket.socket: close() with makefile() files still open leaves the socket usable
        # through them (urllib reads the body after closing the connection's socket).
        if self._fd < 0 or self._close_deferred:
            raise _error(errno.EBADF, "Bad file descriptor")

    def _addr_bytes(self, address: Any) -> Tuple[bytes, int]:
        if not isinstance(address, tuple) or len(address) not in ((2,) if self._family == AF_INET
                                                                  else (2, 3, 4)):
            raise TypeError(f"{'AF_INET' if self._family == AF_INET else 'AF_INET6'} address "
                            "must be a tuple (host, port)")
        host, port = address[0], address[1]
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise OverflowError("port must be 0-65535.")
        if host in ("", None):
            host = "0.0.0.0" if self._family == AF_INET else "::"
        elif host == "<broadcast>":
            raise _error(errno.EACCES)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            infos = _socket.getaddrinfo(host, port, self._family, SOCK_STREAM)
            ip = ipaddress.ip_address(infos[0][4][0])
        if (ip.version == 4) != (self._family == AF_INET):
            # The kernel socket resolves it for its family and fails there (EAI_ADDRFAMILY).
            _socket.getaddrinfo(host, port, self._family, SOCK_STREAM)
            raise _error(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return ip.packed, port

    def _deadline(self) -> Optional[float]:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _arm(self) -> None:
        """A fresh readiness pair under the socket's fd number (a new connection attempt or a
        listener): the old one, if any, belonged to a connection that is over."""
        old = self._peer_fd
        self._peer_fd = _arm_pair(self._fd)
        if old >= 0:
            os.close(old)

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
        # While we wait, a close() from another thread is put off until we are done, as a
        # blocked system call keeps the kernel's file (and its connection) alive: the call
        # carries on and completes (Linux does not wake it; shutdown() does).
        self._inflight += 1
        try:
            ready = p.poll(timeout)
        finally:
            self._inflight -= 1
        if not ready and deadline is not None and time.monotonic() >= deadline:
            if self._close_deferred:
                # As CPython: the wait ends, and the retry finds the descriptor gone.
                raise _error(errno.EBADF, "Bad file descriptor")
            raise TimeoutError("timed out")

    def _after_call(self) -> None:
        """A blocking call is over: carry out a close() that came meanwhile."""
        if self._close_deferred and not self._inflight:
            self._close_deferred = False
            self._real_close()

    # --- addresses ----------------------------------------------------------------------------

    def bind(self, address: Any) -> None:
        """bind(address)

        Bind the socket to a local address: (host, port) for AF_INET, (host, port[, flowinfo[,
        scope_id]]) for AF_INET6. The host is the stack's own address or the wildcard ("" or None);
        port 0 takes an ephemeral port."""
        self._check_open()
        if self._local is not None:
            raise _error(errno.EINVAL, "Invalid argument")
        addr, port = self._addr_bytes(address)
        zero = bytes(len(addr))
        if addr != zero and addr != self._stack.local_address(self._family):
            raise _error(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        self._stack._require()          # ENETDOWN once the stack has stopped
        port = self._engine.bind(self._binding, port)
        self._local = (addr, port)

    def getsockname(self):
        """getsockname() -> address info

        The socket's own address (the wildcard and port 0 before it is bound or connected)."""
        self._check_open()
        if self._local is None:
            return ("0.0.0.0", 0) if self._family == AF_INET else ("::", 0, 0, 0)
        return self._fmt(self._local)

    def getpeername(self):
        """getpeername() -> address info

        The address of the peer; ENOTCONN while connecting, and once the connection is over."""
        self._check_open()
        if self._remote is None or self._tcb is None or \
                not self._engine.conn_facts(self._tcb).has_peer:
            # As Linux's inet_getname: no peer while connecting or once closed.
            raise _error(errno.ENOTCONN, "Transport endpoint is not connected")
        return self._fmt(self._remote)

    def _fmt(self, ap: Tuple[bytes, int]):
        host = str(ipaddress.ip_address(ap[0]))
        if self._family == AF_INET:
            return (host, ap[1])
        if len(ap[0]) == 4:
            host = "::ffff:" + host          # an IPv4 connection of an AF_INET6 socket
        return (host, ap[1], 0, 0)

    # --- connection set-up --------------------------------------------------------------------

    def connect(self, address: Any) -> None:
        """connect(address)

        Connect the socket to a remote address. A non-blocking socket raises BlockingIOError
        (EINPROGRESS) and connects in the background; with a timeout, an attempt that outlasts it
        raises TimeoutError and goes on (connect() again: EALREADY)."""
        err = self._connect(address, raise_=True)
        if err:
            raise _error(err)

    def connect_ex(self, address: Any) -> int:
        """connect_ex(address) -> errno

        As connect(), but return the error code (0 for success) instead of raising it."""
        try:
            return self._connect(address, raise_=False)
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno

    def _connect(self, address: Any, raise_: bool) -> int:
        self._check_open()
        if self._listener is not None:
            return errno.EISCONN
        raddr, rport = self._addr_bytes(address)
        if self._tcb is not None:
            # Linux's __inet_stream_connect: the engine knows how the last attempt went.
            err = self._engine.connect_again(self._tcb)
            if err >= 0:
                return err
            self._tcb = None                 # it failed (and that was reported): start over
        laddr = self._local[0] if self._local else self._stack.local_address(self._family)
        if self._family == AF_INET6 and raddr[:12] == _V4MAPPED_PREFIX:
            # IPv4-mapped destination: an IPv4 connection (RFC 4291 §2.5.5.2), unless IPv6-only.
            if self._v6only:
                return errno.ENETUNREACH
            raddr = raddr[12:]
            laddr = laddr[12:] if laddr[:12] == _V4MAPPED_PREFIX else \
                self._stack.local_address(AF_INET)
        if laddr == bytes(len(laddr)):
            laddr = self._stack.local_address(AF_INET if len(laddr) == 4 else self._family)
        lport = self._local[1] if self._local else 0
        self._arm()
        self._tcb = self._engine.connect(laddr, lport, raddr, rport, self._options, self._fd,
                                         self._peer_fd, self._binding.reuseaddr)
        self._local = (laddr, self._engine.conn_facts(self._tcb).local[1])
        self._remote = (raddr, rport)
        if self._timeout == 0.0:
            return errno.EINPROGRESS
        return self._wait_connected()

    def _wait_connected(self) -> int:
        deadline = self._deadline()
        while True:
            err = self._engine.connect_status(self._tcb, self._timeout is None)
            if err != errno.EINPROGRESS:
                return err
            # Writable once the handshake is over; a timeout leaves the attempt going
            # (SS_CONNECTING), so connect() again gives EALREADY.
            self._wait(deadline, write=True)

    def listen(self, backlog: int = 128) -> None:
        """listen([backlog])

        Take connections (backlog: how many established ones may wait to be accepted, 1..4096; 128
        by default). An AF_INET6 socket bound to the wildcard with IPV6_V6ONLY off takes IPv4 ones
        too."""
        self._check_open()
        if self._tcb is not None:
            raise _error(errno.EINVAL, "Invalid argument")
        if self._listener is not None:
            return
        if self._local is None:
            self.bind(("", 0))
        self._engine.check_listen(self._binding, self._local[1])
        backlog = max(1, min(int(backlog), 4096))
        self._arm()
        self._listener = self._engine.listen(self._local[0], self._local[1], backlog,
                                             self._options, self._fd, self._peer_fd,
                                             self._binding.reuseaddr, self._binding)
        if self._family == AF_INET6 and not self._v6only and self._local[0] == bytes(16):
            # Dual stack: the same socket takes IPv4 connections on the port as well.
            self._engine.bind_also(self._binding, AF_INET, self._local[1])
            self._listener4 = self._engine.listen(bytes(4), self._local[1], backlog,
                                                  self._options, self._fd, self._peer_fd,
                                                  self._binding.reuseaddr, self._binding)
        # A listening socket never polls writable (tcp_poll): fill its end of the pair up.
        fill = bytes(4096)
        try:
            while os.write(self._fd, fill):
                pass
        except BlockingIOError:
            pass

    def accept(self):
        """accept() -> (socket object, address info)

        Wait for an incoming connection. Return a new socket for it and the address of the peer."""
        self._check_open()
        if self._listener is None:
            # Never listened, or stopped by shutdown(): EINVAL (as the kernel).
            raise _error(errno.EINVAL, "Invalid argument")
        deadline = self._deadline()
        try:
            while True:
                listener = self._listener
                if listener is None:              # shutdown() from another thread stopped it
                    raise _error(errno.EINVAL, "Invalid argument")
                tcb = self._engine.accept(listener, self._listener4)
                if tcb is not None:
                    break
                self._wait(deadline)
        finally:
            self._after_call()
        sock = socket(self._family, SOCK_STREAM, self.proto, stack=self._stack)
        sock._v6only = self._v6only
        sock._arm()
        sock._tcb = tcb
        sock._options = dict(self._options)
        facts = self._engine.conn_facts(tcb)
        sock._local, sock._remote = facts.local, facts.remote
        sock._timeout = _socket.getdefaulttimeout()
        self._engine.attach_fds(tcb, sock._fd, sock._peer_fd)
        return sock, sock.getpeername()

    # --- data --------------------------------------------------------------------------------

    def _connected(self, sending: bool = False):
        self._check_open()
        if not self._stack.running:
            raise _error(errno.ENETDOWN, "Network is down (the tcpfast stack is stopped)")
        if self._tcb is None:
            if sending:
                # As Linux: sending on a socket that is not connected (never connected, or a
                # listener) is EPIPE; receiving is ENOTCONN.
                raise _error(errno.EPIPE, "Broken pipe")
            raise _error(errno.ENOTCONN, "Transport endpoint is not connected")
        return self._tcb

    def send(self, data, flags: int = 0) -> int:
        """send(data[, flags]) -> count

        Send data; return how many bytes were taken, which may be fewer than given. flags:
        MSG_DONTWAIT."""
        tcb = self._tcb
        if not flags and tcb is not None and self._fd >= 0 and self._stack.running:
            # The common case, with nothing in between: room in the send buffer.
            try:
                r = self._engine.send(tcb, data)
            except (TypeError, ValueError):
                r = -1                    # not a plain byte buffer: the general path casts it
            if r > 0:
                return r
        return self._send(data, flags, self._deadline())

    def _send(self, data, flags: int, deadline: Optional[float]) -> int:
        tcb = self._connected(sending=True)
        data = memoryview(data).cast("B")
        nonblocking = bool(flags & MSG_DONTWAIT)
        while True:
            r = self._engine.send(tcb, data)      # on EAGAIN it also arms the wake-up
            if r >= 0:
                return r
            if r == -errno.EAGAIN:
                if nonblocking:
                    raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
                try:
                    self._wait(deadline, write=True)
                finally:
                    if self._close_deferred:
                        self._after_call()
                continue
            # The connection's error once, then EPIPE (the engine knows what was reported).
            raise _error(self._engine.send_error(tcb, -r))

    def sendall(self, data, flags: int = 0) -> None:
        # One deadline for the whole call (as CPython's sendall), without touching the socket's
        # timeout, which other threads may be using meanwhile.
        """sendall(data[, flags])

        Send all of data, in as many sends as it takes; the timeout counts for the whole call."""
        view = memoryview(data).cast("B")
        deadline = self._deadline()
        while view:
            n = self._send(view, flags, deadline)
            view = view[n:]

    def sendto(self, data, flags_or_address, address=None) -> int:
        """sendto(data[, flags], address) -> count

        As send(): a connected stream socket has its peer already."""
        flags = 0 if address is None else flags_or_address
        return self.send(data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """recv(buffersize[, flags]) -> data

        Receive up to buffersize bytes; b"" at end of stream. flags: MSG_PEEK, MSG_DONTWAIT,
        MSG_WAITALL."""
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if flags & ~(MSG_PEEK | MSG_DONTWAIT) or not bufsize:
            buf = bytearray(bufsize)
            n = self.recv_into(buf, bufsize, flags)
            return bytes(buf[:n])
        # The common case: straight into a bytes object of the right size.
        tcb = self._connected()
        deadline = self._deadline()
        peek = bool(flags & MSG_PEEK)
        try:
            while True:
                r = self._engine.recv_bytes(tcb, bufsize, peek)
                if not isinstance(r, int):
                    return r
                if r == -errno.EAGAIN and self._shut_rd:
                    return b""    # after shutdown(SHUT_RD): what is queued, then end of stream
                if not self._recv_error(r, bool(flags & MSG_DONTWAIT), deadline):
                    return b""
        finally:
            if self._close_deferred:
                self._after_call()

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        """recv_into(buffer[, nbytes[, flags]]) -> nbytes_read

        Receive up to nbytes bytes (the buffer's length when 0) into buffer; 0 at end of stream.
        flags as recv()."""
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
        deadline = self._deadline()
        nonblocking = bool(flags & MSG_DONTWAIT) or self._shut_rd
        peek = bool(flags & MSG_PEEK)
        if flags & MSG_WAITALL and not peek and not nonblocking and self._timeout is None:
            # Block until nbytes, end of stream or an error (recv(2) MSG_WAITALL). With a
            # timeout CPython's socket is non-blocking underneath and returns what has come.
            got = 0
            while got < nbytes:
                try:
                    n = self._recv_once(tcb, view[got:nbytes], nbytes - got, False, False, deadline)
                except (TimeoutError, OSError):
                    if got:
                        return got
                    raise
                if n == 0:
                    break
                got += n
            return got
        return self._recv_once(tcb, view, nbytes, peek, nonblocking, deadline)

    def _recv_once(self, tcb, view, nbytes, peek, nonblocking, deadline) -> int:
        try:
            while True:
                r = self._engine.recv_into(tcb, view, nbytes, peek)
                if r >= 0:
                    return r
                if r == -errno.EAGAIN and self._shut_rd:
                    return 0      # after shutdown(SHUT_RD): what is queued, then end of stream
                if not self._recv_error(r, nonblocking, deadline):
                    return 0
        finally:
            self._after_call()

    def _recv_error(self, r: int, nonblocking: bool, deadline: Optional[float]) -> bool:
        """A receive came back with -errno ``r``. EAGAIN: wait for readability and return True
        (try again). An error already reported once: return False (end of stream, as the
        kernel reports an error once). Otherwise raise it."""
        if r == -errno.EAGAIN:
            if nonblocking:
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
            self._wait(deadline)
            return True
        err = self._engine.recv_error(self._tcb, -r)
        if not err:
            return False
        _clear_fd_error(self._fd)           # reported: POLLERR goes, as sk_err does
        raise _error(err)

    def recvfrom(self, bufsize: int, flags: int = 0):
        """recvfrom(buffersize[, flags]) -> (data, address info)

        As recv(); the address is None, as for any connected stream socket."""
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer, nbytes: int = 0, flags: int = 0):
        """recvfrom_into(buffer[, nbytes[, flags]]) -> (nbytes, address info)

        As recv_into(); the address is None, as for any connected stream socket."""
        return self.recv_into(buffer, nbytes, flags), None

    # --- shutdown and close ----------------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        """shutdown(flag)

        Shut down reading (SHUT_RD: what is queued, then end of stream), writing (SHUT_WR: our FIN
        after the data) or both (SHUT_RDWR). On a listening socket, stop listening."""
        self._check_open()
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise _error(errno.EINVAL, "Invalid argument")
        if self._listener is not None:
            # As Linux: shutdown stops a listener; a thread blocked in accept() wakes (EINVAL).
            if how in (SHUT_RD, SHUT_RDWR):
                self._engine.unlisten(self._listener)
                if self._listener4 is not None:
                    self._engine.unlisten(self._listener4)
                    self._listener4 = None
                self._listener = None
                self._stopped_listening = True
                _shutdown_fd(self._peer_fd)
            return
        tcb = self._connected()
        if self._engine.conn_facts(tcb).finished:
            raise _error(errno.ENOTCONN, "Transport endpoint is not connected")
        if how in (SHUT_RD, SHUT_RDWR):
            self._shut_rd = True
            self._engine.poke(tcb)     # readable now (end of stream): wakes a blocked reader
        if how in (SHUT_WR, SHUT_RDWR):
            r = self._engine.shutdown(tcb)
            if r < 0:
                raise _error(-r)

    def _decref_socketios(self) -> None:
        # socket.SocketIO (makefile) calls this when one of its files closes.
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    def close(self) -> None:
        """close()

        Close the socket; as socket.socket, the connection ends only when no file made by
        makefile() is open any more."""
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def _real_close(self, keep_fd: bool = False) -> None:
        if self._fd < 0:
            return
        if self._inflight and not keep_fd:
            # Another thread is blocked in a call on this socket: the number is gone for new
            # calls (EBADF) but the connection lives until that call returns (_after_call).
            self._close_deferred = True
            return
        try:
            if self._listener is not None:
                self._engine.unlisten(self._listener)
                if self._listener4 is not None:
                    self._engine.unlisten(self._listener4)
            elif self._tcb is not None and self._stack.running:
                onoff, seconds = self._linger
                if onoff and seconds == 0:
                    # SO_LINGER with a zero time: drop everything and reset (socket(7)).
                    self._engine.abort(self._tcb)
                    self._engine.close(self._tcb)
                else:
                    self._engine.close(self._tcb)
                    if onoff:
                        self._linger_wait(seconds)
        finally:
            self._engine.unbind(self._binding)
            # The engine has let go of the pair (close/unlisten above). Shutting the peer end
            # down makes the fd readable and writable at once, which wakes every thread still
            # waiting on it; they then find the socket closed (EBADF).
            fd, peer = self._fd, self._peer_fd
            self._fd = self._peer_fd = -1
            try:
                if peer >= 0:
                    _shutdown_fd(peer)
            finally:
                if peer >= 0:
                    os.close(peer)
                if not keep_fd:
                    os.close(fd)

    def _linger_wait(self, seconds: int) -> None:
        """SO_LINGER with a time: block until our FIN is acknowledged, or the time is up."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._engine.conn_facts(self._tcb).fin_pending:
                return
            time.sleep(0.002)

    def detach(self) -> int:
        """detach()

        There is no kernel TCP descriptor to hand over, so this fails (EOPNOTSUPP), having
        closed the connection and given up the descriptor number to whoever already took it
        from fileno(): ssl.SSLContext.wrap_socket() does so before it calls detach(), and would
        close that number itself. (TLS on tcpfast sockets: asyncio's ``ssl=``, which runs TLS
        above the socket, works.)"""
        self._closed = True
        self._real_close(keep_fd=True)
        raise _error(errno.EOPNOTSUPP, "tcpfast sockets have no kernel descriptor to detach "
                     "(ssl.wrap_socket cannot take one over; use asyncio's ssl= or ssl.SSLObject)")

    def makefile(self, mode: str = "r", buffering: Optional[int] = None, *,
                 encoding: Optional[str] = None, errors: Optional[str] = None,
                 newline: Optional[str] = None):
        """makefile(mode="r", buffering=None, *, encoding=None, errors=None, newline=None)

        A file object on the socket, as socket.socket.makefile() (modes r, w, b)."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError("invalid mode %r (only r, w, b allowed)" % (mode,))
        writing = "w" in mode
        reading = "r" in mode or not writing
        binary = "b" in mode
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = _socket.SocketIO(self, rawmode)     # it speaks recv_into/send/_decref_socketios
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = io.TextIOWrapper(buffer, io.text_encoding(encoding), errors, newline)
        text.mode = mode
        return text

    def sendfile(self, file, offset: int = 0, count: Optional[int] = None) -> int:
        """sendfile(file, offset=0, count=None) -> bytes sent (as socket.socket.sendfile, by
        reading the file; there is no kernel socket to splice into)."""
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if not self.getblocking():
            raise ValueError("non-blocking sockets are not supported")
        if count is not None and (not isinstance(count, int) or count <= 0):
            raise ValueError(f"count must be a positive integer (got {count!r})")
        if offset:
            file.seek(offset)
        total = 0
        chunk = 65536
        try:
            while count is None or total < count:
                want = chunk if count is None else min(chunk, count - total)
                data = file.read(want)
                if not data:
                    break
                self.sendall(data)
                total += len(data)
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)
        return total

    def __enter__(self) -> "socket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0 and getattr(self, "_io_refs", 0) <= 0:
            try:
                self.close()
            except Exception:
                pass

    # --- modes and options -------------------------------------------------------------------

    def fileno(self) -> int:
        """fileno() -> integer

        The socket's file descriptor (-1 once closed). It polls as the connection is ready, so
        select, poll, epoll and asyncio can wait on it."""
        return -1 if self._close_deferred else self._fd

    def settimeout(self, value: Optional[float]) -> None:
        """settimeout(timeout)

        Set a timeout on blocking calls: None blocks, 0.0 makes the socket non-blocking, a positive
        number of seconds raises TimeoutError when it has passed."""
        self._check_open()
        self._timeout = timeout_value(value)

    def gettimeout(self) -> Optional[float]:
        """gettimeout() -> timeout

        The timeout in seconds (float) of blocking calls, or None when there is none."""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """setblocking(flag)

        Blocking (True, as settimeout(None)) or non-blocking (False, as settimeout(0.0))."""
        self._check_open()
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        """getblocking()

        True when the socket blocks in its calls (its timeout is not 0.0)."""
        return self._timeout != 0.0

    @property
    def timeout(self) -> Optional[float]:
        """The timeout of blocking calls in seconds (None: none), as gettimeout()."""
        return self._timeout

    # Options kept as connection options (name, to-option, from-option); times in seconds.
    _SOCKOPTS = {
        (_socket.SOL_SOCKET, _socket.SO_KEEPALIVE): "keepalive",
        (_socket.SOL_SOCKET, _socket.SO_SNDBUF): "sndbuf",
        (_socket.SOL_SOCKET, _socket.SO_RCVBUF): "rcvbuf",
        (_socket.IPPROTO_TCP, _socket.TCP_NODELAY): "nodelay",
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_KEEPIDLE", 4)): "keepidle",
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_KEEPINTVL", 5)): "keepintvl",
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_KEEPCNT", 6)): "keepcnt",
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_MAXSEG", 2)): "mss",
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_USER_TIMEOUT", 18)): "user_timeout",
        (_socket.IPPROTO_TCP, getattr(_socket, "TCP_CONGESTION", 13)): "cc",
        (_socket.SOL_SOCKET, _socket.SO_LINGER): "linger",
    }

    def setsockopt(self, level: int, optname: int, value, optlen: Optional[int] = None) -> None:
        """setsockopt(level, option, value: int | bytes)"""
        self._check_open()
        if value is None:
            raise TypeError("setsockopt() with a None value needs optlen (not supported)")
        key = (level, optname)
        if key == (_socket.SOL_SOCKET, _socket.SO_REUSEADDR):
            self._binding.reuseaddr = bool(_int_opt(value))
            return
        if key == (_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY) and self._family == AF_INET6:
            self._v6only = bool(_int_opt(value))
            return
        if key == (_socket.SOL_SOCKET, getattr(_socket, "SO_REUSEPORT", 15)):
            self._binding.reuseport = bool(_int_opt(value))
            return
        name = self._SOCKOPTS.get(key)
        if name is None:
            raise _error(errno.ENOPROTOOPT, "Protocol not available")
        if name == "linger":
            if not isinstance(value, (bytes, bytearray)) or len(value) < 8:
                raise _error(errno.EINVAL, "Invalid argument")
            onoff, seconds = struct.unpack("ii", bytes(value[:8]))
            # As Linux's sock_setsockopt: turning it off leaves the time as it was.
            self._linger = (1, max(0, seconds)) if onoff else (0, self._linger[1])
            return
        if name == "cc":
            if not isinstance(value, (bytes, bytearray)):
                raise TypeError("a bytes-like object is required for TCP_CONGESTION")
            algo = bytes(value).split(b"\0", 1)[0]
            names = {v: k for k, v in _CC_NAMES.items()}
            if algo not in names:
                raise _error(errno.ENOENT, "No such file or directory")
            option = names[algo]
        else:
            v = _int_opt(value)
            if name in ("sndbuf", "rcvbuf"):
                option = max(4608 if name == "sndbuf" else 2304, v * 2)   # socket(7): doubled
            elif name in ("keepidle", "keepintvl", "keepcnt"):
                if not 1 <= v <= (32767 if name != "keepcnt" else 127):
                    raise _error(errno.EINVAL, "Invalid argument")
                option = float(v) if name != "keepcnt" else v
            elif name == "mss":
                if not 88 <= v <= 65495:
                    raise _error(errno.EINVAL, "Invalid argument")
                option = v
            elif name == "user_timeout":
                if v < 0:
                    raise _error(errno.EINVAL, "Invalid argument")
                option = v / 1000.0
            else:
                option = bool(v)
        self._options[name] = option
        if self._tcb is not None:
            self._engine.set_options(self._tcb, {name: option})

    def getsockopt(self, level: int, optname: int, buflen: Optional[int] = None):
        """getsockopt(level, option[, buflen]) -> int, or bytes when buflen is given"""
        self._check_open()
        key = (level, optname)
        if key == (_socket.IPPROTO_TCP, getattr(_socket, "TCP_INFO", 11)):
            return self._tcp_info(buflen if buflen is not None else 4)
        if key == (_socket.SOL_SOCKET, _socket.SO_REUSEADDR):
            return _int_out(int(self._binding.reuseaddr), buflen)
        if key == (_socket.SOL_SOCKET, _socket.SO_ERROR):
            value = 0
            if self._tcb is not None:
                value = self._engine.sock_error(self._tcb)     # once, as the kernel's sock_error
                if value:
                    _clear_fd_error(self._fd)
            return _int_out(value, buflen)
        if key == (_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY) and self._family == AF_INET6:
            return _int_out(int(self._v6only), buflen)
        if key == (_socket.SOL_SOCKET, getattr(_socket, "SO_REUSEPORT", 15)):
            return _int_out(int(self._binding.reuseport), buflen)
        if key == (_socket.SOL_SOCKET, _socket.SO_TYPE):
            return _int_out(SOCK_STREAM, buflen)
        if key == (_socket.SOL_SOCKET, getattr(_socket, "SO_ACCEPTCONN", 30)):
            return _int_out(int(self._listener is not None), buflen)
        name = self._SOCKOPTS.get(key)
        if name is None:
            raise _error(*_unknown_option(level))
        if name == "linger":
            if buflen is None:
                return self._linger[0]
            return struct.pack("ii", *self._linger)[:buflen].ljust(buflen, b"\0")
        if name == "cc":
            algo = self._option("cc")
            raw = _CC_NAMES[algo]
            if buflen is None:
                return int.from_bytes(raw[:4].ljust(4, b"\0"), "little", signed=True)
            return raw[:buflen].ljust(buflen, b"\0")
        if name == "mss" and self._tcb is not None:
            return _int_out(self._engine.conn_facts(self._tcb).mss, buflen)
        if name == "mss":
            value = self._options.get("mss", self._stack.tcp_options.get("mss", _TCP_MSS_DEFAULT))
        else:
            value = self._option(name)
        if name == "user_timeout":
            value = int(round(value * 1000))
        return _int_out(int(value), buflen)

    def _option(self, name: str):
        """A connection option as this socket sets it, else as new connections get it (the
        defaults, with the stack's options)."""
        if name in self._options:
            return self._options[name]
        return self._engine.options()[name]

    def _tcp_info(self, buflen: int) -> bytes:
        """struct tcp_info as Linux lays it out (linux/tcp.h), as far as tcpfast knows its fields."""
        out = bytearray(232)
        if self._tcb is None:
            struct.pack_into("B", out, 0, TCPI_STATE["LISTEN" if self._listener is not None
                                                     else "CLOSED"])
            return bytes(out[:buflen])
        facts = self._engine.conn_facts(self._tcb)
        info = facts.info
        struct.pack_into("B", out, 0, facts.tcpi_state)
        opts = (1 if info["ts_ok"] else 0) | (2 if info["sack_ok"] else 0) | \
            (4 if info["ws_ok"] else 0)
        struct.pack_into("BBBBBB", out, 1, 1 if info["in_recovery"] else 0,
                         min(info["retries"], 255), 0, 0, opts,
                         (info["snd_wscale"] & 0xF) | ((info["rcv_wscale"] & 0xF) << 4))
        smss = info["smss"]
        flight = info["unacked"]
        struct.pack_into("IIIII", out, 8, info["rto"], 40000, smss, smss,
                         (flight + smss - 1) // max(smss, 1))
        srtt = info["srtt"] or 0
        struct.pack_into("IIIIIIII", out, 60, self._stack.mtu, info["rcv_wnd"], srtt,
                         info["rttvar"], min(info["ssthresh"], 0x7FFFFFFF),
                         info["cwnd"] // max(smss, 1), smss, 3)
        struct.pack_into("I", out, 100, facts.counters["retransmits"])
        return bytes(out[:buflen])

    def __repr__(self) -> str:
        if self._fd < 0:
            return (f"<tcpfast.socket [closed] fd=-1, family={self._family}, type={self._type}, "
                    f"proto={self.proto}>")
        parts = [f"<tcpfast.socket fd={self._fd}, family={self._family}, type={self._type}, "
                 f"proto={self.proto}"]
        parts.append(f", laddr={self.getsockname()}")
        if self._remote is not None and self._tcb is not None:
            parts.append(f", raddr={self._fmt(self._remote)}")
        return "".join(parts) + ">"


register_socket_class(socket)         # Stack.socket() makes these

_GLOBAL_DEFAULT_TIMEOUT = _socket._GLOBAL_DEFAULT_TIMEOUT


def create_connection(address, timeout=_GLOBAL_DEFAULT_TIMEOUT, source_address=None, *,
                      all_errors: bool = False, stack: Optional[Stack] = None) -> socket:
    """create_connection(address, timeout=..., source_address=None, *, all_errors=False)

    As socket.create_connection, with a tcpfast socket: try each address getaddrinfo gives for
    ``address`` in turn (AF_INET and AF_INET6 stream), return the first connected one.
    """
    host, port = address
    exceptions = []
    for af, socktype, proto, _canon, sa in _socket.getaddrinfo(host, port, 0, SOCK_STREAM):
        if af not in (AF_INET, AF_INET6):
            continue
        sock = None
        try:
            sock = socket(af, socktype, proto, stack=stack)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sa)
            exceptions.clear()
            return sock
        except OSError as exc:
            exceptions.append(exc)
            if sock is not None:
                sock.close()
    if exceptions:
        try:
            group = getattr(builtins, "ExceptionGroup", None)     # Python >= 3.11
            if not all_errors or group is None:
                raise exceptions[0]
            raise group("create_connection failed", exceptions)
        finally:
            exceptions.clear()
    raise OSError("getaddrinfo returns an empty list")


def has_dualstack_ipv6() -> bool:
    """has_dualstack_ipv6() -> bool

    True: a tcpfast AF_INET6 socket with IPV6_V6ONLY off also takes IPv4 connections."""
    return True


def create_server(address, *, family=AF_INET, backlog=None, reuse_port: bool = False,
                  dualstack_ipv6: bool = False, stack: Optional[Stack] = None) -> socket:
    """create_server(address, *, family=AF_INET, backlog=None, reuse_port=False,
    dualstack_ipv6=False)

    As socket.create_server, with a tcpfast socket (SO_REUSEADDR set, as CPython does on POSIX).
    """
    if dualstack_ipv6:
        if not has_dualstack_ipv6():
            raise ValueError("dualstack_ipv6 not supported on this platform")
        if family != AF_INET6:
            raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    sock = socket(family, SOCK_STREAM, stack=stack)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEPORT, 1)
        try:
            sock.bind(address)
        except OSError as err:
            msg = "%s (while attempting to bind on address %r)" % (err.strerror, address)
            raise OSError(err.errno, msg) from None
        if backlog is None:
            sock.listen()
        else:
            sock.listen(backlog)
        return sock
    except BaseException:
        sock.close()
        raise
