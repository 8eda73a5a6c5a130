"""The connection engine on its own: two connections over the simulated link
(tcpfast.testing.SimPair), everything per packet in C with the GIL released.

* ``engine bulk MTU 1500``: 200 MB one way with no loss on one core: the payload rate (Gbit/s,
  printed by the summary) is that of the whole per-segment path, both ends: application data
  generated and copied into the send ring, segments emitted with checksums, parsed and verified,
  processed by the receiving state machine, ACKs back, data read out and compared byte by byte.
* ``engine bulk MTU 9000``: the same with jumbo frames.

One segment through a single state machine from Python, beside a pure-Python TCB, is in
``bench_segment.py``; the send path and the retransmission queue in ``bench_rtx.py``.
"""
import pytest

from tcpfast.testing import SimPair

BULK = 200_000_000


def _bulk(mtu):
    sp = SimPair(seed=1, delay=0.00005, mtu=mtu)
    r = sp.run(BULK, 0, timeout=3600)
    assert r["result"] == "done" and r["a_to_b"]["mismatches"] == 0
    return r


@pytest.mark.parametrize("mtu", [1500, 9000])
def test_engine_bulk(benchmark, mtu):
    benchmark.group = f"engine bulk MTU {mtu}"
    benchmark.extra_info.update(impl="compiled", payload_bytes=BULK)
    r = benchmark.pedantic(_bulk, args=(mtu,), rounds=3, iterations=1)
    benchmark.extra_info["segments"] = r["link"]["sent"]
