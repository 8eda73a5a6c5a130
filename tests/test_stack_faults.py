"""The stack over TUN under faults (issue 4): a lossy, reordering, duplicating, slow path; a SYN
flood with spoofed sources; malformed packets. All from the kernel side of the stack's device, in
the private network namespace of the test run (conftest.py)."""
import os
import random
import socket
import struct
import threading
import time
from ipaddress import IPv4Address

import pytest

import helpers
from tcpfast import netns
from conftest import IFNAME, KERNEL_IP, KERNEL_IP6, STACK_IP, STACK_IP6
from test_stack_tun import (IO_TIMEOUT, MiB, _tcp_segments, entry, kernel_to_tcpfast, recv_exactly,
                            recv_stream, send_stream, tcpfast_listener)

pytestmark = pytest.mark.tun

IMPAIRMENT = dict(loss=0.05, duplicate=0.01, reorder=0.25, delay=0.020)
LOSSY_SIZES = [            # (bytes each way, bound in seconds of the whole transfer)
    pytest.param(1 * MiB, 600, id="1MB"),
    pytest.param(50 * MiB, 3600, id="50MB", marks=pytest.mark.slow),
]


# --- a lossy path ----------------------------------------------------------------------------------

def _both_ways(stack, size, timeout):
    """``size`` bytes from the kernel into tcpfast and ``size`` out of it, at the same time;
    returns the kernel's count of retransmitted segments (tcp_info.tcpi_total_retrans)."""
    k, t = kernel_to_tcpfast(stack)
    with k, t:
        for s in (k, t):
            s.settimeout(120)                       # for one call, with backed-off timers
        jobs = [helpers.start(send_stream, k, size, 41), helpers.start(send_stream, t, size, 42),
                helpers.start(recv_stream, t, size), helpers.start(recv_stream, k, size)]
        k_sent, t_sent, t_got, k_got = (j.result(timeout) for j in jobs)
        assert t_got == (size, k_sent), "kernel -> tcpfast"
        assert k_got == (size, t_sent), "tcpfast -> kernel"
        info = k.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return struct.unpack_from("I", info, 100)[0]


@pytest.mark.parametrize("size, bound", LOSSY_SIZES)
def test_lossy_path_both_ways(make_stack, in_ns, size, bound):
    """Loss 5 %, duplication 1 %, reordering 25 %, 20 ms delay, in both directions (a netem in user
    space, helpers.Impairer: it needs no qdisc module, so it runs on every kernel); the bytes
    arrive intact both ways."""
    stack = make_stack()
    with helpers.Impairer(in_ns, IFNAME, STACK_IP, KERNEL_IP, seed=4, max_seconds=bound,
                          **IMPAIRMENT) as path:
        kernel_retransmits = _both_ways(stack, size, timeout=bound)
    for direction, c in path.counts.items():
        assert c["dropped"] > 0 and c["duplicated"] > 0 and c["reordered"] > 0, (direction, c)
    assert stack.stats()["retransmits"] > 0 and kernel_retransmits > 0


@pytest.mark.netem
@pytest.mark.parametrize("size, bound", LOSSY_SIZES)
def test_netem_both_ways(make_stack, in_ns, size, bound):
    """The same with the kernel's netem. netem on tcpf0 shapes only its egress, the kernel -> tcpfast
    direction; the other direction goes through an ifb device (tc mirred from tcpf0's ingress)
    with its own netem. Skipped, with tc's error, on a kernel without sch_netem: the user-space
    impairment above covers the same ground there."""
    missing = helpers.qdisc_available(in_ns, "netem")
    if missing:
        pytest.skip(f"the kernel has no netem qdisc ({missing})")
    stack = make_stack()
    spec = ["delay", "20ms", "loss", "5%", "duplicate", "1%", "reorder", "25%", "50%"]
    netns.run(in_ns, "tc", "qdisc", "add", "dev", IFNAME, "root", "netem", *spec)
    netns.run(in_ns, "ip", "link", "add", "tcpfifb0", "type", "ifb")
    try:
        netns.run(in_ns, "ip", "link", "set", "tcpfifb0", "up")
        netns.run(in_ns, "tc", "qdisc", "add", "dev", "tcpfifb0", "root", "netem", *spec)
        netns.run(in_ns, "tc", "qdisc", "add", "dev", IFNAME, "ingress")
        netns.run(in_ns, "tc", "filter", "add", "dev", IFNAME, "parent", "ffff:", "protocol", "all",
                  "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect",
                  "dev", "tcpfifb0")
        kernel_retransmits = _both_ways(stack, size, timeout=bound)
    finally:
        netns.run(in_ns, "ip", "link", "del", "tcpfifb0", check=False)
    assert stack.stats()["retransmits"] > 0 and kernel_retransmits > 0


# --- SYN flood -------------------------------------------------------------------------------------

FLOOD = 50_000


def _flood(port, count, seed):
    """``count`` SYNs to the stack from spoofed sources in 198.18.0.0/24 (not .1, not .2), sent by
    the kernel's IP layer (a raw IP socket), so they reach the stack through its device. Their
    SYN-ACKs go to addresses nobody has; with forwarding off, the kernel drops them."""
    from tcpfast import wire

    rng = random.Random(seed)
    sources = [IPv4Address(f"198.18.0.{i}") for i in range(3, 255)]
    template = wire.Packet(
        ip=wire.IPv4Header("198.18.0.3", STACK_IP),
        tcp=wire.TCPHeader(1, port, seq=0, flags=wire.TCPFlags.SYN, window=64240, mss=1460,
                           sack_permitted=True, timestamps=(1, 0), wscale=7))
    sent = 0
    deadline = time.monotonic() + 60
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        while sent < count and time.monotonic() < deadline:
            template.ip.src = rng.choice(sources)
            template.tcp.src_port = rng.randrange(1024, 65536)
            template.tcp.seq = rng.getrandbits(32)
            template.tcp.timestamps = (rng.getrandbits(32), 0)
            try:
                raw.sendto(template.to_bytes(), (STACK_IP, 0))
            except OSError:                      # a full device queue: a lost SYN, like on a wire
                time.sleep(0.001)
            sent += 1
            if sent % 500 == 0:
                time.sleep(0.002)                # let the device queue drain now and then
    return sent


def _echo_server(lst, stop):
    served = 0
    while not stop.is_set():
        try:
            conn, _ = lst.accept()
        except TimeoutError:
            continue
        with conn:
            conn.settimeout(IO_TIMEOUT)
            data = recv_exactly(conn, 1000)
            conn.sendall(data)
            served += 1
    return served


def _clients(until, at_least):
    """Kernel clients connecting and exchanging 1000 bytes each until ``until()`` and at least
    ``at_least`` times; returns the number of exchanges."""
    done = 0
    deadline = time.monotonic() + 120
    while (done < at_least or not until()) and time.monotonic() < deadline:
        with socket.create_connection((STACK_IP, 5020), timeout=IO_TIMEOUT) as c:
            payload = os.urandom(1000)
            c.sendall(payload)
            assert recv_exactly(c, 1000) == payload
            done += 1
    return done


def test_syn_flood(make_stack):
    """50,000 spoofed SYNs while real kernel clients keep connecting: SYN cookies take over when
    the SYN queue is full, memory and the connection table stay bounded."""
    stack = make_stack()
    lst = tcpfast_listener(stack, 5020, backlog=8)
    lst.settimeout(0.2)
    stop = threading.Event()
    server = helpers.start(_echo_server, lst, stop)
    try:
        assert _clients(lambda: True, 3) == 3            # warm up before measuring memory
        rss_before = helpers.rss_bytes()
        before = stack.stats()
        flood = helpers.start(_flood, 5020, FLOOD, 5)
        clients = helpers.start(_clients, lambda: not flood.is_alive(), 5)
        biggest = 0
        deadline = time.monotonic() + 200
        while (flood.is_alive() or clients.is_alive()) and time.monotonic() < deadline:
            biggest = max(biggest, len(stack.connections()))
            time.sleep(0.05)
        assert flood.result(90) == FLOOD
        assert clients.result(150) >= 5
        after = stack.stats()
        grown = helpers.rss_bytes() - rss_before
        assert after["syncookies_sent"] - before["syncookies_sent"] > 0
        assert after["syncookies_accepted"] - before["syncookies_accepted"] > 0, \
            "no real client was admitted through a SYN cookie while the SYN queue was full"
        assert after["packets_in"] - before["packets_in"] >= FLOOD // 10, "the flood did not arrive"
        assert grown < 50 * MiB, f"resident memory grew by {grown / MiB:.1f} MiB"
        assert biggest < 5000, f"{biggest} rows in connections() during the flood"
        assert _clients(lambda: True, 3) == 3            # and the listener still serves
    finally:
        stop.set()
        server.result(10)
        lst.close()


# --- malformed packets -----------------------------------------------------------------------------

def _ip4_checksum(header):
    from tcpfast.checksum import checksum
    return header[:10] + struct.pack("!H", checksum(header[:10] + b"\0\0" + header[12:])) + header[12:]


def _tcp4(src, dst, sport, dport, seq, ack, flags, payload=b"", options=b"", doff=None, ip_extra=None):
    """An IPv4/TCP packet built by hand with correct checksums (bad ones are made afterwards)."""
    from tcpfast.checksum import checksum, pseudo_header_sum_ipv4

    doff = doff if doff is not None else (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0) + options + payload
    csum = checksum(tcp, pseudo_header_sum_ipv4(src, dst, 6, len(tcp)))
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0x1234, 0x4000, 64, 6, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return _ip4_checksum(ip) + tcp


def _flip(packet, offset):
    return packet[:offset] + bytes([packet[offset] ^ 0xFF]) + packet[offset + 1:]


def _malformed(sport, dport, seq, ack):
    """Malformed packets aimed at the live connection (from the kernel's port to the stack's, at the
    exact next sequence number, so that any one of them accepted would show), and garbage."""
    RST, ACK, PSH = 0x04, 0x10, 0x08
    k, s = KERNEL_IP, STACK_IP
    rst = _tcp4(k, s, sport, dport, seq, 0, RST)
    evil = _tcp4(k, s, sport, dport, seq, ack, ACK | PSH, b"EVIL")
    packets = {
        "bad TCP checksum on data": _flip(evil, 20 + 16),
        "bad TCP checksum on data (payload)": _flip(evil, len(evil) - 1),
        "bad TCP checksum on RST": _flip(rst, 40 - 1),
        "bad IPv4 checksum": _flip(rst, 10),
        "data offset below 5": _tcp4(k, s, sport, dport, seq, 0, RST, doff=4),
        "data offset past the end": _tcp4(k, s, sport, dport, seq, 0, RST, doff=15),
        "option length 0": _tcp4(k, s, sport, dport, seq, 0, RST, options=b"\x02\x00\x05\xb4"),
        "option length 1": _tcp4(k, s, sport, dport, seq, 0, RST, options=b"\x08\x01\x00\x00"),
        "option running past the header": _tcp4(k, s, sport, dport, seq, 0, RST, options=b"\x01\x01\x08\x0a"),
        "IPv4 header truncated": rst[:12],
        "TCP header truncated": _ip4_checksum(struct.pack("!H", 32).join([rst[:2], rst[4:20]])) + rst[20:32],
        "total length past the end": _ip4_checksum(struct.pack("!H", 200).join([rst[:2], rst[4:20]])) + rst[20:],
        "total length below the header": _ip4_checksum(struct.pack("!H", 16).join([rst[:2], rst[4:20]])) + rst[20:],
        "IP version 5": _ip4_checksum(b"\x55" + rst[1:20]) + rst[20:],
        "IHL 3": _ip4_checksum(b"\x43" + rst[1:20]) + rst[20:],
        "first fragment of a RST": _ip4_checksum(rst[:6] + b"\x20\x00" + rst[8:20]) + rst[20:],
        "IPv6 header truncated": b"\x60" + bytes(20),
        "IPv6 payload length past the end": (b"\x60\x00\x00\x00" + struct.pack("!HBB", 400, 6, 64)
                                             + socket.inet_pton(socket.AF_INET6, KERNEL_IP6)
                                             + socket.inet_pton(socket.AF_INET6, STACK_IP6) + bytes(20)),
    }
    rng = random.Random(9)
    for i in range(40):
        head = bytes([rng.choice((0x45, 0x46, 0x4F, 0x60, 0x00, 0xFF))])
        packets[f"garbage {i}"] = head + rng.randbytes(rng.randrange(1, 120))
    return packets


def test_malformed_packets_dropped_and_counted(stack, in_ns):
    from tcpfast import wire

    k, t = kernel_to_tcpfast(stack, 5030)
    with k, t, helpers.Sniffer(IFNAME) as sniffer:
        kport = k.getsockname()[1]
        k.sendall(b"first")
        assert recv_exactly(t, 5) == b"first"
        t.sendall(b"ack me")
        assert recv_exactly(k, 6) == b"ack me"
        time.sleep(0.3)                             # the kernel's ACK of "ack me" is out
        last = _tcp_segments(sniffer.packets, kport, 5030)[-1][1]
        seq = (last.tcp.seq + len(last.payload)) & 0xFFFFFFFF
        ack = last.tcp.ack
        packets = _malformed(kport, 5030, seq, ack)
        expected = {}
        for what, packet in packets.items():
            reason = wire.check_packet(packet)
            assert reason != wire.Reason.OK, f"{what} is not malformed"
            key = f"malformed_{reason.name.lower()}"
            expected[key] = expected.get(key, 0) + 1
        before = stack.stats()
        assert all(key in before for key in expected), sorted(set(expected) - set(before))
        with helpers.Injector(IFNAME) as inject:
            for packet in packets.values():
                inject.send(packet)

        def counted():
            now = stack.stats()
            return all(now[key] - before[key] >= n for key, n in expected.items())

        helpers.wait_for(counted, 5, message=f"malformed counters up by {expected}")
        after = stack.stats()
        assert {key: after[key] - before[key] for key in expected} == expected
        checksums = sum(n for key, n in expected.items() if "checksum" in key)
        assert after["bad_checksum"] - before["bad_checksum"] == checksums
        assert after["resets_received"] == before["resets_received"]
        # The connection carries on, and none of the bytes in the malformed packets got in.
        assert entry(stack, t.getsockname(), t.getpeername())["state"] == "ESTABLISHED"
        k.sendall(b"GOOD")
        assert recv_exactly(t, 4) == b"GOOD"
        w = helpers.start(send_stream, k, 4 * MiB, 43)
        assert recv_stream(t, 4 * MiB) == (4 * MiB, w.result(60))
        t.sendall(b"done")
        assert recv_exactly(k, 4) == b"done"
