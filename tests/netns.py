"""Helpers for the tests that run the stack over TUN with the Linux kernel as its peer.

Everything these tests create (the stack's TUN device, the relay's TUN device, addresses, routes,
qdiscs) lives inside one private network namespace that the test run creates and removes. The
namespace holds only ``lo`` and what the tests add, IP forwarding is off in it, so no packet can
leave it: a packet sent to an address that is not in it goes nowhere.

Linux network namespaces belong to threads: :func:`inside` moves the calling thread into the
namespace and back; sockets, TUN devices and threads created while inside belong to it.
Processes that need the namespace run through ``ip netns exec`` (:func:`run`).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import heapq
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Callable, Iterator, List, Optional

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4         # sll_pkttype of a packet the kernel sends (here: towards the stack)

_libc = ctypes.CDLL(None, use_errno=True)
# The namespace this process started in (the "machine's own" as far as the tests are concerned).
_ORIGIN_FD = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def unavailable() -> Optional[str]:
    """Why the namespace machinery cannot be had here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) for network namespaces and TUN devices"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    for module in ("pytun", "pyroute2"):
        try:
            __import__(module)
        except ImportError as exc:
            return f"{module} is not importable: {exc}"
    return None


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


def _run_in_ns_fd(fd: int, fn: Callable[[], object]) -> object:
    """Call fn in a new thread that first joins the namespace behind fd."""
    box: dict = {}

    def body() -> None:
        try:
            _setns(fd)
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():
        raise TimeoutError("helper thread in a namespace did not finish in 30 s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def create(name: str) -> None:
    """Create the named namespace, bring its ``lo`` up, turn forwarding off (also for IPv6)."""
    import pyroute2.netns

    pyroute2.netns.create(name)
    try:
        run(name, "ip", "link", "set", "lo", "up")
        with inside(name):
            for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
                with open(path, "w") as f:
                    f.write("0")
                with open(path) as f:
                    assert f.read().strip() == "0", path
    except BaseException:
        remove(name)
        raise


def pids(name: str) -> List[int]:
    """Processes in the namespace (subprocesses the tests started), not counting this one."""
    try:
        ns_ino = os.stat(os.path.join(NETNS_DIR, name)).st_ino
    except FileNotFoundError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == ns_ino:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def remove(name: str) -> None:
    """Kill what still runs in the namespace (by pid) and remove it."""
    import pyroute2.netns

    for pid in pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if os.path.exists(os.path.join(NETNS_DIR, name)):
        pyroute2.netns.remove(name)


def remove_stale(prefix: str) -> None:
    """Remove namespaces ``<prefix><pid>`` left by earlier runs that were killed (their pid is gone)."""
    for entry in os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else ():
        pid = entry[len(prefix):]
        if entry.startswith(prefix) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            remove(entry)


def listed(name: str) -> bool:
    """Whether ``ip netns list`` still shows the namespace."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return any(line.split()[0] == name for line in out.splitlines() if line.strip())


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Move the calling thread into the namespace for the duration of the block."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def run(name: str, *argv: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command inside the namespace (``ip netns exec``), bounded in time."""
    return subprocess.run(["ip", "netns", "exec", name, *argv], capture_output=True, text=True,
                          timeout=timeout, check=check)


def links(name: str, kind: Optional[str] = None) -> List[str]:
    """Names of the links in the namespace, optionally of one kind (``tun``, ``ifb``...)."""
    argv = ["ip", "-n", name, "-o", "link", "show"] + (["type", kind] if kind else [])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]


def origin_links(kind: Optional[str] = None) -> List[str]:
    """Names of the links in the namespace this process started in (``ip -o link show``)."""
    argv = ["ip", "-o", "link", "show"] + (["type", kind] if kind else [])

    def list_links() -> List[str]:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout
        return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]

    return _run_in_ns_fd(_ORIGIN_FD, list_links)  # type: ignore[return-value]


def qdisc_available(name: str, kind: str) -> Optional[str]:
    """None when the kernel has the qdisc ``kind``, else tc's error (tried on a dummy ifb device)."""
    probe = "tcpfprobe0"
    made = run(name, "ip", "link", "add", probe, "type", "ifb", check=False)
    if made.returncode != 0:
        return f"cannot create an ifb device: {made.stderr.strip()}"
    try:
        r = run(name, "tc", "qdisc", "add", "dev", probe, "root", kind, check=False)
        return None if r.returncode == 0 else (r.stderr.strip() or f"tc exited {r.returncode}")
    finally:
        run(name, "ip", "link", "del", probe, check=False)


# --- threads, waiting, memory --------------------------------------------------------------------

class Worker(threading.Thread):
    """A daemon thread that keeps its function's result or exception for :meth:`result`."""

    def __init__(self, fn: Callable, *args, name: Optional[str] = None, **kwargs) -> None:
        super().__init__(name=name or getattr(fn, "__name__", "worker"), daemon=True)
        self._call = (fn, args, kwargs)
        self._value: object = None
        self._error: Optional[BaseException] = None

    def run(self) -> None:
        fn, args, kwargs = self._call
        try:
            self._value = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in result()
            self._error = exc

    def result(self, timeout: float) -> object:
        """Wait at most ``timeout`` seconds; re-raise the thread's exception; return its value."""
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"thread {self.name!r} still running after {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value


def start(fn: Callable, *args, **kwargs) -> Worker:
    w = Worker(fn, *args, **kwargs)
    w.start()
    return w


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.02,
             message: str = "") -> object:
    """Poll until predicate() is truthy and return its value; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true after {timeout} s: {message or predicate}")
        time.sleep(interval)


def rss_bytes() -> int:
    """The resident set size of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# --- packets from the kernel side ----------------------------------------------------------------

class Injector:
    """Writes raw IP packets to the stack through its TUN device from the kernel side.

    An ``AF_PACKET`` socket on the device hands the bytes to the device's transmit path as they
    are, so the stack reads exactly them: unlike a raw IP socket with ``IP_HDRINCL``, which fills
    in the IPv4 checksum and total length, it can send any malformation. Create it inside the
    namespace.
    """

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)

    def send(self, packet: bytes) -> None:
        proto = ETH_P_IPV6 if packet[:1] and packet[0] >> 4 == 6 else ETH_P_IP
        self.sock.sendto(packet, (self.ifname, proto))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Injector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sniffer:
    """Records every packet on a device in both directions (``AF_PACKET``); create it inside the
    namespace. ``packets`` holds ``(monotonic time, towards_stack, bytes)``."""

    def __init__(self, ifname: str, limit: int = 200_000) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.bind((ifname, ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.limit = limit
        self.packets: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sniffer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set() and len(self.packets) < self.limit:
            try:
                data, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.packets.append((time.monotonic(), addr[2] == PACKET_OUTGOING, data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> "Sniffer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- impairment in both directions without netem -------------------------------------------------

class Impairer:
    """A small netem in user space, in both directions between the kernel and the stack.

    ``tc`` redirects what the stack writes into its device (``ingress`` of ``dev``) to a second TUN
    device read here; a /32 route sends what the kernel addresses to the stack through that same
    device. Each packet read is dropped (``loss``), doubled (``duplicate``), held for ``delay``
    seconds, or, with probability ``reorder`` (when there is a delay), sent at once past the
    held ones, as netem's ``reorder`` does. Released packets go on: towards the stack through an
    ``AF_PACKET`` socket on ``dev``, towards the kernel as input of the relay device. At most
    ``limit`` packets are held (netem's default is 1000); more are dropped.

    Use it as a context manager from a thread inside namespace ``ns``, after the stack is up.
    Counters per direction (``"to_stack"``, ``"to_kernel"``): ``passed``, ``dropped``,
    ``duplicated``, ``reordered``.
    """

    def __init__(self, ns: str, dev: str, stack_ip: str, kernel_ip: str, *, loss: float,
                 duplicate: float, reorder: float, delay: float, seed: int = 1, limit: int = 1000,
                 relay_dev: str = "tcpfr0", max_seconds: float = 1800) -> None:
        self.ns, self.dev, self.relay_dev = ns, dev, relay_dev
        self.stack_ip, self.kernel_ip = stack_ip, kernel_ip
        self._stack_ip_bytes = socket.inet_aton(stack_ip)
        self.loss, self.duplicate, self.reorder, self.delay = loss, duplicate, reorder, delay
        self.limit, self.max_seconds = limit, max_seconds
        self._rng = random.Random(seed)
        self.counts = {d: dict(passed=0, dropped=0, duplicated=0, reordered=0)
                       for d in ("to_stack", "to_kernel")}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._undo: list = []

    def __enter__(self) -> "Impairer":
        import pytun

        try:
            self.tun = pytun.TunTapDevice(name=self.relay_dev, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
            self._undo.append(self.tun.close)
            self.tun.mtu = 65535
            self.tun.up()
            os.set_blocking(self.tun.fileno(), False)
            for iface in ("all", "default", self.dev, self.relay_dev):
                with open(f"/proc/sys/net/ipv4/conf/{iface}/rp_filter", "w") as f:
                    f.write("0")
            run(self.ns, "ip", "route", "add", f"{self.stack_ip}/32", "dev", self.relay_dev,
                "src", self.kernel_ip)
            run(self.ns, "tc", "qdisc", "add", "dev", self.dev, "ingress")
            self._undo.append(lambda: run(self.ns, "tc", "qdisc", "del", "dev", self.dev, "ingress",
                                          check=False))
            run(self.ns, "tc", "filter", "add", "dev", self.dev, "parent", "ffff:", "protocol", "ip",
                "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev",
                self.relay_dev)
            self.out = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            self._undo.append(self.out.close)
        except BaseException:
            self._teardown()
            raise
        self._thread = threading.Thread(target=self._loop, name="impairer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._teardown()

    def _teardown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        while self._undo:
            with contextlib.suppress(Exception):
                self._undo.pop()()

    def _admit(self, heap: list, packet: bytes, now: float) -> None:
        rng = self._rng
        to_stack = packet[16:20] == self._stack_ip_bytes
        c = self.counts["to_stack" if to_stack else "to_kernel"]
        if rng.random() < self.loss:
            c["dropped"] += 1
            return
        copies = 1
        if rng.random() < self.duplicate:
            copies = 2
            c["duplicated"] += 1
        for _ in range(copies):
            if len(heap) >= self.limit:
                c["dropped"] += 1
                continue
            at = now + self.delay
            if self.delay and rng.random() < self.reorder:
                at = now
                c["reordered"] += 1
            self._seq += 1
            heapq.heappush(heap, (at, self._seq, to_stack, packet))

    def _loop(self) -> None:
        heap: list = []
        self._seq = 0
        fd = self.tun.fileno()
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                _, _, to_stack, packet = heapq.heappop(heap)
                try:
                    if to_stack:
                        self.out.sendto(packet, (self.dev, ETH_P_IP))
                    else:
                        os.write(fd, packet)
                except OSError as exc:
                    if exc.errno not in (errno.ENOBUFS, errno.EAGAIN, errno.ENODEV, errno.ENXIO):
                        raise
                    continue
                self.counts["to_stack" if to_stack else "to_kernel"]["passed"] += 1
            wait = min(heap[0][0] - now, 0.05) if heap else 0.05
            readable, _, _ = select.select([fd], [], [], max(wait, 0))
            if readable:
                now = time.monotonic()
                for _ in range(256):
                    try:
                        packet = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    if len(packet) >= 20 and packet[0] >> 4 == 4:
                        self._admit(heap, packet, now)
