"""One model of readiness: the TCB says what a connection is ready for (tcb_poll, as Linux's
tcp_poll), the engine reports it (state_of gives the bits of select.poll) and shows the same
through the socket's fd. Runs on an engine with no device, over its own loopback."""
import errno
import os
import select
import threading
import time

import pytest

from tcpfast._engine import Engine

HERE = bytes([10, 0, 0, 1])


@pytest.fixture
def engine():
    r, w = os.pipe()
    e = Engine(r, mtu=1500, addr4=HERE)
    thread = threading.Thread(target=e.run, daemon=True)
    thread.start()
    yield e
    e.stop()
    thread.join(5)
    e.release()
    os.close(r)
    os.close(w)


def wait_for(predicate, what):
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


def pair(engine, port=5000):
    listener = engine.listen(bytes(4), port, 16, {}, -1)
    client = engine.connect(HERE, 0, HERE, port, {}, -1)
    server = []
    wait_for(lambda: server.append(engine.accept(listener)) or server[-1] is not None, "accept")
    return client, server[-1], listener


def mask(engine, t) -> int:
    return engine.state_of(t)[1]


def test_established_is_writable_only(engine):
    client, server, _ = pair(engine)
    wait_for(lambda: engine.state_of(client)[0] == "ESTABLISHED", "established")
    assert mask(engine, client) == select.POLLOUT
    assert mask(engine, server) == select.POLLOUT


def test_data_makes_readable_and_reading_it_all_clears(engine):
    client, server, _ = pair(engine)
    assert engine.send(client, b"x" * 1000) == 1000
    wait_for(lambda: mask(engine, server) & select.POLLIN, "readable")
    assert engine.recv_bytes(server, 4096, False) == b"x" * 1000
    assert mask(engine, server) == select.POLLOUT


def test_peer_fin_is_rdhup_and_readable_then_hup_after_our_own(engine):
    client, server, _ = pair(engine)
    engine.shutdown(client)
    wait_for(lambda: mask(engine, server) & select.POLLRDHUP, "the peer's FIN")
    assert mask(engine, server) == select.POLLIN | select.POLLOUT | select.POLLRDHUP
    engine.shutdown(server)
    wait_for(lambda: mask(engine, server) & select.POLLHUP, "both directions done")
    assert mask(engine, server) & (select.POLLIN | select.POLLRDHUP | select.POLLHUP) == \
        select.POLLIN | select.POLLRDHUP | select.POLLHUP


def test_reset_is_err_hup_in_out(engine):
    client, server, _ = pair(engine)
    engine.abort(client)
    wait_for(lambda: engine.state_of(server)[0] == "CLOSED", "reset")
    state, bits, error, _, _ = engine.state_of(server)
    assert error == errno.ECONNRESET
    assert bits == select.POLLIN | select.POLLOUT | select.POLLERR | select.POLLHUP


def test_conn_facts_copy_what_the_socket_may_know(engine):
    """The socket layer reads a connection only through Engine.conn_facts (one copy under the
    engine's lock): state, endpoints, segment size, TCP_INFO's variables, counters."""
    client, server, _ = pair(engine, 5001)
    wait_for(lambda: engine.state_of(client)[0] == "ESTABLISHED", "established")
    facts = engine.conn_facts(client)
    assert facts.state == "ESTABLISHED" and facts.tcpi_state == 1       # Linux's TCP_ESTABLISHED
    assert facts.remote == (HERE, 5001) and facts.local[0] == HERE
    assert engine.conn_facts(server).remote == facts.local
    assert facts.has_peer and not facts.finished and facts.fin_pending and not facts.rcv_fin
    assert facts.error == 0 and facts.mss == 1460 - 12          # MTU 1500, timestamps on
    assert facts.info["cwnd"] > 0 and facts.counters["segs_out"] >= 2
    engine.abort(client)
    wait_for(lambda: engine.conn_facts(server).finished, "reset")
    facts = engine.conn_facts(server)
    assert facts.error == errno.ECONNRESET and not facts.has_peer and not facts.fin_pending
    assert engine.sock_error(server) == errno.ECONNRESET
    assert engine.sock_error(server) == 0                              # reported once


def test_capture_is_the_format_pcap_reads(engine, tmp_path):
    """The engine writes pcap.py's format (its header, records cut to its snap length)."""
    from tcpfast import pcap

    path = tmp_path / "c.pcap"
    engine.capture_start(str(path))
    client, server, _ = pair(engine, 5002)
    engine.capture_stop()
    data = path.read_bytes()
    assert data.startswith(pcap.file_header())
    with open(path, "rb") as f:
        assert pcap.count(f) >= 3                   # SYN, SYN-ACK, ACK over the loopback


def test_options_are_the_defaults_and_what_configure_set(engine):
    from tcpfast._tcb import config_defaults

    assert engine.options()["keepidle"] == config_defaults()["keepidle"] == 7200.0
    engine.configure(keepidle=30.0)
    assert engine.options()["keepidle"] == 30.0
