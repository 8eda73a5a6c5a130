"""Memory per connection: an idle established connection costs its TCB and nothing else
(buffers are allocated on first use), at most 2 KiB; buffers are bounded by SO_SNDBUF/SO_RCVBUF
whatever the peer sends."""
import sys
import tracemalloc

from tcpfast._tcb import Tcb


def _pair(port):
    a = Tcb(("198.18.0.1", port), ("198.18.0.2", 80))
    b = Tcb(("198.18.0.2", 80))
    b.listen()
    a.connect(0)
    for _ in range(3):
        for src, dst in ((a, b), (b, a)):
            for pkt in src.transmit(0):
                dst.receive(pkt, 0)
    assert a.state_name == b.state_name == "ESTABLISHED"
    return a, b


def test_idle_established_connection_is_at_most_2_kib():
    pairs = [_pair(1024)]            # warm up caches of ipaddress etc. outside the measurement
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        pairs = [_pair(20000 + i) for i in range(500)]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    per_connection = grown / (2 * len(pairs))
    assert per_connection <= 2048, per_connection
    # The object itself (engine state) and no buffer memory yet.
    a, b = pairs[0]
    assert sys.getsizeof(a) <= 2048
    assert a.info["recv_queue"] == 0 and a.info["send_queue"] == 0


def test_buffers_are_bounded_by_their_configured_size():
    a = Tcb(("198.18.0.1", 5000), ("198.18.0.2", 80), sndbuf=8192, rcvbuf=8192)
    b = Tcb(("198.18.0.2", 80), sndbuf=8192, rcvbuf=8192)
    b.listen()
    a.connect(0)
    now = 0.0

    def pump():
        moved = 0
        for src, dst in ((a, b), (b, a)):
            for pkt in src.transmit(now):
                dst.receive(pkt, now)
                moved += 1
        return moved

    while pump():
        pass
    # b's application never reads: a fills b's receive buffer and its own send buffer, no more.
    assert a.send(b"x" * 100_000, now) == 8192     # the send buffer takes what fits
    for _ in range(20):
        pump()
        try:
            a.send(b"y" * 100_000, now)
        except BlockingIOError:
            pass
        now += 0.05
    assert b.info["recv_queue"] == 8192            # the receiver's buffer filled up ...
    assert b.info["rcv_wnd"] == 0                  # ... and it advertises a zero window
    assert a.info["send_queue"] == 8192            # the sender holds what it could not send
    assert a.info["snd_wnd"] == 0
