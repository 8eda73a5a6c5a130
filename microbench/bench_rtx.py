"""Retransmission queue: sent segments inserted, then released by ACKs; compiled against pure
Python.

Run with ``pytest microbench --benchmark-only`` (see ``microbench/conftest.py``).

Sent-but-unacknowledged data stays in the connection's send ring (``_ring``: bytes from SND.UNA
on; ``ring_consume`` releases what an ACK covers); retransmissions are cut from the ring by
sequence number. The ring has no Python interface, so its insert and release are reached through
the Tcb's send path. The RFC 6675 SACK scoreboard (ranges of sequence space; ``sb_update``
inserts a SACK's blocks, ``sb_advance`` releases below the cumulative ACK) is no longer what the
stack uses (its loss detection is RACK-TLP, ``_rack``); it is kept as a reference,
``tcpfast.testing.Scoreboard``, and measured here. Two groups:

* ``rtx queue (10 x 1448 B sent, 5 ACKs)``: on an ESTABLISHED connection (``peer.py``),
  ``send()`` 10 segments' worth of data, ``transmit()`` them (each a 1500-byte packet with its
  checksums: a segment is only on the retransmission queue once it is sent), then ``receive()``
  five ACKs of two segments each (RFC 5681 §4.2), which release them all. The oracle
  (``pure_tcb.PureTcb``) does the same on the same packets: a deque of ``(seq, payload)``
  segments appended on transmit and popped by each cumulative ACK, packets built and parsed with
  ``struct``, windows, RTT sample and congestion window updated as the Tcb does.
* ``rtx SACK scoreboard (32 segments, 2 holes)``: a recovery episode over 32 segments with
  segments 0 and 10 lost: 30 ACKs whose SACK blocks (most recent first, up to 3, RFC 2018 §4)
  insert what arrived, then two cumulative ACKs that release it all. ``tcpfast.testing.Scoreboard``
  against ``pure.Scoreboard`` (a sorted list of ranges), on the same ACKs, across the 2**32 wrap.

Before timing, each case checks that the oracle agrees with the compiled code on its input: the
same packets byte for byte and the same SND.UNA after every ACK; the same newly-SACKed byte counts
and the same ranges after every ACK. After timing, that everything sent was released.
"""
from __future__ import annotations

from typing import Callable, Iterator, List, Tuple, Union

import pytest

import peer
import pure
from pure_tcb import PureTcb
from tcpfast.testing import Scoreboard
from tcpfast._tcb import Tcb
from tcpfast.wire import TCPFlags, parse_packet

M32 = 0xFFFFFFFF
SEG = peer.SMSS
SEGS, ACKS = 10, 5                  # per round: 10 segments sent, each ACK covering two
DATA = (bytes(range(256)) * (SEGS * SEG // 256 + 1))[:SEGS * SEG]
ROUNDS, ITERATIONS, WARMUP = 100, 10, 2
ROUND_TIME = 2e-4                   # virtual seconds per round; the ACKs come 100 us after the data
CHECK = 20                          # rounds compared packet for packet before timing

# --- the send path: ring (or deque) insert on transmit, release on ACK -------------------------

Round = Tuple[float, float, List[bytes]]


@pytest.fixture(scope="module")
def acks() -> List[Round]:
    """Per round: when the data goes, when the ACKs come, and the peer's five ACK packets."""
    _, ts_offset = peer.establish()
    rounds = []
    una = peer.ISS + 1
    for r in range((ROUNDS + WARMUP + 1) * ITERATIONS + CHECK):
        now = peer.T0 + 0.001 + r * ROUND_TIME
        packets = []
        for _ in range(ACKS):
            una += SEGS // ACKS * SEG
            packets.append(peer.peer_packet(TCPFlags.ACK, peer.IRS + 1, una,
                                            tsval=peer.PEER_TS0 + 1 + r // 5,
                                            tsecr=peer.our_tsval(ts_offset, now)))
        rounds.append((now, now + ROUND_TIME / 2, packets))
    return rounds


def make_round(conn, it: Iterator[Round], last: list) -> Callable[[], None]:
    """One benchmark round: the next round's data sent and its ACKs received; ``last[0]`` keeps
    the packets transmitted."""
    send, transmit, receive = conn.send, conn.transmit, conn.receive

    def one() -> None:
        now, later, ack_packets = next(it)
        send(DATA, now)
        last[0] = transmit(now)
        for packet in ack_packets:
            receive(packet, later)
    return one


def _queued(conn: Union[Tcb, PureTcb]) -> Tuple[int, int]:
    """(SND.UNA, bytes held for sending or resending)."""
    if isinstance(conn, PureTcb):
        # The oracle's retransmission queue holds exactly the unacknowledged bytes.
        assert sum(len(p) for _, p in conn.rtx) == (conn.snd_nxt - conn.snd_una) & M32
        return conn.snd_una, ((conn.snd_nxt - conn.snd_una) & M32) + len(conn.unsent)
    info = conn.info
    return info["snd_una"], info["send_queue"]


def _check_send_path(rounds: List[Round]) -> None:
    tcb, oracle = peer.establish()[0], peer.establish_pure()
    una = peer.ISS + 1
    for now, later, ack_packets in rounds[:CHECK]:
        assert tcb.send(DATA, now) == oracle.send(DATA, now) == len(DATA)
        got, want = tcb.transmit(now), oracle.transmit(now)
        assert got == want, ([parse_packet(p).tcp for p in got[:1]], [parse_packet(p).tcp for p in want[:1]])
        assert len(got) == SEGS and b"".join(parse_packet(p).payload for p in got) == DATA
        assert _queued(tcb) == _queued(oracle) == (una, len(DATA))
        for k, packet in enumerate(ack_packets, 1):
            tcb.receive(packet, later)
            oracle.receive(packet, later)
            assert _queued(tcb) == _queued(oracle) == \
                ((una + k * len(DATA) // ACKS) & M32, len(DATA) - k * len(DATA) // ACKS)
            assert tcb.transmit(later) == oracle.transmit(later) == []
        una += len(DATA)
    assert not oracle.rtx


@pytest.mark.parametrize("impl", ["compiled", "pure"])
def test_rtx_send_queue(benchmark, acks, impl: str) -> None:
    _check_send_path(acks)
    conn = peer.establish()[0] if impl == "compiled" else peer.establish_pure()
    last: list = [None]
    benchmark.group = f"rtx queue ({SEGS} x {SEG} B sent, {ACKS} ACKs)"
    benchmark.extra_info["impl"] = impl if impl == "compiled" else "pure-tcb-deque"
    it = iter(acks)
    benchmark.pedantic(make_round(conn, it, last), rounds=ROUNDS, iterations=ITERATIONS,
                       warmup_rounds=WARMUP)
    # Every round's data went out and came back acknowledged: nothing left queued.
    used = len(acks) - sum(1 for _ in it)
    assert used >= (ROUNDS * ITERATIONS if benchmark.stats else 1)
    una, queued = _queued(conn)
    assert queued == 0 and una == (peer.ISS + 1 + used * len(DATA)) & M32
    assert len(last[0]) == SEGS and parse_packet(last[0][-1]).tcp.seq == (una - SEG) & M32


# --- the SACK scoreboard: insert SACKed ranges, release on the cumulative ACK ------------------

SB_SEGS = 32
LOST = (0, 10)
UNA0 = 0xFFFF8000                   # the episode crosses 2**32


def _episode() -> List[Tuple[int, List[Tuple[int, int]]]]:
    """(SND.UNA, SACK blocks) of each ACK the sender gets while segments 0 and 10 are lost and
    then retransmitted, the blocks as a receiver sends them (RFC 2018 §4: the most recently
    received first, then the others, at most 3 beside timestamps)."""
    def seq(k: int) -> int:
        return (UNA0 + k * SEG) & M32

    out = []
    held: List[List[int]] = []                  # received ranges of segment indices [a, b)
    for k in range(SB_SEGS):
        if k in LOST:
            continue
        for r in held:
            if r[1] == k:
                r[1] = k + 1
                break
        else:
            held.append([k, k + 1])
        recent = next(r for r in held if r[0] <= k < r[1])
        others = sorted((r for r in held if r is not recent), key=lambda r: -r[0])
        out.append((UNA0, [(seq(a), seq(b)) for a, b in [recent] + others][:3]))
    # The retransmission of segment 0 arrives: cumulative ACK up to the second hole.
    out.append((seq(LOST[1]), [(seq(LOST[1] + 1), seq(SB_SEGS))]))
    # Then segment 10's: everything is acknowledged.
    out.append((seq(SB_SEGS), []))
    return out


EPISODE = _episode()
SND_NXT = (UNA0 + SB_SEGS * SEG) & M32


def _run_episode(cls) -> int:
    """Insert and release the whole episode; returns the bytes newly SACKed along the way."""
    sb = cls(UNA0)
    total = 0
    for una, blocks in EPISODE:
        total += sb.update(una, SND_NXT, blocks)
    sb.advance(SND_NXT)
    return total


def _check_scoreboard() -> None:
    c, p = Scoreboard(UNA0), pure.Scoreboard(UNA0)
    for una, blocks in EPISODE:
        assert c.update(una, SND_NXT, blocks) == p.update(una, SND_NXT, blocks)
        assert c.sacked == p.sacked
    assert c.sacked == p.sacked == []
    assert _run_episode(Scoreboard) == _run_episode(pure.Scoreboard) == \
        (SB_SEGS - len(LOST)) * SEG


SB_IMPLS = {"compiled": Scoreboard, "pure-sorted-list": pure.Scoreboard}


@pytest.mark.parametrize("impl", list(SB_IMPLS))
def test_rtx_sack_scoreboard(benchmark, impl: str) -> None:
    _check_scoreboard()
    benchmark.group = f"rtx SACK scoreboard ({SB_SEGS} segments, 2 holes)"
    benchmark.extra_info["impl"] = impl
    assert benchmark(_run_episode, SB_IMPLS[impl]) == (SB_SEGS - len(LOST)) * SEG


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "--benchmark-only", "-p", "no:cacheprovider"]))
