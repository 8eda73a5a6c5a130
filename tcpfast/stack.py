"""``tcpfast.Stack``: a TCP/IP stack on a TUN device, with the Linux kernel as its peer.

The stack owns its own IPv4 (and, when given, IPv6) address on the far side of the TUN device;
the kernel's side of the device gets ``kernel_address``. Sockets made with :meth:`Stack.socket`
(or ``tcpfast.socket`` once a stack runs) live on the stack; kernel sockets reach them through the
device.
"""
from __future__ import annotations

import ipaddress
import os
import threading
from typing import Any, Callable, Dict, List, Optional

from tcpfast._engine import Engine
from tcpfast._tcb import config_check
from tcpfast.device import TunDevice

__all__ = ["Stack", "default_stack", "Capture"]

_default: Optional["Stack"] = None
_default_lock = threading.Lock()

# The socket class, which tcpfast.socket registers as it loads: that module imports this one, and
# this one does not import it back (Stack.socket makes sockets through it).
_socket_class: Optional[Callable[..., Any]] = None


def register_socket_class(cls: Callable[..., Any]) -> None:
    """Tell Stack.socket() which class makes sockets (tcpfast.socket does, on import)."""
    global _socket_class
    _socket_class = cls


def default_stack() -> "Stack":
    """The running stack that ``tcpfast.socket`` uses (the first one started)."""
    stack = _default
    if stack is None or not stack.running:
        raise RuntimeError("no tcpfast stack is running: start one with tcpfast.Stack(...).start() "
                           "(or `with tcpfast.Stack(...) as stack:`) before making tcpfast sockets")
    return stack


class Capture:
    """A pcap capture in progress (LINKTYPE_RAW); :meth:`close` ends it. A context manager."""

    def __init__(self, stack: "Stack", path: str) -> None:
        self.path = path
        self._stack = stack
        stack._engine.capture_start(path)

    def close(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None and stack._engine is not None:
            stack._engine.capture_stop()

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Stack:
    """Stack(address="198.18.0.2/24", *, kernel_address="198.18.0.1", address6=None,
    kernel_address6=None, ifname="tcpf0", mtu=1500, offload=False, attach=False, mem_limit=None,
    **tcp_options)

    ``address`` is the stack's own IPv4 address with the prefix of the link; ``kernel_address``
    is given to the kernel's end of the TUN device (``None`` with ``attach=True`` leaves an
    existing device as it is). ``address6``/``kernel_address6`` do the same for IPv6.
    ``offload=True`` asks the device for checksum offload and TSO (virtio-net headers).
    ``tcp_options`` are the defaults of every connection (see ``tcpfast._tcb.OPTION_NAMES``:
    e.g. ``msl=0.5`` for short TIME-WAITs in tests, ``keepidle``, ``rto_min``; ``sndbuf``/``rcvbuf``
    fix the buffer sizes as SO_SNDBUF/SO_RCVBUF do, turning auto-tuning off; ``sndbuf_max``/
    ``rcvbuf_max`` are the auto-tuning ceilings, 4 MiB and 6 MiB by default).
    ``mem_limit`` bounds the buffer memory of all the stack's connections together, in bytes
    (default: 1/16 of the machine's physical memory, at least 64 MiB; see README "Buffers").
    """

    def __init__(self, address: str = "198.18.0.2/24", *, kernel_address: Optional[str] = "198.18.0.1",
                 address6: Optional[str] = None, kernel_address6: Optional[str] = None,
                 ifname: str = "tcpf0", mtu: int = 1500, offload: bool = False,
                 attach: bool = False, mem_limit: Optional[int] = None,
                 **tcp_options: Any) -> None:
        iface = ipaddress.IPv4Interface(address)
        self.address = str(iface.ip)
        self.prefixlen = iface.network.prefixlen
        self.kernel_address = kernel_address
        if kernel_address is not None and ipaddress.IPv4Address(kernel_address) not in iface.network:
            raise ValueError(f"kernel_address {kernel_address} is not on {iface.network}")
        self.address6: Optional[str] = None
        self.prefixlen6 = 64
        if address6 is not None:
            iface6 = ipaddress.IPv6Interface(address6)
            self.address6 = str(iface6.ip)
            self.prefixlen6 = iface6.network.prefixlen
        self.kernel_address6 = kernel_address6
        self.ifname = ifname
        self.mtu = mtu
        self.offload_requested = bool(offload)
        self.offload = False
        self.attach = attach
        self.tcp_options = dict(tcp_options)
        if mem_limit is not None and (isinstance(mem_limit, bool) or not isinstance(mem_limit, int)
                                      or not 65536 <= mem_limit < (1 << 62)):
            raise ValueError("mem_limit must be a number of bytes, at least 65536")
        self.mem_limit = mem_limit
        config_check(self.tcp_options)    # now, rather than when the stack starts
        self._device: Optional[TunDevice] = None
        self._engine: Optional[Engine] = None
        self._thread: Optional[threading.Thread] = None
        self.running = False

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> "Stack":
        """Open the device, configure it, start the engine thread; the first stack started
        becomes the default one."""
        global _default
        if self.running:
            return self
        device = TunDevice(self.ifname, self.mtu, offload=self.offload_requested,
                           attach=self.attach)
        try:
            if not self.attach:
                device.configure(self.kernel_address, self.prefixlen, self.kernel_address6,
                                 self.prefixlen6)
            os.set_blocking(device.fileno(), False)
            self.ifname = device.name
            self.offload = device.vnet_hdr and device.csum_offload
            engine = Engine(device.fileno(), mtu=self.mtu,
                            addr4=ipaddress.IPv4Address(self.address).packed,
                            addr6=ipaddress.IPv6Address(self.address6).packed if self.address6 else None,
                            vnet_hdr=device.vnet_hdr, tso4=device.tso4, tso6=device.tso6,
                            csum_offload=device.csum_offload, mem_limit=self.mem_limit)
            options = dict(self.tcp_options)
            if device.tso4 or device.tso6:
                # Segments of up to 64 KiB: the device cuts them to the MSS (TSO).
                options.setdefault("tso_max", 65535 - 60 - 40)
            engine.configure(**options)
        except BaseException:
            device.close()
            raise
        self._device = device
        self._engine = engine
        self._thread = threading.Thread(target=engine.run, name=f"tcpfast-engine-{device.name}",
                                        daemon=True)
        self.running = True
        self._thread.start()
        with _default_lock:
            if _default is None or not _default.running:
                _default = self
        return self

    def stop(self) -> None:
        """Stop the engine thread and close the device (it disappears with its fd). Connections
        still open simply end; their sockets then fail with ENETDOWN."""
        global _default
        if not self.running:
            return
        self.running = False
        engine, thread = self._engine, self._thread
        if engine is not None:
            engine.stop()
        if thread is not None:
            thread.join(timeout=10)
            if thread.is_alive():       # pragma: no cover - the loop wakes on its eventfd
                raise RuntimeError("the tcpfast engine thread did not stop")
        if engine is not None:
            engine.release()
        if self._device is not None:
            self._device.close()
        self._thread = None
        with _default_lock:
            if _default is self:
                _default = None

    close = stop

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        status = "running" if self.running else "stopped"
        return (f"<tcpfast.Stack {self.address}/{self.prefixlen} on {self.ifname} mtu={self.mtu} "
                f"offload={self.offload} {status}>")

    # --- sockets ----------------------------------------------------------------------------

    def socket(self, family: int = 2, type: int = 1, proto: int = 0):
        """A :class:`tcpfast.socket` on this stack (as ``tcpfast.socket(family, type, proto,
        stack=self)``)."""
        if _socket_class is None:
            raise RuntimeError("tcpfast.socket is not loaded (import tcpfast)")
        return _socket_class(family, type, proto, stack=self)

    def _require(self) -> Engine:
        if not self.running or self._engine is None:
            raise OSError(100, "Network is down (the tcpfast stack is stopped)")  # ENETDOWN
        return self._engine

    def local_address(self, family: int) -> bytes:
        import socket as _s

        if family == _s.AF_INET:
            return ipaddress.IPv4Address(self.address).packed
        if self.address6 is None:
            raise OSError(99, "Cannot assign requested address (the stack has no IPv6 address)")
        return ipaddress.IPv6Address(self.address6).packed

    # --- introspection ------------------------------------------------------------------------

    @property
    def fd(self) -> int:
        return self._device.fileno() if self._device is not None else -1

    def stats(self) -> Dict[str, int]:
        """Counters in the spirit of ``netstat -s``."""
        stats = self._require().stats()
        if self._device is not None:
            stats["offload_fallback"] = int(self._device.offload_refused != 0 or
                                            (self.offload_requested and not self.offload))
            stats["offload_flags"] = self._device.offload_flags
        else:
            stats["offload_fallback"] = 0
        return stats

    def connections(self) -> List[Dict[str, Any]]:
        """A table in the spirit of ``ss -tan``."""
        return self._require().connections()

    def capture(self, path: str) -> Capture:
        """Write every packet in and out to ``path`` as pcap until the capture is closed."""
        return Capture(self, path)
