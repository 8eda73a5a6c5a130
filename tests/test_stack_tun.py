"""The stack over a TUN device with the Linux kernel as its peer (issue 4).

Every test runs in the private network namespace of the test run (fixtures in conftest.py): the
stack's device tcpf0 has the kernel's end 198.18.0.1 (and fd00:18::1), the stack is 198.18.0.2
(and fd00:18::2), and the peer of every tcpfast socket is a kernel socket in the same namespace.
Every blocking call has a timeout and every thread a bounded join.
"""
import errno
import fcntl
import hashlib
import os
import random
import select
import socket
import struct
import termios
import threading
import time

import pytest

import helpers
from tcpfast import netns
from conftest import IFNAME, KERNEL_IP, KERNEL_IP6, PREFIX, STACK_IP, STACK_IP6
from socket_api_helpers import recv_exactly

pytestmark = pytest.mark.tun

IO_TIMEOUT = 20.0          # seconds for any one blocking socket call
MiB = 1 << 20
BULK = 100 * MiB           # each way, per offload mode
DUPLEX = 16 * MiB          # each way at the same time, per round
DUPLEX_ROUNDS = 6
ODD_SIZES = (1, 2, 3, 7, 13, 99, 535, 1023, 1447, 1448, 1449, 1459, 1460, 1461, 2895, 2896, 2897,
             4097, 8191, 9001, 16385, 65535, 65536, 65537, 131073)
FAMILIES = {
    "v4": (socket.AF_INET, STACK_IP, KERNEL_IP),
    "v6": (socket.AF_INET6, STACK_IP6, KERNEL_IP6),
}


# --- helpers ---------------------------------------------------------------------------------------

def stream(total, seed, sizes=(MiB,)):
    """Pseudo-random chunks of the given sizes (cycled), ``total`` bytes in all."""
    rng = random.Random(seed)
    i = sent = 0
    while sent < total:
        n = min(sizes[i % len(sizes)], total - sent)
        i += 1
        sent += n
        yield rng.randbytes(n)


def send_stream(sock, total, seed, sizes=(MiB,), partial=False):
    """Send ``stream(total, seed, sizes)``; with ``partial``, through send() and its short counts.
    Returns the SHA-256 of what was sent."""
    h = hashlib.sha256()
    for chunk in stream(total, seed, sizes):
        h.update(chunk)
        if not partial:
            sock.sendall(chunk)
            continue
        view = memoryview(chunk)
        while view:
            n = sock.send(view)
            assert 1 <= n <= len(view), n
            view = view[n:]
    return h.hexdigest()


def recv_stream(sock, total=None, sizes=(256 * 1024,)):
    """Read ``total`` bytes (or to end-of-stream when None) with recv_into of the given sizes
    (cycled); returns (count, SHA-256)."""
    h = hashlib.sha256()
    buf = bytearray(max(sizes))
    view = memoryview(buf)
    count = i = 0
    while total is None or count < total:
        want = sizes[i % len(sizes)]
        i += 1
        if total is not None:
            want = min(want, total - count)
        n = sock.recv_into(view[:want])
        assert 0 <= n <= want, (n, want)
        if n == 0:
            break
        h.update(view[:n])
        count += n
    return count, h.hexdigest()


def kernel_socket(family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(IO_TIMEOUT)
    return s


def kernel_listener(family=socket.AF_INET, kernel_ip=KERNEL_IP):
    s = kernel_socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((kernel_ip, 0))
    s.listen(16)
    return s


def tcpfast_listener(stack, port, family=socket.AF_INET, stack_ip=STACK_IP, backlog=16):
    s = stack.socket(family, socket.SOCK_STREAM)
    s.settimeout(IO_TIMEOUT)
    s.bind((stack_ip, port))
    s.listen(backlog)
    return s


def kernel_to_tcpfast(stack, port=5001, family=socket.AF_INET, stack_ip=STACK_IP):
    """The kernel connects to a tcpfast listener: returns (kernel socket, accepted tcpfast socket)."""
    with tcpfast_listener(stack, port, family, stack_ip) as lst:
        k = kernel_socket(family)
        k.connect((stack_ip, port))
        t, addr = lst.accept()
    t.settimeout(IO_TIMEOUT)
    assert addr[:2] == k.getsockname()[:2]
    return k, t


def tcpfast_to_kernel(stack, family=socket.AF_INET, kernel_ip=KERNEL_IP):
    """tcpfast connects to a kernel listener: returns (tcpfast socket, accepted kernel socket)."""
    with kernel_listener(family, kernel_ip) as lst:
        t = stack.socket(family, socket.SOCK_STREAM)
        t.settimeout(IO_TIMEOUT)
        t.connect(lst.getsockname()[:2])
        k, addr = lst.accept()
    k.settimeout(IO_TIMEOUT)
    assert addr[:2] == t.getsockname()[:2]
    return t, k


def entry(stack, local, remote):
    """The row of stack.connections() for the 4-tuple, or None."""
    rows = [c for c in stack.connections()
            if c["remote"] is not None and tuple(c["local"][:2]) == tuple(local[:2])
            and tuple(c["remote"][:2]) == tuple(remote[:2])]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def state_of(stack, sock_pair):
    """The state of the connection of a tcpfast socket, by its 4-tuple (local, remote)."""
    row = entry(stack, *sock_pair)
    return row["state"] if row else None


def unread(sock):
    """Bytes waiting in a kernel socket's receive queue (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def _read_v4(tun):
    """The next IPv4 packet the kernel wrote to the device (skipping its IPv6 chatter), or None."""
    while True:
        try:
            packet = os.read(tun.fileno(), 65536)
        except BlockingIOError:
            return None
        if packet[0] >> 4 == 4:
            return packet


# --- the harness and the stack's life cycle --------------------------------------------------------

def test_namespace_is_private(in_ns):
    """The harness itself: a TUN device made inside the namespace exists only there, carries what
    the kernel sends to its subnet, and nothing outside the namespace is reachable."""
    import pytun

    tun = pytun.TunTapDevice(name=IFNAME, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    try:
        tun.addr, tun.netmask, tun.mtu = KERNEL_IP, "255.255.255.0", 1500
        tun.up()
        assert IFNAME in netns.links(in_ns, "tun")
        assert IFNAME not in netns.origin_links()
        assert set(netns.links(in_ns)) == {"lo", IFNAME}
        # What the kernel sends to the subnet comes out of the device, into this test.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"inside", (STACK_IP, 9))
        os.set_blocking(tun.fileno(), False)
        got = helpers.wait_for(lambda: _read_v4(tun), 5, message="UDP datagram on the TUN device")
        assert got[16:20] == socket.inet_aton(STACK_IP) and got.endswith(b"inside")
        # Beyond the subnet there is no route: nothing can leave.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            with pytest.raises(OSError) as exc:
                u.sendto(b"x", ("192.0.2.1", 9))
            assert exc.value.errno == errno.ENETUNREACH
    finally:
        tun.close()
    helpers.wait_for(lambda: IFNAME not in netns.links(in_ns), 5, message="device gone on close")


def _tasks():
    return len(os.listdir("/proc/self/task"))


def _fds():
    return sorted(os.listdir("/proc/self/fd"))


def test_start_stop_leaves_nothing(in_ns):
    """Start and stop are clean: the device comes and goes, no thread or fd is left; the first
    started stack is the default of tcpfast.socket, and with none running it raises."""
    import tcpfast

    with pytest.raises(RuntimeError):
        tcpfast.socket(socket.AF_INET, socket.SOCK_STREAM)
    tasks, fds = _tasks(), _fds()
    for offload in (False, True, False):
        with tcpfast.Stack(f"{STACK_IP}/{PREFIX}", kernel_address=KERNEL_IP, ifname=IFNAME,
                           mtu=1500, offload=offload) as stack:
            assert stack.ifname == IFNAME and stack.mtu == 1500
            assert IFNAME in netns.links(in_ns, "tun")
            assert IFNAME not in netns.origin_links()
            assert stack.offload is offload, "this kernel grants TUN offloads; the stack must use them"
            with tcpfast.socket(socket.AF_INET, socket.SOCK_STREAM) as s:   # the default stack
                s.settimeout(IO_TIMEOUT)
                with kernel_listener() as lst:
                    s.connect(lst.getsockname())
                    k, _ = lst.accept()
                    with k:
                        s.sendall(b"default stack")
                        assert recv_exactly(k, 13) == b"default stack"
        helpers.wait_for(lambda: IFNAME not in netns.links(in_ns), 5,
                         message="device gone after stop")
    # (<= rather than ==: a thread or fd of an earlier test may end meanwhile, never start)
    assert not [th.name for th in threading.enumerate() if th.name.startswith("tcpfast")]
    helpers.wait_for(lambda: _tasks() <= tasks, 5, message=f"threads back to {tasks}")
    assert set(_fds()) <= set(fds), sorted(set(_fds()) - set(fds))
    with pytest.raises(RuntimeError):
        tcpfast.socket(socket.AF_INET, socket.SOCK_STREAM)


# --- handshakes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fam", ["v4", "v6"])
def test_kernel_connects_to_tcpfast(stack, fam):
    family, stack_ip, kernel_ip = FAMILIES[fam]
    port = 5002
    with tcpfast_listener(stack, port, family, stack_ip) as lst:
        listening = [c for c in stack.connections() if c["state"] == "LISTEN"]
        assert [tuple(c["local"][:2]) for c in listening] == [(stack_ip, port)]
        assert listening[0]["remote"] is None
        k = kernel_socket(family)
        k.connect((stack_ip, port))
        t, addr = lst.accept()
    with k, t:
        assert addr[:2] == k.getsockname()[:2] and addr[0] == kernel_ip
        assert t.getsockname()[:2] == (stack_ip, port) == k.getpeername()[:2]
        assert t.getpeername()[:2] == k.getsockname()[:2]
        row = entry(stack, t.getsockname(), t.getpeername())
        assert row["state"] == "ESTABLISHED" and row["recv_queue"] == 0
        t.setblocking(False)
        assert t.gettimeout() == 0.0
        with pytest.raises(BlockingIOError):
            t.recv(1)
        t.settimeout(0.2)
        with pytest.raises(TimeoutError):
            t.recv(1)
        k.sendall(b"hello tcpfast")
        helpers.wait_for(lambda: entry(stack, t.getsockname(), t.getpeername())["recv_queue"] == 13,
                         5, message="13 bytes in the receive queue")
        assert select.select([t.fileno()], [], [], 5)[0] == [t.fileno()]   # fileno() is real
        t.settimeout(IO_TIMEOUT)
        assert recv_exactly(t, 13) == b"hello tcpfast"
        t.sendall(b"hello kernel")
        assert recv_exactly(k, 12) == b"hello kernel"


@pytest.mark.parametrize("fam", ["v4", "v6"])
def test_tcpfast_connects_to_kernel(stack, fam):
    family, stack_ip, kernel_ip = FAMILIES[fam]
    before = stack.stats()
    t, k = tcpfast_to_kernel(stack, family, kernel_ip)
    with t, k:
        assert t.getsockname()[0] == stack_ip and t.getsockname()[1] != 0
        assert t.getpeername()[:2] == k.getsockname()[:2] and k.getpeername()[:2] == t.getsockname()[:2]
        row = entry(stack, t.getsockname(), t.getpeername())
        assert row["state"] == "ESTABLISHED"
        assert row["srtt"] is not None and 0 < row["srtt"] < 5
        assert row["cwnd"] > 0
        t.sendall(b"ping")
        assert recv_exactly(k, 4) == b"ping"
        k.sendall(b"pong")
        assert recv_exactly(t, 4) == b"pong"
    after = stack.stats()
    assert after["segments_in"] - before["segments_in"] >= 3
    assert after["segments_out"] - before["segments_out"] >= 3
    assert after["packets_in"] > before["packets_in"] and after["packets_out"] > before["packets_out"]


def test_connect_to_own_address(stack):
    """Packets to the stack's own address are delivered inside the stack."""
    with tcpfast_listener(stack, 5003) as lst:
        c = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(IO_TIMEOUT)
        c.connect((STACK_IP, 5003))
        s, addr = lst.accept()
    with c, s:
        s.settimeout(IO_TIMEOUT)
        assert addr[:2] == c.getsockname()[:2]
        w = helpers.start(send_stream, c, 4 * MiB, 7)
        n, digest = recv_stream(s, 4 * MiB)
        assert (n, digest) == (4 * MiB, w.result(IO_TIMEOUT * 3))


# --- data ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_bulk_each_way(make_stack, offload):
    """100 MB from the kernel into tcpfast, then 100 MB out of it, on one connection; equal SHA-256."""
    stack = make_stack(offload=offload)
    assert stack.offload is offload
    k, t = kernel_to_tcpfast(stack)
    with k, t:
        w = helpers.start(send_stream, k, BULK, 1)
        assert recv_stream(t, BULK) == (BULK, w.result(600))
        w = helpers.start(send_stream, t, BULK, 2)
        assert recv_stream(k, BULK) == (BULK, w.result(600))
        # Both close their sending side: each sees the other's FIN as end-of-stream.
        t.shutdown(socket.SHUT_WR)
        k.shutdown(socket.SHUT_WR)
        assert t.recv(1) == b"" and k.recv(1) == b""
    stats = stack.stats()
    assert stats["segments_in"] > BULK // 65536
    if offload:     # super-segments did pass both ways (counters beyond the list)
        assert stats["gso_in"] > 0 and stats["gso_out"] > 0, stats


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_full_duplex(make_stack, offload):
    """Both ends send and receive at the same time, a thread for each direction of each end (two
    threads blocked on one tcpfast socket, as socket.socket allows); several rounds, since a lost
    wake-up of one of the two threads shows only now and then."""
    stack = make_stack(offload=offload)
    for round_ in range(DUPLEX_ROUNDS):
        t, k = tcpfast_to_kernel(stack)
        with t, k:
            for s in (t, k):
                s.settimeout(10)
            jobs = [helpers.start(send_stream, t, DUPLEX, 3 + round_),
                    helpers.start(send_stream, k, DUPLEX, 4),
                    helpers.start(recv_stream, k, DUPLEX), helpers.start(recv_stream, t, DUPLEX)]
            t_sent, k_sent, k_got, t_got = (j.result(120) for j in jobs)
            assert k_got == (DUPLEX, t_sent), f"round {round_}"
            assert t_got == (DUPLEX, k_sent), f"round {round_}"


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_small_and_odd_writes(make_stack, offload):
    """Writes of odd sizes through send() (short counts allowed), reads of odd sizes, both ways,
    with and without Nagle; then 200 one-byte round trips."""
    stack = make_stack(offload=offload)
    total = sum(ODD_SIZES) * 3
    for nodelay in (0, 1):
        t, k = tcpfast_to_kernel(stack)
        with t, k:
            t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, nodelay)
            k.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, nodelay)
            w = helpers.start(recv_stream, k, total, sizes=(1, 3, 1461, 7, 65537, 1000))
            sent = send_stream(t, total, 10 + nodelay, ODD_SIZES, partial=True)
            assert w.result(120) == (total, sent)
            w = helpers.start(recv_stream, t, total, sizes=(1000, 1, 65537, 7, 1461, 3))
            sent = send_stream(k, total, 20 + nodelay, ODD_SIZES[::-1])
            assert w.result(120) == (total, sent)
            for i in range(200):
                t.sendall(bytes([i]))
                assert k.recv(1) == bytes([i])
                k.sendall(bytes([255 - i]))
                assert t.recv(1) == bytes([255 - i])


def test_sendall_keeps_the_sockets_timeout(stack):
    """A sendall blocked on a full window does not change the socket's timeout that other threads
    see (as socket.socket: the deadline is the call's own)."""
    t, k = tcpfast_to_kernel(stack)
    with t, k:
        t.settimeout(15.0)
        blob = random.Random(5).randbytes(32 * MiB)    # more than both buffers hold: sendall blocks
        w = helpers.start(t.sendall, blob)
        time.sleep(1.0)
        assert w.is_alive(), "sendall should still be waiting for the kernel to read"
        assert t.gettimeout() == 15.0
        got = recv_stream(k, len(blob))
        w.result(IO_TIMEOUT)
        assert got == (len(blob), hashlib.sha256(blob).hexdigest())
        assert t.gettimeout() == 15.0


# --- closing ---------------------------------------------------------------------------------------

def test_close_started_by_tcpfast(stack):
    t, k = tcpfast_to_kernel(stack)
    with k:
        t.sendall(b"bye")
        t.close()
        with pytest.raises(OSError) as exc:
            t.send(b"x")
        assert exc.value.errno == errno.EBADF
        assert recv_exactly(k, 3) == b"bye"
        assert k.recv(10) == b""            # the FIN is end-of-stream
        assert k.recv(10) == b""


def test_close_started_by_kernel(stack):
    k, t = kernel_to_tcpfast(stack)
    with t:
        k.sendall(b"bye")
        k.close()
        assert recv_exactly(t, 3) == b"bye"
        assert t.recv(10) == b""
        assert t.recv(10) == b""


def test_half_close_by_tcpfast(stack):
    """tcpfast shuts down its sending side; the kernel reads to end-of-stream, then answers."""
    t, k = tcpfast_to_kernel(stack)
    with t, k:
        t.sendall(b"request")
        t.shutdown(socket.SHUT_WR)
        with pytest.raises(BrokenPipeError):
            t.send(b"more")
        assert recv_exactly(k, 7) == b"request"
        assert k.recv(10) == b""
        pair = (t.getsockname(), t.getpeername())
        helpers.wait_for(lambda: state_of(stack, pair) == "FIN-WAIT-2", 5, message="FIN-WAIT-2")
        w = helpers.start(send_stream, k, 3 * MiB + 17, 30)
        assert recv_stream(t, 3 * MiB + 17) == (3 * MiB + 17, w.result(60))
        k.sendall(b"response")
        k.shutdown(socket.SHUT_WR)
        assert recv_exactly(t, 8) == b"response"
        assert t.recv(10) == b""


def test_half_close_by_kernel(stack):
    """The kernel shuts down its sending side; tcpfast reads to end-of-stream (CLOSE-WAIT), then
    answers with data and its own FIN."""
    k, t = kernel_to_tcpfast(stack)
    with t, k:
        k.sendall(b"request")
        k.shutdown(socket.SHUT_WR)
        assert recv_exactly(t, 7) == b"request"
        assert t.recv(10) == b""
        pair = (t.getsockname(), t.getpeername())
        assert state_of(stack, pair) == "CLOSE-WAIT"
        w = helpers.start(recv_stream, k)             # to the end of the stream
        sent = send_stream(t, 3 * MiB + 5, 31)
        t.shutdown(socket.SHUT_WR)
        assert w.result(60) == (3 * MiB + 5, sent)


# --- resets and refusals ---------------------------------------------------------------------------

def test_kernel_closing_with_unread_data_resets(stack):
    """The kernel closes with data unread, so it sends RST: a tcpfast recv blocked on the
    connection fails with ConnectionResetError, and a later send with BrokenPipeError."""
    before = stack.stats()["resets_received"]
    t, k = tcpfast_to_kernel(stack)
    with t:
        pair = (t.getsockname(), t.getpeername())
        t.sendall(b"x" * 1000)
        helpers.wait_for(lambda: unread(k) == 1000, 5, message="data in the kernel's receive queue")
        blocked = helpers.start(t.recv, 100)
        time.sleep(0.2)
        k.close()
        with pytest.raises(ConnectionResetError) as exc:
            blocked.result(10)
        assert exc.value.errno == errno.ECONNRESET
        with pytest.raises(BrokenPipeError):
            t.send(b"after the reset")
        assert stack.stats()["resets_received"] > before
        helpers.wait_for(lambda: entry(stack, *pair) is None, 5,
                         message="connection gone after RST")


def test_connect_to_closed_kernel_port_is_refused(stack):
    with kernel_socket() as probe:
        probe.bind((KERNEL_IP, 0))
        closed = probe.getsockname()          # bound, never listening: the port is closed
        with stack.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.settimeout(IO_TIMEOUT)
            with pytest.raises(ConnectionRefusedError) as exc:
                t.connect(closed)
            assert exc.value.errno == errno.ECONNREFUSED
        with stack.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.settimeout(IO_TIMEOUT)
            assert t.connect_ex(closed) == errno.ECONNREFUSED


def test_kernel_connecting_to_closed_tcpfast_port_is_refused(stack):
    before = stack.stats()
    with kernel_socket() as k:
        with pytest.raises(ConnectionRefusedError):
            k.connect((STACK_IP, 4444))
    with kernel_socket(socket.AF_INET6) as k:
        with pytest.raises(ConnectionRefusedError):
            k.connect((STACK_IP6, 4444))
    after = stack.stats()
    assert after["resets_sent"] - before["resets_sent"] >= 2
    assert after["dropped_no_listener"] - before["dropped_no_listener"] >= 2


# --- TIME-WAIT and CLOSE-WAIT ----------------------------------------------------------------------

MSL = 0.5


def test_time_wait_lasts_two_msl(make_stack):
    stack = make_stack(msl=MSL)
    t, k = tcpfast_to_kernel(stack)
    pair = (t.getsockname(), t.getpeername())
    with k:
        t.close()                                   # tcpfast closes first: it will hold TIME-WAIT
        assert k.recv(10) == b""
        helpers.wait_for(lambda: state_of(stack, pair) == "FIN-WAIT-2", 5, message="FIN-WAIT-2")
        k.close()
        helpers.wait_for(lambda: state_of(stack, pair) == "TIME-WAIT", 5, message="TIME-WAIT")
        seen = time.monotonic()
        helpers.wait_for(lambda: entry(stack, *pair) is None, 2 * MSL + 5,
                         message="TIME-WAIT over after 2 MSL")
        lasted = time.monotonic() - seen
    assert lasted >= MSL, f"TIME-WAIT ended after {lasted:.2f} s, 2 MSL is {2 * MSL} s"


def test_close_wait_until_the_application_closes(make_stack):
    stack = make_stack(msl=MSL)
    k, t = kernel_to_tcpfast(stack)
    pair = (t.getsockname(), t.getpeername())
    k.close()
    assert t.recv(10) == b""
    assert state_of(stack, pair) == "CLOSE-WAIT"
    time.sleep(4 * MSL)                             # no timer ends CLOSE-WAIT
    assert state_of(stack, pair) == "CLOSE-WAIT"
    t.close()                                       # LAST-ACK, then CLOSED on the kernel's ACK
    helpers.wait_for(lambda: entry(stack, *pair) is None, 5,
                     message="connection gone after LAST-ACK")


# --- keepalive -------------------------------------------------------------------------------------

def _keepalive(sock, idle=1, interval=1, count=2):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)


def _tcp_segments(packets, src_port, dst_port):
    from tcpfast import wire

    out = []
    for when, to_stack, data in packets:
        try:
            p = wire.parse_packet(data)
        except wire.WireError:
            continue
        if p.tcp is not None and (p.tcp.src_port, p.tcp.dst_port) == (src_port, dst_port):
            out.append((when, p))
    return out


def test_keepalive_answered_keeps_connection(stack):
    """Idle past keepidle + keepcnt * keepintvl: the stack probes (SEG.SEQ = SND.NXT - 1), the
    kernel answers each probe, and the connection lives on."""
    with helpers.Sniffer(IFNAME) as sniffer:
        t, k = tcpfast_to_kernel(stack)
        with t, k:
            _keepalive(t)
            t.sendall(b"last data")
            assert recv_exactly(k, 9) == b"last data"
            k.sendall(b"ok")
            assert recv_exactly(t, 2) == b"ok"
            time.sleep(0.3)
            idle_from = time.monotonic()
            time.sleep(4.5)                         # dead after 1 + 2 * 1 s if unanswered
            idle_to = time.monotonic()
            t.sendall(b"still there?")
            assert recv_exactly(k, 12) == b"still there?"
            k.sendall(b"yes")
            assert recv_exactly(t, 3) == b"yes"
            assert state_of(stack, (t.getsockname(), t.getpeername())) == "ESTABLISHED"
            tport, kport = t.getsockname()[1], k.getsockname()[1]
    out = _tcp_segments(sniffer.packets, tport, kport)
    back = _tcp_segments(sniffer.packets, kport, tport)
    last_data = [p for w, p in out if w < idle_from and p.payload == b"last data"][-1]
    snd_nxt = (last_data.tcp.seq + len(last_data.payload)) & 0xFFFFFFFF
    probes = [p for w, p in out if idle_from <= w <= idle_to]
    answers = [p for w, p in back if idle_from <= w <= idle_to]
    assert len(probes) >= 2, f"{len(probes)} keepalive probes while idle"
    assert all(p.tcp.seq == (snd_nxt - 1) & 0xFFFFFFFF and len(p.payload) <= 1 for p in probes), \
        [(p.tcp.seq, len(p.payload)) for p in probes]
    assert len(answers) >= 2, f"{len(answers)} answers from the kernel"


def test_keepalive_vanished_peer_times_out(stack, in_ns):
    """The kernel's address goes away (packets to it now go nowhere, inside the namespace): the
    keepalive probes go unanswered and a blocked recv ends in ETIMEDOUT."""
    t, k = tcpfast_to_kernel(stack)
    with t, k:
        pair = (t.getsockname(), t.getpeername())
        _keepalive(t)
        t.settimeout(30)                            # far longer than 1 + 2 * 1 s of keepalive
        netns.run(in_ns, "ip", "addr", "del", f"{KERNEL_IP}/{PREFIX}", "dev", IFNAME)
        began = time.monotonic()
        with pytest.raises(TimeoutError) as exc:
            t.recv(10)
        assert exc.value.errno == errno.ETIMEDOUT, "a socket timeout, not a keepalive abort"
        assert time.monotonic() - began < 20
        helpers.wait_for(lambda: entry(stack, *pair) is None, 5, message="connection gone")


# --- ping ------------------------------------------------------------------------------------------

def _echo_request(ident, seq, data, v6):
    head = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, seq) + data
    if v6:
        return head                                 # the kernel fills the ICMPv6 checksum
    from tcpfast.checksum import checksum
    return head[:2] + struct.pack("!H", checksum(head)) + head[4:]


def _ping(dst, v6, count, size, ident):
    """Echo requests from the kernel (a raw ICMP socket); returns the number of exact replies."""
    family, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    replies = 0
    with socket.socket(family, socket.SOCK_RAW, proto) as s:
        for seq in range(count):
            data = random.Random(seq).randbytes(size)
            s.sendto(_echo_request(ident, seq, data, v6), (dst, 0))
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                s.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    msg = s.recv(65536)
                except socket.timeout:
                    break
                if not v6:
                    msg = msg[(msg[0] & 0x0F) * 4:]     # a raw IPv4 socket returns the IP header too
                typ, _, _, rid, rseq = struct.unpack("!BBHHH", msg[:8])
                if typ == (129 if v6 else 0) and (rid, rseq) == (ident, seq):
                    assert msg[8:] == data
                    replies += 1
                    break
    return replies


@pytest.mark.parametrize("fam", ["v4", "v6"])
def test_kernel_pings_the_stack(stack, fam):
    v6 = fam == "v6"
    dst = STACK_IP6 if v6 else STACK_IP
    before = stack.stats()["icmp_echo_replies"]
    assert _ping(dst, v6, 3, 56, 0x7463) == 3
    assert _ping(dst, v6, 3, 1400, 0x7464) == 3
    assert stack.stats()["icmp_echo_replies"] - before == 6


# --- capture ---------------------------------------------------------------------------------------

def _read_pcap(path):
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), hex(magic)
    _, _, _, _, _, linktype = struct.unpack("<HHiIII", data[4:24])
    assert linktype == 101, linktype                # LINKTYPE_RAW
    packets, off = [], 24
    while off < len(data):
        _, _, incl, orig = struct.unpack("<IIII", data[off:off + 16])
        assert incl == orig
        packets.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    assert off == len(data)
    return packets


def test_capture_records_every_packet(stack, tmp_path):
    """stack.capture(path) writes as pcap exactly the packets seen on the device, both ways."""
    path = tmp_path / "tcpf.pcap"
    with helpers.Sniffer(IFNAME) as sniffer:
        with stack.capture(str(path)):
            k, t = kernel_to_tcpfast(stack, 5010)
            with k, t:
                ports = (k.getsockname()[1], 5010)
                k.sendall(b"a" * 5000)
                assert recv_exactly(t, 5000) == b"a" * 5000
                t.sendall(b"b" * 3000)
                assert recv_exactly(k, 3000) == b"b" * 3000
                t.shutdown(socket.SHUT_WR)
                assert k.recv(1) == b""
            time.sleep(0.3)
        time.sleep(0.2)

    def of_connection(raw):
        return [p for p in raw if p[0] >> 4 == 4 and p[9] == 6
                and struct.unpack("!HH", p[(p[0] & 15) * 4:(p[0] & 15) * 4 + 4]) in (ports, ports[::-1])]

    captured = of_connection(_read_pcap(path))
    wire_in = of_connection([d for _, to_stack, d in sniffer.packets if to_stack])
    wire_out = of_connection([d for _, to_stack, d in sniffer.packets if not to_stack])
    assert wire_in and wire_out
    assert [p for p in captured if p[12:16] == socket.inet_aton(KERNEL_IP)] == wire_in
    assert [p for p in captured if p[12:16] == socket.inet_aton(STACK_IP)] == wire_out
