"""No busy waiting (issue 5): with connections open and threads blocked in recv/accept/select on
tcpfast sockets, nothing runs while nothing happens. Counts CPU time, not wall-clock speed."""
import os
import select
import socket
import threading
import time

import pytest

from conftest import STACK_IP

pytestmark = pytest.mark.tun


def _cpu_seconds(tid=None) -> float:
    path = f"/proc/self/task/{tid}/stat" if tid else "/proc/self/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_sockets_cost_no_cpu(stack):
    lst = stack.socket()
    lst.bind(("", 7100))
    lst.listen()
    pairs = []
    for _ in range(20):
        k = socket.create_connection((STACK_IP, 7100), timeout=5)
        lst.settimeout(5)
        t, _ = lst.accept()
        pairs.append((k, t))
    lst.settimeout(None)
    blocked = []
    # Threads parked in a blocking recv, a blocking accept and a select on tcpfast sockets.
    blocked.append(threading.Thread(target=lambda: pairs[0][1].recv(10), daemon=True))
    blocked.append(threading.Thread(target=lambda: lst.accept(), daemon=True))
    blocked.append(threading.Thread(
        target=lambda: select.select([t for _, t in pairs[1:]], [], [], 30), daemon=True))
    for th in blocked:
        th.start()
    time.sleep(0.5)
    engine_tid = stack._thread.native_id
    cpu0, engine0 = _cpu_seconds(), _cpu_seconds(engine_tid)
    time.sleep(2.0)
    cpu, engine = _cpu_seconds() - cpu0, _cpu_seconds(engine_tid) - engine0
    # A busy-waiting loop would use ~2 s of CPU here; the scheduler's 10 ms ticks allow a few.
    assert engine <= 0.05, f"engine thread used {engine:.2f} s of CPU while idle"
    assert cpu <= 0.1, f"the process used {cpu:.2f} s of CPU while idle"
    # And they all still wake when something happens.
    pairs[0][0].sendall(b"wake")
    blocked[0].join(5)
    assert not blocked[0].is_alive()
    c = socket.create_connection((STACK_IP, 7100), timeout=5)
    blocked[1].join(5)
    assert not blocked[1].is_alive()
    pairs[1][0].sendall(b"x")
    blocked[2].join(5)
    assert not blocked[2].is_alive()
    c.close()
    for k, t in pairs:
        k.close()
        t.close()
    lst.close()
