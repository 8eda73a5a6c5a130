#!/usr/bin/env python3
"""Capture real TCP segments from the Linux kernel through a TUN device in a private network namespace.

    sudo python3 tools/capture_kernel_syn.py                      # print the captured segments as hex
    sudo python3 tools/capture_kernel_syn.py --write tests/fixtures   # ... and (re)write the fixtures

What it captures (all four carry MSS, SACK-permitted, timestamps and window scale):

* ``syn_ipv4`` / ``syn_ipv6``: the SYN the kernel sends for a non-blocking ``connect()`` to
  198.18.0.2:80 and [fd00:18::2]:80 (nobody answers; the first SYN is read and the socket closed);
* ``synack_ipv4`` / ``synack_ipv6``: the kernel's SYN-ACK to a hand-made SYN (``syn_in_ipv4`` /
  ``syn_in_ipv6``, also saved) written into the TUN device from 198.18.0.2 / fd00:18::2 to a socket
  listening on 198.18.0.1:8080 / [fd00:18::1]:8080.

How it stays contained: the script re-runs itself as a child process that first calls
``unshare(CLONE_NEWNET)``. The child's namespace is anonymous and private: the TUN device
(``IFF_TUN | IFF_NO_PI``, made with python-pytun), its addresses 198.18.0.1/24 and fd00:18::1/64
(added ``nodad``) and the routes to those prefixes exist only there, so no packet can leave it. The
child deletes the device in a ``finally`` block, and the kernel destroys the namespace, and with it
anything left inside, when the child exits for any reason; the parent kills the child (by its pid)
if it overruns ``--timeout``. Every read loop is bounded by a deadline.

Needs root (CAP_NET_ADMIN), ``/dev/net/tun``, python-pytun and the ``ip`` command (iproute2).
Uses no part of tcpfast: the segments it captures are the reference the parser is tested against.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import errno
import json
import os
import platform
import select
import socket
import struct
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000
DEV = "tcpf0"
V4_LOCAL, V4_PEER = "198.18.0.1", "198.18.0.2"
V6_LOCAL, V6_PEER = "fd00:18::1", "fd00:18::2"
CONNECT_PORT = 80            # the kernel connects to <peer>:80
LISTEN_PORT = 8080           # the kernel listens on <local>:8080
PEER_PORT = 40000            # source port of the hand-made SYN
PEER_ISS = 0x1234_5678       # its sequence number
PEER_TSVAL = 0x0102_0304     # its timestamp value (the SYN-ACK echoes it in TSecr)
PEER_WSCALE = 7

TH_SYN, TH_ACK = 0x02, 0x10


# --- a minimal, self-contained packet toolkit (struct only; no tcpfast) ---------------------------

def _csum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _syn_options(mss: int) -> bytes:
    """The options in Linux's order: MSS; SACK-permitted + timestamps; NOP + window scale."""
    return (struct.pack("!BBH", 2, 4, mss) + bytes([4, 2]) + struct.pack("!BBII", 8, 10, PEER_TSVAL, 0)
            + bytes([1, 3, 3, PEER_WSCALE]))


def _tcp_syn(src: bytes, dst: bytes, pseudo_tail: bytes, mss: int) -> bytes:
    opts = _syn_options(mss)
    hdr = struct.pack("!HHIIBBHHH", PEER_PORT, LISTEN_PORT, PEER_ISS, 0, (20 + len(opts)) // 4 << 4,
                      TH_SYN, 64240, 0, 0) + opts
    pseudo = src + dst + pseudo_tail(len(hdr))
    c = _csum(pseudo + hdr)
    return hdr[:16] + struct.pack("!H", c) + hdr[18:]


def make_syn_ipv4() -> bytes:
    src, dst = socket.inet_pton(socket.AF_INET, V4_PEER), socket.inet_pton(socket.AF_INET, V4_LOCAL)
    tcp = _tcp_syn(src, dst, lambda n: struct.pack("!BBH", 0, 6, n), 1460)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0x1111, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return ip + tcp


def make_syn_ipv6() -> bytes:
    src, dst = socket.inet_pton(socket.AF_INET6, V6_PEER), socket.inet_pton(socket.AF_INET6, V6_LOCAL)
    tcp = _tcp_syn(src, dst, lambda n: struct.pack("!IxxxB", n, 6), 1440)
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, src, dst)
    return ip + tcp


def _tcp_of(pkt: bytes):
    """(ports, flags) of a TCP packet without extension headers, or None."""
    if not pkt:
        return None
    v = pkt[0] >> 4
    if v == 4 and len(pkt) >= 20 and pkt[9] == 6:
        off = (pkt[0] & 0x0F) * 4
    elif v == 6 and len(pkt) >= 40 and pkt[6] == 6:
        off = 40
    else:
        return None
    if len(pkt) < off + 20:
        return None
    sport, dport = struct.unpack_from("!HH", pkt, off)
    return v, sport, dport, pkt[off + 13]


# --- inside the namespace ---------------------------------------------------------------------

def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _sysctl(path: str, value: str) -> None:
    try:
        with open("/proc/sys/" + path.replace(".", "/"), "w") as f:
            f.write(value)
    except OSError:
        pass


def _read_matching(fd: int, want, deadline: float, skipped: list) -> bytes:
    """Read packets from the TUN fd until one satisfies ``want`` (others are skipped: RS, MLD...)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no matching packet before the deadline; skipped: "
                               + ", ".join(p.hex()[:16] for p in skipped[-8:]))
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        pkt = os.read(fd, 65535)
        info = _tcp_of(pkt)
        if info is not None and want(*info):
            return pkt
        skipped.append(pkt)


def _capture_in_namespace(timeout: float) -> dict:
    import pytun  # python-pytun

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"unshare(CLONE_NEWNET): {os.strerror(e)}")

    out: dict = {}
    skipped: list = []
    tun = pytun.TunTapDevice(name=DEV, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    try:
        # No SLAAC, no router solicitations: less noise on the device (whatever still comes is skipped).
        _sysctl(f"net.ipv6.conf.{DEV}.accept_ra", "0")
        _sysctl(f"net.ipv6.conf.{DEV}.router_solicitations", "0")
        _ip("link", "set", "lo", "up")
        _ip("addr", "add", f"{V4_LOCAL}/24", "dev", DEV)
        _ip("-6", "addr", "add", f"{V6_LOCAL}/64", "dev", DEV, "nodad")
        _ip("link", "set", DEV, "mtu", "1500", "up")
        fd = tun.fileno()
        deadline = time.monotonic() + timeout
        out["mtu"] = tun.mtu

        # 1. The kernel as client: the SYN of a non-blocking connect().
        for fam, peer, key in ((socket.AF_INET, V4_PEER, "syn_ipv4"), (socket.AF_INET6, V6_PEER, "syn_ipv6")):
            s = socket.socket(fam, socket.SOCK_STREAM)
            try:
                s.setblocking(False)
                rc = s.connect_ex((peer, CONNECT_PORT))
                if rc not in (errno.EINPROGRESS, errno.EAGAIN):
                    raise OSError(rc, f"connect_ex to {peer}: {os.strerror(rc)}")
                lport = s.getsockname()[1]
                v = 4 if fam == socket.AF_INET else 6
                out[key] = _read_matching(
                    fd, lambda ver, sp, dp, fl: ver == v and sp == lport and dp == CONNECT_PORT
                    and fl & (TH_SYN | TH_ACK) == TH_SYN, deadline, skipped).hex()
            finally:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()

        # 2. The kernel as server: its SYN-ACK to a hand-made SYN.
        for fam, local, make, key in ((socket.AF_INET, V4_LOCAL, make_syn_ipv4, "ipv4"),
                                      (socket.AF_INET6, V6_LOCAL, make_syn_ipv6, "ipv6")):
            ls = socket.socket(fam, socket.SOCK_STREAM)
            try:
                ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                ls.bind((local, LISTEN_PORT))
                ls.listen(4)
                syn = make()
                os.write(fd, syn)
                v = 4 if fam == socket.AF_INET else 6
                out["syn_in_" + key] = syn.hex()
                out["synack_" + key] = _read_matching(
                    fd, lambda ver, sp, dp, fl: ver == v and sp == LISTEN_PORT and dp == PEER_PORT
                    and fl & (TH_SYN | TH_ACK) == TH_SYN | TH_ACK, deadline, skipped).hex()
            finally:
                ls.close()
        out["skipped"] = len(skipped)
        return out
    finally:
        try:
            tun.close()                        # a non-persistent TUN device goes with its last fd
        finally:
            subprocess.run(["ip", "link", "del", DEV], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- the parent: run the child, print, optionally write fixtures --------------------------------

FIXTURES = {
    "syn_ipv4": "SYN the kernel sent for a non-blocking connect() to 198.18.0.2:80",
    "syn_ipv6": "SYN the kernel sent for a non-blocking connect() to [fd00:18::2]:80",
    "syn_in_ipv4": "hand-made SYN written into the TUN device (198.18.0.2:40000 -> 198.18.0.1:8080)",
    "synack_ipv4": "SYN-ACK the kernel (listening on 198.18.0.1:8080) sent in reply to syn_in_ipv4",
    "syn_in_ipv6": "hand-made SYN written into the TUN device ([fd00:18::2]:40000 -> [fd00:18::1]:8080)",
    "synack_ipv6": "SYN-ACK the kernel (listening on [fd00:18::1]:8080) sent in reply to syn_in_ipv6",
}


def write_fixtures(result: dict, directory: str, command: str) -> None:
    os.makedirs(directory, exist_ok=True)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    for key, what in FIXTURES.items():
        h = result[key]
        lines = [h[i:i + 64] for i in range(0, len(h), 64)]
        with open(os.path.join(directory, f"kernel_{key}.hex"), "w") as f:
            f.write(f"# {what}\n")
            f.write(f"# kernel: Linux {platform.release()} ({platform.machine()}), captured {when}\n")
            f.write(f"# device: TUN (IFF_TUN|IFF_NO_PI), MTU {result['mtu']}, in a private network namespace\n")
            f.write(f"# command: {command}\n")
            f.write("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", metavar="DIR", help="write kernel_*.hex fixtures into DIR")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds for the whole capture (default 10)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:               # runs in its own process, which then enters a new namespace
        try:
            res = _capture_in_namespace(args.timeout)
        except Exception as e:   # report to the parent, which prints it
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
            return 1
        print(json.dumps(res))
        return 0

    if os.geteuid() != 0:
        print("capture_kernel_syn: needs root (CAP_NET_ADMIN) to make a namespace and a TUN device",
              file=sys.stderr)
        return 2
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--timeout",
                               str(args.timeout)], capture_output=True, text=True, timeout=args.timeout + 10)
    except subprocess.TimeoutExpired:   # subprocess.run has killed the child; its namespace is gone
        print("capture_kernel_syn: the capture did not finish in time", file=sys.stderr)
        return 1
    if proc.stderr:
        sys.stderr.write(proc.stderr)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"capture_kernel_syn: child failed (exit {proc.returncode}): {proc.stdout!r}", file=sys.stderr)
        return 1
    if "error" in result:
        print(f"capture_kernel_syn: {result['error']}", file=sys.stderr)
        return 1

    print(f"# Linux {platform.release()}, TUN MTU {result['mtu']}, {result['skipped']} other packets skipped")
    for key in FIXTURES:
        print(f"{key:12} {result[key]}")
    if args.write:
        cmd = "sudo python3 tools/capture_kernel_syn.py" + (f" --write {args.write}" if args.write else "")
        write_fixtures(result, args.write, cmd)
        print(f"# wrote {len(FIXTURES)} fixtures to {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
