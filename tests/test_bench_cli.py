"""``tcpfast bench``: the side-by-side runner, run for real (short cases) in namespaces of its own.

No figure is asserted: these tests check that every workload ran on both stacks at both offload
settings and produced sane, self-consistent results, that the loss really was applied, that
failures are reported without losing what finished, and that the run leaves nothing behind,
also when interrupted.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tcpfast import netns
from tcpfast.bench import loss, workloads

pytestmark = pytest.mark.tun

ALL = list(workloads.WORKLOADS)


def bench(*args, cwd, timeout=300):
    """Run ``tcpfast bench``; the result also carries the run's pid (``.pid``), which names its
    namespaces and is the ``parent`` of its workers."""
    # Run outside the checkout: `-m` would otherwise import the uncompiled source tree.
    p = subprocess.Popen([sys.executable, "-m", "tcpfast", "bench", *args], cwd=cwd,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    r.pid = p.pid
    return r


def leftovers(pid):
    """Namespaces of the run with this pid still listed."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"tcpfb-{pid}-")]


def worker_pids(parent):
    """Workers of the run with pid ``parent`` (other runs may share the machine)."""
    found = []
    mark = f'"parent": {parent},'.encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
                    if b"tcpfast.bench.worker" in cmdline and mark in cmdline:
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def full_run(privileged, tmp_path_factory):
    """Every workload, both offload settings, short cases; JSON and chart written."""
    d = tmp_path_factory.mktemp("bench")
    r = bench("--quick", "--duration", "0.3", "--wan-duration", "1", "--connections", "300",
              "--streams", "20", "--json", str(d / "r.json"), "--plot", str(d / "r.png"), cwd=d)
    doc = json.loads((d / "r.json").read_text()) if (d / "r.json").exists() else None
    return r, doc, d


def test_both_stacks_ran_with_one_congestion_control(full_run):
    """The comparison is of the stacks, not of the algorithms: both use CUBIC unless told
    (the host's default, BBR on this project's machines, is recorded but not used)."""
    r, doc, _ = full_run
    assert doc["options"]["cc"] == "cubic"
    assert doc["machine"]["host_cc"]
    assert "congestion control cubic on both stacks" in r.stdout


def test_a_congestion_control_tcpfast_lacks_is_refused(capsys):
    from tcpfast.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "--cc", "bbr"])
    assert e.value.code == 2
    assert "--cc" in capsys.readouterr().err


@pytest.mark.parametrize("cc", ["cubic", "reno"])
def test_kernel_sockets_take_the_congestion_control_asked(privileged, cc):
    from tcpfast.bench.worker import kernel_socket_factory

    s = kernel_socket_factory(cc)()
    try:
        got = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0")
        assert got == cc.encode()
    finally:
        s.close()


def test_every_workload_ran_on_both_stacks_at_both_offload_settings(full_run):
    r, doc, _ = full_run
    assert r.returncode == 0, r.stdout + r.stderr
    assert doc is not None and not doc["interrupted"]
    cases = {(c["workload"], c["kind"], c["offload"]): c for c in doc["cases"]}
    for name in ALL:
        for kind in ("tcpfast", "kernel"):
            for offload in (False, True):
                c = cases[(name, kind, offload)]
                assert "error" not in c, c
                assert c["metrics"], c
                for m in c["metrics"]:
                    if m["metric"] != "kernel slab growth per connection":   # machine-wide: noisy
                        assert m["value"] >= 0, m
    # The tcpfast stack got the offload it was asked for (the runner says what it got).
    assert doc["features"]["tcpfast offload on"]["granted"] is True
    assert doc["features"]["tcpfast offload off"]["granted"] is False
    assert doc["features"]["wan tcpfast offload on"]["tcpfast"]["granted"] is True
    assert doc["features"]["wan tcpfast offload off"]["tcpfast"]["granted"] is False
    # Offload off on the WAN path: every veth end of it has TSO and GSO off.
    for kind in ("tcpfast", "kernel"):
        for dev, feats in doc["features"][f"wan {kind} offload off"].items():
            if dev != "tcpfast":
                assert not feats["tcp-segmentation-offload"], (kind, dev, feats)
    # Every row compares the two; ratios where a ratio means something.
    for row in doc["rows"]:
        assert row["tcpfast"] is not None and row["kernel"] is not None, row
        if row["comparable"]:
            assert row["ratio"] == pytest.approx(row["tcpfast"] / row["kernel"]), row
    # The table and the progress lines were shown.
    assert "ratio" in r.stdout and "bulk_recv" in r.stdout
    assert f"[ 1/{len(ALL) * 4}]" in r.stderr


def test_results_are_self_consistent(full_run):
    _, doc, _ = full_run
    for c in doc["cases"]:
        local, peer = c["local"], c["peer"]
        name = c["workload"]
        if name.startswith(("bulk", "loss", "wan")):
            # metrics() already refused a count or SHA-256 mismatch; the bytes moved were real.
            assert c["metrics"][0]["bytes"] > 0
        elif name == "rr":
            assert local["round_trips"] >= 100 and peer["answers"] >= local["round_trips"]
            assert local["min_us"] <= local["p50_us"] <= local["p99_us"] <= local["max_us"]
        elif name == "crr":
            assert local["connections"] == peer["served"] > 0
        elif name == "streams":
            assert len(local["per_stream"]) == 20 and min(local["per_stream"]) > 0
            fairness = c["metrics"][1]["value"]
            assert 1 / 20 <= fairness <= 1.0
        elif name == "idle":
            assert local["alive"] == local["connections"] == 300
            assert peer["accepted"] == 300 and peer["echoed"] == 300


def test_loss_was_applied_on_both_paths(full_run):
    """1 % of packets are dropped each way: a case that carried enough packets shows it. A short
    case with offload on carries few (64 KiB super-packets), and P(no drop in n packets) =
    0.99**n, so only cases with at least 500 packets (P < 0.7 %) are judged, and every kind of
    case must have one such."""
    _, doc, _ = full_run
    judged = set()
    for c in doc["cases"]:
        if not c["workload"].startswith("loss"):
            continue
        assert c["loss"] == 0.01
        counters = c["local"]["counters"]
        tcpfast_end = c["kind"] == "tcpfast"
        packets = (counters.get("segments_in", 0) + counters.get("segments_out", 0)) if tcpfast_end \
            else (counters.get("Tcp.InSegs", 0) + counters.get("Tcp.OutSegs", 0))
        if packets < 500:
            continue
        if c["workload"] == "loss_send":
            # The local end sent: its own retransmissions show the loss.
            seen = counters.get("retransmits" if tcpfast_end else "Tcp.RetransSegs", 0)
        else:
            # The local end received: segments after a hole, or the sender's retransmissions.
            seen = counters.get("ooo_segments" if tcpfast_end else "TcpExt.TCPOFOQueue", 0) + \
                c["peer"]["retransmits"]["deltas"].get("Tcp.RetransSegs", 0)
        assert seen > 0, (c["workload"], c["kind"], c["offload"], packets, counters)
        judged.add((c["workload"], c["kind"]))
    assert judged == {(w, k) for w in ("loss_send", "loss_recv") for k in ("tcpfast", "kernel")}, \
        judged
    # Without loss, the same bulk transfer retransmits nothing on this clean path.
    for c in doc["cases"]:
        if c["workload"] == "bulk_send" and c["kind"] == "tcpfast":
            assert c["local"]["counters"].get("retransmits", 0) == 0


def test_wan_cases_ran_through_the_impairer_beside_its_ceiling(full_run):
    r, doc, _ = full_run
    ceiling = doc["impairer_ceiling"]
    assert ceiling["mtu"] == 1500 and ceiling["forwarded_packets"] > 0, ceiling
    assert ceiling["pps"] > 0 and ceiling["gbps"] > 0 and ceiling["pps_per_core"] > 0
    assert "impairer ceiling" in r.stdout
    wan_cases = [c for c in doc["cases"] if c["workload"].startswith("wan")]
    assert len(wan_cases) == 16
    lost_and_seen = [0, 0]
    for c in wan_cases:
        lossy = c["workload"].startswith("wan_loss")
        assert c["impairment"]["delay"] == 0.010
        assert c["impairment"]["loss"] == (0.01 if lossy else 0.0)
        imp = c["impairer"]
        assert imp["stopped"] == "stopped" and imp["drained"] is True, imp
        for way in ("local_to_peer", "peer_to_local"):
            n = imp[way]
            # Every packet of the connection crossed the impairer, and it lost only on purpose.
            assert n["rx_packets"] > 0 and n["queued"] == 0, (c["workload"], c["kind"], n)
            assert n["tx_packets"] + n["lost"] + n["queue_drops"] + n["tx_errors"] == \
                n["rx_packets"] + n["duplicated"], n
            if not lossy:
                assert n["lost"] == 0
        if lossy:
            for way in ("local_to_peer", "peer_to_local"):
                lost_and_seen[0] += imp[way]["lost"]
                lost_and_seen[1] += imp[way]["rx_packets"]
        # The measured end's packets are the ones the impairer saw (no other path exists); a
        # last ACK or two may leave after its counters were read (a FIN retransmitted by the
        # peer is answered after the workload returned). The kernel's OutSegs leaves out
        # retransmitted segments, tcpfast's segments_out counts them.
        counters = c["local"]["counters"]
        if c["kind"] == "tcpfast":
            sent = counters.get("segments_out", 0)
        else:
            sent = counters.get("Tcp.OutSegs", 0) + counters.get("Tcp.RetransSegs", 0)
        if not c["offload"]:
            assert sent <= imp["local_to_peer"]["rx_packets"] <= sent + 3, (c, counters, imp)
        # Retransmissions by cause for both ends, from the stack's counters or the namespace's.
        for end in ("local", "peer"):
            rt = c[end]["retransmits"]
            tcpfast_end = end == "local" and c["kind"] == "tcpfast"
            assert rt["source"] == ("stack.stats()" if tcpfast_end else "/proc/net/netstat")
            total = rt["deltas"]["retransmits" if tcpfast_end else "Tcp.RetransSegs"]
            assert total is not None and total >= 0
            assert set(rt["absent"]) == {k for k, v in rt["deltas"].items() if v is None}
        # Of the packets lost in the direction of the data, at most three are pure ACKs (the
        # handshake's last, a FIN's): four or more lost means the sender had to retransmit.
        data_way = "local_to_peer" if c["workload"].endswith("_send") else "peer_to_local"
        sender = c["local"] if c["workload"].endswith("_send") else c["peer"]
        sender_total = sender["retransmits"]["deltas"].get(
            "retransmits" if sender is c["local"] and c["kind"] == "tcpfast" else "Tcp.RetransSegs")
        if imp[data_way]["lost"] >= 4:
            assert sender_total > 0, (c["workload"], c["kind"], c["offload"], sender)
    # The loss rate asked for (1 %), over every packet of the lossy cases (tens of thousands;
    # the bounds are far beyond six standard deviations).
    lost, seen = lost_and_seen
    assert seen > 5000 and 0.005 <= lost / seen <= 0.02, lost_and_seen
    assert "retransmits by cause" in r.stdout
    for row in doc["rows"]:
        if row["workload"].startswith("wan"):
            assert row["tcpfast"] > 0 and row["kernel"] > 0


def test_chart_is_a_png_and_nothing_is_left_behind(full_run):
    r, _, d = full_run
    assert (d / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "chart:" in r.stdout
    assert not [n for n in netns.origin_links() if n.startswith("tfb")]
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not leftovers(r.pid)
    assert not worker_pids(r.pid)


def test_a_failing_case_is_reported_and_the_rest_still_runs(privileged, tmp_path):
    # An option the stack refuses: the tcpfast side cannot start, the kernel side runs.
    r = bench("--workload", "rr", "--offload", "off", "--duration", "0.3",
              "--option", "no_such_option=1", "--json", str(tmp_path / "r.json"), cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED rr offload off (tcpfast)" in r.stdout
    assert "no_such_option" in r.stdout
    doc = json.loads((tmp_path / "r.json").read_text())
    kernel = [c for c in doc["cases"] if c["kind"] == "kernel"]
    assert kernel and "error" not in kernel[0] and kernel[0]["metrics"][0]["value"] > 0
    assert not worker_pids(r.pid)


def test_ctrl_c_removes_the_namespaces_and_reports_what_finished(privileged, tmp_path):
    import threading

    # idle (100 connections, held 3 s) finishes quickly; bulk_send then runs for 60 s, and is
    # interrupted.
    p = subprocess.Popen([sys.executable, "-m", "tcpfast", "bench", "--offload", "off",
                          "--workload", "idle,bulk_send", "--connections", "100",
                          "--duration", "60", "--json", str(tmp_path / "r.json")],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_chars = []
    reader = threading.Thread(target=lambda: err_chars.extend(iter(lambda: p.stderr.read(1), "")),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while "[ 3/4] bulk_send" not in "".join(err_chars) and time.monotonic() < deadline:
            assert p.poll() is None, "".join(err_chars)
            time.sleep(0.2)
        assert "[ 3/4] bulk_send" in "".join(err_chars), "".join(err_chars)
        time.sleep(1.0)                       # the case is running: its workers exist
        assert leftovers(p.pid) and worker_pids(p.pid)
        p.send_signal(signal.SIGINT)
        out = p.stdout.read()
        p.wait(60)
        reader.join(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    err = "".join(err_chars)
    assert p.returncode == 130, out + err
    assert "interrupted" in err
    assert not leftovers(p.pid)
    assert not worker_pids(p.pid)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["interrupted"] is True
    done = [c for c in doc["cases"] if c["workload"] == "idle" and "error" not in c]
    assert len(done) == 2             # both idle cases finished, and are reported
    assert "idle" in out


def test_without_privilege_it_says_why_and_exits_2(monkeypatch, capsys):
    from tcpfast.cli import main

    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert "needs root" in netns.unavailable()
    assert main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "tcpfast bench: needs root" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--workload", "nope"], "unknown workload 'nope'"),
    (["--duration", "-1"], "--duration"),
    (["--loss", "60"], "--loss"),
    (["--option", "novalue"], "KEY=VALUE"),
    (["--wan-loss", "50"], "--wan-loss"),
    (["--wan-duration", "0"], "--wan-duration"),
    (["--rtt", "-1"], "--rtt"),
    (["--workload", "wan_nope"], "unknown workload 'wan_nope'"),
])
def test_bad_arguments_are_refused_before_anything_is_made(args, message, capsys):
    from tcpfast.cli import main

    assert main(["bench", *args]) == 2
    assert message in capsys.readouterr().err


def test_the_loss_filter_drops_about_the_rate_asked(in_ns):
    reason = loss.unavailable()
    assert reason is None, reason
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(0.5)

        def count(n):
            for i in range(n):
                tx.sendto(b"x", rx.getsockname())
                if i % 200 == 199:
                    time.sleep(0.002)
            got = 0
            try:
                while True:
                    rx.recv(16)
                    got += 1
            except socket.timeout:
                return got

        loss.attach("lo", 0.2, hooks=("ingress",))
        try:
            got = count(5000)
        finally:
            loss.detach("lo")
        # Binomial(5000, 0.8): mean 4000, sd 28; the bounds are ten sd away.
        assert 3700 <= got <= 4300, got
        assert count(1000) == 1000          # detached: nothing lost
    finally:
        rx.close()
        tx.close()


def test_loss_rates_outside_the_range_are_refused():
    with pytest.raises(ValueError):
        loss.program(0.5)
    with pytest.raises(ValueError):
        loss.program(-0.1)
    assert len(loss.program(0.01)) % 8 == 0


def test_workload_groups_name_both_directions():
    assert workloads.expand(["wan_bulk", "wan_loss"]) == [
        "wan_bulk_send", "wan_bulk_recv", "wan_loss_send", "wan_loss_recv"]
    assert workloads.expand(["rr", "wan_bulk_recv", "wan_bulk"]) == [
        "rr", "wan_bulk_recv", "wan_bulk_send"]
    for name in ("wan_bulk_send", "wan_loss_recv"):
        w = workloads.get(name)
        assert w.wan and not w.uses_loss and w.wan_lossy == name.startswith("wan_loss")
    with pytest.raises(ValueError):
        workloads.expand(["wan"])


def test_statistics_helpers():
    assert workloads.percentile([1, 2, 3, 4], 0.5) == 2
    assert workloads.percentile(list(range(1, 101)), 0.99) == 99
    assert workloads.jain_fairness([5, 5, 5, 5]) == pytest.approx(1.0)
    assert workloads.jain_fairness([10, 0, 0, 0]) == pytest.approx(0.25)
