"""Two connections over a simulated link that drops, reorders, duplicates and corrupts packets,
on a virtual clock: what arrives must be exactly what was sent (SHA-256 and a byte-by-byte check),
with no stall, and the counters must show how the loss was recovered.
"""
import hashlib

import pytest

from tcpfast.testing import SimPair, stream_bytes

MB = 1_000_000


def expected_sha(seed: int, direction: int, n: int) -> str:
    # SimPair names its two streams seed*2+1 (a -> b) and seed*2+2 (b -> a).
    h = hashlib.sha256()
    s = seed * 2 + direction
    for start in range(0, n, 4 * MB):
        h.update(stream_bytes(s, start, min(4 * MB, n - start)))
    return h.hexdigest()


def check_transfer(r, seed, a_to_b, b_to_a):
    assert r["result"] == "done", r
    for key, direction, n in (("a_to_b", 1, a_to_b), ("b_to_a", 2, b_to_a)):
        d = r[key]
        assert d["read"] == n and d["written"] == n
        assert d["mismatches"] == 0
        assert d["eof"], "end of stream (FIN) not seen"
        assert d["sha256"] == expected_sha(seed, direction, n)


LINKS = {
    "clean": dict(),
    "loss1": dict(loss=0.01),
    "loss5": dict(loss=0.05),
    "loss20": dict(loss=0.20),
    "reorder": dict(reorder=0.10, jitter=0.001),
    "duplicate": dict(duplicate=0.10),
    "corrupt": dict(corrupt=0.05),
    "everything": dict(loss=0.05, reorder=0.05, duplicate=0.05, corrupt=0.05, jitter=0.002),
}


@pytest.mark.parametrize("link", sorted(LINKS))
@pytest.mark.parametrize("cc", ["cubic", "newreno"])
def test_two_way_transfer_arrives_intact(link, cc):
    size = 20 * MB
    sp = SimPair(seed=11, delay=0.002, cc=cc, **LINKS[link])
    r = sp.run(size, size, sha256=True, timeout=100_000)
    check_transfer(r, 11, size, size)
    link_counters = r["link"]
    if "loss" in LINKS[link]:
        assert link_counters["lost"] > 0
        assert r["a"]["retransmits"] > 0 and r["b"]["retransmits"] > 0
    if "corrupt" in LINKS[link]:
        # Every corrupted packet (one flipped bit, which the Internet checksum always detects)
        # that was delivered is caught and dropped; a duplicate of a corrupted packet is caught
        # again. A last ACK may still be on the link when the transfer is done.
        on_link = (link_counters["sent"] + link_counters["duplicated"] - link_counters["lost"]
                   - link_counters["delivered"])
        assert on_link >= 0
        assert link_counters["corrupted"] > 0
        assert link_counters["corrupted"] - on_link <= link_counters["bad_packets"] <= \
            link_counters["corrupted"] + link_counters["duplicated"]
    if "duplicate" in LINKS[link]:
        assert link_counters["duplicated"] > 0
    # Both ends closed cleanly: one is in TIME-WAIT or CLOSED, no error.
    assert sp.a.error == 0 and sp.b.error == 0


@pytest.mark.parametrize("sack", [True, False])
def test_loss_is_recovered_by_fast_retransmit_not_only_timeouts(sack):
    sp = SimPair(seed=5, delay=0.005, loss=0.01, sack=sack)
    r = sp.run(20 * MB, 0, sha256=True, timeout=100_000)
    check_transfer(r, 5, 20 * MB, 0)
    a = r["a"]
    assert a["fast_retransmits"] > 0
    assert a["fast_retransmits"] > a["rto_expirations"]
    if sack:
        assert a["sack_recoveries"] == a["fast_retransmits"]
    else:
        assert a["sack_recoveries"] == 0


@pytest.mark.parametrize("iss", [0xFFFFFFF0, 0x7FFFFFF0])
def test_transfer_across_sequence_wrap(iss):
    sp = SimPair(seed=2, loss=0.02, iss=iss)
    r = sp.run(8 * MB, 8 * MB, sha256=True, timeout=100_000)
    check_transfer(r, 2, 8 * MB, 8 * MB)


def test_small_buffers_and_mtu_still_deliver():
    sp = SimPair(seed=4, mtu=576, sndbuf=4096, rcvbuf=4096, loss=0.02, reorder=0.02)
    r = sp.run(1 * MB, 1 * MB, sha256=True, timeout=100_000)
    check_transfer(r, 4, 1 * MB, 1 * MB)


def test_queue_drops_at_a_slow_bottleneck_are_recovered():
    # 10 Mbit/s with a 64-packet queue: the sender overruns the queue and must back off.
    sp = SimPair(seed=6, rate=1_250_000, queue=64, delay=0.01)
    r = sp.run(4 * MB, 0, sha256=True, timeout=100_000)
    check_transfer(r, 6, 4 * MB, 0)
