"""``tcpfast.patch()``: unmodified standard-library programs running on tcpfast (issue 5).

Each program runs in three directions, in the private namespace of the test run (conftest.py):
a tcpfast server with a kernel client, a kernel server with a tcpfast client, and both ends on
the stack (local delivery). Patching is process-global, so each end is made under its own
setting: the server is built (its listening socket made) with the patch in force or not, then the
client runs with the patch in force or not; a socket keeps the stack it was made on. Which stack
each end is on is checked from the addresses: only a tcpfast socket can have the stack's address
(198.18.0.2), only a kernel socket the kernel's (198.18.0.1).

Every client call has a timeout (and ``socket.setdefaulttimeout`` bounds what has no timeout
parameter, such as ``xmlrpc.client``), every server is shut down in ``finally``, every thread
joined with a bound.
"""
import asyncio
import contextlib
import errno
import hashlib
import http.client
import http.server
import json
import os
import socket
import socketserver
import sys
import textwrap
import threading
import urllib.request
import xmlrpc.client
import xmlrpc.server

import pytest

import helpers
from tcpfast import netns
from conftest import KERNEL_IP, KERNEL_IP6, STACK_IP, STACK_IP6

import tcpfast
from tcpfast.patch import Patch, is_patched, patch, unpatch

pytestmark = pytest.mark.tun

IO_TIMEOUT = 20.0

# The socket module as it is before any patch (this module is imported unpatched).
KERNEL = {name: getattr(socket, name) for name in
          ("socket", "create_connection", "create_server", "has_dualstack_ipv6", "socketpair",
           "fromfd", "getaddrinfo", "SocketType")}
TcpfastSocket = tcpfast.socket

# direction id -> (server on tcpfast, client on tcpfast)
DIRECTIONS = {
    "tcpfast-server/kernel-client": (True, False),
    "kernel-server/tcpfast-client": (False, True),
    "inside-stack": (True, True),
}


def server_host(server_tcpfast):
    return STACK_IP if server_tcpfast else KERNEL_IP


def client_ip(client_tcpfast):
    return STACK_IP if client_tcpfast else KERNEL_IP


@pytest.fixture(autouse=True)
def clean_socket_module(monkeypatch):
    """Each test starts and ends unpatched, with a default timeout on every socket it makes and
    no proxy for urllib."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    assert socket.socket is KERNEL["socket"] and not is_patched()
    socket.setdefaulttimeout(IO_TIMEOUT)
    try:
        yield
    finally:
        socket.setdefaulttimeout(None)
        unpatch()
        for name, original in KERNEL.items():
            assert getattr(socket, name) is original, f"socket.{name} left patched"


def on(tcpfast_side, stack):
    """A context in which new TCP sockets are tcpfast sockets (True) or kernel ones (False)."""
    return patch(stack) if tcpfast_side else contextlib.nullcontext()


@contextlib.contextmanager
def serving(server):
    """Run a socketserver's serve_forever in a thread; shut it down and close it, bounded."""
    thread = helpers.start(server.serve_forever, 0.05, name="serve_forever")
    try:
        yield server
    finally:
        helpers.start(server.shutdown, name="shutdown").result(IO_TIMEOUT)
        thread.result(IO_TIMEOUT)
        helpers.start(server.server_close, name="server_close").result(IO_TIMEOUT)


def assert_server_socket(sock, server_tcpfast):
    assert isinstance(sock, TcpfastSocket if server_tcpfast else KERNEL["socket"]), sock
    assert sock.getsockname()[0] == server_host(server_tcpfast)


# --- the patch itself ----------------------------------------------------------------------------

def test_patch_without_a_running_stack_raises_a_clear_error():
    with pytest.raises(RuntimeError, match=r"tcpfast\.patch\(\): no tcpfast stack is running"):
        patch()
    never_started = tcpfast.Stack("198.18.0.2/24", kernel_address="198.18.0.1")
    with pytest.raises(RuntimeError, match="is not running"):
        patch(never_started)
    with pytest.raises(TypeError):
        patch("tcpf0")
    assert socket.socket is KERNEL["socket"] and not is_patched()


def test_patch_replaces_and_unpatch_restores(stack):
    handle = patch(stack)
    assert isinstance(handle, Patch) and handle.active and is_patched()
    try:
        assert socket.socket is not KERNEL["socket"]
        assert isinstance(socket.socket, type)
        # Only the class is rebound: create_connection and friends stay the standard library's
        # (they build through socket.socket), as do resolution, socketpair, fromfd, SocketType.
        for name in ("create_connection", "create_server", "has_dualstack_ipv6",
                     "getaddrinfo", "socketpair", "fromfd", "SocketType"):
            assert getattr(socket, name) is KERNEL[name], name
        # Both kinds of socket pass isinstance checks against socket.socket.
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            assert type(t) is TcpfastSocket and type(u) is KERNEL["socket"]
            assert isinstance(t, socket.socket) and isinstance(u, socket.socket)
        assert issubclass(TcpfastSocket, socket.socket)
        assert issubclass(KERNEL["socket"], socket.socket)
        assert not isinstance(object(), socket.socket)
    finally:
        unpatch()
    assert not handle.active and not is_patched()
    for name, original in KERNEL.items():
        assert getattr(socket, name) is original, name
    with socket.socket() as k:
        assert type(k) is KERNEL["socket"]
    handle.unpatch()                    # already undone: nothing happens
    unpatch()                           # not patched: nothing happens
    assert socket.socket is KERNEL["socket"]


def test_patch_nests_and_double_patch_is_safe(stack):
    with patch(stack) as outer:
        with patch(stack) as inner:
            assert outer.active and inner.active
            assert type(socket.socket()) is TcpfastSocket
        assert outer.active and not inner.active and socket.socket is not KERNEL["socket"]
        assert type(socket.socket()) is TcpfastSocket
    assert socket.socket is KERNEL["socket"] and not is_patched()

    # Out of order: undoing the outer layer first leaves the inner one in force.
    a, b = patch(stack), patch(stack)
    a.unpatch()
    assert is_patched() and b.active
    b.unpatch()
    assert socket.socket is KERNEL["socket"]

    # patch(); patch(); unpatch(): unpatch() undoes every layer.
    patch(stack)
    patch()                                          # the default stack: this one
    unpatch()
    assert socket.socket is KERNEL["socket"] and not is_patched()


def test_create_connection_uses_a_replaced_socket_class_while_patched(stack):
    """Code that replaces socket.socket (a test's mock) sees its replacement used by the
    standard library's create_connection, under patch() as without it."""
    made = []

    def recording(*args, **kwargs):        # a mock around the patched class
        made.append(args)
        return patched(*args, **kwargs)

    with KERNEL["create_server"]((KERNEL_IP, 0)) as lst, patch(stack):   # a kernel listener
        patched = socket.socket
        socket.socket = recording
        try:
            c = socket.create_connection(lst.getsockname(), timeout=IO_TIMEOUT)
        finally:
            socket.socket = patched
        with c:
            assert made and type(c) is TcpfastSocket
            k, _ = lst.accept()
            k.close()


def test_names_kept_from_before_or_during_a_patch_follow_it(stack):
    """The stdlib's create_connection (held from before) builds through socket.socket, so it makes
    tcpfast sockets while patched; the patched names kept after unpatch() make kernel sockets."""
    create_server_then = KERNEL["create_server"]
    with patch(stack):
        patched_socket, patched_create_server = socket.socket, socket.create_server
        with create_server_then((STACK_IP, 0)) as lst:
            assert type(lst) is TcpfastSocket
    with patched_socket() as k, patched_create_server((KERNEL_IP, 0)) as klst:
        assert type(k) is KERNEL["socket"] and type(klst) is KERNEL["socket"]


def test_other_families_and_types_stay_with_the_kernel(stack):
    """UDP, AF_UNIX, socketpair (asyncio's self-pipe), fromfd and name resolution stay kernel."""
    with patch(stack):
        # TCP, in each way the stdlib spells it.
        for args, kwargs in [((), {}), ((socket.AF_INET, socket.SOCK_STREAM), {}),
                             ((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP), {}),
                             ((), dict(family=socket.AF_INET, type=socket.SOCK_STREAM, proto=6)),
                             ((socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                               | socket.SOCK_CLOEXEC), {})]:
            with socket.socket(*args, **kwargs) as s:
                assert type(s) is TcpfastSocket, (args, kwargs)
                assert s.type == socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as s:
            assert s.gettimeout() == 0.0

        # UDP over the kernel's loopback, both ends made while patched.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u1, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u2:
            assert type(u1) is KERNEL["socket"] and type(u2) is KERNEL["socket"]
            u1.bind(("127.0.0.1", 0))
            u2.sendto(b"datagram", u1.getsockname())
            assert u1.recvfrom(64)[0] == b"datagram"

        # AF_UNIX stream and datagram, and socketpair (asyncio's self-pipe).
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            assert type(s) is KERNEL["socket"] and s.family == socket.AF_UNIX
        a, b = socket.socketpair()
        with a, b:
            assert type(a) is KERNEL["socket"] and a.family == socket.AF_UNIX
            a.sendall(b"pair")
            assert b.recv(16) == b"pair"

        # A kernel TCP socket behind a descriptor stays a kernel socket (fromfd, fileno=).
        with KERNEL["socket"]() as k:
            with socket.fromfd(k.fileno(), socket.AF_INET, socket.SOCK_STREAM) as dup:
                assert type(dup) is KERNEL["socket"]
            with socket.socket(fileno=os.dup(k.fileno())) as adopted:
                assert type(adopted) is KERNEL["socket"]
                assert adopted.family == socket.AF_INET

        # A raw socket and a non-TCP protocol are the kernel's.
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as r:
            assert type(r) is KERNEL["socket"]

        # A class derived while patched makes kernel sockets of itself.
        class Derived(socket.socket):
            pass

        with Derived(socket.AF_INET, socket.SOCK_STREAM) as d:
            assert type(d) is Derived and isinstance(d, KERNEL["socket"])

        # Name resolution is the kernel's.
        assert socket.getaddrinfo is KERNEL["getaddrinfo"]
        assert socket.getaddrinfo(STACK_IP, 80, type=socket.SOCK_STREAM)[0][4] == (STACK_IP, 80)


def test_a_kernel_accepts_kernel_sockets_while_patched(stack):
    """A kernel listener made before the patch accepts kernel sockets while patched (the kernel
    socket's accept() builds its result through socket.socket with fileno=)."""
    with KERNEL["create_server"]((KERNEL_IP, 0)) as lst:
        with patch(stack):
            with socket.create_connection(lst.getsockname(), timeout=IO_TIMEOUT) as c:
                assert type(c) is TcpfastSocket
                conn, addr = lst.accept()
                with conn:
                    assert type(conn) is KERNEL["socket"] and addr[0] == STACK_IP
                    c.sendall(b"ping")
                    assert conn.recv(4) == b"ping"


# --- http.server + urllib.request -----------------------------------------------------------------

class RecordingHandler(http.server.BaseHTTPRequestHandler):
    """GET /<n> answers n pseudo-random bytes; POST echoes its body with its SHA-256 as a header.
    Records the client address seen by the server."""

    protocol_version = "HTTP/1.1"
    seen = []

    def do_GET(self):
        RecordingHandler.seen.append(self.client_address[0])
        n = int(self.path.strip("/") or 0)
        body = payload(n)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        RecordingHandler.seen.append(self.client_address[0])
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-SHA256", hashlib.sha256(body).hexdigest())
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def payload(n):
    return (hashlib.sha256(str(n).encode()).digest() * (n // 32 + 1))[:n]


@pytest.fixture
def recording():
    RecordingHandler.seen = []
    yield RecordingHandler.seen


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_http_server_with_urllib(stack, direction, recording):
    server_tcpfast, client_tcpfast = DIRECTIONS[direction]
    with on(server_tcpfast, stack):
        server = http.server.ThreadingHTTPServer((server_host(server_tcpfast), 0), RecordingHandler)
    with serving(server):
        assert_server_socket(server.socket, server_tcpfast)
        host, port = server.server_address[:2]
        with on(client_tcpfast, stack):
            for n in (0, 1, 1460, 100_000, 1 << 20):
                with urllib.request.urlopen(f"http://{host}:{port}/{n}", timeout=IO_TIMEOUT) as r:
                    assert r.status == 200
                    assert r.read() == payload(n)
            data = os.urandom(300_000)
            req = urllib.request.Request(f"http://{host}:{port}/echo", data=data, method="POST")
            with urllib.request.urlopen(req, timeout=IO_TIMEOUT) as r:
                assert r.headers["X-SHA256"] == hashlib.sha256(data).hexdigest()
                assert r.read() == data
    assert recording == [client_ip(client_tcpfast)] * 6


def test_http_server_on_tcpfast_with_a_client_in_another_process(stack, in_ns, recording):
    """The process stays patched while an unmodified urllib client in another process (a kernel
    client, through `ip netns exec`) talks to its tcpfast server."""
    with patch(stack):
        server = http.server.ThreadingHTTPServer((STACK_IP, 0), RecordingHandler)
        with serving(server):
            assert_server_socket(server.socket, True)
            url = f"http://{STACK_IP}:{server.server_address[1]}/5000"
            code = textwrap.dedent(f"""
                import hashlib, urllib.request
                with urllib.request.urlopen({url!r}, timeout={IO_TIMEOUT}) as r:
                    print(r.status, hashlib.sha256(r.read()).hexdigest())
            """)
            out = netns.run(in_ns, sys.executable, "-c", code, timeout=60).stdout.split()
            assert out == ["200", hashlib.sha256(payload(5000)).hexdigest()]
    assert recording == [KERNEL_IP]


# --- http.client ----------------------------------------------------------------------------------

@pytest.mark.parametrize("direction", DIRECTIONS)
def test_http_client_keep_alive(stack, direction, recording):
    """Several requests on one persistent HTTP/1.1 connection, a chunked upload, a HEAD."""
    server_tcpfast, client_tcpfast = DIRECTIONS[direction]
    with on(server_tcpfast, stack):
        server = http.server.ThreadingHTTPServer((server_host(server_tcpfast), 0), RecordingHandler)
    with serving(server):
        assert_server_socket(server.socket, server_tcpfast)
        host, port = server.server_address[:2]
        with on(client_tcpfast, stack):
            conn = http.client.HTTPConnection(host, port, timeout=IO_TIMEOUT)
            try:
                for n in (10, 70_000, 0, 2_000_000):
                    conn.request("GET", f"/{n}")
                    r = conn.getresponse()
                    assert (r.status, r.read()) == (200, payload(n))
                data = os.urandom(1 << 20)
                conn.request("POST", "/echo", body=data,
                             headers={"Content-Length": str(len(data))})
                r = conn.getresponse()
                assert r.read() == data
                assert type(conn.sock) is (TcpfastSocket if client_tcpfast else KERNEL["socket"])
                assert conn.sock.getsockname()[0] == client_ip(client_tcpfast)
                # No do_HEAD: 501 with "Connection: close", and http.client closes its side.
                conn.request("HEAD", "/123")
                r = conn.getresponse()
                assert (r.status, r.read()) == (501, b"")
                assert conn.sock is None
            finally:
                conn.close()
    assert recording == [client_ip(client_tcpfast)] * 5


class V6HTTPServer(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_http_over_ipv6(stack, direction, recording):
    """AF_INET6 through the patch: an IPv6 http.server, http.client by name resolution of a
    literal (create_connection walks getaddrinfo's answers)."""
    server_tcpfast, client_tcpfast = DIRECTIONS[direction]
    host = STACK_IP6 if server_tcpfast else KERNEL_IP6
    with on(server_tcpfast, stack):
        server = V6HTTPServer((host, 0), RecordingHandler)
    with serving(server):
        assert isinstance(server.socket, TcpfastSocket if server_tcpfast else KERNEL["socket"])
        port = server.server_address[1]
        with on(client_tcpfast, stack):
            conn = http.client.HTTPConnection(host, port, timeout=IO_TIMEOUT)
            try:
                conn.request("GET", "/70000")
                r = conn.getresponse()
                assert (r.status, r.read()) == (200, payload(70_000))
                assert conn.sock.family == socket.AF_INET6
                assert type(conn.sock) is (TcpfastSocket if client_tcpfast else KERNEL["socket"])
            finally:
                conn.close()
    assert recording == [STACK_IP6 if client_tcpfast else KERNEL_IP6]


# --- socketserver.ThreadingTCPServer --------------------------------------------------------------

class LineEcho(socketserver.StreamRequestHandler):
    """Answers each line upper-cased, then a summary line at end of stream."""

    def handle(self):
        count = total = 0
        for line in self.rfile:
            self.wfile.write(line.upper())
            count += 1
            total += len(line)
        self.wfile.write(json.dumps({"peer": self.client_address[0], "lines": count,
                                     "bytes": total}).encode() + b"\n")


def line_client(address, lines):
    with socket.create_connection(address, timeout=IO_TIMEOUT) as s:
        kind = type(s)
        s.sendall(b"".join(lines))
        s.shutdown(socket.SHUT_WR)
        with s.makefile("rb") as f:
            got = f.readlines()
    return kind, got


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_socketserver_threading_tcp_server(stack, direction):
    server_tcpfast, client_tcpfast = DIRECTIONS[direction]
    with on(server_tcpfast, stack):
        server = socketserver.ThreadingTCPServer((server_host(server_tcpfast), 0), LineEcho)
    server.daemon_threads = True
    with serving(server):
        assert_server_socket(server.socket, server_tcpfast)
        with on(client_tcpfast, stack):
            clients = []
            for i in range(6):              # at the same time: each is served by its thread
                lines = [f"client {i} line {j} ".encode() + b"x" * (j * 97 % 3000) + b"\n"
                         for j in range(200)]
                clients.append((lines, helpers.start(line_client, server.server_address, lines)))
            for lines, worker in clients:
                kind, got = worker.result(IO_TIMEOUT * 2)
                assert kind is (TcpfastSocket if client_tcpfast else KERNEL["socket"])
                assert got[:-1] == [line.upper() for line in lines]
                assert json.loads(got[-1]) == {"peer": client_ip(client_tcpfast), "lines": 200,
                                               "bytes": sum(map(len, lines))}


# --- asyncio streams ------------------------------------------------------------------------------

async def streams_round(stack, server_tcpfast, client_tcpfast):
    peers = []

    async def handle(reader, writer):
        peers.append(writer.get_extra_info("peername")[0])
        try:
            while line := await reader.readline():
                if line.startswith(b"BULK "):
                    n = int(line.split()[1])
                    data = await reader.readexactly(n)
                    writer.write(hashlib.sha256(data).hexdigest().encode() + b"\n")
                else:
                    writer.write(line.upper())
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    with on(server_tcpfast, stack):
        server = await asyncio.start_server(handle, server_host(server_tcpfast), 0)
    try:
        sockname = server.sockets[0].getsockname()
        assert sockname[0] == server_host(server_tcpfast)
        with on(client_tcpfast, stack):
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*sockname[:2]),
                                                    IO_TIMEOUT)
        try:
            assert writer.get_extra_info("sockname")[0] == client_ip(client_tcpfast)
            for i in range(50):
                writer.write(b"hello %d\n" % i)
            await writer.drain()
            for i in range(50):
                assert await asyncio.wait_for(reader.readline(), IO_TIMEOUT) == b"HELLO %d\n" % i
            data = os.urandom(3_000_000)
            writer.write(b"BULK %d\n" % len(data) + data)
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), IO_TIMEOUT)
            assert answer == hashlib.sha256(data).hexdigest().encode() + b"\n"
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), IO_TIMEOUT) == b""
        finally:
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), IO_TIMEOUT)
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), IO_TIMEOUT)
    assert peers == [client_ip(client_tcpfast)]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_asyncio_streams(stack, direction):
    server_tcpfast, client_tcpfast = DIRECTIONS[direction]
    asyncio.run(asyncio.wait_for(streams_round(stack, server_tcpfast, client_tcpfast),
                                 IO_TIMEOUT * 3))


def test_asyncio_event_loop_made_while_patched(stack):
    """A loop made while patched keeps its kernel self-pipe (socketpair) and runs a whole
    tcpfast server and client; call_soon_threadsafe (which writes to the self-pipe) works."""
    async def main():
        loop = asyncio.get_running_loop()
        assert type(loop._ssock) is KERNEL["socket"] and loop._ssock.family == socket.AF_UNIX
        woken = asyncio.Event()
        threading.Thread(target=loop.call_soon_threadsafe, args=(woken.set,)).start()
        await asyncio.wait_for(woken.wait(), IO_TIMEOUT)
        await streams_round(stack, True, True)

    with patch(stack):
        asyncio.run(asyncio.wait_for(main(), IO_TIMEOUT * 3))


# --- xmlrpc ---------------------------------------------------------------------------------------

class RecordingXMLRPCHandler(xmlrpc.server.SimpleXMLRPCRequestHandler):
    seen = []

    def handle(self):
        RecordingXMLRPCHandler.seen.append(self.client_address[0])
        super().handle()


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_xmlrpc(stack, direction):
    server_tcpfast, client_tcpfast = DIRECTIONS[direction]
    RecordingXMLRPCHandler.seen = []
    with on(server_tcpfast, stack):
        server = xmlrpc.server.SimpleXMLRPCServer((server_host(server_tcpfast), 0),
                                                  requestHandler=RecordingXMLRPCHandler,
                                                  logRequests=False, allow_none=True)
    server.register_introspection_functions()
    server.register_multicall_functions()
    server.register_function(lambda a, b: a + b, "add")
    server.register_function(lambda blob: hashlib.sha256(blob.data).hexdigest(), "sha256")
    server.register_function(lambda: 1 / 0, "fail")
    with serving(server):
        assert_server_socket(server.socket, server_tcpfast)
        host, port = server.server_address[:2]
        with on(client_tcpfast, stack):
            # ServerProxy has no timeout parameter: socket.setdefaulttimeout bounds it (fixture).
            with xmlrpc.client.ServerProxy(f"http://{host}:{port}/", allow_none=True) as proxy:
                assert proxy.add(2, 3) == 5
                assert "add" in proxy.system.listMethods()
                blob = os.urandom(500_000)
                assert proxy.sha256(xmlrpc.client.Binary(blob)) == hashlib.sha256(blob).hexdigest()
                with pytest.raises(xmlrpc.client.Fault, match="ZeroDivisionError"):
                    proxy.fail()
                multi = xmlrpc.client.MultiCall(proxy)
                for i in range(20):
                    multi.add(i, i)
                assert list(multi()) == [2 * i for i in range(20)]
    assert RecordingXMLRPCHandler.seen
    assert set(RecordingXMLRPCHandler.seen) == {client_ip(client_tcpfast)}


# --- failures through the patch look like the kernel's --------------------------------------------

def test_refused_connection_through_the_patch(stack):
    """http.client on tcpfast to a port nobody listens on: ConnectionRefusedError, as the
    kernel's."""
    with KERNEL["socket"]() as k:
        k.bind((KERNEL_IP, 0))
        port = k.getsockname()[1]                     # bound, not listening: the kernel resets
        with patch(stack):
            conn = http.client.HTTPConnection(KERNEL_IP, port, timeout=IO_TIMEOUT)
            with pytest.raises(ConnectionRefusedError) as info:
                conn.request("GET", "/")
            assert info.value.errno == errno.ECONNREFUSED
            conn.close()
