"""One in-order data segment through the connection state machine: packet bytes in, the ACK's
bytes out, the data read; tcpfast._tcb.Tcb against a compact pure-Python TCB (``pure_tcb.py``).

Run with ``pytest microbench --benchmark-only`` (see ``microbench/conftest.py``).

The connection is ESTABLISHED by a passive open (``peer.py``: window scaling, timestamps and SACK
on, MSS 1460); the peer then sends 1448-byte segments in order (1500-byte packets, both checksums
valid), crossing the 2**32 wrap during a run. Each step is what an engine does per packet:
``receive(packet, now)`` (parse and verify, PAWS, acceptability test, ACK field, text queued,
RCV.NXT advanced), ``transmit(now)`` (the ACK, built with its checksums) and ``recv(2048)`` (the
application reads, so the window stays open). Two groups, per benchmark round:

* ``segment -> ACK (1 x 1448 B, delack 0)``: one segment, one ACK. ``delack=0`` makes the
  delayed-ACK timer expire at once, so every segment is acknowledged.
* ``segment -> ACK (2 x 1448 B, delayed ACK)``: the default policy (RFC 5681 §4.2: an ACK for
  every second full-sized segment), two segments and the one ACK they produce.

Both sides run the same steps on the same packet bytes through the same Python-level API
(``receive`` / ``transmit`` / ``recv``). For the compiled side that API is a harness: each call
builds Python objects (``transmit`` allocates a 64 KiB scratch buffer and a list, ``recv`` a
bytes object) that the engine's own C loop does not (``bench_engine.py`` measures that loop).

Before timing, each case checks on its own fresh connections that the oracle emits byte for byte
the ACKs the Tcb emits (so sequence, ACK number, window, timestamps and checksums all agree) and
reads the same data; after timing, that both consumed the packets they were given (RCV.NXT and the
last ACK number) and hold nothing unread.
"""
from __future__ import annotations

import random
from typing import Callable, Dict, Iterator, List, Tuple, Union

import pytest

import peer
from pure_tcb import PureTcb
from tcpfast._tcb import Tcb
from tcpfast.wire import TCPFlags, parse_packet

SEG = peer.SMSS                     # 1448 bytes of data: 1500-byte packets
RECV_SIZE = 2048
ROUNDS, ITERATIONS, WARMUP = 200, 25, 4
STEP = 1e-5                         # virtual seconds between segments (about 1.2 Gbit/s)
CHECK = 64                          # rounds compared packet for packet before timing

# group suffix -> (segments per round, delayed-ACK time in seconds)
MODES: Dict[str, Tuple[int, float]] = {
    "1 x 1448 B, delack 0": (1, 0.0),
    "2 x 1448 B, delayed ACK": (2, 0.04),
}

Item = Tuple[bytes, float]


@pytest.fixture(scope="module")
def stream() -> List[Item]:
    """The peer's in-order segments with their arrival times, enough for the largest case."""
    _, ts_offset = peer.establish()
    rng = random.Random(9293)
    n = (ROUNDS + WARMUP + 1) * ITERATIONS * max(k for k, _ in MODES.values()) + CHECK * 2
    items = []
    for i in range(n):
        now = peer.T0 + 0.001 + i * STEP
        items.append((peer.peer_packet(TCPFlags.ACK | TCPFlags.PSH, peer.IRS + 1 + i * SEG,
                                       peer.ISS + 1, rng.randbytes(SEG),
                                       tsval=peer.PEER_TS0 + 1 + i // 100,
                                       tsecr=peer.our_tsval(ts_offset, now - 5 * STEP)),
                      now))
    return items


def make_round(conn, it: Iterator[Item], per_round: int, last: list) -> Callable[[], None]:
    """One benchmark round: ``per_round`` segments from ``it`` in, each followed by transmit and
    a read; ``last[0]`` keeps the packets of the round's last transmit (the ACK)."""
    receive, transmit, recv = conn.receive, conn.transmit, conn.recv

    if per_round == 1:
        def one() -> None:
            packet, now = next(it)
            receive(packet, now)
            last[0] = transmit(now)
            recv(RECV_SIZE, now=now)
        return one

    def two() -> None:
        packet, now = next(it)
        receive(packet, now)
        transmit(now)
        recv(RECV_SIZE, now=now)
        packet, now = next(it)
        receive(packet, now)
        last[0] = transmit(now)
        recv(RECV_SIZE, now=now)
    return two


def _connection(impl: str, delack: float) -> Union[Tcb, PureTcb]:
    """A fresh connection in ESTABLISHED, compiled or pure, in the same state."""
    return peer.establish(delack=delack)[0] if impl == "compiled" else peer.establish_pure(delack=delack)


def _check_agree(items: List[Item], per_round: int, delack: float) -> None:
    """Fresh Tcb and oracle, the same segments: byte-identical ACKs, one per round, same data."""
    tcb, oracle = _connection("compiled", delack), _connection("pure", delack)
    for k in range(CHECK * per_round):
        packet, now = items[k]
        tcb.receive(packet, now)
        oracle.receive(packet, now)
        got, want = tcb.transmit(now), oracle.transmit(now)
        assert got == want, (k, [parse_packet(p).tcp for p in got], [parse_packet(p).tcp for p in want])
        assert len(got) == (1 if (k + 1) % per_round == 0 else 0), (k, got)
        assert tcb.recv(RECV_SIZE, now=now) == oracle.recv(RECV_SIZE, now=now) == parse_packet(packet).payload
    ack = parse_packet(got[0]).tcp
    assert ack.ack == (peer.IRS + 1 + CHECK * per_round * SEG) & peer.M32
    assert ack.flags == TCPFlags.ACK


@pytest.mark.parametrize("impl", ["compiled", "pure"])
@pytest.mark.parametrize("mode", list(MODES))
def test_segment_to_ack(benchmark, stream, mode: str, impl: str) -> None:
    per_round, delack = MODES[mode]
    _check_agree(stream, per_round, delack)
    conn = _connection(impl, delack)
    last: list = [None]
    items = stream[:(ROUNDS + WARMUP + 1) * ITERATIONS * per_round]
    it = iter(items)
    benchmark.group = f"segment -> ACK ({mode})"
    benchmark.extra_info.update(impl=impl if impl == "compiled" else "pure-tcb",
                                segments_per_round=per_round)
    benchmark.pedantic(make_round(conn, it, per_round, last), rounds=ROUNDS,
                       iterations=ITERATIONS, warmup_rounds=WARMUP)
    # Every segment it was given taken in order and acknowledged: not a benchmark of nothing.
    used = len(items) - sum(1 for _ in it)
    assert used >= (ROUNDS * ITERATIONS if benchmark.stats else 1) * per_round
    rcv_nxt = conn.info["rcv_nxt"] if impl == "compiled" else conn.rcv_nxt
    assert rcv_nxt == (peer.IRS + 1 + used * SEG) & peer.M32
    assert len(last[0]) == 1 and parse_packet(last[0][0]).tcp.ack == rcv_nxt
    with pytest.raises(BlockingIOError):
        conn.recv(RECV_SIZE, now=peer.T0 + 1)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "--benchmark-only", "-p", "no:cacheprovider"]))
