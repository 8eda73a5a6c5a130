"""Echo (RFC 862) and discard (RFC 863) over TCP on a tcpfast stack, from one thread.

One daemon thread waits with ``selectors`` on non-blocking tcpfast sockets (their ``fileno()`` is
a real descriptor). Bounded: at most ``max_clients`` connections at a time (more are accepted and
closed at once) and at most :data:`ECHO_BUFFER` bytes waiting to be echoed per connection; a
client that does not read its echo is simply not read from until it does, so TCP's flow control
holds it back. A client that resets or misbehaves costs only its own connection.
"""
from __future__ import annotations

import errno
import selectors
import socket as _socket
from typing import Any, Dict

from tcpfast._selector_thread import SelectorThread

__all__ = ["Services", "ECHO_BUFFER"]

ECHO_BUFFER = 64 * 1024
_ACCEPT_BATCH = 64


class _Conn:
    __slots__ = ("sock", "echo", "out", "eof")

    def __init__(self, sock: Any, echo: bool) -> None:
        self.sock = sock
        self.echo = echo
        self.out = bytearray()
        self.eof = False


class Services(SelectorThread):
    """Services(stack, *, echo_port=7, discard_port=9, max_clients=64, address6=False)

    Listens on the stack's address(es) on the given ports (0 leaves a service out); with
    ``address6`` the listeners are dual-stack IPv6 sockets and take IPv4 too. :meth:`start` binds
    and starts the thread; :meth:`stop` joins it and closes every socket. ``counters`` holds
    ``accepted``, ``refused``, ``echoed`` and ``discarded``.
    """

    _thread_name = "tcpfast-services"

    def __init__(self, stack: Any, *, echo_port: int = 7, discard_port: int = 9,
                 max_clients: int = 64, address6: bool = False) -> None:
        super().__init__()
        if max_clients < 1:
            raise ValueError("max_clients must be >= 1")
        self.stack = stack
        self.echo_port = echo_port
        self.discard_port = discard_port
        self.max_clients = max_clients
        self.family = _socket.AF_INET6 if address6 else _socket.AF_INET
        self.counters = dict(accepted=0, refused=0, echoed=0, discarded=0)
        self._listeners: Dict[Any, bool] = {}      # listening socket -> is echo
        self._conns: Dict[int, _Conn] = {}

    def start(self) -> "Services":
        """Bind the listeners (EADDRINUSE and the like are raised here) and start the thread."""
        if self._thread is not None:
            return self
        try:
            for port, echo in ((self.echo_port, True), (self.discard_port, False)):
                if port:
                    s = self.stack.socket(self.family, _socket.SOCK_STREAM)
                    self._listeners[s] = echo
                    s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
                    s.bind(("", port))
                    s.listen(self.max_clients)
                    s.setblocking(False)
        except BaseException:
            self._close_listeners()
            raise
        self._start_thread(*self._listeners)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (joined) and close the listeners and every connection."""
        if not self._stop_thread(timeout):
            return
        for conn in list(self._conns.values()):
            self._drop(conn)
        self._close_listeners()
        self._close_selector()

    close = stop

    @property
    def connections(self) -> int:
        return len(self._conns)

    def __enter__(self) -> "Services":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _close_listeners(self) -> None:
        for s in list(self._listeners):
            if self._sel is not None:
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
            s.close()
        self._listeners.clear()

    # --- the loop --------------------------------------------------------------------------

    def _ready(self, key: selectors.SelectorKey, events: int) -> None:
        obj = key.fileobj
        if obj in self._listeners:
            self._accept(obj, self._listeners[obj])
        else:
            conn = key.data
            if self._conns.get(id(conn)) is conn:
                try:
                    self._serve(conn, events)
                except Exception:   # noqa: BLE001 - a bug costs one connection only
                    self._drop(conn)

    def _accept(self, listener: Any, echo: bool) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:             # the stack went down, or the listener is closing
                return
            if len(self._conns) >= self.max_clients:
                self.counters["refused"] += 1
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Conn(sock, echo)
            self._conns[id(conn)] = conn
            self.counters["accepted"] += 1
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _serve(self, conn: _Conn, events: int) -> None:
        try:
            if events & selectors.EVENT_WRITE and conn.out:
                n = conn.sock.send(conn.out)
                del conn.out[:n]
                self.counters["echoed"] += n
            if events & selectors.EVENT_READ and not conn.eof and len(conn.out) < ECHO_BUFFER:
                # Read only what fits: the echo buffer never holds more than ECHO_BUFFER.
                data = conn.sock.recv(ECHO_BUFFER - len(conn.out) if conn.echo else ECHO_BUFFER)
                if not data:
                    conn.eof = True
                elif conn.echo:
                    conn.out += data
                else:
                    self.counters["discarded"] += len(data)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:          # reset, broken pipe, timed out: this connection only
            if exc.errno not in (errno.EAGAIN,):
                self._drop(conn)
                return
        if conn.eof and not conn.out:
            self._drop(conn)
            return
        want = 0
        if conn.out:
            want |= selectors.EVENT_WRITE
        if not conn.eof and len(conn.out) < ECHO_BUFFER:
            want |= selectors.EVENT_READ
        if self._sel.get_key(conn.sock).events != want:
            self._sel.modify(conn.sock, want, conn)

    def _drop(self, conn: _Conn) -> None:
        if self._conns.pop(id(conn), None) is None:
            return
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        try:
            conn.sock.close()
        except OSError:
            pass
