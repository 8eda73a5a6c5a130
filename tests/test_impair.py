"""The path impairer (tcpfast._impair) on its own, and tcpfast over it with the kernel as peer.

The impairer runs between two veth pairs in private namespaces: a sender (198.18.5.1) ⇄
impairer ⇄ receiver (198.18.5.2), UDP datagrams numbered and time-stamped (the sender's clock
against the receiving kernel's time stamp, one clock for the whole machine). What is asserted is the impairer's behaviour (every packet
held at least the configured delay, loss within binomial bounds, duplicates and reordering seen,
a full queue's drops counted, a clean stop), never a speed. The last test moves data both ways
between a tcpfast stack and a kernel socket over the WAN path of ``tcpfast bench`` (20 ms RTT,
1 % loss each way) and checks SHA-256 digests.
"""
import hashlib
import os
import socket
import statistics
import struct
import threading
import time

import pytest

from tcpfast import netns
from tcpfast.bench import impair, wan
from tcpfast.bench.impair import Forwarder, Impairment, Port

pytestmark = pytest.mark.tun

SENDER, RECEIVER = "198.18.5.1", "198.18.5.2"
MACS = {"tfbts": "02:00:00:00:5a:01", "tfbta": "02:00:00:00:5a:02",
        "tfbtb": "02:00:00:00:5b:01", "tfbtr": "02:00:00:00:5b:02"}
PORT = 5555
SO_TIMESTAMPNS = 35


def _no_ipv6():
    for key in ("all", "default"):
        with open(f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6", "w") as f:
            f.write("1")


@pytest.fixture(scope="module")
def line(privileged):
    """(sender ns, impairer ns, receiver ns): two veth pairs with the impairer's ends between."""
    tag = f"tcpfi-{os.getpid()}"
    names = [f"{tag}-s", f"{tag}-i", f"{tag}-r"]
    made = []
    try:
        for ns in names:
            netns.create(ns)
            made.append(ns)
            netns.call_in(ns, _no_ipv6)
        s, i, r = names
        for (na, a), (nb, b) in (((s, "tfbts"), (i, "tfbta")), ((i, "tfbtb"), (r, "tfbtr"))):
            netns.ip("link", "add", a, "address", MACS[a], "type", "veth", "peer", "name", b,
                     "address", MACS[b], "netns", nb, ns=na)
        netns.ip("link", "set", "tfbta", "up", ns=i)
        netns.ip("link", "set", "tfbtb", "up", ns=i)
        netns.address_up(s, "tfbts", f"{SENDER}/24")
        netns.address_up(r, "tfbtr", f"{RECEIVER}/24")
        netns.ip("neigh", "replace", RECEIVER, "lladdr", MACS["tfbta"], "dev", "tfbts",
                 "nud", "permanent", ns=s)
        netns.ip("neigh", "replace", SENDER, "lladdr", MACS["tfbtb"], "dev", "tfbtr",
                 "nud", "permanent", ns=r)
        yield s, i, r
    finally:
        for ns in reversed(made):
            netns.remove(ns)
        assert not [n for n in netns.listed() if n.startswith(tag + "-")]


def ports(line):
    _, i, _ = line
    return (Port(i, "tfbta", impair.ethernet(MACS["tfbts"], MACS["tfbta"])),
            Port(i, "tfbtb", impair.ethernet(MACS["tfbtr"], MACS["tfbtb"])))


def udp(ns, bind=None):
    def make():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        if bind:
            s.bind(bind)
        return s
    return netns.call_in(ns, make)


def exchange(line, imp, n, gap=0.0005, burst=20, size=200, settle=None):
    """Send ``n`` numbered datagrams through the impairer; returns (arrivals, counters) where
    arrivals are (seq, one-way delay in s) in arrival order. The delay is from the sender's
    clock reading to the receiving kernel's time stamp (SO_TIMESTAMPNS, CLOCK_REALTIME like the
    sender's): how soon the test's thread gets to read it does not count."""
    s_ns, _, r_ns = line
    tx, rx = udp(s_ns), udp(r_ns, (RECEIVER, PORT))
    rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    rx.settimeout(0.2)
    arrivals = []
    a, b = ports(line)
    try:
        with Forwarder(a, b, imp, max_seconds=120) as fw:
            def receive():
                idle_until = None
                while True:
                    try:
                        data, anc, _, _ = rx.recvmsg(2048, 64)
                    except socket.timeout:
                        if idle_until is not None and time.monotonic() > idle_until:
                            return
                        continue
                    seq, sent = struct.unpack_from("!IQ", data)
                    (level, kind, stamp), = anc
                    assert (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS)
                    sec, nsec = struct.unpack("qq", stamp[:16])
                    arrivals.append((seq, (sec * 1_000_000_000 + nsec - sent) / 1e9))
                    idle_until = time.monotonic() + (settle or imp.delay + 0.5)
            reader = threading.Thread(target=receive, daemon=True)
            reader.start()
            pad = bytes(size - 12)
            for k in range(n):
                tx.sendto(struct.pack("!IQ", k, time.time_ns()) + pad, (RECEIVER, PORT))
                if k % burst == burst - 1:
                    time.sleep(gap * burst)
            reader.join(60)
            assert not reader.is_alive()
            counters = fw.stop()
    finally:
        tx.close()
        rx.close()
    return arrivals, counters


def test_every_packet_is_held_the_configured_delay(line):
    delay = 0.020
    arrivals, c = exchange(line, Impairment(delay=delay), 300, gap=0.001, burst=5)
    assert len(arrivals) == 300 == c["a_to_b"]["tx_packets"]
    delays = [d for _, d in arrivals]
    assert min(delays) >= delay, min(delays)
    # The configured delay, not a speed: the median is within a few ms of it.
    assert statistics.median(delays) < delay + 0.005, statistics.median(delays)
    assert [s for s, _ in arrivals] == list(range(300))        # one delay for all: FIFO
    assert c["a_to_b"]["lost"] == c["a_to_b"]["queue_drops"] == 0


def test_loss_rate_within_binomial_bounds_and_reproducible_for_a_seed(line):
    n, p = 3000, 0.10
    runs = [exchange(line, Impairment(loss=p, seed=seed), n) for seed in (7, 7, 8)]
    for arrivals, c in runs:
        d = c["a_to_b"]
        assert d["kernel_drops"] == 0 and d["queue_drops"] == 0 and d["rx_packets"] == n
        # Binomial(3000, 0.1): mean 300, sd 16.4; the bounds are six sd away.
        assert 200 <= d["lost"] <= 400, d
        assert len(arrivals) == n - d["lost"] == d["tx_packets"]
    kept = [sorted(s for s, _ in arrivals) for arrivals, _ in runs]
    assert kept[0] == kept[1]                  # same seed, same input: the same packets lost
    assert kept[0] != kept[2]                  # another seed: others


def test_duplicates_and_reordering_are_made_and_counted(line):
    n = 2000
    arrivals, c = exchange(line, Impairment(delay=0.005, duplicate=0.05, reorder=0.10, seed=3), n)
    d = c["a_to_b"]
    seqs = [s for s, _ in arrivals]
    assert len(seqs) == n + d["duplicated"] == d["tx_packets"]
    assert 40 <= d["duplicated"] <= 170        # Binomial(2000, 0.05): mean 100, sd 9.7
    assert len(seqs) - len(set(seqs)) == d["duplicated"]
    assert set(seqs) == set(range(n))
    # Reordered packets (sent at once) overtake ones held for the delay.
    overtaken = sum(1 for x, y in zip(seqs, seqs[1:]) if y < x)
    assert d["reordered"] > 0 and overtaken > 0
    early = [dl for _, dl in arrivals if dl < 0.005]
    assert len(early) >= d["reordered"] * 0.9  # those did not wait the delay


def test_a_full_queue_drops_and_counts(line):
    # 100 datagrams in well under the 300 ms delay: the queue (10 packets) holds the first ten.
    arrivals, c = exchange(line, Impairment(delay=0.3, limit=10), 100, gap=0.0, burst=100)
    d = c["a_to_b"]
    assert d["rx_packets"] == 100 and d["kernel_drops"] == 0
    assert d["queue_drops"] == 90 and d["max_queued"] == 10
    assert sorted(s for s, _ in arrivals) == list(range(10))


def test_ethernet_padding_is_not_forwarded_as_data(line):
    # A 28-byte datagram in a frame padded to the Ethernet minimum (60 bytes) leaves the
    # impairer as the datagram alone.
    s_ns, _, r_ns = line
    frame = impair.udp_frame(MACS["tfbta"], MACS["tfbts"], 28)
    padded = frame + bytes(60 - len(frame))
    tx = impair.open_port(Port(s_ns, "tfbts"), vnet=False)
    sniff = netns.call_in(r_ns, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                                      socket.htons(0x0800)))
    try:
        netns.call_in(r_ns, lambda: sniff.bind(("tfbtr", 0x0800)))
        sniff.settimeout(2)
        with Forwarder(*ports(line), Impairment()) as fw:
            os.write(tx, padded)
            got = sniff.recv(2048)
            c = fw.stop()["a_to_b"]
        assert c["tx_packets"] == 1 and c["tx_bytes"] == 28
        assert len(got) == 14 + 28 and got[14:] == frame[14:]
    finally:
        os.close(tx)
        sniff.close()


def test_stop_is_prompt_and_leaves_nothing_and_the_loop_sleeps(line):
    from tcpfast._impair import Impairer

    fds_before = set(os.listdir("/proc/self/fd"))
    a, b = ports(line)
    fw = Forwarder(a, b, Impairment(delay=0.01), max_seconds=60).start()
    time.sleep(1.0)                                   # idle: nothing to forward
    t0 = time.monotonic()
    fw.stop()
    assert time.monotonic() - t0 < 1.0
    assert not fw.thread.is_alive() and fw.reason == "stopped"
    # Idle for a second, the loop slept in ppoll instead of spinning.
    assert fw.cpu_seconds < 0.2, fw.cpu_seconds
    assert set(os.listdir("/proc/self/fd")) == fds_before
    # Bounded runtime: without stop() it ends by itself after max_seconds.
    fa, fb = impair.open_port(a), impair.open_port(b)
    try:
        imp = Impairer(fa, fb, link_a=a.link, link_b=b.link, max_seconds=0.3)
        t0 = time.monotonic()
        assert imp.run() == "max_seconds"
        assert 0.3 <= time.monotonic() - t0 < 2.0
    finally:
        os.close(fa)
        os.close(fb)


def test_bad_parameters_are_refused():
    from tcpfast._impair import Impairer

    for kwargs in (dict(loss=1.0), dict(loss=-0.1), dict(duplicate=2), dict(reorder=1.5),
                   dict(delay=-1), dict(limit=0), dict(batch=0), dict(batch=65),
                   dict(link_a=bytes(17)), dict(max_seconds=0)):
        with pytest.raises(ValueError):
            Impairer(-1, -1, **kwargs)


# --- tcpfast over the WAN path, the kernel as peer -------------------------------------------------

def ip_in_receives():
    """IP packets the calling thread's namespace has received (/proc/thread-self: the thread's
    namespace, not the process's)."""
    with open("/proc/thread-self/net/snmp") as f:
        names, values = [line.split() for line in f if line.startswith("Ip:")][:2]
    return int(values[names.index("InReceives")])


def test_tcpfast_over_the_impairer_transfers_both_ways_intact(privileged):
    """Over TUN with the impairer: transfers both ways intact (SHA-256) at 1 % loss and 20 ms
    RTT, tcpfast at one end and the kernel at the other."""
    import tcpfast

    size = 3 << 20
    tag = f"tcpfi-{os.getpid()}-tun"
    path = wan.WanPath(tag, "tcpfast", 1500)
    stack = None
    try:
        path.setup()
        path.set_offload(False)
        stack = netns.call_in(path.ns_local, lambda: tcpfast.Stack(
            f"{wan.LOCAL}/{wan.PREFIX}", kernel_address=None, ifname="tfbwt0").start())
        path.adopt_tun(stack.ifname)
        ip_in_before = netns.call_in(path.ns_local, ip_in_receives)
        listener = netns.call_in(path.ns_peer, lambda: socket.create_server((wan.PEER, 0)))
        port = listener.getsockname()[1]
        data = {"up": os.urandom(size), "down": os.urandom(size)}
        got = {}

        def kernel_end():
            listener.settimeout(30)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(50)
                buf = bytearray()
                while len(buf) < size:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        break
                    buf += chunk
                got["up"] = bytes(buf)
                conn.sendall(data["down"])
                conn.shutdown(socket.SHUT_WR)
                conn.recv(1)

        with Forwarder(path.local_port(stack.ifname), path.peer_port(),
                       Impairment(delay=0.010, loss=0.01, seed=11), max_seconds=120) as fw:
            peer = threading.Thread(target=kernel_end, daemon=True)
            peer.start()
            t0 = time.monotonic()
            with stack.socket() as s:
                s.settimeout(50)
                s.connect((wan.PEER, port))
                s.sendall(data["up"])
                buf = bytearray()
                while True:
                    chunk = s.recv(1 << 16)
                    if not chunk:
                        break
                    buf += chunk
                got["down"] = bytes(buf)
            peer.join(30)
            assert not peer.is_alive()
            elapsed = time.monotonic() - t0
            c = fw.counters()
        listener.close()
        for way in ("up", "down"):
            assert len(got[way]) == size, (way, len(got[way]))
            assert hashlib.sha256(got[way]).digest() == hashlib.sha256(data[way]).digest(), way
        # The path really was lossy and slow both ways.
        assert c["a_to_b"]["lost"] > 0 and c["b_to_a"]["lost"] > 0, c
        assert elapsed > 0.1
        assert stack.stats()["retransmits"] > 0
        # The local namespace's kernel never saw the stack's packets (dropped at the TUN's
        # ingress hook after the impairer's socket had its copy).
        assert netns.call_in(path.ns_local, ip_in_receives) == ip_in_before
    finally:
        if stack is not None:
            stack.stop()
        path.close()
    assert not [n for n in netns.listed() if n.startswith(tag + "-")]
