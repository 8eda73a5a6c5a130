"""``tcpfast up``: bring a stack up on a TUN device, serve echo (RFC 862) and discard (RFC 863) on
it, and serve its control socket for ``tcpfast ss``, ``stats`` and ``capture``, until Ctrl-C or
SIGTERM; then stop everything and exit 0.

Needs root (CAP_NET_ADMIN, and CAP_SYS_ADMIN for --netns) and /dev/net/tun. With --netns NAME
the stack lives in a network namespace of that name, made for it and deleted when it stops:
reach it with `ip netns exec NAME ...`. A port of 0 leaves that service out.

examples:
  sudo tcpfast up --netns tcpf
  sudo ip netns exec tcpf sh -c 'echo hello | nc -q1 198.18.0.2 7'
  sudo tcpfast ss; sudo tcpfast stats
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import ipaddress
import os
import select
import signal
import socket
import sys
import threading
from typing import Callable, List, Optional

from tcpfast.netns import CLONE_NEWNET, NETNS_DIR

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


class UpError(Exception):
    """A reason not to go on, for a one-line message; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default="198.18.0.2/24", metavar="ADDR/PREFIX",
                        help="the stack's IPv4 address and the link's prefix (default %(default)s)")
    parser.add_argument("--kernel-address", default="198.18.0.1", metavar="ADDR",
                        help="the kernel's end of the device (default %(default)s)")
    parser.add_argument("--address6", default=None, metavar="ADDR/PREFIX",
                        help="the stack's IPv6 address (default: none); the services then take "
                             "IPv6 and IPv4")
    parser.add_argument("--kernel-address6", default=None, metavar="ADDR",
                        help="the kernel's IPv6 address (default: the first address of the "
                             "--address6 network that is not the stack's)")
    parser.add_argument("--ifname", default="tcpf0", help="the TUN device (default %(default)s)")
    parser.add_argument("--mtu", type=_mtu, default=1500, help="default %(default)s")
    parser.add_argument("--offload", action="store_true",
                        help="checksum offload and TSO through virtio-net headers")
    parser.add_argument("--netns", metavar="NAME", default=None,
                        help="create network namespace NAME, run the stack in it, delete it at exit")
    parser.add_argument("--echo-port", type=_port, default=7, metavar="PORT",
                        help="echo service port, 0 for none (default %(default)s)")
    parser.add_argument("--discard-port", type=_port, default=9, metavar="PORT",
                        help="discard service port, 0 for none (default %(default)s)")
    parser.add_argument("--control", metavar="PATH", default=None,
                        help="the control socket (default /run/tcpfast/IFNAME.sock)")
    parser.add_argument("--max-clients", type=int, default=64, metavar="N",
                        help="connections the services take at a time (default %(default)s)")


def _mtu(text: str) -> int:
    value = int(text)
    if not 68 <= value <= 65535:
        raise argparse.ArgumentTypeError("the MTU is 68..65535")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 0..65535")
    return value


# --- privilege -------------------------------------------------------------------------------

def _effective_caps() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return -1 if os.geteuid() == 0 else 0


def check_privilege(netns: bool) -> Optional[str]:
    """Why ``tcpfast up`` cannot run here (a sentence), or None when it can."""
    caps = _effective_caps()
    if not caps & (1 << CAP_NET_ADMIN):
        return "needs root (CAP_NET_ADMIN) to open and configure a TUN device; run it with sudo"
    if netns and not caps & (1 << CAP_SYS_ADMIN):
        return "--netns needs root (CAP_SYS_ADMIN) to create a network namespace"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist (load the tun module: modprobe tun)"
    return None


# --- the network namespace -------------------------------------------------------------------

def enter_new_netns(name: str) -> Callable[[], None]:
    """Create network namespace ``name`` (as ``ip netns add``), move the calling thread into it
    and bring its ``lo`` up; returns the function that deletes it. Call it on the main thread
    before any other thread starts: threads (and the engine's) inherit the namespace of the
    thread that starts them."""
    import pyroute2.netns

    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("enter_new_netns must run on the main thread")
    if not name or "/" in name or name in (".", ".."):
        raise UpError(f"bad namespace name {name!r}")
    path = os.path.join(NETNS_DIR, name)
    if os.path.lexists(path):
        raise UpError(f"network namespace {name} already exists; choose another name or delete "
                      f"it with `ip netns del {name}`")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise UpError(f"cannot create a network namespace: {os.strerror(e)}",
                      2 if e in (errno.EPERM, errno.EACCES) else 1)

    def delete() -> None:
        try:
            pyroute2.netns.remove(name)
        except FileNotFoundError:
            pass

    try:
        # Binds /proc/<pid>/ns/net, the main thread's (this thread's) new namespace, to the name.
        pyroute2.netns.attach(name, os.getpid())
    except OSError as exc:
        if exc.errno != errno.EEXIST and os.path.lexists(path):
            delete()
        raise UpError(f"cannot name the network namespace {name}: {exc}") from None
    try:
        _loopback_up()
    except BaseException:
        delete()
        raise
    return delete


def _loopback_up() -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


# --- the command -----------------------------------------------------------------------------

def _kernel6(address6: str) -> str:
    iface = ipaddress.IPv6Interface(address6)
    for host in iface.network.hosts():
        if host != iface.ip:
            return str(host)
    raise UpError(f"no room for a kernel address in {iface.network}")


def _summary(args: argparse.Namespace, stack, control_path: str) -> str:
    services = [f"{name} on port {port}" for name, port in
                (("echo", args.echo_port), ("discard", args.discard_port)) if port]
    addresses = stack.address + (f" and {stack.address6}" if stack.address6 else "")
    kernel = stack.kernel_address + (f" and {stack.kernel_address6}" if stack.kernel_address6
                                     else "")
    line = (f"tcpfast up: stack {addresses} on {stack.ifname} (kernel side {kernel}), "
            f"{', '.join(services) or 'no services'}, "
            f"control {control_path}")
    if args.netns:
        port = args.echo_port or args.discard_port
        hint = f"`ip netns exec {args.netns} nc {stack.address} {port}`" if port else \
            f"`ip netns exec {args.netns} ...`"
        line += f"; in namespace {args.netns}: try {hint}"
    return line + "; Ctrl-C stops it"


def run(args: argparse.Namespace) -> int:
    try:
        return _up(args)
    except UpError as exc:
        print(f"tcpfast up: {exc}", file=sys.stderr)
        return exc.status


def _up(args: argparse.Namespace) -> int:
    from tcpfast import control

    reason = check_privilege(bool(args.netns))
    if reason:
        raise UpError(reason, 2)
    if args.max_clients < 1:
        raise UpError("--max-clients must be at least 1")
    control_path = os.path.abspath(args.control or control.default_path(args.ifname))
    try:
        control.ControlServer.check_free(control_path)
    except control.ControlError as exc:
        raise UpError(str(exc)) from None
    try:
        ipaddress.IPv4Interface(args.address)
        kernel6 = args.kernel_address6
        if args.address6 and not kernel6:
            kernel6 = _kernel6(args.address6)
    except ValueError as exc:
        raise UpError(str(exc)) from None

    # Ctrl-C and SIGTERM end the run through the finally clauses below, whatever step it is at.
    with _StopSignals() as stop:
        undo: List[Callable[[], None]] = []
        try:
            if args.netns:
                undo.append(enter_new_netns(args.netns))
            if not stop.requested:
                _serve(args, kernel6, control_path, stop, undo)
            return 0
        finally:
            while undo:
                try:
                    undo.pop()()
                except Exception as exc:    # noqa: BLE001 - the rest must still be undone
                    print(f"tcpfast up: while stopping: {exc}", file=sys.stderr)


class _StopSignals:
    """SIGINT and SIGTERM set a flag and wake :meth:`wait` (through ``signal.set_wakeup_fd``)
    instead of raising; the previous handlers come back on exit. Main thread only."""

    def __init__(self) -> None:
        self.requested: Optional[int] = None
        self._old: dict = {}
        self._old_wakeup = -1

    def __enter__(self) -> "_StopSignals":
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._old_wakeup = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: object) -> None:
        self.requested = signum

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a stop signal; whether one came."""
        if self.requested is None:
            select.select([self._r], [], [], timeout)
            try:
                while self._r.recv(64):
                    pass
            except BlockingIOError:
                pass
        return self.requested is not None

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        self._r.close()
        self._w.close()


def _serve(args: argparse.Namespace, kernel6: Optional[str], control_path: str,
           stop: "_StopSignals", undo: List[Callable[[], None]]) -> None:
    from tcpfast import Stack, control
    from tcpfast.device import DeviceError
    from tcpfast.services import Services

    try:
        stack = Stack(args.address, kernel_address=args.kernel_address, address6=args.address6,
                      kernel_address6=kernel6, ifname=args.ifname, mtu=args.mtu,
                      offload=args.offload)
    except ValueError as exc:
        raise UpError(str(exc)) from None
    try:
        stack.start()
    except ValueError as exc:           # an ifname or MTU the device refuses
        raise UpError(f"cannot bring the stack up: {exc}") from None
    except (DeviceError, OSError) as exc:
        denied = exc.errno in (errno.EPERM, errno.EACCES)
        raise UpError(f"cannot bring the stack up: {exc.strerror or exc}", 2 if denied else 1) \
            from None
    undo.append(stack.stop)
    services = Services(stack, echo_port=args.echo_port, discard_port=args.discard_port,
                        max_clients=args.max_clients, address6=bool(args.address6))
    try:
        services.start()
    except OSError as exc:
        raise UpError(f"cannot start the services: {exc.strerror or exc}") from None
    undo.append(services.stop)

    def info() -> dict:
        return dict(netns=args.netns, echo_port=args.echo_port or None,
                    discard_port=args.discard_port or None,
                    services=dict(services.counters, connections=services.connections))

    server = control.ControlServer(stack, control_path, info=info)
    try:
        server.start()
    except (control.ControlError, OSError) as exc:
        raise UpError(f"cannot serve the control socket: {exc}") from None
    undo.append(server.stop)
    print(_summary(args, stack, control_path), flush=True)
    # Wake now and then to notice a control server that died (it never should).
    while not stop.wait(1.0):
        if not server.running:
            raise UpError("the control server stopped unexpectedly")
