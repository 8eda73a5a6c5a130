"""Private network namespaces, veth pairs and ethtool-style offload switches: the one home of the
namespace helpers, for ``tcpfast bench``, ``tcpfast up`` and the tests that run over TUN.

Everything made with these (namespaces, veth pairs, TUN devices, addresses) lives inside
namespaces that the caller names, with its own prefix and process id, and removes again. A
namespace holds only ``lo`` and what the caller adds, with IP forwarding off, so no packet can reach
the machine's own interfaces or any outside address. It is part of the package because
``tcpfast bench`` runs from an installed copy; it needs only the ``ip`` command of iproute2 and
the standard library.

Linux network namespaces belong to threads. :func:`call_in` runs a function in a short-lived
thread that first joins the namespace, so the caller's own thread never moves; :func:`inside`
moves the calling thread in for the length of a ``with`` block (sockets, TUN devices and threads
created there belong to the namespace). :func:`exec_argv` is the prefix that starts a process
inside one (``ip netns exec``), :func:`run` runs one to completion.
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)
# The namespace this process started in (the "machine's own" for :func:`origin_links`), taken when
# this module is first imported, before any thread of the process has moved.
_ORIGIN_FD = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


# --- can we? -------------------------------------------------------------------------------------

def unavailable() -> Optional[str]:
    """Why namespaces and TUN devices cannot be had here, or None when they can."""
    if os.geteuid() != 0:
        return ("needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces and "
                "TUN devices; run it with sudo")
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist (load the tun module: modprobe tun)"
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"cannot open /dev/net/tun: {exc}"
    os.close(fd)
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    for module in ("pytun", "pyroute2"):      # the stack's own dependencies for a TUN device
        try:
            __import__(module)
        except ImportError as exc:
            return f"{module} is not importable: {exc}"
    return None


# --- namespaces ----------------------------------------------------------------------------------

def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


def ip(*argv: str, ns: Optional[str] = None, timeout: float = 20,
       check: bool = True) -> subprocess.CompletedProcess:
    """Run ``ip [-n ns] argv...``, bounded in time; a failure raises with ip's own message."""
    cmd = ["ip"] + (["-n", ns] if ns else []) + list(argv)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise OSError(f"`{' '.join(cmd)}` failed: {r.stderr.strip() or r.returncode}")
    return r


def exec_argv(ns: str) -> List[str]:
    """The command prefix that runs a program inside ``ns``."""
    return ["ip", "netns", "exec", ns]


def run(ns: str, *argv: str, timeout: float = 20,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run ``argv`` inside ``ns`` (``ip netns exec``) to completion, bounded in time; with ``check``
    a non-zero exit raises :class:`subprocess.CalledProcessError`."""
    return subprocess.run(exec_argv(ns) + list(argv), capture_output=True, text=True,
                          timeout=timeout, check=check)


def _call_in_thread(enter: Callable[[], None], fn: Callable[[], T], timeout: float,
                    what: str) -> T:
    """Call ``fn()`` in a new thread that first calls ``enter()`` (which joins a namespace)."""
    box: Dict[str, object] = {}

    def body() -> None:
        try:
            enter()
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    t = threading.Thread(target=body, name=f"in-{what}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"helper thread in namespace {what} did not finish in {timeout} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _enter(ns: str) -> None:
    """Move the calling thread into namespace ``ns``."""
    target = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
    finally:
        os.close(target)


def call_in(ns: str, fn: Callable[[], T], timeout: float = 30) -> T:
    """Call ``fn()`` in a new thread that first joins namespace ``ns``; return its value."""
    return _call_in_thread(lambda: _enter(ns), fn, timeout, ns)


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Move the calling thread into namespace ``ns`` for the duration of the block."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _enter(ns)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def listed() -> List[str]:
    """The names ``ip netns list`` shows."""
    out = ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def create(name: str) -> None:
    """Create namespace ``name``, bring its ``lo`` up and turn IP forwarding off in it (read back:
    :class:`OSError` if it stays on)."""
    ip("netns", "add", name)
    try:
        ip("link", "set", "lo", "up", ns=name)

        def no_forwarding() -> None:
            for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
                if os.path.exists(path):
                    with open(path, "w") as f:
                        f.write("0")
                    with open(path) as f:
                        if f.read().strip() != "0":
                            raise OSError(f"{path} stays on in namespace {name}")
        call_in(name, no_forwarding)
    except BaseException:
        remove(name)
        raise


def pids(name: str) -> List[int]:
    """Processes living in namespace ``name`` (other than this one)."""
    try:
        st = os.stat(os.path.join(NETNS_DIR, name))
    except FileNotFoundError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                s = os.stat(f"/proc/{entry}/ns/net")
            except OSError:
                continue
            if (s.st_ino, s.st_dev) == (st.st_ino, st.st_dev):
                found.append(int(entry))
    return found


def remove(name: str) -> None:
    """Kill what still runs in namespace ``name`` (by pid: only this run's workers live there)
    and delete it; its veth ends and TUN devices go with it."""
    for _ in range(3):
        victims = pids(name)
        if not victims:
            break
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    if os.path.exists(os.path.join(NETNS_DIR, name)):
        ip("netns", "del", name, check=False)


def remove_stale(prefix: str) -> List[str]:
    """Remove namespaces that a run killed outright (SIGKILL) left behind: those named
    ``<prefix><pid>`` or ``<prefix><pid>-...`` whose process no longer exists."""
    removed = []
    for name in listed():
        if not name.startswith(prefix):
            continue
        try:
            owner = int(name[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        if owner != os.getpid() and not os.path.exists(f"/proc/{owner}"):
            remove(name)
            removed.append(name)
    return removed


def links(ns: Optional[str] = None, kind: Optional[str] = None) -> List[str]:
    """Names of the links in ``ns`` (None: the namespace of the calling thread), optionally of one
    kind only (``tun``, ``veth``, ``ifb``...)."""
    out = ip("-o", "link", "show", *(["type", kind] if kind else []), ns=ns).stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]


def origin_links(kind: Optional[str] = None) -> List[str]:
    """:func:`links` of the namespace this process started in, whichever the caller's thread is in
    (to check that nothing made for a private namespace appeared on the machine's own)."""
    return _call_in_thread(lambda: _setns(_ORIGIN_FD), lambda: links(None, kind), 30, "origin")


def add_veth(ns_a: str, name_a: str, ns_b: str, name_b: str, mtu: int) -> None:
    """A veth pair made inside ``ns_a`` with its peer end moved straight into ``ns_b``: neither
    end ever exists in the caller's namespace."""
    ip("link", "add", name_a, "mtu", str(mtu), "type", "veth",
       "peer", "name", name_b, "mtu", str(mtu), "netns", ns_b, ns=ns_a)


def address_up(ns: str, ifname: str, cidr: str) -> None:
    ip("addr", "add", cidr, "dev", ifname, ns=ns)
    ip("link", "set", ifname, "up", ns=ns)


# --- ethtool -K without ethtool: the legacy per-feature SIOCETHTOOL commands ---------------------

SIOCETHTOOL = 0x8946
# (get, set) command pairs of <linux/ethtool.h>, in the order `ethtool -k` prints them.
FEATURES = {
    "rx-checksumming": (0x14, 0x15),              # ETHTOOL_GRXCSUM / SRXCSUM
    "tx-checksumming": (0x16, 0x17),              # ETHTOOL_GTXCSUM / STXCSUM
    "scatter-gather": (0x18, 0x19),               # ETHTOOL_GSG / SSG
    "tcp-segmentation-offload": (0x1E, 0x1F),     # ETHTOOL_GTSO / STSO
    "generic-segmentation-offload": (0x23, 0x24), # ETHTOOL_GGSO / SGSO
    "generic-receive-offload": (0x2B, 0x2C),      # ETHTOOL_GGRO / SGRO
}


def _ethtool_value(sock: socket.socket, ifname: str, cmd: int, data: int = 0) -> int:
    value = ctypes.create_string_buffer(struct.pack("II", cmd, data), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    return struct.unpack("II", value.raw)[1]


def get_features(ifname: str) -> Dict[str, bool]:
    """The offload features of ``ifname`` in the calling thread's namespace (`ethtool -k`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        out = {}
        for name, (get, _) in FEATURES.items():
            try:
                out[name] = bool(_ethtool_value(s, ifname, get))
            except OSError:
                pass
        return out


def set_features(ifname: str, want: Dict[str, bool]) -> Dict[str, bool]:
    """Switch the features of :data:`FEATURES` named in ``want`` on or off (as `ethtool -K ifname
    tx off rx off sg off tso off gso off gro off` does) in the calling thread's namespace;
    returns the state read back. The kernel keeps its dependencies (TSO needs SG, SG needs tx
    checksumming), so features go off in reverse order and on in order."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for phase in (False, True):
            names = [n for n in FEATURES if n in want and want[n] == phase]
            if not phase:
                names.reverse()
            for name in names:
                try:
                    _ethtool_value(s, ifname, FEATURES[name][1], int(phase))
                except OSError:
                    pass        # a feature the device cannot change; the read-back says so
    return get_features(ifname)
