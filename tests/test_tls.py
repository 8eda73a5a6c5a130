"""TLS over tcpfast sockets (issue 12): ``SSLContext.wrap_socket`` on a tcpfast socket.

The kernel is the other end (a stdlib ``ssl.SSLSocket`` on a kernel socket, in a thread of this
process, inside the test run's namespace), or tcpfast itself through the stack's own address.
Every blocking call has a timeout; every thread a bounded join.
"""
import hashlib
import http.client
import http.server
import os
import random
import select
import socket
import ssl
import threading

import pytest

from conftest import KERNEL_IP, STACK_IP
from socket_api_helpers import recv_exactly

pytestmark = pytest.mark.tun

IO_TIMEOUT = 20.0
HERE = os.path.dirname(os.path.abspath(__file__))
CERT = os.path.join(HERE, "fixtures", "tls_cert.pem")
KEY = os.path.join(HERE, "fixtures", "tls_key.pem")
NAME = "tcpfast.test"


def server_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(CERT)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class Thread(threading.Thread):
    """A thread whose exception is raised again by join()."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.exc, self.result = fn, None, None

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self.exc = exc

    def join(self, timeout=IO_TIMEOUT * 2):
        super().join(timeout)
        assert not self.is_alive(), "thread did not finish"
        if self.exc is not None:
            raise self.exc
        return self.result


def kernel_tls_server(handler, family=socket.AF_INET):
    """A kernel TLS listener on KERNEL_IP; ``handler(conn)`` runs for one connection in a
    thread. Returns (port, thread)."""
    lst = socket.socket(family, socket.SOCK_STREAM)
    lst.settimeout(IO_TIMEOUT)
    lst.bind((KERNEL_IP, 0))
    lst.listen(4)
    ctx = server_context()

    def serve():
        with lst:
            conn, _ = lst.accept()
            conn.settimeout(IO_TIMEOUT)
            with ctx.wrap_socket(conn, server_side=True) as tls:
                return handler(tls)

    t = Thread(serve)
    t.start()
    return lst.getsockname()[1], t


def tcpfast_client(stack, port, **kw):
    raw = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(IO_TIMEOUT)
    raw.connect((KERNEL_IP, port))
    return client_context().wrap_socket(raw, server_hostname=NAME, **kw)


def echo(tls):
    """Echo until the end of the stream; answer a close_notify with ours (unwrap)."""
    while True:
        data = tls.recv(65536)
        if not data:
            break
        tls.sendall(data)
    try:
        tls.unwrap()
    except (OSError, ValueError):
        pass                          # the peer went without close_notify


# --- handshake, facts of the session, data ---------------------------------------------------

def test_tcpfast_client_to_kernel_server(stack):
    port, t = kernel_tls_server(echo)
    with tcpfast_client(stack, port) as tls:
        assert isinstance(tls, ssl.SSLSocket)
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.cipher()[0]
        assert tls.selected_alpn_protocol() == "http/1.1"
        cert = tls.getpeercert()
        assert ("commonName", NAME) in [rdn[0] for rdn in cert["subject"]]
        assert tls.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(open(CERT).read())
        assert tls.server_hostname == NAME and not tls.server_side
        assert tls.getpeername()[:2] == (KERNEL_IP, port)
        assert tls.fileno() >= 0
        tls.sendall(b"hello over TLS")
        assert recv_exactly(tls, 14) == b"hello over TLS"
        tls.unwrap()                 # close_notify both ways: the server's recv sees the end
    t.join()


def test_bulk_both_ways_intact(stack):
    rng = random.Random(7)
    blob = rng.randbytes(8 << 20)
    port, t = kernel_tls_server(echo)
    with tcpfast_client(stack, port) as tls:
        got = hashlib.sha256()
        sender = Thread(lambda: tls.sendall(blob))
        sender.start()
        n = 0
        buf = bytearray(1 << 16)
        while n < len(blob):
            k = tls.recv_into(buf)
            assert k > 0
            got.update(buf[:k])
            n += k
        sender.join()
        assert got.hexdigest() == hashlib.sha256(blob).hexdigest()
    t.join()


def test_kernel_client_to_tcpfast_server(stack):
    ctx = server_context()
    lst = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.settimeout(IO_TIMEOUT)
    lst.bind((STACK_IP, 0))
    lst.listen(4)
    port = lst.getsockname()[1]
    with ctx.wrap_socket(lst, server_side=True) as tls_lst:
        assert isinstance(tls_lst, ssl.SSLSocket)

        def client():
            k = socket.create_connection((STACK_IP, port), timeout=IO_TIMEOUT)
            with client_context().wrap_socket(k, server_hostname=NAME) as c:
                c.sendall(b"ping")
                return recv_exactly(c, 4), c.selected_alpn_protocol()

        t = Thread(client)
        t.start()
        conn, addr = tls_lst.accept()
        with conn:
            assert conn.server_side and addr[0] == KERNEL_IP
            assert recv_exactly(conn, 4) == b"ping"
            conn.sendall(b"pong")
            assert conn.selected_alpn_protocol() == "http/1.1"
            assert t.join() == (b"pong", "http/1.1")


def test_tcpfast_to_tcpfast_wrapped_before_connect(stack):
    """Client side wrapped before connect(), as http.client does; the handshake runs in
    connect(). Both ends tcpfast, through the stack's own address."""
    lst = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.settimeout(IO_TIMEOUT)
    lst.bind((STACK_IP, 0))
    lst.listen(4)
    port = lst.getsockname()[1]
    sctx = server_context()

    def serve():
        conn, _ = lst.accept()
        conn.settimeout(IO_TIMEOUT)
        with sctx.wrap_socket(conn, server_side=True) as s:
            echo(s)

    t = Thread(serve)
    t.start()
    raw = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(IO_TIMEOUT)
    with client_context().wrap_socket(raw, server_hostname=NAME) as tls:
        with pytest.raises(OSError):
            tls.getpeercert()         # not connected yet: ENOTCONN, as the kernel's
        tls.connect((STACK_IP, port))
        assert tls.version() is not None
        f = tls.makefile("rwb")
        f.write(b"line one\nline two\n")
        f.flush()
        assert f.readline() == b"line one\n" and f.readline() == b"line two\n"
        f.close()
    t.join()
    lst.close()


# --- modes: timeout, non-blocking -------------------------------------------------------------

def test_timeout_and_nonblocking_modes(stack):
    gate = threading.Event()

    def handler(tls):
        gate.wait(IO_TIMEOUT)
        tls.sendall(b"late")
        echo(tls)

    port, t = kernel_tls_server(handler)
    with tcpfast_client(stack, port) as tls:
        tls.settimeout(0.2)
        with pytest.raises(TimeoutError, match="read operation timed out"):
            tls.recv(10)
        tls.setblocking(False)
        assert tls.gettimeout() == 0.0 and not tls.getblocking()
        with pytest.raises(ssl.SSLWantReadError):
            tls.recv(10)
        gate.set()
        # Non-blocking, as a selector loop would: wait on fileno(), then read.
        got = b""
        while len(got) < 4:
            r, _, _ = select.select([tls], [], [], IO_TIMEOUT)
            assert r, "readable within the timeout"
            try:
                got += tls.recv(10)
            except ssl.SSLWantReadError:
                continue
        assert got == b"late"
        tls.settimeout(IO_TIMEOUT)
        tls.sendall(b"x" * 100000)
        assert recv_exactly(tls, 100000) == b"x" * 100000
    t.join()


def test_nonblocking_handshake_by_hand(stack):
    port, t = kernel_tls_server(echo)
    raw = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(IO_TIMEOUT)
    raw.connect((KERNEL_IP, port))
    raw.setblocking(False)
    with pytest.raises(ValueError, match="non-blocking"):
        client_context().wrap_socket(raw, server_hostname=NAME)
    raw = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(IO_TIMEOUT)
    with pytest.raises(OSError):     # ssl.SSLError is an OSError
        t.join()      # the first connection went away before a handshake: the server failed
    # The server accepts (and answers the ClientHello) only once the client has been told to
    # wait: the first do_handshake() must raise SSLWantReadError, whatever the timing.
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.settimeout(IO_TIMEOUT)
    lst.bind((KERNEL_IP, 0))
    lst.listen(1)
    ctx = server_context()

    def serve():
        with lst:
            conn, _ = lst.accept()
            conn.settimeout(IO_TIMEOUT)
            with ctx.wrap_socket(conn, server_side=True) as s:
                echo(s)

    raw.connect(lst.getsockname())
    raw.setblocking(False)
    tls = client_context().wrap_socket(raw, server_hostname=NAME, do_handshake_on_connect=False)
    with tls:
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()            # the ClientHello is out; no answer yet
        t = Thread(serve)
        t.start()
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                assert select.select([tls], [], [], IO_TIMEOUT)[0]
        assert tls.version() is not None
    t.join()


# --- the end of the stream --------------------------------------------------------------------

def test_ragged_eof(stack):
    def handler(tls):
        tls.sendall(b"bye")
        # Close the TCP connection without close_notify (as a crashed server would).
        raw = socket.socket(fileno=tls.detach())
        raw.close()

    port, t = kernel_tls_server(handler)
    with tcpfast_client(stack, port) as tls:
        assert recv_exactly(tls, 3) == b"bye"
        assert tls.recv(10) == b""            # suppress_ragged_eofs=True, the default
    t.join()
    port, t = kernel_tls_server(handler)
    with tcpfast_client(stack, port, suppress_ragged_eofs=False) as tls:
        assert recv_exactly(tls, 3) == b"bye"
        with pytest.raises(ssl.SSLEOFError):
            tls.recv(10)
    t.join()


def test_closed_tls_socket_raises_ebadf(stack):
    port, t = kernel_tls_server(echo)
    tls = tcpfast_client(stack, port)
    tls.close()
    assert tls.fileno() == -1
    with pytest.raises(OSError) as e:
        tls.recv(1)
    assert e.value.errno == 9
    t.join()


# --- subclasses and the standard library's clients --------------------------------------------

def test_sslsocket_class_override_keeps_its_methods(stack):
    class Counting(ssl.SSLSocket):
        sent = 0

        def send(self, data, flags=0):
            Counting.sent += len(data)
            return super().send(data, flags)

    ctx = client_context()
    ctx.sslsocket_class = Counting
    port, t = kernel_tls_server(echo)
    raw = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(IO_TIMEOUT)
    raw.connect((KERNEL_IP, port))
    with ctx.wrap_socket(raw, server_hostname=NAME) as tls:
        assert isinstance(tls, Counting) and isinstance(tls, ssl.SSLSocket)
        tls.sendall(b"12345")
        assert recv_exactly(tls, 5) == b"12345"
        assert Counting.sent == 5
    t.join()


def test_https_client_under_patch(stack):
    """http.client's HTTPS (as urllib and requests use it) on tcpfast, against a kernel server."""
    import tcpfast

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello https " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.HTTPServer((KERNEL_IP, 0), Handler)
    httpd.socket = server_context().wrap_socket(httpd.socket, server_side=True)
    port = httpd.server_address[1]
    t = Thread(httpd.handle_request)
    t.start()
    with tcpfast.patch(stack):
        conn = http.client.HTTPSConnection(KERNEL_IP, port, timeout=IO_TIMEOUT,
                                           context=client_context())
        conn._context.check_hostname = False   # the server is addressed by IP, cert by name
        conn.request("GET", "/x")
        assert type(conn.sock).__module__ == "tcpfast.ssl"
        assert isinstance(conn.sock, ssl.SSLSocket)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"hello https /x"
        conn.close()
    t.join()
    httpd.server_close()
