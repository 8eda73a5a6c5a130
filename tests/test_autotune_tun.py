"""Buffer auto-tuning and the stack-wide memory limit over TUN, with the kernel as the peer
(issue 10). Outcomes only (bytes intact, limits held, counters), never speed."""
import hashlib
import socket
import threading
import time

import pytest

import helpers
from conftest import STACK_IP
from socket_api_helpers import recv_exactly

pytestmark = pytest.mark.tun

MiB = 1 << 20
IO_TIMEOUT = 60.0


def _payload(i: int, n: int) -> bytes:
    return hashlib.sha256(b"%d" % i).digest() * (n // 32)


def _rows(stack):
    return {tuple(r["remote"][:2]): r for r in stack.connections() if r["remote"] is not None}


def test_memory_limit_holds_while_many_kernel_senders_push(make_stack):
    """Sixteen kernel senders push 3 MiB each into tcpfast sockets whose application does not read
    at first: together they would fill 16 x 256 KiB of windows, more than the 2 MiB limit. The
    stack never holds more than the limit, counts the pressure, and once the applications read,
    every byte arrives intact."""
    limit = 2 * MiB
    n, size = 16, 3 * MiB
    stack = make_stack(mem_limit=limit)
    lst = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.settimeout(IO_TIMEOUT)
    lst.bind((STACK_IP, 5201))
    lst.listen(n)
    kernels, servers = [], []
    for i in range(n):
        k = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        k.settimeout(IO_TIMEOUT)
        k.connect((STACK_IP, 5201))
        kernels.append(k)
        t, _ = lst.accept()
        t.settimeout(IO_TIMEOUT)
        servers.append(t)
    senders = [helpers.start(k.sendall, _payload(i, size)) for i, k in enumerate(kernels)]
    # Nobody reads for a while: the kernel fills every window it was offered.
    peak_seen = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        st = stack.stats()
        peak_seen = max(peak_seen, st["mem_allocated"])
        assert st["mem_allocated"] <= limit
        time.sleep(0.05)
    st = stack.stats()
    assert st["mem_limit"] == limit
    assert st["mem_peak"] <= limit
    assert st["mem_pressure_events"] > 0, st
    # Now the applications read: everything arrives, intact.
    got = [None] * n

    def reader(i):
        got[i] = recv_exactly(servers[i], size)

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(n)]
    for r in readers:
        r.start()
    for r in readers:
        r.join(120)
    for w in senders:
        w.result(120)
    for i in range(n):
        assert got[i] == _payload(i, size), i
    st = stack.stats()
    assert st["mem_peak"] <= limit
    for s in kernels + servers + [lst]:
        s.close()


def test_so_rcvbuf_and_so_sndbuf_lock_the_sizes(make_stack):
    """SO_RCVBUF/SO_SNDBUF (set on the listener, inherited by the accepted socket) fix the sizes
    at twice the value (socket(7)); getsockopt answers as before; without them the connection
    starts at the default and may grow."""
    stack = make_stack()
    for port, rcv, snd in ((5202, None, None), (5203, 65536, 98304)):
        lst = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.settimeout(IO_TIMEOUT)
        if rcv:
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcv)
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, snd)
            assert lst.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * rcv
            assert lst.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * snd
        lst.bind((STACK_IP, port))
        lst.listen(1)
        k = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        k.settimeout(IO_TIMEOUT)
        k.connect((STACK_IP, port))
        t, _ = lst.accept()
        t.settimeout(IO_TIMEOUT)
        data = _payload(7, 8 * MiB)
        w = helpers.start(k.sendall, data)
        assert recv_exactly(t, len(data)) == data
        w.result(60)
        w = helpers.start(t.sendall, data)
        assert recv_exactly(k, len(data)) == data
        w.result(60)
        row = _rows(stack)[k.getsockname()[:2]]
        if rcv:
            assert row["rcvbuf"] == 2 * rcv and row["sndbuf"] == 2 * snd
        else:
            assert row["rcvbuf"] >= 256 * 1024 and row["sndbuf"] >= 256 * 1024
        assert row["rmem_alloc"] <= row["rcvbuf"] + 128 and row["wmem_alloc"] <= row["sndbuf"]
        for s in (k, t, lst):
            s.close()


def test_senders_wait_for_memory_and_are_woken_when_it_comes_back(make_stack):
    """Sixteen tcpfast senders, 1 MiB each, under a 512 KiB limit, to kernel receivers that read
    only later. Send buffers stop at the pressure mark (3/4 of the limit), so most senders find
    no memory at all and block; as the first ones finish and give their buffers back, the stack
    wakes the waiting writers. Every byte arrives intact and the limit holds throughout."""
    limit = 512 * 1024
    n, size = 16, 1 * MiB
    stack = make_stack(mem_limit=limit)
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("198.18.0.1", 0))
    lst.listen(n)
    lst.settimeout(IO_TIMEOUT)
    clients, peers = [], []
    for _ in range(n):
        t = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.settimeout(IO_TIMEOUT)
        t.connect(lst.getsockname())
        k, _ = lst.accept()
        k.settimeout(IO_TIMEOUT)
        clients.append(t)
        peers.append(k)

    def send(i):
        clients[i].sendall(_payload(i, size))
        clients[i].shutdown(socket.SHUT_WR)

    senders = [helpers.start(send, i) for i in range(n)]
    time.sleep(1.0)
    st = stack.stats()
    assert st["mem_allocated"] <= limit and st["mem_peak"] <= limit
    assert st["mem_refused"] > 0 and st["mem_pressure_events"] > 0, st
    got = [None] * n

    def reader(i):
        got[i] = recv_exactly(peers[i], size)
        assert peers[i].recv(1) == b""

    readers = [helpers.start(reader, i) for i in range(n)]
    for w in readers + senders:
        w.result(120)
    for i in range(n):
        assert got[i] == _payload(i, size), i
    st = stack.stats()
    print(f"\nlimit {limit}: peak {st['mem_peak']}, pressure events {st['mem_pressure_events']}, "
          f"refused {st['mem_refused']}")
    assert st["mem_peak"] <= limit
    for s in clients + peers + [lst]:
        s.close()
