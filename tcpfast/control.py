"""The control channel of a running stack: a Unix stream socket that ``tcpfast up`` serves and
``tcpfast ss``, ``stats`` and ``capture`` talk to.

The protocol is one JSON object per line each way. A request is ``{"cmd": NAME, ...}``; the reply
is ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Commands:

``info``         the stack's addresses, device, MTU, offload, and what the serving program adds
``stats``        ``{"stats": Stack.stats()}``
``connections``  ``{"connections": Stack.connections()}`` (tuples become lists)
``capture``      start a pcap capture into the regular file whose descriptor comes with the request
                 (SCM_RIGHTS): the client opens the file itself, so the server never opens paths
                 on a client's behalf. The engine writes it from the start (it reopens it through
                 ``/proc/self/fd``, truncating, since it fopen()s a path). The capture runs until ``capture_stop`` or until the client
                 disconnects; ``capture_status`` reports ``packets`` so far (an estimate from the
                 stack's counters that never exceeds what the file holds)

Access is the socket file's mode (0600: its owner only). The server is one daemon thread on
``selectors`` with every buffer bounded: at most ``max_clients`` clients, request lines of at most
``max_line`` bytes, at most one reply waiting per client (a client that does not read its replies
is not read from either), at most :data:`MAX_PENDING_FDS` descriptors held per client. Bad input
gets an error reply and the connection goes on.
"""
from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import stat
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tcpfast._selector_thread import SelectorThread

__all__ = ["ControlServer", "ControlError", "NoStackError", "RemoteError", "Client",
           "CaptureSession", "request", "default_path", "find_control", "CONTROL_DIR"]

CONTROL_DIR = "/run/tcpfast"
MAX_CLIENTS = 16
MAX_LINE = 64 * 1024
MAX_PENDING_FDS = 4
MAX_REPLY = 256 * 1024 * 1024     # what a client accepts: the connection table of a big stack
_RECV_SIZE = 64 * 1024
_SUN_PATH_MAX = 107               # sizeof(sockaddr_un.sun_path) - 1 for the terminating NUL
COMMANDS = ("info", "stats", "connections", "capture", "capture_status", "capture_stop")


class ControlError(Exception):
    """The control channel could not do what was asked; ``str()`` is a message for a person."""


class NoStackError(ControlError):
    """Nothing serves the control socket (no file, or a file nobody listens on)."""


class RemoteError(ControlError):
    """The server answered ``{"ok": false, "error": ...}``."""


def default_path(ifname: str) -> str:
    """Where ``tcpfast up`` serves the control socket of the stack on ``ifname``."""
    return os.path.join(CONTROL_DIR, f"{ifname}.sock")


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _answers(path: str, timeout: float = 1.0) -> bool:
    """Whether something accepts connections on the Unix socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError:
            return False
    return True


def find_control(explicit: Optional[str] = None, directory: Optional[str] = None) -> str:
    """The control socket to talk to: ``explicit`` when given, else the only live socket in
    :data:`CONTROL_DIR`. Raises :class:`NoStackError` when there is none and
    :class:`ControlError` (naming them) when there are several."""
    if explicit:
        return explicit
    directory = directory or CONTROL_DIR
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".sock"))
    except FileNotFoundError:
        names = []
    except PermissionError as exc:
        raise ControlError(f"cannot list {directory}: {exc.strerror} (the control sockets belong "
                           "to the user who ran `tcpfast up`, usually root)") from None
    paths = [os.path.join(directory, n) for n in names if _is_socket(os.path.join(directory, n))]
    if len(paths) > 1:
        # Files left by a stack that was killed do not count when exactly one still answers.
        live = [p for p in paths if _answers(p)]
        paths = live if live else paths
    if not paths:
        raise NoStackError(f"no tcpfast stack is serving in {directory}; start one with "
                           "`tcpfast up` (or name its control socket with --control PATH)")
    if len(paths) > 1:
        raise ControlError(f"several tcpfast stacks serve in {directory} "
                           f"({', '.join(os.path.basename(p) for p in paths)}); "
                           "choose one with --control PATH")
    return paths[0]


# --- the server --------------------------------------------------------------------------------

def _jsonable(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()} for row in rows]


class _Refused(Exception):
    """A request the server refuses; its message is the error reply."""


class _Client:
    """One connection to the server: its bounded buffers and the descriptors it sent."""

    __slots__ = ("sock", "inbuf", "out", "line_no", "skipping", "fds", "eof")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.out = bytearray()          # at most one reply: nothing is read while it is not empty
        self.line_no = 0                # the number of the line being received
        self.skipping = False           # discarding the rest of an overlong line
        self.fds: List[Tuple[int, int]] = []    # (number of the line it came with, fd)
        self.eof = False

    def drop_fds(self, before: Optional[int] = None) -> None:
        """Close the descriptors received with lines before ``before`` (all when None)."""
        keep = []
        for tag, fd in self.fds:
            if before is None or tag < before:
                os.close(fd)
            else:
                keep.append((tag, fd))
        self.fds = keep


class ControlServer(SelectorThread):
    """ControlServer(stack, path, *, max_clients=16, max_line=65536, info=None)

    Serves the control protocol for ``stack`` on a Unix socket at ``path`` (mode 0600, parent
    directory created) from one daemon thread. ``info`` is called for extra fields of the
    ``info`` reply (the services of ``tcpfast up``, say). :meth:`start` refuses when a live server
    already answers at ``path`` and removes a stale socket file; :meth:`stop` joins the thread,
    ends a capture in progress and removes the socket file. A context manager.
    """

    _thread_name = "tcpfast-control"

    def __init__(self, stack: Any, path: str, *, max_clients: int = MAX_CLIENTS,
                 max_line: int = MAX_LINE, info: Optional[Callable[[], Dict[str, Any]]] = None
                 ) -> None:
        super().__init__()
        if max_clients < 1 or max_line < 64:
            raise ValueError("max_clients must be >= 1 and max_line >= 64")
        self.stack = stack
        self.path = os.path.abspath(path)
        self.max_clients = max_clients
        self.max_line = max_line
        self._info = info
        self._listener: Optional[socket.socket] = None
        self._inode: Optional[Tuple[int, int]] = None
        self._clients: Dict[int, _Client] = {}
        # The capture in progress: (owning client, tcpfast Capture, packet counter at its start).
        self._capture: Optional[Tuple[_Client, Any, int]] = None

    # --- life cycle ------------------------------------------------------------------------

    @staticmethod
    def check_free(path: str) -> None:
        """Raise :class:`ControlError` when ``path`` cannot be served: a live server answers
        there, or it is something other than a socket, or it is too long for a Unix socket."""
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            raise ControlError(f"control socket path too long for a Unix socket "
                               f"(at most {_SUN_PATH_MAX} bytes): {path}")
        if os.path.lexists(path):
            if not _is_socket(path):
                raise ControlError(f"{path} exists and is not a socket; not touching it")
            if _answers(path):
                raise ControlError(f"a tcpfast stack already serves {path}; stop it or give "
                                   "this one another --control PATH")

    def start(self) -> "ControlServer":
        """Bind, listen and start the server thread."""
        if self._thread is not None:
            return self
        self.check_free(self.path)
        parent = os.path.dirname(self.path)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        if os.path.lexists(self.path):
            os.unlink(self.path)        # stale: check_free found nobody answering
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.path)
            # Right after bind: with the usual umask (022) the socket is not connectable by others
            # in between (connect needs write permission).
            os.chmod(self.path, 0o600)
            st = os.stat(self.path)
            listener.listen(self.max_clients)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            if os.path.lexists(self.path):
                os.unlink(self.path)
            raise
        self._inode = (st.st_dev, st.st_ino)
        self._listener = listener
        self._start_thread(listener)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (joined), close every client, end a capture, remove the socket file."""
        if not self._stop_thread(timeout):
            return
        for client in list(self._clients.values()):
            self._close_client(client)
        self._end_capture()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._close_selector()
        # Remove the file only if it is still ours (a successor may have taken the path).
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    close = stop

    @property
    def clients(self) -> int:
        """How many clients are connected."""
        return len(self._clients)

    def __enter__(self) -> "ControlServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the loop --------------------------------------------------------------------------

    def _ready(self, key: selectors.SelectorKey, events: int) -> None:
        if key.fileobj is self._listener:
            self._accept()
        else:
            client = key.data
            if self._clients.get(client.sock.fileno()) is client:
                try:
                    self._serve(client, events)
                except Exception:   # noqa: BLE001 - a bug costs one client, not the server
                    self._close_client(client)

    def _accept(self) -> None:
        for _ in range(self.max_clients + 1):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:      # ECONNABORTED, EMFILE...: the listener goes on
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The connection stays queued and the listener readable: pause, not spin.
                    self._stopping.wait(0.1)
                return
            sock.setblocking(False)
            if len(self._clients) >= self.max_clients:
                # Told why, then closed: a bounded server.
                try:
                    sock.send(self._encode({"ok": False, "error": f"too many clients (at most "
                                                                   f"{self.max_clients}); try later"}))
                except OSError:
                    pass
                sock.close()
                continue
            client = _Client(sock)
            self._clients[sock.fileno()] = client
            self._sel.register(sock, selectors.EVENT_READ, client)

    def _serve(self, client: _Client, events: int) -> None:
        try:
            if events & selectors.EVENT_WRITE:
                self._flush(client)
            if events & selectors.EVENT_READ and not client.out:
                self._receive(client)
            # Pipelined requests: go on while each reply leaves at once.
            while True:
                self._pump(client)
                self._flush(client)
                if client.out or b"\n" not in client.inbuf:
                    break
        except (ConnectionError, OSError):
            self._close_client(client)
            return
        if client.eof and not client.out:
            self._close_client(client)
            return
        want = selectors.EVENT_WRITE if client.out else selectors.EVENT_READ
        if self._sel.get_key(client.sock).events != want:
            self._sel.modify(client.sock, want, client)

    def _receive(self, client: _Client) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(client.sock, _RECV_SIZE, MAX_PENDING_FDS,
                                                       socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        if fds:
            # A descriptor belongs to the line that the bytes it came with end in (the kernel
            # stops a read at the message that carries descriptors).
            tag = client.line_no + client.inbuf.count(b"\n") + data.count(b"\n", 0, len(data) - 1)
            for fd in fds:
                if len(client.fds) < MAX_PENDING_FDS:
                    client.fds.append((tag, fd))
                else:
                    os.close(fd)
        if not data:
            client.eof = True
            return
        client.inbuf += data

    def _pump(self, client: _Client) -> None:
        """Handle complete lines until a reply waits to be sent (one at a time)."""
        buf = client.inbuf
        while not client.out:
            i = buf.find(b"\n")
            if client.skipping:
                if i < 0:
                    buf.clear()
                    return
                del buf[:i + 1]
                client.skipping = False
                client.line_no += 1
                client.drop_fds(before=client.line_no)
                continue
            if i < 0:
                if len(buf) > self.max_line:
                    client.out += self._error(f"request line longer than {self.max_line} bytes")
                    client.skipping = True
                    buf.clear()
                return
            line = bytes(buf[:i])
            del buf[:i + 1]
            if len(line) > self.max_line:
                reply: Dict[str, Any] = {"ok": False,
                                         "error": f"request line longer than {self.max_line} bytes"}
            else:
                reply = self._handle(client, line)
            client.line_no += 1
            client.drop_fds(before=client.line_no)
            client.out += self._encode(reply)

    def _flush(self, client: _Client) -> None:
        while client.out:
            try:
                n = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                return
            del client.out[:n]

    def _close_client(self, client: _Client) -> None:
        fileno = client.sock.fileno()
        if self._clients.pop(fileno, None) is None:
            return
        if self._capture is not None and self._capture[0] is client:
            self._end_capture()
        try:
            self._sel.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.drop_fds()
        client.sock.close()

    # --- requests --------------------------------------------------------------------------

    @staticmethod
    def _encode(reply: Dict[str, Any]) -> bytes:
        return json.dumps(reply, separators=(",", ":"), default=str).encode() + b"\n"

    @staticmethod
    def _error(message: str) -> bytes:
        return ControlServer._encode({"ok": False, "error": message})

    def _handle(self, client: _Client, line: bytes) -> Dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as exc:
            return {"ok": False, "error": f"not a JSON line: {str(exc)[:200]}"}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'a request is a JSON object with a string "cmd"'}
        cmd = request["cmd"]
        handler = getattr(self, f"_cmd_{cmd}", None) if cmd in COMMANDS else None
        if handler is None:
            return {"ok": False, "error": f"unknown cmd {cmd[:64]!r} (known: {', '.join(COMMANDS)})"}
        try:
            reply = handler(client, request)
        except _Refused as exc:
            return {"ok": False, "error": str(exc)}
        except OSError as exc:
            return {"ok": False, "error": f"{cmd}: {exc.strerror or exc}"}
        except Exception as exc:        # noqa: BLE001 - a bug must not take the server down
            return {"ok": False, "error": f"{cmd}: internal error: {type(exc).__name__}: {exc}"}
        return {"ok": True, **reply}

    def _cmd_info(self, client: _Client, request: Dict[str, Any]) -> Dict[str, Any]:
        s = self.stack
        out = dict(pid=os.getpid(), running=bool(s.running), ifname=s.ifname, address=s.address,
                   prefixlen=s.prefixlen, kernel_address=s.kernel_address, address6=s.address6,
                   prefixlen6=s.prefixlen6 if s.address6 else None,
                   kernel_address6=s.kernel_address6, mtu=s.mtu, offload=bool(s.offload),
                   control=self.path, capturing=self._capture is not None)
        if self._info is not None:
            out.update(self._info())
        return out

    def _cmd_stats(self, client: _Client, request: Dict[str, Any]) -> Dict[str, Any]:
        return {"stats": self.stack.stats()}

    def _cmd_connections(self, client: _Client, request: Dict[str, Any]) -> Dict[str, Any]:
        return {"connections": _jsonable(self.stack.connections())}

    def _packets_now(self) -> int:
        st = self.stack.stats()
        # Every packet the engine captures is one it counts in or out, at the same place.
        return st["packets_in"] + st["packets_out"]

    def _cmd_capture(self, client: _Client, request: Dict[str, Any]) -> Dict[str, Any]:
        mine = [fd for tag, fd in client.fds if tag == client.line_no]
        if not mine:
            raise _Refused("capture needs the output file's descriptor, sent with the "
                                "request (SCM_RIGHTS)")
        fd = mine[0]
        if self._capture is not None:
            raise _Refused("a capture is already running (one at a time)")
        self.stack._require()           # ENETDOWN once the stack has stopped
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a pipe" if stat.S_ISFIFO(st.st_mode) else "a terminal or device"
                    if stat.S_ISCHR(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                    else "not a regular file")
            raise _Refused(f"capture writes only to a regular file, and this is {kind}: the "
                                "stack writes packets synchronously and must never wait for a "
                                "reader")
        import fcntl
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise _Refused("the capture file was opened read-only")
        # The engine fopen()s a path: the client's file, through this process's descriptor for it.
        capture = self.stack.capture(f"/proc/self/fd/{fd}")
        self._capture = (client, capture, self._packets_now())
        return {"capturing": True}

    def _owned_capture(self, client: _Client) -> Tuple[_Client, Any, int]:
        if self._capture is None or self._capture[0] is not client:
            raise _Refused("this connection has no capture running")
        return self._capture

    def _cmd_capture_status(self, client: _Client, request: Dict[str, Any]) -> Dict[str, Any]:
        _, _, base = self._owned_capture(client)
        return {"packets": max(0, self._packets_now() - base)}

    def _cmd_capture_stop(self, client: _Client, request: Dict[str, Any]) -> Dict[str, Any]:
        _, _, base = self._owned_capture(client)
        packets = max(0, self._packets_now() - base)
        self._end_capture()
        return {"packets": packets}

    def _end_capture(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture[1].close()          # flushes and closes the file before the reply goes out


# --- the client ----------------------------------------------------------------------------------

class Client:
    """Client(path, timeout=10.0): one connection to a control socket.

    Raises :class:`NoStackError` when nothing serves ``path``. :meth:`call` sends one request and
    returns the reply, raising :class:`RemoteError` when the server refuses it.
    """

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self._buf = bytearray()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            sock.close()
            why = "stale socket file" if isinstance(exc, ConnectionRefusedError) else "no socket"
            raise NoStackError(f"no tcpfast stack is serving {path}; start one with `tcpfast up` "
                               f"({why})") from None
        except PermissionError:
            sock.close()
            raise ControlError(f"permission denied on {path}: the control socket belongs to "
                               "the user who ran `tcpfast up` (usually root)") from None
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
        self.sock = sock

    def call(self, cmd: str, *, fds: Sequence[int] = (), **fields: Any) -> Dict[str, Any]:
        """Send ``{"cmd": cmd, **fields}`` (with ``fds`` attached) and return the reply."""
        line = json.dumps({"cmd": cmd, **fields}).encode() + b"\n"
        try:
            try:
                if fds:
                    n = socket.send_fds(self.sock, [line], list(fds))
                    self.sock.sendall(line[n:])
                else:
                    self.sock.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                pass        # refused at once ("too many clients"): its reason waits to be read
            reply = self._read_line()
        except socket.timeout:
            raise ControlError(f"no reply from {self.path} in time") from None
        except OSError as exc:
            raise ControlError(f"the stack serving {self.path} went away "
                               f"({exc.strerror or exc})") from None
        if not reply.get("ok"):
            raise RemoteError(str(reply.get("error", "the server refused the request")))
        return reply

    def _read_line(self) -> Dict[str, Any]:
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[:i + 1]
                try:
                    reply = json.loads(line)
                except ValueError:
                    raise ControlError(f"{self.path} answered something that is not JSON") from None
                if not isinstance(reply, dict):
                    raise ControlError(f"{self.path} answered something that is not an object")
                return reply
            if len(self._buf) > MAX_REPLY:
                raise ControlError(f"reply from {self.path} longer than {MAX_REPLY} bytes")
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ControlError(f"the stack serving {self.path} closed the connection")
            self._buf += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request(path: str, cmd: str, *, timeout: float = 10.0, **fields: Any) -> Dict[str, Any]:
    """One request on a fresh connection: ``request(path, "stats")["stats"]``."""
    with Client(path, timeout) as client:
        return client.call(cmd, **fields)


class CaptureSession:
    """CaptureSession(path, fd, timeout=10.0): a capture of the stack serving ``path`` into the
    regular file open (for writing) on ``fd``, running until :meth:`stop` or :meth:`close`.
    The caller keeps ``fd``; the server holds its own descriptor for the file."""

    def __init__(self, path: str, fd: int, timeout: float = 10.0) -> None:
        self._client = Client(path, timeout)
        self._stopped = False
        try:
            self._client.call("capture", fds=[fd])
        except BaseException:
            self._client.close()
            raise
        self.started = time.monotonic()

    def packets(self) -> int:
        """Packets written so far (never more than the file holds once stopped)."""
        return int(self._client.call("capture_status")["packets"])

    def stop(self) -> int:
        """End the capture; the file is complete when this returns. Returns the server's count."""
        if self._stopped:
            return 0
        self._stopped = True
        try:
            return int(self._client.call("capture_stop")["packets"])
        finally:
            self._client.close()

    def close(self) -> None:
        # Closing the connection ends the capture on the server too.
        self._stopped = True
        self._client.close()

    def __enter__(self) -> "CaptureSession":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._stopped:
            try:
                self.stop()
            except ControlError:
                pass
        self._client.close()
