"""Helpers for the tests: threads and waiting, memory, and packets from the kernel side of a TUN
device (inject, sniff, impair).

The network namespaces themselves (create, enter, run in, remove) come from :mod:`tcpfast.netns`,
the one home of those helpers; everything the tests create lives inside one private namespace
that the test run creates and removes (``conftest.py``). The namespace holds only ``lo`` and what
the tests add, IP forwarding is off in it, so no packet can leave it.
"""
from __future__ import annotations

import contextlib
import errno
import heapq
import os
import random
import select
import socket
import threading
import time
from typing import Callable, Optional

from tcpfast import netns

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4         # sll_pkttype of a packet the kernel sends (here: towards the stack)


def qdisc_available(name: str, kind: str) -> Optional[str]:
    """None when the kernel has the qdisc ``kind``, else tc's error (tried on a dummy ifb device)."""
    probe = "tcpfprobe0"
    made = netns.run(name, "ip", "link", "add", probe, "type", "ifb", check=False)
    if made.returncode != 0:
        return f"cannot create an ifb device: {made.stderr.strip()}"
    try:
        r = netns.run(name, "tc", "qdisc", "add", "dev", probe, "root", kind, check=False)
        return None if r.returncode == 0 else (r.stderr.strip() or f"tc exited {r.returncode}")
    finally:
        netns.run(name, "ip", "link", "del", probe, check=False)


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
            netns.run(self.ns, "ip", "route", "add", f"{self.stack_ip}/32", "dev", self.relay_dev,
                      "src", self.kernel_ip)
            netns.run(self.ns, "tc", "qdisc", "add", "dev", self.dev, "ingress")
            self._undo.append(lambda: netns.run(self.ns, "tc", "qdisc", "del", "dev", self.dev,
                                                "ingress", check=False))
            netns.run(self.ns, "tc", "filter", "add", "dev", self.dev, "parent", "ffff:",
                      "protocol", "ip", "u32", "match", "u32", "0", "0", "action", "mirred",
                      "egress", "redirect", "dev", self.relay_dev)
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
