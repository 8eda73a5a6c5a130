"""Random packet loss on a network device, as ``tc qdisc add dev D root netem loss P%`` would give.

The kernels this project runs on are built without ``sch_netem``, so the loss is made by a
tiny eBPF program attached as a ``cls_bpf`` classifier (direct action) to the device's
``clsact`` hooks, which these kernels do have. For each IPv4 or IPv6 packet it draws
``bpf_get_prandom_u32()`` and drops the packet when the draw falls below ``rate * 2**32``.

Why ``TC_ACT_STOLEN`` and not ``TC_ACT_SHOT``: a packet shot at egress makes
``dev_queue_xmit()`` return ``NET_XMIT_DROP``, and the kernel's TCP takes that as local
congestion: it keeps the segment, reduces cwnd and sends it again at once, so the "loss" never
reaches the wire and never has to be recovered. ``STOLEN`` reports success and frees the packet,
which is what a loss on the wire (and netem's own drop) looks like to the sender. At ingress both
simply drop the packet before the receiving stack sees it.

A super-packet of a device with segmentation offload is one packet here, as it is for netem.
Loading a program needs CAP_BPF/CAP_SYS_ADMIN (root); attaching it uses pyroute2.
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct
from typing import Optional

# bpf(2): the syscall number on the architectures this project runs on.
_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_LOAD = 5
_BPF_PROG_TYPE_SCHED_CLS = 3
_TC_ACT_OK, _TC_ACT_STOLEN = 0, 4
# clsact's two hooks, as `tc filter add dev D ingress|egress` names them.
PARENT = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One eBPF instruction (struct bpf_insn)."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(rate: float) -> bytes:
    """The classifier: drop an IP packet with probability ``rate``, pass everything else."""
    if not 0.0 <= rate < 0.5:
        raise ValueError(f"loss rate {rate!r} is outside [0, 0.5)")
    threshold = int(rate * (1 << 32))
    return b"".join([
        _insn(0x61, 2, 1, 16),              # r2 = skb->protocol (u32 at offset 16; network order)
        _insn(0x15, 2, 0, 2, 0x0008),       # if r2 == htons(ETH_P_IP) goto draw
        _insn(0x15, 2, 0, 1, 0xDD86),       # if r2 == htons(ETH_P_IPV6) goto draw
        _insn(0x05, 0, 0, 3),               # goto pass
        _insn(0x85, 0, 0, 0, 7),            # draw: r0 = bpf_get_prandom_u32()
        _insn(0xB7, 1, 0, 0, threshold),    # r1 = threshold
        _insn(0xAD, 0, 1, 2),               # if r0 < r1 goto drop
        _insn(0xB7, 0, 0, 0, _TC_ACT_OK),   # pass: return TC_ACT_OK
        _insn(0x95),
        _insn(0xB7, 0, 0, 0, _TC_ACT_STOLEN),  # drop: return TC_ACT_STOLEN
        _insn(0x95),
    ])


def program_drop_all() -> bytes:
    """A classifier that drops every packet (``TC_ACT_SHOT``)."""
    return _insn(0xB7, 0, 0, 0, 2) + _insn(0x95)        # r0 = TC_ACT_SHOT; exit


def load(rate: float) -> int:
    """Load the program for ``rate``; returns its fd (the caller closes it once attached)."""
    return load_code(program(rate))


def load_code(code: bytes) -> int:
    """Load classifier ``code``; returns its fd (the caller closes it once attached)."""
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise OSError(f"no bpf(2) syscall number known for {platform.machine()}")
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(16384)
    # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level, log_size,
    # log_buf, kern_version, prog_flags, prog_name[16]; the rest zero.
    attr = struct.pack("<IIQQIIQII16s", _BPF_PROG_TYPE_SCHED_CLS, len(code) // 8,
                       ctypes.addressof(insns), ctypes.addressof(license_), 1, len(log),
                       ctypes.addressof(log), 0, 0, b"tcpfast_loss").ljust(144, b"\0")
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = _libc.syscall(nr, _BPF_PROG_LOAD, buf, len(attr))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"loading the loss program: {os.strerror(err)} "
                           f"{log.value.decode(errors='replace').strip()}".strip())
    return int(fd)


def attach(ifname: str, rate: float, hooks: tuple = ("ingress", "egress")) -> None:
    """Drop ``rate`` of the IP packets crossing ``ifname`` (in the calling thread's namespace) at
    each of ``hooks``: egress is what the device's own stack sends, ingress what it receives."""
    _attach(ifname, load(rate), hooks)


def silence(ifname: str) -> None:
    """Drop everything ``ifname`` receives before the namespace's own stack sees it (packet
    sockets bound to the device still get a copy: they are served before the ingress hook).
    The impairer's devices use it: their kernel has nothing to do with the packets crossing."""
    _attach(ifname, load_code(program_drop_all()), ("ingress",))


def _attach(ifname: str, fd: int, hooks: tuple) -> None:
    from pyroute2 import IPRoute

    try:
        with IPRoute() as ipr:
            (index,) = ipr.link_lookup(ifname=ifname)
            ipr.tc("add", "clsact", index)
            for hook in hooks:
                ipr.tc("add-filter", "bpf", index, ":1", fd=fd, name="tcpfast_loss",
                       parent=PARENT[hook], classid=1, direct_action=True)
    finally:
        os.close(fd)


def detach(ifname: str) -> None:
    """Remove the loss (the whole clsact qdisc) from ``ifname``; a missing one is not an error."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return
        try:
            ipr.tc("del", "clsact", found[0])
        except NetlinkError as exc:
            if exc.code not in (2, 22):        # ENOENT/EINVAL: there was none
                raise


def unavailable() -> Optional[str]:
    """Why the loss program cannot be loaded here, or None."""
    try:
        os.close(load(0.01))
    except OSError as exc:
        return str(exc)
    return None
