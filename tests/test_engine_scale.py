"""The engine with 10,000 connections (20,000 TCBs: both ends live in the stack, talking through
its local delivery): every one is established, the timer wheel fires every keepalive timer on time
(probes sent and answered, nobody times out), and closing them all empties the table after
TIME-WAIT. Asserts on outcomes, not on speed; the engine's CPU time is printed for the record."""
import ipaddress
import os
import time

import pytest

from conftest import STACK_IP

pytestmark = pytest.mark.tun

N = 10_000


def _engine_cpu_seconds(stack) -> float:
    with open(f"/proc/self/task/{stack._thread.native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_ten_thousand_connections_keepalive_on_the_wheel(make_stack):
    stack = make_stack(keepalive=True, keepidle=1.0, keepintvl=1.0, keepcnt=2, msl=0.25)
    engine = stack._engine
    addr = ipaddress.IPv4Address(STACK_IP).packed
    listener = engine.listen(bytes(4), 5000, N, {}, -1)
    clients, servers = [], []
    deadline = time.monotonic() + 120
    for i in range(N):
        clients.append(engine.connect(addr, 0, addr, 5000, {}, -1))
        if i % 500 == 499:
            while True:
                t = engine.accept(listener)
                if t is None:
                    break
                servers.append(t)
    while len(servers) < N and time.monotonic() < deadline:
        t = engine.accept(listener)
        if t is None:
            time.sleep(0.01)
            continue
        servers.append(t)
    assert len(servers) == N
    assert all(engine.state_of(t)[0] == "ESTABLISHED" for t in clients + servers)
    assert engine.nconns == 2 * N

    # Idle with keepalive: probes after 1 s, then every second; all answered (keepcnt=2 would
    # kill any connection whose timer fired late twice or whose probe was not answered).
    cpu0 = _engine_cpu_seconds(stack)
    before = stack.stats()["keepalive_probes"]
    time.sleep(3.5)
    cpu = _engine_cpu_seconds(stack) - cpu0
    probes = stack.stats()["keepalive_probes"] - before
    print(f"\n{2 * N} connections idle for 3.5 s with 1 s keepalives: {probes} probes, "
          f"engine CPU {cpu:.2f} s")
    assert probes >= 2 * N * 2              # at least two rounds of probes for every TCB
    states = {engine.state_of(t)[0] for t in clients + servers}
    assert states == {"ESTABLISHED"}, states
    assert stack.stats()["connections"] == 2 * N

    # Close everything: the active closers sit in TIME-WAIT for 2*MSL, then the table is empty.
    for t in clients + servers:
        engine.close(t)
    deadline = time.monotonic() + 30
    while engine.nconns and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine.nconns == 0
    engine.unlisten(listener)
