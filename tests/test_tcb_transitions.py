"""Every change of a connection's state goes through one place, Tcb.set_state() (as Linux's
tcp_set_state): it counts the states entered (Tcb.transitions), and only the TCB changes its
state. Connections are driven with the segment-level helpers of ``test_tcb``; the engine's one
state change that is not a segment's (a new SYN that ends a TIME-WAIT, RFC 6191) runs on an
engine with no device, over its own loopback."""
import os
import threading
import time

import pytest

from test_tcb import F, Seg, established_active, last_ack, listening, syn_received, time_wait
from tcpfast._engine import Engine


def entered(c) -> dict:
    """The states the connection entered, with how often (those never entered left out)."""
    return {name: n for name, n in c.tcb.transitions.items() if n}


def test_transitions_name_every_state_as_the_rfc_writes_it():
    c = listening()
    assert list(c.tcb.transitions) == ["CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED",
                                       "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT",
                                       "CLOSING", "LAST-ACK", "TIME-WAIT"]
    assert entered(c) == {"LISTEN": 1}


def test_passive_open_active_close_to_closed():
    c = time_wait()
    assert entered(c) == {"LISTEN": 1, "SYN-RECEIVED": 1, "ESTABLISHED": 1, "FIN-WAIT-1": 1,
                          "FIN-WAIT-2": 1, "TIME-WAIT": 1}
    c.advance(2 * 30.0 + 1).recv_nothing()          # 2*MSL later the TCB is deleted
    assert c.state == "CLOSED"
    assert entered(c)["CLOSED"] == 1


def test_active_open_passive_close():
    c = established_active()
    c.send(F.FIN | F.ACK, c.theirs(), c.ours())
    c.recv(Seg(F.ACK, c.ours(), c.theirs(1)))
    c.tcb.close(c.now)
    c.recv(Seg(F.FIN | F.ACK, c.ours(), c.theirs(1)))
    c.send(F.ACK, c.theirs(1), c.ours(1))
    assert c.state == "CLOSED"
    assert entered(c) == {"SYN-SENT": 1, "ESTABLISHED": 1, "CLOSE-WAIT": 1, "LAST-ACK": 1,
                          "CLOSED": 1}


def test_reset_in_syn_received_returns_to_listen_and_counts_it():
    c = syn_received()
    c.send(F.RST, c.theirs())
    assert c.state == "LISTEN"
    assert entered(c) == {"LISTEN": 2, "SYN-RECEIVED": 1}


def test_abort_counts_closed_once():
    c = last_ack()
    c.tcb.abort(c.now)
    c.tcb.abort(c.now)                              # already CLOSED: no second transition
    assert entered(c)["CLOSED"] == 1


def test_state_is_read_only_from_python():
    c = listening()
    with pytest.raises(AttributeError):
        c.tcb.state = 0


def test_syn_above_rcv_nxt_reopens_a_time_wait_tuple():
    """RFC 6191 / RFC 1122 §4.2.2.13: the server closes first and keeps the 4-tuple in TIME-WAIT;
    the client connects again from the same port with a higher ISN; the TIME-WAIT ends and the
    listener takes the SYN (the engine counts it as time_wait_reused)."""
    r, w = os.pipe()
    here = bytes([10, 0, 0, 1])
    engine = Engine(r, mtu=1500, addr4=here)
    engine.configure(msl=60.0)
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    try:
        listener = engine.listen(bytes(4), 5000, 16, {}, -1)

        def connect_and_accept():
            client = engine.connect(here, 40000, here, 5000, {}, -1)
            deadline = time.monotonic() + 5
            while True:
                server = engine.accept(listener)
                if server is not None:
                    return client, server
                assert time.monotonic() < deadline, "no connection to accept"
                time.sleep(0.005)

        def wait_state(t, name):
            deadline = time.monotonic() + 5
            while engine.state_of(t)[0] != name:
                assert time.monotonic() < deadline, (engine.state_of(t), name)
                time.sleep(0.005)

        client, server = connect_and_accept()
        engine.close(server)                        # the server closes first: TIME-WAIT there
        wait_state(client, "CLOSE-WAIT")
        engine.close(client)
        wait_state(server, "TIME-WAIT")
        wait_state(client, "CLOSED")
        assert engine.stats()["time_wait_reused"] == 0

        client2, server2 = connect_and_accept()     # the same 4-tuple again
        wait_state(client2, "ESTABLISHED")
        assert engine.state_of(server2)[0] == "ESTABLISHED"
        assert engine.stats()["time_wait_reused"] == 1
        assert engine.state_of(server)[0] == "CLOSED"
        assert server.transitions["TIME-WAIT"] == 1 and server.transitions["CLOSED"] == 1
        engine.abort(client2)
        engine.abort(server2)
        engine.unlisten(listener)
    finally:
        engine.stop()
        thread.join(5)
        engine.release()
        os.close(r)
        os.close(w)


def test_options_are_checked_without_a_tcb():
    """_tcb.config_check: what Stack(**options) checks before it starts (no throwaway Tcb)."""
    from tcpfast._tcb import config_check, config_defaults
    import tcpfast

    config_check({"keepidle": 1.0, "cc": "newreno"})
    with pytest.raises(TypeError):
        config_check({"no_such_option": 1})
    with pytest.raises(ValueError):
        config_check({"mss": 10})
    with pytest.raises(ValueError):
        tcpfast.Stack(rto_min=2.0, rto_max=1.0)     # checked at construction, not at start()
    defaults = config_defaults()                    # tcb_config_default, by name
    assert defaults["keepidle"] == 7200.0 and defaults["cc"] == "cubic"
    config_check(defaults)                          # read back, they are valid options
