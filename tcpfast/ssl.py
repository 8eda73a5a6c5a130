"""TLS over tcpfast sockets: ``ssl.SSLContext.wrap_socket`` works on them.

The standard library's :class:`ssl.SSLSocket` hands the socket's kernel descriptor to OpenSSL,
which reads and writes it itself. A tcpfast socket's descriptor carries no bytes (it only shows
readiness), so TLS has to run over the socket's data instead: OpenSSL speaks to two memory BIOs
through an :class:`ssl.SSLObject`, and this module moves the ciphertext between those BIOs and
the tcpfast connection (as asyncio's ``sslproto`` and trio's ``SSLStream`` do over their own
transports).

:class:`SSLSocket` is a subclass of :class:`ssl.SSLSocket` (``isinstance`` holds, and a
``sslsocket_class`` override or subclass of the context keeps its own methods before ours) that
overrides every method touching the descriptor. It is made by ``SSLContext.wrap_socket`` (and
``ssl.wrap_socket``) when the socket given is a tcpfast socket: importing :mod:`tcpfast` hooks
``ssl.SSLSocket._create``, through which both go, and leaves every other socket to the standard
library's code, unchanged.

Blocking, timeout and non-blocking modes behave as the standard library's: a timeout raises
``TimeoutError("The read operation timed out")`` (or handshake/write), a non-blocking socket
raises :class:`ssl.SSLWantReadError`/:class:`ssl.SSLWantWriteError`. What OpenSSL has decrypted
but the application has not read yet (``pending()``) is not visible to ``select()`` on
``fileno()``, exactly as with the standard library's ``SSLSocket``: call ``recv`` until it
raises ``SSLWantReadError`` (or check ``pending()``) before waiting on the descriptor.
"""
from __future__ import annotations

import _socket
import errno
import select
import threading
import socket as _stdlib_socket
import ssl as _ssl
import time
from typing import Any, Optional, Tuple

from tcpfast.socket import socket as _tcpfast_socket, timeout_value

__all__ = ["SSLSocket", "is_tcpfast_socket"]

# Ciphertext taken from the connection per read, and plaintext given to OpenSSL per write: one
# write makes at most this much ciphertext in the outgoing BIO (bounded; TLS records are 16 KiB).
_CHUNK = 256 * 1024

_READ, _WRITE = False, True


def is_tcpfast_socket(sock: Any) -> bool:
    """is_tcpfast_socket(sock) -> bool: is ``sock`` a tcpfast socket (not an SSLSocket over one)?"""
    return isinstance(sock, _tcpfast_socket)


def _timeout_error(what: str) -> TimeoutError:
    return TimeoutError(f"The {what} operation timed out")


class SSLSocket(_ssl.SSLSocket):
    """SSLSocket: TLS over a tcpfast socket, through ``ssl.SSLObject`` and memory BIOs.

    Made by ``SSLContext.wrap_socket(sock, ...)`` for a tcpfast ``sock``; not constructed
    directly (as the standard library's). The wrapped socket is taken over: after wrapping, use
    the returned object only.
    """

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def _tcpfast_create(cls, sock: Any, server_side: bool = False,
                        do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                        server_hostname: Optional[str] = None, context: Any = None,
                        session: Any = None) -> "SSLSocket":
        if sock.type != _stdlib_socket.SOCK_STREAM:
            raise NotImplementedError("only stream sockets are supported")
        if server_side:
            if server_hostname:
                raise ValueError("server_hostname can only be specified in client mode")
            if session is not None:
                raise ValueError("session can only be specified in client mode")
        if context.check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")
        # An SSLSocket is a kernel socket class; this one never opens a descriptor of its own
        # (every method that would use it is overridden), so the C object stays unopened.
        self = _socket.socket.__new__(cls)
        self._io_refs = 0
        self._closed = False
        self._raw = sock
        self._timeout = sock.gettimeout()
        sock.setblocking(False)           # waits are ours, on the descriptor's readiness
        self._context = context
        self._session = session
        self._sslobj = None
        self._incoming = _ssl.MemoryBIO()
        self._outgoing = _ssl.MemoryBIO()
        self._unsent = b""               # ciphertext taken from the BIO, not yet on the wire
        self._tls_lock = threading.Lock()  # the SSLObject and both BIOs
        self._send_lock = threading.Lock()  # one thread at a time puts ciphertext out, in order
        self.server_side = server_side
        self.server_hostname = context._encode_hostname(server_hostname)
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs
        try:
            sock.getpeername()
        except OSError as exc:
            if exc.errno != errno.ENOTCONN:
                raise
            connected = False
        else:
            connected = True
        self._connected = connected
        if connected:
            try:
                self._sslobj = self._new_sslobj()
                if do_handshake_on_connect:
                    if self._timeout == 0.0:
                        raise ValueError("do_handshake_on_connect should not be specified for "
                                         "non-blocking sockets")
                    self.do_handshake()
            except (OSError, ValueError):
                self.close()
                raise
        return self

    def _new_sslobj(self) -> _ssl.SSLObject:
        # wrap_bio honours the context's sslobject_class (SSLContext subclasses keep working).
        self._incoming = _ssl.MemoryBIO()
        self._outgoing = _ssl.MemoryBIO()
        self._unsent = b""
        return self._context.wrap_bio(self._incoming, self._outgoing,
                                      server_side=self.server_side,
                                      server_hostname=self.server_hostname,
                                      session=self._session)

    # -- the engine of this module: run an SSLObject call over the connection -----------------

    def _deadline(self) -> Optional[float]:
        t = self._timeout
        return None if t is None else time.monotonic() + t

    def _wait(self, write: bool, deadline: Optional[float], what: str) -> None:
        """Wait until the connection is readable (or writable); TimeoutError at the deadline;
        SSLWantRead/WriteError at once in non-blocking mode."""
        if self._timeout == 0.0:
            raise (_ssl.SSLWantWriteError if write else _ssl.SSLWantReadError)(
                "The operation did not complete (%s)" % ("write" if write else "read"))
        poller = select.poll()
        poller.register(self._raw.fileno(), select.POLLOUT if write else select.POLLIN)
        while True:
            if deadline is None:
                ms = None
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _timeout_error(what)
                ms = max(1, int(left * 1000 + 0.999))
            if poller.poll(ms):
                return

    def _flush(self, deadline: Optional[float], what: str, wait_turn: bool = True) -> bool:
        """Put the ciphertext OpenSSL made on the connection, in order. Returns True when all
        of it is out (or another thread is putting it out: with ``wait_turn`` False, a thread
        already flushing drains it all), False when some is left in non-blocking mode."""
        while True:
            if not self._send_lock.acquire(wait_turn):
                return True                   # the flushing thread re-checks after it lets go
            try:
                while True:
                    if not self._unsent:
                        with self._tls_lock:
                            self._unsent = self._outgoing.read()
                        if not self._unsent:
                            break
                    try:
                        n = self._raw.send(self._unsent)
                    except (BlockingIOError, InterruptedError):
                        if self._timeout == 0.0:
                            return False
                        self._wait(_WRITE, deadline, what)
                        continue
                    self._unsent = self._unsent[n:]
            finally:
                self._send_lock.release()
            if not self._outgoing.pending:
                return True                   # (else: written while we let go; go again)

    def _fill(self, deadline: Optional[float], what: str) -> None:
        """Bring ciphertext from the connection into the incoming BIO (end of stream as EOF);
        recv and the BIO write as one step, so two readers cannot swap pieces."""
        while True:
            with self._tls_lock:
                try:
                    data = self._raw.recv(_CHUNK)
                except (BlockingIOError, InterruptedError):
                    data = None
                else:
                    if data:
                        self._incoming.write(data)
                    else:
                        self._incoming.write_eof()
            if data is not None:
                return
            self._wait(_READ, deadline, what)

    def _run(self, what: str, fn: Any, *args: Any) -> Any:
        """Call ``fn(*args)`` (an SSLObject method) until it completes, moving ciphertext both
        ways; the socket's timeout is one deadline for the whole call. SSLObject calls and the
        BIOs are used under one lock (OpenSSL's objects are not for two threads at once), never
        held while waiting, so one thread can read while another writes."""
        deadline = self._deadline()
        while True:
            with self._tls_lock:
                try:
                    return_value, done = fn(*args), True
                except _ssl.SSLWantReadError:
                    return_value, done = None, False
                eof = self._incoming.eof
            if done:
                # A write must be on the connection before it returns (bounded memory, and
                # sendall's meaning); a read's by-products (TLS 1.3 tickets, key updates) go
                # now too unless another thread is already sending.
                self._flush(deadline, what, wait_turn=what != "read")
                return return_value
            # What OpenSSL wrote first (a handshake message) goes out before we wait for the
            # peer's answer. Non-blocking, when it cannot all go: ask to be called when
            # writable, as the kernel-backed SSLSocket does (SSL_ERROR_WANT_WRITE).
            if not self._flush(deadline, what, wait_turn=False):
                raise _ssl.SSLWantWriteError("The operation did not complete (write)")
            if eof:
                raise _ssl.SSLEOFError(_ssl.SSL_ERROR_EOF,
                                       "EOF occurred in violation of protocol")
            self._fill(deadline, what)

    # -- the TLS calls -------------------------------------------------------------------------

    def _check_tls(self, what: str) -> None:
        self._checkClosed()
        if self._sslobj is None:
            raise ValueError(f"{what} on closed or unwrapped SSL socket.")

    def do_handshake(self, block: bool = False) -> None:
        """do_handshake(): run the TLS handshake (as ssl.SSLSocket.do_handshake)."""
        self._check_connected()
        self._check_tls("Handshake")
        self._run("handshake", self._sslobj.do_handshake)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        """read(len=1024, buffer=None) -> bytes or int: decrypted data, b'' (0) at the end."""
        self._checkClosed()
        if self._sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        try:
            if buffer is not None:
                return self._run("read", self._sslobj.read, len, buffer)
            return self._run("read", self._sslobj.read, len)
        except _ssl.SSLError as exc:
            if exc.args[0] == _ssl.SSL_ERROR_EOF and self.suppress_ragged_eofs:
                return 0 if buffer is not None else b""
            raise

    def write(self, data: Any) -> int:
        """write(data) -> int: encrypt and send ``data``; returns the number of bytes taken."""
        self._checkClosed()
        if self._sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        deadline = self._deadline()
        if self._unsent or self._outgoing.pending:
            # The records of an earlier non-blocking write still wait for room.
            if not self._flush(deadline, "write", wait_turn=True):
                raise _ssl.SSLWantWriteError("The operation did not complete (write)")
        with memoryview(data) as view, view.cast("B") as b:
            piece = b[:_CHUNK]
            return self._run("write", self._sslobj.write, piece)

    def send(self, data: Any, flags: int = 0) -> int:
        """send(data[, flags]) -> count: as ssl.SSLSocket.send (flags must be 0)."""
        self._checkClosed()
        if self._sslobj is None:
            return self._raw.send(data, flags)
        if flags != 0:
            raise ValueError("non-zero flags not allowed in calls to send() on %s"
                             % self.__class__)
        return self.write(data)

    def sendall(self, data: Any, flags: int = 0) -> None:
        """sendall(data[, flags]): send all of ``data`` (flags must be 0)."""
        self._checkClosed()
        if self._sslobj is None:
            return self._raw.sendall(data, flags)
        if flags != 0:
            raise ValueError("non-zero flags not allowed in calls to sendall() on %s"
                             % self.__class__)
        with memoryview(data) as view, view.cast("B") as b:
            count, amount = 0, len(b)
            while count < amount:
                count += self.send(b[count:])

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        """recv(buflen=1024[, flags]) -> data: decrypted bytes; b'' at the end of the stream."""
        self._checkClosed()
        if self._sslobj is None:
            return self._raw.recv(buflen, flags)
        if flags != 0:
            raise ValueError("non-zero flags not allowed in calls to recv() on %s"
                             % self.__class__)
        return self.read(buflen)

    def recv_into(self, buffer: Any, nbytes: Optional[int] = None, flags: int = 0) -> int:
        """recv_into(buffer[, nbytes[, flags]]) -> nbytes read into ``buffer``."""
        self._checkClosed()
        if nbytes is None:
            if buffer is not None:
                with memoryview(buffer) as view:
                    nbytes = view.nbytes
                if not nbytes:
                    nbytes = 1024
            else:
                nbytes = 1024
        if self._sslobj is None:
            return self._raw.recv_into(buffer, nbytes, flags)
        if flags != 0:
            raise ValueError("non-zero flags not allowed in calls to recv_into() on %s"
                             % self.__class__)
        return self.read(nbytes, buffer)

    def recvfrom(self, buflen: int = 1024, flags: int = 0) -> Tuple[bytes, Any]:
        self._checkClosed()
        if self._sslobj is not None:
            raise ValueError("recvfrom not allowed on instances of %s" % self.__class__)
        return self._raw.recvfrom(buflen, flags)

    def recvfrom_into(self, buffer: Any, nbytes: Optional[int] = None, flags: int = 0) -> Any:
        self._checkClosed()
        if self._sslobj is not None:
            raise ValueError("recvfrom_into not allowed on instances of %s" % self.__class__)
        return self._raw.recvfrom_into(buffer, nbytes or 0, flags)

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = None) -> int:
        self._checkClosed()
        if self._sslobj is not None:
            raise ValueError("sendto not allowed on instances of %s" % self.__class__)
        return self._raw.sendto(data, flags_or_addr, addr)

    def sendmsg(self, *args: Any, **kwargs: Any) -> int:
        raise NotImplementedError("sendmsg not allowed on instances of %s" % self.__class__)

    def recvmsg(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("recvmsg not allowed on instances of %s" % self.__class__)

    def recvmsg_into(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("recvmsg_into not allowed on instances of %s" % self.__class__)

    def pending(self) -> int:
        """pending() -> int: decrypted bytes ready to read without touching the connection."""
        self._checkClosed()
        return self._sslobj.pending() if self._sslobj is not None else 0

    def unwrap(self) -> "SSLSocket":
        """unwrap(): the TLS shutdown (close_notify both ways); the socket then carries plain
        data (as ssl.SSLSocket.unwrap, which returns the same socket)."""
        if self._sslobj is None:
            raise ValueError("No SSL wrapper around " + str(self))
        self._run("shutdown", self._sslobj.unwrap)
        self._sslobj = None
        return self

    def sendfile(self, file: Any, offset: int = 0, count: Optional[int] = None) -> int:
        """sendfile(file[, offset[, count]]) -> sent: through TLS, the file read and sent."""
        if self._sslobj is None:
            return self._raw.sendfile(file, offset, count)
        return self._sendfile_use_send(file, offset, count)

    def verify_client_post_handshake(self) -> None:
        if self._sslobj is None:
            raise ValueError("No SSL wrapper around " + str(self))
        with self._tls_lock:
            self._sslobj.verify_client_post_handshake()
        self._flush(self._deadline(), "write")

    # Facts of the TLS session, from the SSLObject (None before the handshake, as ssl's).
    def getpeercert(self, binary_form: bool = False) -> Any:
        self._checkClosed()
        self._check_connected()
        return self._sslobj.getpeercert(binary_form) if self._sslobj is not None else None

    def _tls_fact(self, name: str) -> Any:
        self._checkClosed()
        return getattr(self._sslobj, name)() if self._sslobj is not None else None

    def selected_alpn_protocol(self) -> Optional[str]:
        return self._tls_fact("selected_alpn_protocol")

    def selected_npn_protocol(self) -> Optional[str]:
        return None

    def cipher(self) -> Optional[Tuple[str, str, int]]:
        return self._tls_fact("cipher")

    def shared_ciphers(self) -> Any:
        return self._tls_fact("shared_ciphers")

    def compression(self) -> Optional[str]:
        return self._tls_fact("compression")

    def version(self) -> Optional[str]:
        return self._tls_fact("version")

    def get_channel_binding(self, cb_type: str = "tls-unique") -> Optional[bytes]:
        if self._sslobj is None:
            return None
        return self._sslobj.get_channel_binding(cb_type)

    @property
    def session(self) -> Any:
        return self._sslobj.session if self._sslobj is not None else None

    @session.setter
    def session(self, session: Any) -> None:
        self._session = session
        if self._sslobj is not None:
            self._sslobj.session = session

    @property
    def session_reused(self) -> Optional[bool]:
        return self._sslobj.session_reused if self._sslobj is not None else None

    @property
    def context(self) -> Any:
        return self._context

    @context.setter
    def context(self, ctx: Any) -> None:
        self._context = ctx
        if self._sslobj is not None:
            self._sslobj.context = ctx

    # -- the connection: the wrapped tcpfast socket does the work -----------------------------

    def _check_connected(self) -> None:
        if not self._connected:
            self._raw.getpeername()       # raises ENOTCONN as the kernel would

    def _checkClosed(self, msg: Any = None) -> None:
        if self._closed and self._io_refs <= 0:
            raise OSError(errno.EBADF, "Bad file descriptor")

    def connect(self, addr: Any) -> None:
        """connect(address): connect, then (do_handshake_on_connect) the TLS handshake."""
        self._real_connect(addr, False)

    def connect_ex(self, addr: Any) -> int:
        return self._real_connect(addr, True)

    def _real_connect(self, addr: Any, connect_ex: bool) -> Any:
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._connected or self._sslobj is not None:
            raise ValueError("attempt to connect already-connected SSLSocket!")
        self._sslobj = self._new_sslobj()
        try:
            rc = self._raw_connect(addr, connect_ex)
            if not rc:
                self._connected = True
                if self.do_handshake_on_connect:
                    self.do_handshake()
            return rc
        except (OSError, ValueError):
            self._sslobj = None
            raise

    def _raw_connect(self, addr: Any, connect_ex: bool) -> Any:
        # The raw socket runs non-blocking under us: connect with our mode's semantics.
        rc = self._raw.connect_ex(addr)
        if rc in (errno.EINPROGRESS, errno.EALREADY) and self._timeout != 0.0:
            deadline = self._deadline()
            while True:
                try:
                    self._wait(_WRITE, deadline, "connect")
                except TimeoutError:
                    if connect_ex:
                        return errno.EAGAIN
                    raise TimeoutError("timed out") from None
                rc = self._raw.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_ERROR)
                if rc != 0 or self._is_connected():
                    break
        if connect_ex:
            return rc
        if rc:
            raise OSError(rc, errno.errorcode.get(rc, str(rc)))
        return None

    def _is_connected(self) -> bool:
        try:
            self._raw.getpeername()
        except OSError:
            return False
        return True

    def accept(self) -> Tuple["SSLSocket", Any]:
        """accept() -> (SSLSocket, address): a connection, wrapped server-side."""
        deadline = self._deadline()
        while True:
            try:
                newsock, addr = self._raw.accept()
                break
            except (BlockingIOError, InterruptedError):
                if self._timeout == 0.0:
                    raise
                try:
                    self._wait(_READ, deadline, "accept")
                except TimeoutError:
                    raise TimeoutError("timed out") from None
        newsock.settimeout(self._timeout)
        newsock = self.context.wrap_socket(newsock,
                                           do_handshake_on_connect=self.do_handshake_on_connect,
                                           suppress_ragged_eofs=self.suppress_ragged_eofs,
                                           server_side=True)
        return newsock, addr

    def bind(self, address: Any) -> None:
        self._raw.bind(address)

    def listen(self, backlog: int = 128) -> None:
        self._raw.listen(backlog)

    def shutdown(self, how: int) -> None:
        self._checkClosed()
        self._sslobj = None
        self._raw.shutdown(how)

    def fileno(self) -> int:
        return self._raw.fileno() if not self._closed else -1

    def getsockname(self) -> Any:
        return self._raw.getsockname()

    def getpeername(self) -> Any:
        return self._raw.getpeername()

    def setsockopt(self, *args: Any) -> None:
        self._raw.setsockopt(*args)

    def getsockopt(self, *args: Any) -> Any:
        return self._raw.getsockopt(*args)

    @property
    def family(self) -> Any:
        return self._raw.family

    @property
    def type(self) -> Any:
        return self._raw.type

    @property
    def proto(self) -> int:
        return self._raw.proto

    def settimeout(self, value: Optional[float]) -> None:
        self._timeout = timeout_value(value)

    def gettimeout(self) -> Optional[float]:
        return self._timeout

    @property
    def timeout(self) -> Optional[float]:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def dup(self) -> Any:
        raise NotImplementedError("Can't dup() %s instances" % self.__class__.__name__)

    def detach(self) -> int:
        raise OSError(errno.EOPNOTSUPP,
                      "a TLS socket over tcpfast has no kernel descriptor to detach")

    def _real_close(self, _ss: Any = None) -> None:
        self._sslobj = None
        self._raw.close()

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def __repr__(self) -> str:
        closed = getattr(self, "_closed", False)
        s = "<%s.%s%s fd=%i" % (self.__class__.__module__, self.__class__.__qualname__,
                                " [closed]" if closed else "", self.fileno())
        if not closed:
            for label, get in (("laddr", self.getsockname), ("raddr", self.getpeername)):
                try:
                    s += ", %s=%s" % (label, get())
                except OSError:
                    pass
        return s + ">"

    def __getstate__(self) -> Any:
        raise TypeError(f"cannot pickle {self.__class__.__name__!r} object")


# --- the hook in ssl.SSLSocket._create -------------------------------------------------------

_subclasses: dict = {}


def _tls_class_for(cls: type) -> type:
    """The class of the TLS socket for an ``sslsocket_class`` of ``cls``: ours, or, for a
    subclass of ssl.SSLSocket, one that puts its methods before ours (so its overrides win)."""
    if cls is _ssl.SSLSocket or issubclass(cls, SSLSocket):
        return SSLSocket if cls is _ssl.SSLSocket else cls
    sub = _subclasses.get(cls)
    if sub is None:
        sub = type(cls.__name__, (cls, SSLSocket), {"__module__": cls.__module__,
                                                   "__qualname__": cls.__qualname__})
        _subclasses[cls] = sub
    return sub


_stdlib_create = _ssl.SSLSocket.__dict__["_create"].__func__


def _create(cls: type, sock: Any, *args: Any, **kwargs: Any) -> Any:
    if is_tcpfast_socket(sock):
        return _tls_class_for(cls)._tcpfast_create(sock, *args, **kwargs)
    return _stdlib_create(cls, sock, *args, **kwargs)


def install() -> None:
    """install(): make ``SSLContext.wrap_socket`` accept tcpfast sockets (done on import of
    tcpfast; idempotent). Other sockets go through the standard library's code unchanged."""
    current = _ssl.SSLSocket.__dict__["_create"].__func__
    if current is not _create:
        _ssl.SSLSocket._create = classmethod(_create)


install()
