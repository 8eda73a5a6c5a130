"""The control channel (tcpfast/control.py), the echo and discard services, and the `tcpfast up`,
`ss`, `stats` and `capture` commands (issue 6).

The in-process tests run a stack in the test run's namespace (the ``stack`` fixture). The command
tests run `python -m tcpfast up --netns tcpf-up<pid> ...` as a subprocess: it makes that private
namespace itself, puts its TUN device there, and deletes it on SIGINT; a crashed run's namespace
is removed by the next run (its name carries the dead pid). Kernel sockets reach the stack from
inside that namespace; the control socket lives in a short temporary directory. Every wait has a
timeout; nothing asserts on speed.
"""
import errno
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import helpers
from tcpfast import netns
from conftest import IFNAME, KERNEL_IP, STACK_IP
from socket_api_helpers import recv_exactly

pytestmark = pytest.mark.tun

IO_TIMEOUT = 20.0
CMD_TIMEOUT = 60.0
UP_TIMEOUT = 30.0           # for `tcpfast up` to print its line, or to exit after a signal
MARKER = b"tcpfast-capture-marker-"


# --- helpers ---------------------------------------------------------------------------------------

@pytest.fixture
def ctl_dir():
    """A short temporary directory (Unix socket paths are at most 107 bytes)."""
    path = tempfile.mkdtemp(prefix="tcpf-ctl-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server(stack, ctl_dir):
    from tcpfast.control import ControlServer

    srv = ControlServer(stack, os.path.join(ctl_dir, "ctl.sock"))
    srv.start()
    yield srv
    srv.stop()


class Raw:
    """A bare line client for the control socket, for feeding it whatever bytes a test likes."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(IO_TIMEOUT)
        self.sock.connect(path)
        self.buf = b""

    def send(self, data, fds=()):
        if fds:
            n = socket.send_fds(self.sock, [data], list(fds))
            self.sock.sendall(data[n:])
        else:
            self.sock.sendall(data)

    def reply(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed; had {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, data, fds=()):
        self.send(data, fds)
        return self.reply()

    def close(self):
        self.sock.close()


def kernel_socket(family=socket.AF_INET):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(IO_TIMEOUT)
    return s


def connected_pair(stack, port):
    """(kernel socket, accepted tcpfast socket) on a tcpfast listener on ``port``."""
    lst = stack.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.settimeout(IO_TIMEOUT)
    lst.bind((STACK_IP, port))
    lst.listen(4)
    k = kernel_socket()
    k.connect((STACK_IP, port))
    t, _ = lst.accept()
    t.settimeout(IO_TIMEOUT)
    return lst, k, t


def read_pcap(path):
    """Parse a pcap file independently of tcpfast.pcap: (linktype, [packet bytes]). Asserts the
    header, that every record is complete, and that every packet is a whole IPv4/IPv6 packet."""
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) >= 24, f"{path}: {len(data)} bytes, no pcap header"
    magic, major, minor, _, _, snaplen, linktype = struct.unpack("=IHHiIII", data[:24])
    assert (magic, major, minor) == (0xA1B2C3D4, 2, 4), (hex(magic), major, minor)
    assert linktype == 101 and snaplen >= 1500
    packets, offset = [], 24
    while offset < len(data):
        assert offset + 16 <= len(data), "torn record header"
        sec, usec, incl, orig = struct.unpack("=IIII", data[offset:offset + 16])
        assert usec < 1_000_000 and incl <= orig and incl <= snaplen
        assert sec > 1_600_000_000, "timestamps are wall-clock seconds"
        packet = data[offset + 16:offset + 16 + incl]
        assert len(packet) == incl, "torn record"
        version = packet[0] >> 4
        if version == 4:
            assert struct.unpack("!H", packet[2:4])[0] == orig
        else:
            assert version == 6 and struct.unpack("!H", packet[4:6])[0] + 40 == orig
        packets.append(packet)
        offset += 16 + incl
    return linktype, packets


def _fds():
    return set(os.listdir("/proc/self/fd"))


def _child_env():
    """The environment for `python -m tcpfast`: the tcpfast these tests import comes first."""
    import tcpfast

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(tcpfast.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def tcpfast_cmd(*argv, timeout=CMD_TIMEOUT, **kwargs):
    """Run `python -m tcpfast ARGV...` to the end; the CompletedProcess (text)."""
    kwargs.setdefault("cwd", "/")     # not the checkout: `-m` would import its uncompiled tree
    return subprocess.run([sys.executable, "-m", "tcpfast", *argv], capture_output=True, text=True,
                          timeout=timeout, env=_child_env(), **kwargs)


def assert_clean_error(proc, status, *phrases):
    """Exit status ``status``, one line on stderr naming ``phrases``, no traceback."""
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, (phrase, proc.stderr)


class Up:
    """`python -m tcpfast up --netns NAME --control PATH ...` running as a subprocess."""

    def __init__(self, name, control, *extra):
        self.name, self.control = name, control
        netns.remove_stale(re.sub(r"\d+$", "", name))
        assert name not in netns.listed()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tcpfast", "up", "--netns", name, "--control", control, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(), cwd="/")
        self.line = self._first_line()

    def _first_line(self):
        buf = b""
        deadline = time.monotonic() + UP_TIMEOUT
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                status = self.proc.poll()
                what = "nothing in time" if status is None else f"exited {status}"
                if status is None:
                    self.proc.kill()
                    self.proc.wait(10)
                err = self.proc.stderr.read().decode(errors="replace")
                self.stop()
                raise AssertionError(f"`tcpfast up` printed {buf!r} and then {what}; "
                                     f"stderr: {err}")
            if select.select([fd], [], [], min(left, 0.5))[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    continue
                buf += chunk
        return buf.decode().strip()

    def interrupt(self, sig=signal.SIGINT):
        """Send ``sig``; the exit status and stderr once it exited (bounded)."""
        self.proc.send_signal(sig)
        status = self.proc.wait(UP_TIMEOUT)
        return status, self.proc.stderr.read().decode(errors="replace")

    def stop(self):
        """Teardown whatever happened: SIGINT, then SIGKILL; the namespace removed either way."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(UP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()
        if self.name in netns.listed():
            netns.remove(self.name)


@pytest.fixture(scope="module")
def up(ns):
    """One `tcpfast up` for the module's command tests, in its own namespace tcpf-up<pid>, with
    IPv6 too. (Depends on the session namespace only for its skip-or-fail rule.)"""
    directory = tempfile.mkdtemp(prefix="tcpf-ctl-", dir="/tmp")
    runner = None
    try:
        runner = Up(f"tcpf-up{os.getpid()}", os.path.join(directory, "up.sock"),
                    "--address6", "fd00:18::2/64")
        yield runner
    finally:
        if runner is not None:
            runner.stop()
        shutil.rmtree(directory, ignore_errors=True)


# --- the control server, in process -----------------------------------------------------------------

def test_server_answers_info_stats_connections(stack, ctl_dir):
    from tcpfast import control

    path = os.path.join(ctl_dir, "sub", "ctl.sock")
    threads_before = {t.name for t in threading.enumerate()}
    srv = control.ControlServer(stack, path).start()
    try:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        info = control.request(path, "info")
        assert info["ok"] is True and info["address"] == STACK_IP and info["ifname"] == IFNAME
        assert info["kernel_address"] == KERNEL_IP and info["pid"] == os.getpid()
        assert info["control"] == path and info["capturing"] is False
        lst, k, t = connected_pair(stack, 7001)
        with lst, k, t:
            k.sendall(b"x" * 3000)
            assert recv_exactly(t, 3000) == b"x" * 3000
            stats = control.request(path, "stats")["stats"]
            assert stats["segments_in"] >= 3 and stats["connections"] >= 1
            assert stats == {**stats, **{key: stats[key] for key in stack.stats() if key in stats}}
            rows = control.request(path, "connections")["connections"]
            states = {(r["state"], tuple(r["local"]), tuple(r["remote"]) if r["remote"] else None)
                      for r in rows}
            assert ("LISTEN", (STACK_IP, 7001), None) in states
            assert ("ESTABLISHED", (STACK_IP, 7001), k.getsockname()) in states
    finally:
        srv.stop()
    assert not os.path.exists(path), "the socket file is removed at stop"
    assert not srv.running
    assert "tcpfast-control" not in {t.name for t in threading.enumerate()} - threads_before
    srv.stop()                          # idempotent


def test_server_survives_bad_input(server):
    from tcpfast import control

    fds_before = _fds()
    raw = Raw(server.path)
    try:
        cases = [
            (b"not json\n", "not a JSON line"),
            (b"\xff\xfe\x00\n", "not a JSON line"),
            (b"\n", "not a JSON line"),
            (b"[1, 2]\n", '"cmd"'),
            (b'{"cmd": 5}\n', '"cmd"'),
            (b'{"nocmd": "info"}\n', '"cmd"'),
            (b'{"cmd": "reboot"}\n', "unknown cmd 'reboot'"),
            (b"[" * 60000 + b"\n", "not a JSON line"),            # nesting too deep to parse
            (b"x" * (200 * 1024) + b"\n", "longer than 65536 bytes"),
            (b'{"cmd": "capture_status"}\n', "no capture running"),
            (b'{"cmd": "capture"}\n', "descriptor"),
        ]
        for data, phrase in cases:
            reply = raw.ask(data)
            assert reply["ok"] is False and phrase in reply["error"], (data[:40], reply)
        # The overlong line gave one error reply; the next line is served normally.
        assert raw.ask(b'{"cmd": "info"}\n')["ok"] is True
        # Pipelined requests in one write: one reply each, in order.
        raw.send(b'{"cmd": "info"}\n{"cmd": "bogus"}\n{"cmd": "stats"}\n')
        replies = [raw.reply() for _ in range(3)]
        assert [r["ok"] for r in replies] == [True, False, True] and "stats" in replies[2]
        # Descriptors sent with requests that do not take them are closed, not kept.
        r, w = os.pipe()
        try:
            for _ in range(10):
                assert raw.ask(b'{"cmd": "info"}\n', fds=[r, w, r, w, r, w])["ok"] is True
        finally:
            os.close(r)
            os.close(w)
    finally:
        raw.close()
    # Clients that vanish mid-line, or at once, or after sending a descriptor.
    for data in (b'{"cmd": "inf', b"", b"garbage without end"):
        junk = Raw(server.path)
        if data:
            junk.send(data, fds=[0] if data.startswith(b"garbage") else ())
        junk.close()
    assert control.request(server.path, "info")["ok"] is True
    helpers.wait_for(lambda: server.clients == 0, 5, message="every client gone")
    assert _fds() <= fds_before, sorted(_fds() - fds_before)


def test_server_bounds_its_clients(server):
    from tcpfast import control

    clients = [Raw(server.path) for _ in range(server.max_clients)]
    try:
        for c in clients:
            assert c.ask(b'{"cmd": "info"}\n')["ok"] is True
        extra = Raw(server.path)
        reply = extra.reply()
        assert reply["ok"] is False and "too many clients" in reply["error"]
        assert extra.sock.recv(10) == b"", "closed after the refusal"
        extra.close()
        with pytest.raises(control.RemoteError, match="too many clients"):
            control.request(server.path, "info")
        clients.pop().close()
        helpers.wait_for(lambda: server.clients < server.max_clients, 5, message="a slot free")
        assert control.request(server.path, "stats")["ok"] is True
    finally:
        for c in clients:
            c.close()


def test_server_start_checks_the_path(stack, ctl_dir):
    from tcpfast import control

    path = os.path.join(ctl_dir, "ctl.sock")
    with control.ControlServer(stack, path):
        with pytest.raises(control.ControlError, match="already serves"):
            control.ControlServer(stack, path).start()
        assert control.request(path, "info")["ok"] is True     # the first one is untouched
    # A stale socket file (its server was killed) is replaced.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    with pytest.raises(control.NoStackError, match=f"no tcpfast stack is serving {path}; start one "
                                                   "with `tcpfast up`"):
        control.request(path, "info")
    with control.ControlServer(stack, path):
        assert control.request(path, "info")["ok"] is True
    # Something that is not a socket is never removed.
    with open(path, "w") as f:
        f.write("mine")
    with pytest.raises(control.ControlError, match="not a socket"):
        control.ControlServer(stack, path).start()
    with open(path) as f:
        assert f.read() == "mine"
    with pytest.raises(control.ControlError, match="too long"):
        control.ControlServer(stack, "/tmp/" + "x" * 120).start()


def test_client_errors_and_finding_the_socket(stack, ctl_dir):
    from tcpfast import control

    missing = os.path.join(ctl_dir, "none.sock")
    with pytest.raises(control.NoStackError) as exc:
        control.request(missing, "info")
    assert str(exc.value).startswith(f"no tcpfast stack is serving {missing}; start one with "
                                     "`tcpfast up`")
    assert control.find_control("/some/path") == "/some/path"
    with pytest.raises(control.NoStackError, match="no tcpfast stack is serving in"):
        control.find_control(directory=ctl_dir)
    with pytest.raises(control.NoStackError):
        control.find_control(directory=os.path.join(ctl_dir, "absent"))
    a, b = os.path.join(ctl_dir, "a.sock"), os.path.join(ctl_dir, "b.sock")
    with control.ControlServer(stack, a):
        assert control.find_control(directory=ctl_dir) == a
        with control.ControlServer(stack, b):
            with pytest.raises(control.ControlError, match=r"several .*a\.sock, b\.sock.*--control"):
                control.find_control(directory=ctl_dir)
        # b's file is gone with its server; a stale one beside a live one does not count either.
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(b)
        stale.close()
        assert control.find_control(directory=ctl_dir) == a


def test_capture_through_the_control_socket(server, stack, ctl_dir):
    from tcpfast import control, pcap

    out = os.path.join(ctl_dir, "cap.pcap")
    fd = os.open(out, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with control.CaptureSession(server.path, fd) as session:
            assert control.request(server.path, "info")["capturing"] is True
            other = os.open(os.path.join(ctl_dir, "other.pcap"), os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                with pytest.raises(control.RemoteError, match="already running"):
                    control.CaptureSession(server.path, other)
            finally:
                os.close(other)
            lst, k, t = connected_pair(stack, 7002)
            with lst, k, t:
                for i in range(5):
                    k.sendall(MARKER + b"%d" % i)
                    assert recv_exactly(t, len(MARKER) + 1) == MARKER + b"%d" % i
                    t.sendall(b"back%d" % i)
                    assert recv_exactly(k, 5) == b"back%d" % i
            helpers.wait_for(lambda: session.packets() >= 10, 5, message="packets counted")
            counted = session.stop()
        linktype, packets = read_pcap(out)
        assert linktype == 101 and len(packets) >= counted >= 10
        for i in range(5):
            assert any(p.endswith(MARKER + b"%d" % i) for p in packets), i
            assert any(p.endswith(b"back%d" % i) for p in packets), i
        assert all({p[12:16], p[16:20]} == {socket.inet_aton(STACK_IP), socket.inet_aton(KERNEL_IP)}
                   for p in packets if p[0] >> 4 == 4)
        with open(out, "rb") as f:
            assert pcap.count(f) == len(packets)
        # The client going away ends its capture: another can start.
        os.ftruncate(fd, 0)
        session = control.CaptureSession(server.path, fd)
        session.close()
        helpers.wait_for(lambda: not control.request(server.path, "info")["capturing"], 5,
                         message="capture ended with its client")
        with control.CaptureSession(server.path, fd) as again:
            again.stop()
    finally:
        os.close(fd)


def test_capture_takes_only_regular_files(server, ctl_dir):
    from tcpfast import control

    r, w = os.pipe()
    devnull = os.open("/dev/null", os.O_WRONLY)
    path = os.path.join(ctl_dir, "ro.pcap")
    open(path, "w").close()
    readonly = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(control.RemoteError, match="only to a regular file, and this is a pipe"):
            control.CaptureSession(server.path, w)
        with pytest.raises(control.RemoteError, match="regular file.*device.*never wait"):
            control.CaptureSession(server.path, devnull)
        with pytest.raises(control.RemoteError, match="read-only"):
            control.CaptureSession(server.path, readonly)
        assert control.request(server.path, "info")["capturing"] is False
    finally:
        for fd in (r, w, devnull, readonly):
            os.close(fd)


def test_server_after_the_stack_stopped(make_stack, ctl_dir):
    """Requests then fail with a reason; the server itself goes on and stops cleanly."""
    from tcpfast import control

    stack = make_stack()
    path = os.path.join(ctl_dir, "ctl.sock")
    with control.ControlServer(stack, path):
        stack.stop()
        with pytest.raises(control.RemoteError, match="stopped"):
            control.request(path, "stats")
        assert control.request(path, "info")["running"] is False
    assert not os.path.exists(path)


# --- the services, in process ------------------------------------------------------------------------

def test_services_echo_discard_and_misbehaving_clients(stack):
    from tcpfast.services import Services

    with Services(stack, echo_port=7, discard_port=9, max_clients=4) as svc:
        # Echo: 1 MiB comes back as sent, with the writer and the reader apart.
        data = random.Random(6).randbytes(1 << 20)
        with kernel_socket() as k:
            k.connect((STACK_IP, 7))
            writer = helpers.start(k.sendall, data)
            assert recv_exactly(k, len(data)) == data
            writer.result(IO_TIMEOUT)
        # A client that resets mid-transfer, one that never reads its echo, one that goes away.
        rst = kernel_socket()
        rst.connect((STACK_IP, 7))
        rst.sendall(b"y" * 100_000)
        rst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rst.close()
        hog = kernel_socket()
        hog.connect((STACK_IP, 7))
        hog.setblocking(False)
        try:
            while True:
                hog.send(b"z" * 65536)
        except BlockingIOError:
            pass                        # both directions full: the service stopped reading it
        with kernel_socket() as gone:
            gone.connect((STACK_IP, 9))
        # Discard swallows: what is sent never comes back, and the count says it arrived.
        with kernel_socket() as d:
            d.connect((STACK_IP, 9))
            d.sendall(b"d" * 300_000)
            d.shutdown(socket.SHUT_WR)
            assert d.recv(10) == b""
        helpers.wait_for(lambda: svc.counters["discarded"] >= 300_000, 5, message="discarded")
        # More clients than allowed: the extra ones are closed at once; the rest still served.
        with kernel_socket() as ok:
            ok.connect((STACK_IP, 7))
            ok.sendall(b"still here")
            assert recv_exactly(ok, 10) == b"still here"
            extra = []
            try:
                for _ in range(4):
                    e = kernel_socket()
                    extra.append(e)
                    e.connect((STACK_IP, 7))
                helpers.wait_for(lambda: svc.counters["refused"] >= 2, 5, message="refused")
            finally:
                for e in extra:
                    e.close()
            ok.sendall(b"and again")
            assert recv_exactly(ok, 9) == b"and again"
        hog.close()
    assert svc.connections == 0
    assert "tcpfast-services" not in {t.name for t in threading.enumerate()}
    listening = [r for r in stack.connections() if r["state"] == "LISTEN"]
    assert not listening, "listeners closed at stop"


# --- the commands --------------------------------------------------------------------------------------

def test_up_prints_how_to_reach_it(up):
    line = up.line
    for phrase in (STACK_IP, "fd00:18::2", "port 7", "port 9", up.control,
                   f"ip netns exec {up.name} nc {STACK_IP} 7"):
        assert phrase in line, (phrase, line)
    assert up.name in netns.listed()
    assert netns.links(up.name, "tun") == [IFNAME]
    assert IFNAME not in netns.origin_links(), "the device lives in the namespace only"
    st = os.stat(up.control)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


def test_up_echo_and_discard(up):
    from tcpfast import control

    data = random.Random(7).randbytes(300_000)
    with netns.inside(up.name):
        for family, address in ((socket.AF_INET, STACK_IP), (socket.AF_INET6, "fd00:18::2")):
            with kernel_socket(family) as k:
                k.connect((address, 7))
                writer = helpers.start(k.sendall, data)
                assert recv_exactly(k, len(data)) == data
                writer.result(IO_TIMEOUT)
        before = control.request(up.control, "info")["services"]["discarded"]
        with kernel_socket() as d:
            d.connect((STACK_IP, 9))
            d.sendall(data)
            d.shutdown(socket.SHUT_WR)
            assert d.recv(10) == b"", "discard sends nothing back"
    helpers.wait_for(lambda: control.request(up.control, "info")["services"]["discarded"]
                     >= before + len(data), 5, message="discarded bytes counted")


def test_ss_and_stats(up):
    with netns.inside(up.name):
        k = kernel_socket()
        k.connect((STACK_IP, 7))
    with k:
        k.sendall(b"ss")
        assert recv_exactly(k, 2) == b"ss"
        peer = f"{KERNEL_IP}:{k.getsockname()[1]}"
        for argv in (["ss"], ["ss", "-tan"], ["ss", "-a"], ["ss", "-i"]):
            proc = tcpfast_cmd(*argv, "--control", up.control)
            assert proc.returncode == 0, proc.stderr
            lines = proc.stdout.splitlines()
            assert lines[0].split()[:3] == ["State", "Recv-Q", "Send-Q"]
            assert "Local Address:Port" in lines[0] and "Peer Address:Port" in lines[0]
            rows = [line.split() for line in lines[1:]]
            assert ["LISTEN", "0", "0", "[::]:7", "[::]:*"] in [r[:5] for r in rows], lines
            assert ["LISTEN", "0", "0", "[::]:9", "[::]:*"] in [r[:5] for r in rows], lines
            mine = [r for r in rows if r[0] == "ESTABLISHED" and r[4] in (peer, f"[::ffff:{peer.replace(':', ']:')}")]
            assert len(mine) == 1, (peer, lines)
            assert mine[0][3] in (f"{STACK_IP}:7", f"[::ffff:{STACK_IP}]:7")
            if "-i" in argv:
                assert "cwnd:" in mine[0][5] and "rtt:" in " ".join(mine[0][5:])
        listening = tcpfast_cmd("ss", "-l", "--control", up.control)
        assert listening.returncode == 0
        assert {line.split()[0] for line in listening.stdout.splitlines()[1:]} == {"LISTEN"}
        rows = json.loads(tcpfast_cmd("ss", "--json", "--control", up.control).stdout)
        assert any(r["state"] == "ESTABLISHED" and r["remote"][1] == k.getsockname()[1] for r in rows)

        stats = tcpfast_cmd("stats", "--control", up.control)
        assert stats.returncode == 0, stats.stderr
        shown = dict(line.split() for line in stats.stdout.splitlines())
        assert int(shown["segments_in"]) >= 3 and int(shown["segments_out"]) >= 3
        assert all(int(v) != 0 for v in shown.values()), "only non-zero counters by default"
        every = dict(line.split() for line in
                     tcpfast_cmd("stats", "--all", "--control", up.control).stdout.splitlines())
        assert set(shown) < set(every) and "0" in every.values()
        as_json = json.loads(tcpfast_cmd("stats", "--json", "--control", up.control).stdout)
        assert set(as_json) == set(every) and as_json["segments_in"] >= 3


def _traffic_until(stop):
    """Echo exchanges carrying MARKER until ``stop`` is set (run it inside the namespace); the
    number of exchanges."""
    n = 0
    with kernel_socket() as k:
        k.connect((STACK_IP, 7))
        while not stop.is_set():
            message = MARKER + b"%06d" % n
            k.sendall(message)
            assert recv_exactly(k, len(message)) == message
            n += 1
            time.sleep(0.02)
    return n


def _start_traffic(up):
    """A thread in ``up``'s namespace exchanging marker messages with its echo service."""
    stop = threading.Event()

    def body():
        with netns.inside(up.name):
            return _traffic_until(stop)

    return stop, helpers.start(body, name="traffic")


def test_capture_for_a_duration(up, ctl_dir):
    out = os.path.join(ctl_dir, "duration.pcap")
    stop, traffic = _start_traffic(up)
    try:
        proc = tcpfast_cmd("capture", "-w", out, "--duration", "1.5", "--control", up.control)
    finally:
        stop.set()
    assert traffic.result(IO_TIMEOUT) > 0
    assert proc.returncode == 0, proc.stderr
    written = int(re.fullmatch(r"(\d+) packets? written to (.*)", proc.stdout.strip()).group(1))
    linktype, packets = read_pcap(out)
    assert written == len(packets) > 0
    assert any(MARKER in p for p in packets), "the test's own packets are in the capture"
    assert "Traceback" not in proc.stderr


def test_capture_a_count(up, ctl_dir):
    out = os.path.join(ctl_dir, "count.pcap")
    stop, traffic = _start_traffic(up)
    try:
        proc = tcpfast_cmd("capture", "-w", out, "-c", "6", "--control", up.control)
    finally:
        stop.set()
    traffic.result(IO_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"6 packets written to {out}"
    _, packets = read_pcap(out)
    assert len(packets) == 6
    assert any(MARKER in p for p in packets)


def test_capture_ends_on_sigint(up, ctl_dir):
    out = os.path.join(ctl_dir, "sigint.pcap")
    stop, traffic = _start_traffic(up)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "tcpfast", "capture", "-w", out,
                                 "--control", up.control], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_child_env(), cwd="/")
        try:
            helpers.wait_for(lambda: os.path.exists(out) and os.path.getsize(out) >= 24, 20,
                             message="capture started")
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=CMD_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    finally:
        stop.set()
    traffic.result(IO_TIMEOUT)
    assert proc.returncode == 0, stderr
    _, packets = read_pcap(out)
    assert re.fullmatch(rf"{len(packets)} packets? written to {re.escape(out)}", stdout.strip())
    assert any(MARKER in p for p in packets)
    assert "Traceback" not in stderr


def test_capture_refuses_a_fifo(up, ctl_dir):
    fifo = os.path.join(ctl_dir, "fifo")
    os.mkfifo(fifo)
    proc = tcpfast_cmd("capture", "-w", fifo, "--duration", "1", "--control", up.control,
                       timeout=CMD_TIMEOUT)
    assert_clean_error(proc, 1, "not a regular file")


def test_commands_without_a_stack(ctl_dir):
    missing = os.path.join(ctl_dir, "none.sock")
    for argv in (["ss"], ["stats"], ["capture", "-w", os.path.join(ctl_dir, "x.pcap")]):
        proc = tcpfast_cmd(*argv, "--control", missing)
        assert_clean_error(proc, 1, f"no tcpfast stack is serving {missing}", "tcpfast up")


def test_up_refuses_an_existing_namespace_and_a_served_path(up, ns):
    proc = tcpfast_cmd("up", "--netns", ns, "--control", up.control + ".other")
    assert_clean_error(proc, 1, f"network namespace {ns} already exists")
    assert ns in netns.listed(), "the existing namespace is left alone"
    name = f"tcpf-upx{os.getpid()}"
    proc = tcpfast_cmd("up", "--netns", name, "--control", up.control)
    assert_clean_error(proc, 1, "already serves")
    assert name not in netns.listed()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_up_stops_cleanly_on_a_signal(ns, ctl_dir, sig):
    from tcpfast import control

    control_path = os.path.join(ctl_dir, "sig.sock")
    runner = Up(f"tcpf-ups{os.getpid()}", control_path, "--echo-port", "2007",
                "--discard-port", "0")
    try:
        assert "port 2007" in runner.line and "discard" not in runner.line
        with netns.inside(runner.name):
            k = kernel_socket()
            k.connect((STACK_IP, 2007))
        with k:
            k.sendall(b"bye")
            assert recv_exactly(k, 3) == b"bye"
            assert control.request(control_path, "info")["services"]["connections"] == 1
            started = time.monotonic()
            status, stderr = runner.interrupt(sig)
            assert status == 0, stderr
            assert "Traceback" not in stderr and not stderr.strip(), stderr
            assert time.monotonic() - started < UP_TIMEOUT
        assert runner.name not in netns.listed(), "the namespace is deleted"
        assert not os.path.exists(control_path), "the control socket is removed"
        with pytest.raises(control.NoStackError):
            control.request(control_path, "info")
    finally:
        runner.stop()


def test_up_without_privilege(monkeypatch, capsys, ctl_dir):
    """Without the privilege: one line on stderr, exit status 2, nothing created."""
    from tcpfast import cli
    from tcpfast.cli import up as up_cmd

    control_path = os.path.join(ctl_dir, "np.sock")
    monkeypatch.setattr(up_cmd, "check_privilege",
                        lambda netns_wanted: "needs root (CAP_NET_ADMIN) to open a TUN device")
    assert cli.main(["up", "--netns", "tcpf-never", "--control", control_path]) == 2
    err = capsys.readouterr().err
    assert err == "tcpfast up: needs root (CAP_NET_ADMIN) to open a TUN device\n"
    assert not os.path.exists(control_path) and "tcpf-never" not in netns.listed()

    # The check passes but opening the device is refused (EPERM): also status 2, one line.
    from tcpfast import Stack
    from tcpfast.device import DeviceError

    def refuse(self):
        raise DeviceError(errno.EPERM, "cannot open TUN device 'tcpf0': not permitted")

    monkeypatch.setattr(up_cmd, "check_privilege", lambda netns_wanted: None)
    monkeypatch.setattr(Stack, "start", refuse)
    assert cli.main(["up", "--control", control_path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tcpfast up: cannot bring the stack up:") and err.count("\n") == 1
    assert not os.path.exists(control_path)


def _skip_unless_ci(reason):
    """CI makes its environment readable by other users (.ci/run): there this test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"must run under CI, but cannot: {reason}", pytrace=False)
    pytest.skip(reason)


def test_up_as_an_unprivileged_user(ctl_dir):
    """The real thing, as user nobody: the privilege check speaks before anything is touched."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    argv = [sys.executable, "-m", "tcpfast", "up", "--netns", "tcpf-never", "--control",
            os.path.join(ctl_dir, "nobody.sock")]
    setpriv = shutil.which("setpriv")
    try:
        if setpriv:     # changes user after resolving the interpreter (which may be under /root)
            proc = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                                   *argv], capture_output=True, text=True, timeout=CMD_TIMEOUT,
                                  env=_child_env(), cwd="/")
        else:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=CMD_TIMEOUT,
                                  env=_child_env(), user=65534, group=65534, extra_groups=[],
                                  cwd="/")
    except PermissionError as exc:
        _skip_unless_ci(f"user nobody cannot run {sys.executable}: {exc}")
    if "No module named" in proc.stderr or "Permission denied" in proc.stderr:
        _skip_unless_ci(f"user nobody cannot import this tcpfast: {proc.stderr.strip()[-200:]}")
    assert_clean_error(proc, 2, "needs root (CAP_NET_ADMIN)")
    assert "tcpf-never" not in netns.listed()
