"""The TUN device: opened with python-pytun, addressed and brought up over netlink (pyroute2).

Only this module and the engine loop that owns its file descriptor touch the device (DESIGN.md).
With ``offload=True`` the device is opened with ``IFF_VNET_HDR`` and asked (``TUNSETOFFLOAD``) for
checksum offload and TSO for IPv4 and IPv6, so that the kernel hands over GSO super-segments and
accepts them from us with a virtio-net header in front of each packet. What the kernel refuses is
recorded in :attr:`TunDevice.offload_flags` and the stack falls back (and says so in ``stats()``).
"""
from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
from typing import Optional

import pytun

# <linux/if_tun.h>
TUNSETOFFLOAD = 0x400454D0          # _IOW('T', 208, unsigned int)
TUNSETVNETHDRSZ = 0x400454D8        # _IOW('T', 216, int)
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
VNET_HDR_LEN = 10                   # struct virtio_net_hdr (no num_buffers)

__all__ = ["TunDevice", "DeviceError", "VNET_HDR_LEN"]


class DeviceError(OSError):
    """The TUN device could not be opened or configured."""


class TunDevice:
    """TunDevice(ifname, mtu=1500, *, offload=False, attach=False)

    Open (or, with ``attach``, attach to an existing persistent) TUN device in IFF_TUN|IFF_NO_PI
    mode. :meth:`configure` gives the kernel's end its addresses and brings the link up.
    """

    def __init__(self, ifname: str = "tcpf0", mtu: int = 1500, *, offload: bool = False,
                 attach: bool = False) -> None:
        if not 68 <= mtu <= 65535:
            raise ValueError("mtu must be in 68..65535")
        if not ifname or len(ifname) > 15:
            raise ValueError("ifname must be 1..15 characters")
        flags = pytun.IFF_TUN | pytun.IFF_NO_PI
        if offload:
            flags |= pytun.IFF_VNET_HDR
        try:
            self._tun = pytun.TunTapDevice(name=ifname, flags=flags)
        except pytun.Error as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else errno.EPERM
            raise DeviceError(code, f"cannot open TUN device {ifname!r}: {exc} "
                              "(needs CAP_NET_ADMIN and /dev/net/tun)") from exc
        self.name: str = self._tun.name
        self.attached = attach
        self.vnet_hdr = bool(offload)
        self.offload_flags = 0
        self.offload_refused = 0
        if offload:
            fcntl.ioctl(self._tun.fileno(), TUNSETVNETHDRSZ, VNET_HDR_LEN.to_bytes(4, "little"))
            wanted = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
            # Ask for all, then for less: a kernel may refuse TSO6 but grant the rest.
            for flags_try in (wanted, TUN_F_CSUM | TUN_F_TSO4, TUN_F_CSUM, 0):
                try:
                    fcntl.ioctl(self._tun.fileno(), TUNSETOFFLOAD, flags_try)
                except OSError:
                    continue
                self.offload_flags = flags_try
                break
            self.offload_refused = wanted & ~self.offload_flags
        self.mtu = mtu
        self._configured = False

    def fileno(self) -> int:
        return self._tun.fileno()

    @property
    def tso4(self) -> bool:
        return bool(self.offload_flags & TUN_F_TSO4)

    @property
    def tso6(self) -> bool:
        return bool(self.offload_flags & TUN_F_TSO6)

    @property
    def csum_offload(self) -> bool:
        return bool(self.offload_flags & TUN_F_CSUM)

    def configure(self, kernel_address: Optional[str], prefixlen: int,
                  kernel_address6: Optional[str] = None, prefixlen6: int = 64) -> None:
        """Set the MTU, give the kernel's end its addresses (IPv6 without duplicate address
        detection) and bring the link up, over netlink."""
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=self.name)
            if not links:
                raise DeviceError(errno.ENODEV, f"TUN device {self.name!r} vanished")
            idx = links[0]
            # A longer transmit queue than TUN's default 500: the kernel queues towards us
            # while the engine handles a batch; bursts then wait rather than drop.
            ipr.link("set", index=idx, mtu=self.mtu, txqlen=16384)
            if kernel_address:
                ipaddress.IPv4Address(kernel_address)
                _add_address(ipr, idx, kernel_address, prefixlen, 4)
            if kernel_address6:
                ipaddress.IPv6Address(kernel_address6)
                _add_address(ipr, idx, kernel_address6, prefixlen6, 6)
            ipr.link("set", index=idx, state="up")
        self._configured = True

    def close(self) -> None:
        """Close the file descriptor; a non-persistent device disappears with it."""
        tun, self._tun = getattr(self, "_tun", None), None
        if tun is not None:
            try:
                tun.close()
            except OSError:
                pass

    def __enter__(self) -> "TunDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<TunDevice {self.name} mtu={self.mtu} vnet_hdr={self.vnet_hdr} "
                f"offload={self.offload_flags:#x}>")


def _add_address(ipr, idx: int, address: str, prefixlen: int, family: int) -> None:
    import socket as _socket

    fam = _socket.AF_INET if family == 4 else _socket.AF_INET6
    kwargs = {}
    if family == 6:
        kwargs["flags"] = 0x02      # IFA_F_NODAD: usable at once, no duplicate address detection
    try:
        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen, family=fam, **kwargs)
    except Exception as exc:        # pyroute2's NetlinkError is an OSError subclass on new releases
        code = getattr(exc, "code", None)
        if code != errno.EEXIST:
            raise DeviceError(code or errno.EINVAL, f"cannot add {address}/{prefixlen}: {exc}")
