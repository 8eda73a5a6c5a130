"""The workloads of ``tcpfast bench``, written once against the API of ``socket.socket``.

Every workload has two ends. The *local* end is the one being measured: it runs on
``tcpfast.socket`` in one case and on the kernel's ``socket.socket`` in the other, and it is
always the client (it connects). The *peer* end is always a kernel socket in another process; it
listens. Only the socket factory differs between the two cases: the code below never asks which
kind of socket it holds.

A workload is a :class:`Workload` with ``serve`` (the peer: given its listening socket) and
``run`` (the local end: given a factory and the peer's address); each returns a dict of plain
JSON values. ``metrics`` turns the two dicts into the figures the table shows. Every loop is
bounded by a deadline and every blocking call by a timeout, so a stuck stack fails the case
instead of hanging the run.

Times come from ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process on the
machine), so the two ends' time stamps can be compared.
"""
from __future__ import annotations

import array
import errno
import hashlib
import math
import os
import random
import resource
import selectors
import socket
import ssl
import time
from typing import Any, Callable, Dict, List, Tuple

Factory = Callable[[], Any]
Address = Tuple[str, int]
Params = Dict[str, Any]
Result = Dict[str, Any]

KIB = 1024
GBIT = 1e9
MESSAGE = 64                      # the request and response size of rr and crr
STOP = b"\xff" * MESSAGE          # crr: the request that ends the peer's accept loop


# --- small helpers --------------------------------------------------------------------------------

def payload(size: int, seed: int = 4) -> memoryview:
    """A buffer of random bytes that senders slice; made once, so sending allocates nothing."""
    return memoryview(bytearray(random.Random(seed).randbytes(size)))


def recv_exactly(sock: Any, view: memoryview) -> bool:
    """Fill ``view`` from ``sock``; False on end of stream before the first byte, an error after."""
    got = 0
    need = len(view)
    while got < need:
        n = sock.recv_into(view[got:])
        if not n:
            if got == 0:
                return False
            raise ConnectionError(f"end of stream after {got} of {need} bytes")
        got += n
    return True


def wait_eof(sock: Any) -> None:
    """Read until the peer's FIN; a peer that sends data here breaks the workload's protocol."""
    tail = bytearray(64)
    while sock.recv_into(tail):
        raise RuntimeError("the other end sent data where only its FIN was expected")


def rss_bytes() -> int:
    """Resident set size of this process (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def kernel_slab_bytes() -> int:
    """The kernel's slab memory, machine-wide (``Slab:`` of ``/proc/meminfo``): socket, TCP and
    file structures live there."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds() -> float:
    """User plus system CPU time of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(sorted_values: List[float], q: float) -> float:
    """The ``q`` quantile (0..1) of an ascending list, nearest rank."""
    if not sorted_values:
        raise ValueError("no samples")
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def jain_fairness(values: List[int]) -> float:
    """Jain's fairness index: 1.0 when every stream got the same, 1/n when one got everything."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return (total * total) / (len(values) * squares) if squares else 0.0


def connect(factory: Factory, addr: Address, timeout: float, nodelay: bool = False) -> Any:
    sock = factory()
    try:
        sock.settimeout(timeout)
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect(addr)
    except BaseException:
        sock.close()
        raise
    return sock


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes * 8 / seconds / GBIT if seconds > 0 else 0.0


# --- bulk: one stream, one direction ----------------------------------------------------------

def send_stream(sock: Any, duration: float, chunk: int, verify: bool) -> Result:
    """Send ``chunk``-byte slices of one random buffer for ``duration`` seconds, half-close, and
    wait for the receiver's FIN (so every byte sent was also read)."""
    data = payload(chunk + 64 * KIB)
    slices = [data[(i * 1021) % (64 * KIB):(i * 1021) % (64 * KIB) + chunk] for i in range(64)]
    hasher = hashlib.sha256() if verify else None
    sendall = sock.sendall
    now = time.monotonic
    sent = 0
    i = 0
    t0 = now()
    t_end = t0 + duration
    while now() < t_end:
        s = slices[i & 63]
        sendall(s)
        if hasher is not None:
            hasher.update(s)
        sent += chunk
        i += 1
    if isinstance(sock, ssl.SSLSocket):
        sock.unwrap()      # close_notify; returns with the receiver's, sent after its last read
    else:
        sock.shutdown(socket.SHUT_WR)
        wait_eof(sock)
    return {"bytes": sent, "t0": t0, "t1": now(),
            "sha256": hasher.hexdigest() if hasher is not None else None}


def recv_stream(sock: Any, chunk: int, deadline: float, verify: bool) -> Result:
    """Read until end of stream, counting (and hashing with ``verify``); bounded by
    ``deadline``. Closes the socket, which tells the sender everything arrived."""
    buf = memoryview(bytearray(chunk))
    hasher = hashlib.sha256() if verify else None
    recv_into = sock.recv_into
    now = time.monotonic
    total = 0
    t0 = now()
    check = t0 + 0.25
    while True:
        n = recv_into(buf)
        if not n:
            break
        total += n
        if hasher is not None:
            hasher.update(buf[:n])
        if total >= check:                     # cheap: look at the clock every few MB only
            check = total + (8 << 20)
            if now() > deadline:
                raise TimeoutError(f"still receiving at the deadline ({total} bytes)")
    t1 = now()
    if isinstance(sock, ssl.SSLSocket):
        sock.unwrap()      # the sender's close_notify came: answer it (its unwrap waits for it)
    sock.close()
    return {"bytes": total, "t0": t0, "t1": t1,
            "sha256": hasher.hexdigest() if hasher is not None else None}


class Workload:
    """One workload: ``serve`` is the peer's end, ``run`` the measured end. ``uses_loss``: the
    eBPF loss on the peer's device (``loss_*``); ``wan``: the WAN path through the impairer,
    with ``wan_lossy`` adding its random loss (``wan_*``)."""

    name = ""
    title = ""
    uses_loss = False
    wan = False
    wan_lossy = False
    backlog = 16

    def serve(self, listener: Any, p: Params) -> Result:
        raise NotImplementedError

    def run(self, factory: Factory, addr: Address, p: Params) -> Result:
        raise NotImplementedError

    def metrics(self, local: Result, peer: Result, p: Params) -> List[Dict[str, Any]]:
        """Rows of ``{"metric", "unit", "value", "better"}`` ("higher" or "lower")."""
        raise NotImplementedError

    def timeout(self, p: Params) -> float:
        """How long the orchestrator waits for ``run`` before it gives up on the case."""
        return p["duration"] + p["io_timeout"] + 30


TLS_NAME = "tcpfast.test"


def tls_context(server: bool) -> ssl.SSLContext:
    """The TLS contexts of the tls_* workloads: a self-signed test certificate shipped with the
    benchmark (it protects nothing), verified by the client as its own CA. The same defaults
    (TLS 1.3, the same cipher) for both stacks."""
    here = os.path.dirname(os.path.abspath(__file__))
    cert = os.path.join(here, "tls_cert.pem")
    if server:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, os.path.join(here, "tls_key.pem"))
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cert)
    return ctx


class Bulk(Workload):
    """Bulk transfer on one connection, ``out`` (the local end sends) or ``in`` (it receives).
    Throughput is the receiver's byte count over the time from the first end's start to the
    receiver's end of stream."""

    def __init__(self, name: str, direction: str, loss: bool = False, wan: bool = False,
                 wan_lossy: bool = False, tls: bool = False) -> None:
        self.name = name
        self.direction = direction
        self.tls = tls
        self.uses_loss = loss
        self.wan = wan
        self.wan_lossy = wan_lossy
        what = "send" if direction == "out" else "receive"
        self.title = f"bulk {what}" + (" under loss" if loss or wan_lossy else "") + \
            (" over the WAN path" if wan else "") + (" through TLS (ssl.SSLContext)" if tls else "")

    def _end(self, sock: Any, sending: bool, p: Params) -> Result:
        sock.settimeout(p["io_timeout"])
        verify = bool(p.get("verify") or self.uses_loss or self.wan)
        if sending:
            return send_stream(sock, p["duration"], p["chunk"], verify)
        return recv_stream(sock, p["chunk"], time.monotonic() + p["duration"] + p["io_timeout"],
                           verify)

    def serve(self, listener: Any, p: Params) -> Result:
        sock, _ = listener.accept()
        if self.tls:
            sock.settimeout(p["io_timeout"])
            sock = tls_context(server=True).wrap_socket(sock, server_side=True)
        with sock:
            return self._end(sock, self.direction == "in", p)

    def run(self, factory: Factory, addr: Address, p: Params) -> Result:
        with connect(factory, addr, p["io_timeout"]) as sock:
            if self.tls:
                sock = tls_context(server=False).wrap_socket(sock, server_hostname=TLS_NAME)
            with sock:
                return self._end(sock, self.direction == "out", p)

    def metrics(self, local: Result, peer: Result, p: Params) -> List[Dict[str, Any]]:
        sender, receiver = (local, peer) if self.direction == "out" else (peer, local)
        if sender["bytes"] != receiver["bytes"]:
            raise RuntimeError(f"sent {sender['bytes']} bytes but {receiver['bytes']} arrived")
        if sender.get("sha256") != receiver.get("sha256"):
            raise RuntimeError("the SHA-256 of the bytes received differs from the bytes sent")
        seconds = receiver["t1"] - min(sender["t0"], receiver["t0"])
        return [{"metric": "throughput", "unit": "Gbit/s", "better": "higher",
                 "value": gbps(receiver["bytes"], seconds), "bytes": receiver["bytes"],
                 "seconds": seconds}]


class RequestResponse(Workload):
    """64-byte request, 64-byte response, one at a time on one connection with TCP_NODELAY:
    the latency of a round trip through both stacks, p50 and p99 over every round trip made in
    ``duration`` seconds (after ``warmup`` unmeasured ones)."""

    name = "rr"
    title = "request/response 64 B"

    def serve(self, listener: Any, p: Params) -> Result:
        sock, _ = listener.accept()
        with sock:
            sock.settimeout(p["io_timeout"])
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            view = memoryview(bytearray(MESSAGE))
            answers = 0
            while recv_exactly(sock, view):
                sock.sendall(view)
                answers += 1
        return {"answers": answers}

    def run(self, factory: Factory, addr: Address, p: Params) -> Result:
        request = payload(MESSAGE, seed=7)
        view = memoryview(bytearray(MESSAGE))
        limit = int(p.get("rr_max", 1_000_000))
        samples = array.array("q")
        clock = time.perf_counter_ns
        with connect(factory, addr, p["io_timeout"], nodelay=True) as sock:
            for _ in range(int(p.get("warmup", 200))):
                sock.sendall(request)
                recv_exactly(sock, view)
            t_end = time.monotonic() + p["duration"]
            while len(samples) < limit:
                t = clock()
                sock.sendall(request)
                if not recv_exactly(sock, view):
                    raise ConnectionError("the peer closed during the exchange")
                samples.append(clock() - t)
                if (len(samples) & 63) == 0 and time.monotonic() > t_end:
                    break
            if bytes(view) != bytes(request):
                raise RuntimeError("the response differs from the request")
            sock.shutdown(socket.SHUT_WR)
            wait_eof(sock)
        lat = sorted(samples)
        return {"round_trips": len(lat), "p50_us": percentile(lat, 0.50) / 1e3,
                "p99_us": percentile(lat, 0.99) / 1e3, "mean_us": sum(lat) / len(lat) / 1e3,
                "min_us": lat[0] / 1e3, "max_us": lat[-1] / 1e3}

    def metrics(self, local: Result, peer: Result, p: Params) -> List[Dict[str, Any]]:
        if peer["answers"] < local["round_trips"]:
            raise RuntimeError(f"{local['round_trips']} round trips measured but the peer "
                               f"answered {peer['answers']}")
        n = local["round_trips"]
        return [{"metric": "p50 latency", "unit": "µs", "better": "lower",
                 "value": local["p50_us"], "samples": n},
                {"metric": "p99 latency", "unit": "µs", "better": "lower",
                 "value": local["p99_us"], "samples": n}]


class ConnectionRate(Workload):
    """Connections per second, one after another: connect, a 64-byte request, the 64-byte
    response, close. The peer closes first (as an HTTP/1.0 server does), so TIME-WAIT is the
    peer's and the local end's ports come back at once."""

    name = "crr"
    title = "connect/request/response/close"
    backlog = 128

    def serve(self, listener: Any, p: Params) -> Result:
        listener.settimeout(p["io_timeout"])
        view = memoryview(bytearray(MESSAGE))
        served = 0
        deadline = time.monotonic() + p["duration"] + p["io_timeout"] + 30
        while time.monotonic() < deadline:
            sock, _ = listener.accept()
            with sock:
                sock.settimeout(p["io_timeout"])
                if not recv_exactly(sock, view):
                    continue
                if view == STOP:
                    return {"served": served}
                sock.sendall(view)
                served += 1
        raise TimeoutError("the stop request never came")

    def run(self, factory: Factory, addr: Address, p: Params) -> Result:
        request = payload(MESSAGE, seed=9)
        view = memoryview(bytearray(MESSAGE))
        done = 0
        t0 = time.monotonic()
        t_end = t0 + p["duration"]
        while True:
            with connect(factory, addr, p["io_timeout"]) as sock:
                sock.sendall(request)
                if not recv_exactly(sock, view):
                    raise ConnectionError("the peer closed without answering")
                wait_eof(sock)
            done += 1
            t1 = time.monotonic()
            if t1 > t_end:
                break
        with connect(factory, addr, p["io_timeout"]) as sock:
            sock.sendall(STOP)
        return {"connections": done, "seconds": t1 - t0}

    def metrics(self, local: Result, peer: Result, p: Params) -> List[Dict[str, Any]]:
        if peer["served"] != local["connections"]:
            raise RuntimeError(f"{local['connections']} connections made, peer served "
                               f"{peer['served']}")
        return [{"metric": "connection rate", "unit": "conn/s", "better": "higher",
                 "value": local["connections"] / local["seconds"],
                 "connections": local["connections"]}]


class Streams(Workload):
    """``streams`` connections at once (100 by default), the peer sending on all of them and the
    local end reading all of them with one selector in one thread (non-blocking sockets): the
    aggregate throughput and Jain's fairness index over the bytes each stream carried."""

    name = "streams"
    title = "concurrent streams"
    backlog = 256

    def serve(self, listener: Any, p: Params) -> Result:
        n = int(p["streams"])
        listener.settimeout(p["io_timeout"])
        socks = []
        try:
            for _ in range(n):
                s, _ = listener.accept()
                s.setblocking(False)
                socks.append(s)
            chunk = payload(64 * KIB)
            sel = selectors.DefaultSelector()
            for s in socks:
                sel.register(s, selectors.EVENT_WRITE)
            sent = 0
            t0 = time.monotonic()
            t_end = t0 + p["duration"]
            while time.monotonic() < t_end:
                for key, _ in sel.select(0.1):
                    try:
                        sent += key.fileobj.send(chunk)
                    except BlockingIOError:
                        pass
            sel.close()
            for s in socks:
                s.setblocking(True)
                s.settimeout(p["io_timeout"])
                s.shutdown(socket.SHUT_WR)
            for s in socks:
                wait_eof(s)
            return {"bytes": sent, "t0": t0}
        finally:
            for s in socks:
                s.close()

    def run(self, factory: Factory, addr: Address, p: Params) -> Result:
        n = int(p["streams"])
        socks = []
        try:
            for _ in range(n):
                socks.append(connect(factory, addr, p["io_timeout"]))
            counts = [0] * n
            sel = selectors.DefaultSelector()
            for i, s in enumerate(socks):
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, i)
            buf = memoryview(bytearray(256 * KIB))
            open_streams = n
            deadline = time.monotonic() + p["duration"] + p["io_timeout"] + 10
            while open_streams:
                events = sel.select(1.0)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{open_streams} streams still open at the deadline")
                for key, _ in events:
                    try:
                        got = key.fileobj.recv_into(buf)
                    except BlockingIOError:
                        continue
                    if got:
                        counts[key.data] += got
                    else:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                        open_streams -= 1
            t1 = time.monotonic()
            sel.close()
            return {"bytes": sum(counts), "per_stream": counts, "t1": t1}
        finally:
            for s in socks:
                s.close()

    def metrics(self, local: Result, peer: Result, p: Params) -> List[Dict[str, Any]]:
        if local["bytes"] != peer["bytes"]:
            raise RuntimeError(f"peer sent {peer['bytes']} bytes but {local['bytes']} arrived")
        seconds = local["t1"] - peer["t0"]
        per = local["per_stream"]
        return [{"metric": "aggregate throughput", "unit": "Gbit/s", "better": "higher",
                 "value": gbps(local["bytes"], seconds), "streams": len(per)},
                {"metric": "fairness (Jain)", "unit": "", "better": "higher",
                 "value": jain_fairness(per), "min_stream_bytes": min(per),
                 "max_stream_bytes": max(per)}]


class Idle(Workload):
    """``connections`` idle connections opened and held: the resident memory this process grew
    by per connection (the stack's whole cost for tcpfast; only the Python objects for the
    kernel, whose sockets live in kernel memory, so the kernel's slab growth is shown too,
    machine-wide and so both ends'). After ``hold`` seconds every connection must still
    answer one byte."""

    name = "idle"
    title = "idle connections"
    backlog = 1024

    def timeout(self, p: Params) -> float:
        return p["hold"] + p["io_timeout"] + 60 + p["connections"] / 200

    def serve(self, listener: Any, p: Params) -> Result:
        n = int(p["connections"])
        listener.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, None)
        accepted = closed = echoed = 0
        buf = bytearray(16)
        deadline = time.monotonic() + self.timeout(p)
        last_close = 0.0
        try:
            # Until all n are closed; or, when the local end could open fewer (its descriptor
            # limit), once everything accepted has been closed and nothing came for a second.
            while closed < n and not (closed and closed == accepted and
                                      time.monotonic() - last_close > 1.0):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{accepted} accepted, {closed} closed at the deadline")
                for key, _ in sel.select(0.2):
                    if key.data is None:
                        try:
                            s, _ = listener.accept()
                        except BlockingIOError:
                            continue
                        s.setblocking(False)
                        sel.register(s, selectors.EVENT_READ, "c")
                        accepted += 1
                        continue
                    try:
                        got = key.fileobj.recv_into(buf)
                    except BlockingIOError:
                        continue
                    except ConnectionError:
                        got = 0
                    if got:
                        key.fileobj.send(buf[:got])   # one byte into an empty buffer: never short
                        echoed += 1
                    else:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                        closed += 1
                        last_close = time.monotonic()
        finally:
            for key in list(sel.get_map().values()):
                if key.data is not None:
                    key.fileobj.close()
            sel.close()
        return {"accepted": accepted, "echoed": echoed}

    def run(self, factory: Factory, addr: Address, p: Params) -> Result:
        import gc

        n = int(p["connections"])
        socks = []
        try:
            gc.collect()
            rss0, slab0 = rss_bytes(), kernel_slab_bytes()
            t0 = time.monotonic()
            fd_limit = None
            for _ in range(n):
                try:
                    socks.append(connect(factory, addr, p["io_timeout"]))
                except OSError as exc:
                    if exc.errno not in (errno.EMFILE, errno.ENFILE):
                        raise
                    # Out of descriptors: report how many this process could hold, and why.
                    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                    break
            t_open = time.monotonic() - t0
            gc.collect()
            rss1, slab1 = rss_bytes(), kernel_slab_bytes()
            time.sleep(p["hold"])
            for s in socks:
                s.sendall(b"!")
            one = bytearray(1)
            alive = 0
            for s in socks:
                if s.recv_into(one) == 1 and one == b"!":
                    alive += 1
        finally:
            for s in socks:
                s.close()
        return {"connections": len(socks), "requested": n, "fd_limit": fd_limit,
                "alive": alive, "open_seconds": t_open,
                "rss_growth": rss1 - rss0,
                "slab_growth": slab1 - slab0}

    def metrics(self, local: Result, peer: Result, p: Params) -> List[Dict[str, Any]]:
        n = local["connections"]
        if n == 0:
            raise RuntimeError("no connection could be opened")
        if local["alive"] != n:
            raise RuntimeError(f"only {local['alive']} of {n} idle connections still answered")
        held = {"metric": "connections held", "unit": "", "better": "higher", "value": n,
                "ratio_meaningless": True}
        if local.get("fd_limit"):
            held["note"] = (f"{local['requested']} asked; the process's descriptor limit "
                            f"(RLIMIT_NOFILE {local['fd_limit']}) stopped it at {n}")
        return [held,
                {"metric": "RSS growth per connection", "unit": "bytes", "better": "lower",
                 "value": local["rss_growth"] / n, "ratio_meaningless": True},
                {"metric": "kernel slab growth per connection", "unit": "bytes",
                 "better": "lower", "value": local["slab_growth"] / n, "ratio_meaningless": True},
                {"metric": "open rate", "unit": "conn/s", "better": "higher",
                 "value": n / local["open_seconds"] if local["open_seconds"] > 0 else 0.0}]


WORKLOADS: Dict[str, Workload] = {w.name: w for w in (
    Bulk("bulk_send", "out"),
    Bulk("bulk_recv", "in"),
    RequestResponse(),
    ConnectionRate(),
    Streams(),
    Bulk("loss_send", "out", loss=True),
    Bulk("loss_recv", "in", loss=True),
    Idle(),
    Bulk("wan_bulk_send", "out", wan=True),
    Bulk("wan_bulk_recv", "in", wan=True),
    Bulk("wan_loss_send", "out", wan=True, wan_lossy=True),
    Bulk("wan_loss_recv", "in", wan=True, wan_lossy=True),
    Bulk("tls_send", "out", tls=True),
    Bulk("tls_recv", "in", tls=True),
)}

# Names that stand for both directions of a workload.
GROUPS: Dict[str, List[str]] = {
    "wan_bulk": ["wan_bulk_send", "wan_bulk_recv"],
    "wan_loss": ["wan_loss_send", "wan_loss_recv"],
    "loss": ["loss_send", "loss_recv"],
    "tls": ["tls_send", "tls_recv"],
}


def get(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; choose from "
                         f"{', '.join(list(WORKLOADS) + list(GROUPS))}") from None


def expand(names: List[str]) -> List[str]:
    """The workloads ``names`` stand for (a group gives both directions), each once, in order;
    an unknown name raises ValueError."""
    out: List[str] = []
    for n in names:
        for m in GROUPS.get(n, [n]):
            get(m)
            if m not in out:
                out.append(m)
    return out

