#!/usr/bin/env python3
"""Bulk TCP throughput: tcpfast over TUN with the kernel as peer, against kernel to kernel over veth.

    sudo python bench/tun_throughput.py [--quick] [--duration S] [--bytes N] [--mtu M]
                                        [--chunk N] [--repeat N] [--verify] [--json PATH]
                                        [--offload off|on|both] [--direction in|out|both]

Issue 4's benchmark. One run creates its own network namespaces (``tcpfb-<pid>-tun`` for the TUN
device, ``tcpfb-<pid>-va`` and ``-vb`` for the two ends of a veth pair), measures, and removes them
again, also on Ctrl-C, SIGTERM or failure. Every device and address lives inside them; no packet
reaches the machine's own interfaces.

Each case runs the *same* Python workload in two worker processes, only the socket factory
differs (``tcpfast.Stack.socket`` or ``socket.socket``):

* side A listens and accepts; side B connects. ``in`` means B sends to A, ``out`` A sends to B;
* the sender ``sendall()``s 256 KiB slices of a preallocated buffer until ``--duration`` seconds or
  ``--bytes`` bytes, then ``shutdown(SHUT_WR)`` and waits for the receiver's FIN;
* the receiver ``recv_into()``s a preallocated buffer until end of stream, counting bytes (with
  ``--verify`` both ends also hash the stream with SHA-256). Its count must equal the sender's;
  throughput is the receiver's bytes over the time from the first of the two ends being connected
  (sender or receiver; both read the machine-wide CLOCK_MONOTONIC) to the receiver's end of stream.

Cases: ``tcpfast`` puts side A on a tcpfast stack over a TUN device in one namespace and side B on
a kernel socket in the same namespace (another process, so the two never share a GIL); ``veth``
puts A and B on kernel sockets in two namespaces joined by a veth pair with the same MTU. Offload
``on`` is ``tcpfast.Stack(offload=True)`` (virtio-net header, checksum offload, TSO) against veth's
default features; ``off`` is ``offload=False`` against veth with every feature switched off, as
``ethtool -K dev rx off tx off sg off tso off gso off gro off`` does (printed in the output).

Exit status: 0 when every case ran and its byte count matched, 1 when a case failed, 2 when the
machine cannot run it (not root, no /dev/net/tun, no iproute2, tcpfast not installed).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns_util  # noqa: E402

GBIT = 1e9
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30

TUN_STACK_IP, TUN_KERNEL_IP, TUN_PREFIX = "198.18.0.2", "198.18.0.1", 24
VETH_A_IP, VETH_B_IP, VETH_PREFIX = "198.18.1.1", "198.18.1.2", 24
VETH_A, VETH_B = "tfbva", "tfbvb"

# Issue 4: Gbit/s into and out of tcpfast at MTU 1500, without and with offload.
TARGETS = {("in", False): 3.0, ("out", False): 2.0, ("in", True): 8.0, ("out", True): 5.0}
# Issue 6: tcpfast over the kernel's veth figure.
RATIO_TARGETS = {"in": 0.5, "out": 0.4}

VETH_OFF_MEANING = ("veth offload off = on both ends rx-checksumming, tx-checksumming, "
                    "scatter-gather, tcp-segmentation-offload, generic-segmentation-offload and "
                    "generic-receive-offload off (what `ethtool -K <dev> rx off tx off sg off tso off "
                    "gso off gro off` does; set here with the SIOCETHTOOL ioctl, ethtool itself is "
                    "not needed): every packet crossing the pair is at most one MTU, its checksum "
                    "computed in software by the sender and verified in software by the receiver. "
                    "on = the features veth is created with (checksums, SG, TSO and GSO on; GRO "
                    "off): packets of up to 64 KiB cross the pair and no checksum is computed.")
TUN_OFF_MEANING = ("tcpfast offload off = tcpfast.Stack(offload=False), a TUN device without "
                   "IFF_VNET_HDR: every packet is at most one MTU and carries full checksums both "
                   "ways (the kernel computes and verifies its own in software); on = "
                   "offload=True, IFF_VNET_HDR + TUNSETOFFLOAD (checksum, TSO4, TSO6): packets of up "
                   "to 64 KiB both ways, checksums left partial.")


# =================================================================================================
# The workload: the same code on both kinds of socket.
# =================================================================================================

def make_slices(chunk: int, count: int = 64) -> List[memoryview]:
    """``count`` preallocated slices of ``chunk`` bytes at staggered offsets of one random buffer:
    the stream repeats only every ``count * chunk`` bytes, and sending allocates nothing."""
    import random

    rng = random.Random(4)
    base = bytearray(rng.randbytes(chunk + 64 * KIB))
    mv = memoryview(base)
    return [mv[(i * 1021) % (64 * KIB):(i * 1021) % (64 * KIB) + chunk] for i in range(count)]


def send_stream(sock: Any, slices: List[memoryview], duration: float, max_bytes: int,
                verify: bool) -> Dict[str, Any]:
    """Send slices until ``duration`` s or ``max_bytes``; then half-close and wait for the peer's
    end of stream (so everything sent was received)."""
    hasher = hashlib.sha256() if verify else None
    chunk = len(slices[0])
    nslices = len(slices)
    sendall = sock.sendall
    now = time.monotonic
    sent = 0
    i = 0
    t0 = now()
    t_end = t0 + duration
    while sent + chunk <= max_bytes and now() < t_end:
        s = slices[i]
        sendall(s)
        if hasher is not None:
            hasher.update(s)
        sent += chunk
        i += 1
        if i == nslices:
            i = 0
    if sent < max_bytes and now() < t_end:          # the last, partial slice of a --bytes run
        s = slices[i][:max_bytes - sent]
        sendall(s)
        if hasher is not None:
            hasher.update(s)
        sent += len(s)
    t_sent = now()
    sock.shutdown(socket.SHUT_WR)
    tail = bytearray(64)
    while sock.recv_into(tail):                       # the receiver sends nothing: wait for its FIN
        raise RuntimeError("the receiver sent data")
    t1 = now()
    return {"bytes": sent, "seconds": t1 - t0, "send_seconds": t_sent - t0,
            "sha256": hasher.hexdigest() if hasher is not None else None, "t0": t0, "t1": t1}


def recv_stream(sock: Any, buf: bytearray, max_bytes: int, deadline: float,
                verify: bool) -> Dict[str, Any]:
    """Receive into ``buf`` until end of stream, counting; bounded by ``max_bytes`` and
    ``deadline`` (monotonic). Samples the byte count about every 0.25 s."""
    hasher = hashlib.sha256() if verify else None
    mv = memoryview(buf)
    recv_into = sock.recv_into
    now = time.monotonic
    total = 0
    calls = 0
    t0 = now()
    mark = t0 + 0.25
    samples = [(0.0, 0)]
    while True:
        n = recv_into(mv)
        if not n:
            break
        total += n
        calls += 1
        if hasher is not None:
            hasher.update(mv[:n])
        t = now()
        if t >= mark:
            samples.append((round(t - t0, 3), total))
            mark = t + 0.25
            if t > deadline:
                raise TimeoutError(f"receiving still going at the deadline ({total} bytes)")
        if total > max_bytes:
            raise RuntimeError(f"received {total} bytes, more than the {max_bytes} sent at most")
    t1 = now()
    samples.append((round(t1 - t0, 3), total))
    return {"bytes": total, "seconds": t1 - t0, "recv_calls": calls,
            "sha256": hasher.hexdigest() if hasher is not None else None, "samples": samples,
            "t0": t0, "t1": t1}


# =================================================================================================
# Workers: one process per end, started inside a namespace with `ip netns exec`.
# =================================================================================================

def _die_with_parent(parent: int) -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(3)


def _thread_cpu() -> Dict[int, float]:
    """CPU seconds (user + system) of each thread of this process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _system_cpu() -> List[int]:
    """The machine's CPU time split (`cpu` line of /proc/stat, in ticks)."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def _softnet_dropped() -> int:
    """Packets the kernel dropped for a full per-CPU backlog (netdev_max_backlog), all CPUs."""
    total = 0
    try:
        with open("/proc/net/softnet_stat") as f:
            for line in f:
                total += int(line.split()[1], 16)
    except (OSError, IndexError, ValueError):
        pass
    return total


NETSTAT_KEYS = ("TcpExt.TCPLostRetransmit", "TcpExt.TCPFastRetrans", "TcpExt.TCPSlowStartRetrans",
                "TcpExt.TCPTimeouts", "TcpExt.TCPLossProbes", "TcpExt.TCPSpuriousRtxHostQueues",
                "TcpExt.TCPDSACKRecv", "TcpExt.TCPDSACKOldSent", "TcpExt.TCPSACKReorder",
                "TcpExt.TCPTSReorder", "TcpExt.TCPBacklogDrop", "TcpExt.TCPRcvQDrop",
                "TcpExt.TCPOFOQueue", "TcpExt.TCPOFODrop", "TcpExt.TCPZeroWindowDrop",
                "TcpExt.TCPRcvCollapsed", "TcpExt.PruneCalled", "TcpExt.TCPSpuriousRTOs",
                "TcpExt.TCPSackRecovery", "TcpExt.TCPWantZeroWindowAdv", "TcpExt.TCPToZeroWindowAdv",
                "TcpExt.TCPFromZeroWindowAdv", "Tcp.RetransSegs", "Tcp.InErrs", "Tcp.InCsumErrors",
                "Ip.InDiscards", "Ip.InHdrErrors", "Ip.OutDiscards")


def _netstat() -> Dict[str, int]:
    """The network namespace's TCP/IP counters (/proc/net/netstat and /proc/net/snmp)."""
    out: Dict[str, int] = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for names, values in zip(lines[::2], lines[1::2]):
            prefix = names.split(":", 1)[0]
            for n, v in zip(names.split()[1:], values.split()[1:]):
                try:
                    out[f"{prefix}.{n}"] = int(v)
                except ValueError:
                    pass
    return out


def _dev_stats(ifname: Optional[str]) -> Dict[str, int]:
    if not ifname:
        return {}
    out = {}
    base = f"/sys/class/net/{ifname}/statistics"
    for key in ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped",
                "rx_errors", "tx_errors"):
        try:
            with open(os.path.join(base, key)) as f:
                out[key] = int(f.read())
        except OSError:
            pass
    return out


def _tcp_info(sock: Any) -> Dict[str, int]:
    """A few fields of the kernel's struct tcp_info (kernel sockets only)."""
    if not isinstance(sock, socket.socket):
        return {}
    import struct

    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    if len(raw) < 104:
        return {}
    (rtt, rttvar, _ssthresh, cwnd) = struct.unpack_from("IIII", raw, 68)
    (total_retrans,) = struct.unpack_from("I", raw, 100)
    (snd_mss, rcv_mss) = struct.unpack_from("II", raw, 16)
    return {"rtt_us": rtt, "rttvar_us": rttvar, "snd_cwnd": cwnd, "total_retrans": total_retrans,
            "snd_mss": snd_mss, "rcv_mss": rcv_mss}


def worker_main(spec: Dict[str, Any]) -> int:
    """One end of one case. Prints ``READY <port>`` once listening (side A), then ``RESULT
    <json>``; errors are reported as a RESULT with ``error`` set."""
    _die_with_parent(spec["parent"])
    emit = lambda line: (sys.stdout.write(line + "\n"), sys.stdout.flush())  # noqa: E731
    stack = None
    result: Dict[str, Any] = {"side": spec["side"], "factory": spec["factory"]}
    try:
        if spec["factory"] == "tcpfast":
            import tcpfast

            stack = tcpfast.Stack(f"{TUN_STACK_IP}/{TUN_PREFIX}", kernel_address=TUN_KERNEL_IP,
                                  ifname=spec["ifname"], mtu=spec["mtu"], offload=spec["offload"],
                                  **spec.get("stack_options", {}))
            stack.start()
            result["offload_granted"] = bool(stack.offload)
            factory = stack.socket
            engine_tid = getattr(stack._thread, "native_id", None)
        else:
            factory = lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # noqa: E731
            engine_tid = None
        if spec.get("features_dev"):
            result["features"] = netns_util.get_features(spec["features_dev"])

        io_timeout = spec["io_timeout"]
        if spec["side"] == "A":
            listener = factory()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((spec["addr"], 0))
            listener.listen(1)
            listener.settimeout(io_timeout)
            emit(f"READY {listener.getsockname()[1]}")
            sock, _ = listener.accept()
            listener.close()
        else:
            sock = factory()
            sock.settimeout(io_timeout)
            sock.connect((spec["addr"], spec["port"]))
        sock.settimeout(io_timeout)

        dev0 = _dev_stats(spec.get("stats_dev"))
        net0 = _netstat() if spec["factory"] == "kernel" else {}
        cpu0, sys0, drop0 = _thread_cpu(), _system_cpu(), _softnet_dropped()
        if spec["action"] == "send":
            slices = make_slices(spec["chunk"])
            r = send_stream(sock, slices, spec["duration"], spec["max_bytes"], spec["verify"])
        else:
            buf = bytearray(spec["chunk"])
            r = recv_stream(sock, buf, spec["max_bytes"],
                            time.monotonic() + spec["duration"] + spec["grace"], spec["verify"])
        cpu1, sys1, drop1 = _thread_cpu(), _system_cpu(), _softnet_dropped()
        result["backlog_dropped"] = drop1 - drop0
        if net0:
            net1 = _netstat()
            result["netstat"] = {k: net1[k] - net0[k] for k in NETSTAT_KEYS
                                 if k in net0 and k in net1 and net1[k] != net0[k]}
        dev1 = _dev_stats(spec.get("stats_dev"))
        result["tcp_info"] = _tcp_info(sock)
        sock.close()
        result.update(r)
        wall = r["t1"] - r["t0"]
        threads = {}
        for tid, c in cpu1.items():
            label = "app" if tid == os.getpid() else ("engine" if tid == engine_tid else f"thread-{tid}")
            used = c - cpu0.get(tid, 0.0)
            if used > 0 or label in ("app", "engine"):
                threads[label] = round(used / wall, 3) if wall > 0 else None
        result["cpu_per_thread"] = threads        # CPU seconds per second of transfer
        total = [b - a for a, b in zip(sys0, sys1)]
        ticks = sum(total) or 1
        names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
        result["system_cpu"] = {n: round(v / ticks, 3) for n, v in zip(names, total)}
        if dev0:
            result["dev"] = {k: dev1[k] - dev0[k] for k in dev0 if k in dev1}
        if stack is not None:
            st = stack.stats()
            keep = ("packets_in", "packets_out", "gso_in", "gso_out", "segments_in", "segments_out",
                    "retransmits", "fast_retransmits", "rto_expirations", "dupacks_in",
                    "ooo_segments", "ooo_dropped", "bad_checksum", "malformed", "write_errors",
                    "zero_window_probes", "offload_fallback", "offload_flags")
            result["stack_stats"] = {k: st[k] for k in keep if k in st}
            result["stack_stats_all"] = {k: v for k, v in st.items() if v}
    except BaseException as exc:  # noqa: BLE001 - reported to the orchestrator
        result["error"] = f"{type(exc).__name__}: {exc}"
    emit("RESULT " + json.dumps(result))
    # Keep the stack (and so the TUN device) until the orchestrator has both results: the
    # kernel peer reads the device's counters after its last byte.
    import select
    select.select([sys.stdin], [], [], 60)
    stopped = "ok"
    if stack is not None:
        t = time.monotonic()
        try:
            stack.stop()
            stopped = f"ok {time.monotonic() - t:.3f}"
        except BaseException as exc:  # noqa: BLE001
            stopped = f"error stack.stop(): {type(exc).__name__}: {exc}"
    emit("STOPPED " + stopped)
    return 0 if "error" not in result and stopped.startswith("ok") else 1


# =================================================================================================
# The orchestrator: namespaces, workers, the table.
# =================================================================================================

class Worker:
    """A worker process inside a namespace, its stdout lines collected by a thread."""

    def __init__(self, ns: str, spec: Dict[str, Any], python: str) -> None:
        self.spec = spec
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.stderr = tempfile.TemporaryFile(mode="w+")
        argv = netns_util.exec_argv(ns) + [python, "-u", os.path.abspath(__file__),
                                           "--worker", json.dumps(spec)]
        # Its own session: a Ctrl-C in the terminal reaches only the orchestrator, which then
        # ends the workers by pid and removes the namespaces.
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, deadline: float) -> str:
        """The rest of the next line starting with ``prefix``; raises on EOF or deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {prefix.strip()} from the {self.spec['factory']} worker "
                                   f"(side {self.spec['side']}) in time")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(5)
                raise RuntimeError(f"the {self.spec['factory']} worker (side {self.spec['side']}) "
                                   f"exited with {self.proc.returncode} before {prefix.strip()}: "
                                   f"{self.stderr_text()}")
            if line.startswith(prefix):
                return line[len(prefix):]

    def finish(self, deadline: float) -> str:
        """Let the worker stop its stack and exit; what it said about stopping."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("EXIT\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        return self.expect("STOPPED ", deadline)

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().strip()
        return text[-2000:] if text else "(nothing on stderr)"

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()            # by pid, the process we started
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.stderr.close()


class Run:
    """Everything one benchmark run creates, removed by :meth:`close`."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        tag = f"{netns_util.PREFIX}{os.getpid()}"
        self.ns_tun, self.ns_a, self.ns_b = f"{tag}-tun", f"{tag}-va", f"{tag}-vb"
        self.made: List[str] = []
        self.workers: List[Worker] = []
        self.own_links_before = set(netns_util.links())
        self.veth_features: Dict[bool, Dict[str, Dict[str, bool]]] = {}
        self.veth_defaults: Dict[str, Dict[str, bool]] = {}
        self.case_index = 0

    # --- set-up and tear-down -----------------------------------------------------------------

    def setup(self) -> None:
        mtu = self.args.mtu
        for ns in (self.ns_tun, self.ns_a, self.ns_b):
            netns_util.create(ns)
            self.made.append(ns)
        netns_util.add_veth(self.ns_a, VETH_A, self.ns_b, VETH_B, mtu)
        netns_util.address_up(self.ns_a, VETH_A, f"{VETH_A_IP}/{VETH_PREFIX}")
        netns_util.address_up(self.ns_b, VETH_B, f"{VETH_B_IP}/{VETH_PREFIX}")
        self.veth_defaults = {
            VETH_A: netns_util.call_in(self.ns_a, lambda: netns_util.get_features(VETH_A)),
            VETH_B: netns_util.call_in(self.ns_b, lambda: netns_util.get_features(VETH_B)),
        }
        self.check_isolation()

    def check_isolation(self) -> None:
        """The rule: nothing this run made shows up in the namespace the run started in."""
        extra = set(netns_util.links()) - self.own_links_before
        ours = {n for n in extra if n.startswith("tfb")}
        if ours:
            raise RuntimeError(f"devices of this run appeared outside its namespaces: {sorted(ours)}")

    def set_veth_offload(self, on: bool) -> Dict[str, Dict[str, bool]]:
        """Offload off: every feature off. On: the features veth had when it was made (its
        defaults: checksums, SG, TSO, GSO on; GRO off, which would switch veth to NAPI mode)."""
        feats = {}
        for ns, dev in ((self.ns_a, VETH_A), (self.ns_b, VETH_B)):
            want = self.veth_defaults[dev] if on else {k: False for k in netns_util.FEATURES}
            feats[dev] = netns_util.call_in(ns, lambda: netns_util.set_features(dev, want))
        self.veth_features[on] = feats
        return feats

    def start_profile(self, worker: "Worker", name: str) -> Optional[str]:
        """py-spy on ``worker`` for the sending time of the case (bounded), collapsed stacks."""
        spy = shutil.which("py-spy") or os.path.join(os.path.dirname(self.args.python), "py-spy")
        if not os.path.exists(spy):
            print(" (py-spy not found: no profile)", end="", file=sys.stderr)
            return None
        os.makedirs(self.args.profile, exist_ok=True)
        path = os.path.join(self.args.profile, name + ".txt")
        duration = max(1, int(self.args.duration * 0.8))
        # Started a fifth of the duration in, so slow start and set-up stay out of it.
        argv = [spy, "record", "--native", "--threads", "--rate", "250", "--duration",
                str(duration), "--format", "raw", "--output", path, "--pid", str(worker.proc.pid)]
        delay = self.args.duration * 0.15
        threading.Thread(target=self._spy, args=(argv, delay, duration + 30), daemon=True).start()
        return path

    def _spy(self, argv: List[str], delay: float, timeout: float) -> None:
        time.sleep(delay)
        try:
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass

    def close(self) -> None:
        for w in self.workers:
            w.kill()
        self.workers.clear()
        for ns in reversed(self.made):
            try:
                netns_util.remove(ns)
            except Exception as exc:  # noqa: BLE001 - keep removing the others
                print(f"warning: could not remove namespace {ns}: {exc}", file=sys.stderr)
        left = [ns for ns in self.made if ns in netns_util.listed()]
        self.made.clear()
        if left:
            print(f"warning: namespaces still listed: {left}", file=sys.stderr)

    # --- one case -----------------------------------------------------------------------------

    def run_case(self, kind: str, direction: str, offload: bool) -> Dict[str, Any]:
        a = self.args
        self.case_index += 1
        base = dict(parent=os.getpid(), mtu=a.mtu, offload=offload, duration=a.duration,
                    max_bytes=a.bytes, chunk=a.chunk, verify=a.verify, io_timeout=a.io_timeout,
                    grace=a.grace, stack_options=a.stack_options)
        send_side = "B" if direction == "in" else "A"
        if kind == "tcpfast":
            ifname = f"tfbt{self.case_index}"
            spec_a = dict(base, side="A", factory="tcpfast", ns=self.ns_tun, ifname=ifname,
                          addr=TUN_STACK_IP)
            spec_b = dict(base, side="B", factory="kernel", ns=self.ns_tun, addr=TUN_STACK_IP,
                          stats_dev=ifname, features_dev=ifname)
        else:
            spec_a = dict(base, side="A", factory="kernel", ns=self.ns_a, addr=VETH_A_IP,
                          stats_dev=VETH_A, features_dev=VETH_A)
            spec_b = dict(base, side="B", factory="kernel", ns=self.ns_b, addr=VETH_A_IP,
                          stats_dev=VETH_B, features_dev=VETH_B)
        spec_a["action"] = "send" if send_side == "A" else "recv"
        spec_b["action"] = "send" if send_side == "B" else "recv"

        case: Dict[str, Any] = {"kind": kind, "direction": direction, "offload": offload}
        started = time.monotonic()
        wa = wb = None
        try:
            wa = Worker(spec_a["ns"], spec_a, a.python)
            self.workers.append(wa)
            port = int(wa.expect("READY ", started + 60))
            spec_b["port"] = port
            wb = Worker(spec_b["ns"], spec_b, a.python)
            self.workers.append(wb)
            if a.profile and kind == "tcpfast":
                case["profile"] = self.start_profile(wa, f"{kind}-{direction}-offload-"
                                                     f"{'on' if offload else 'off'}-{self.case_index}")
            deadline = time.monotonic() + a.duration + a.grace + 30
            ra = json.loads(wa.expect("RESULT ", deadline))
            rb = json.loads(wb.expect("RESULT ", deadline))
            for w, r in ((wa, ra), (wb, rb)):
                stopped = w.finish(time.monotonic() + 20)
                if not stopped.startswith("ok"):
                    r.setdefault("error", stopped)
                elif w.spec["factory"] == "tcpfast":
                    r["stop_seconds"] = float(stopped.split()[1])
        except BaseException as exc:
            case["error"] = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return case
        finally:
            for w in (wa, wb):
                if w is not None:
                    w.kill()
                    self.workers.remove(w)
            self.check_isolation()
        case["A"], case["B"] = ra, rb
        errors = [f"side {r['side']} ({r['factory']}): {r['error']}" for r in (ra, rb) if r.get("error")]
        if errors:
            case["error"] = "; ".join(errors)
            return case
        sender, receiver = (ra, rb) if send_side == "A" else (rb, ra)
        if sender["bytes"] != receiver["bytes"]:
            case["error"] = (f"byte count differs: sent {sender['bytes']}, "
                             f"received {receiver['bytes']}")
        elif a.verify and sender["sha256"] != receiver["sha256"]:
            case["error"] = "SHA-256 of the received stream differs from the sent one"
        ours = sum(v for r in (ra, rb) for v in (r.get("cpu_per_thread") or {}).values() if v)
        sc = receiver.get("system_cpu") or {}
        if sc:
            busy = (1 - sc.get("idle", 0) - sc.get("iowait", 0)) * (os.cpu_count() or 1)
            case["cores"] = {"machine_busy": round(busy, 2), "workers": round(ours, 2),
                             "elsewhere": round(busy - ours, 2)}
        case["backlog_dropped"] = max(ra.get("backlog_dropped", 0), rb.get("backlog_dropped", 0))
        # From the first moment either end could move data (CLOCK_MONOTONIC is one clock for
        # all processes) to the receiver's end of stream.
        start = min(sender["t0"], receiver["t0"])
        case["bytes"] = receiver["bytes"]
        case["seconds"] = receiver["t1"] - start
        case["gbps"] = receiver["bytes"] * 8 / case["seconds"] / GBIT if case["seconds"] > 0 else 0.0
        case["sender_gbps"] = sender["bytes"] * 8 / sender["seconds"] / GBIT if sender["seconds"] > 0 else 0.0
        return case


# --- output ---------------------------------------------------------------------------------------

def _fmt(x: Optional[float], spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def median_case(cases: List[Dict[str, Any]]) -> Optional[float]:
    vals = [c["gbps"] for c in cases if "gbps" in c and not c.get("error")]
    return statistics.median(vals) if vals else None


def cpu_note(case: Dict[str, Any]) -> str:
    """CPU use of both ends as 'A app 0.98 engine 0.71 | B app 0.80' (cores busy)."""
    parts = []
    for side in ("A", "B"):
        r = case.get(side) or {}
        th = r.get("cpu_per_thread") or {}
        if th:
            parts.append(f"{side}:" + " ".join(f"{k}={v:.2f}" for k, v in th.items() if v is not None))
    return " | ".join(parts)


def print_table(results: Dict[tuple, Dict[str, List[Dict[str, Any]]]], args: argparse.Namespace,
                out=sys.stdout) -> Dict[str, Any]:
    rows = []
    header = ("case", "direction", "offload", "tcpfast Gbit/s", "kernel Gbit/s (veth)", "ratio",
              "issue-4 target", "met")
    for (direction, offload), by_kind in results.items():
        t = median_case(by_kind.get("tcpfast", []))
        k = median_case(by_kind.get("veth", []))
        target = TARGETS[(direction, offload)]
        label = "kernel -> tcpfast" if direction == "in" else "tcpfast -> kernel"
        met = None if t is None else t >= target
        ratio = (t / k) if (t is not None and k) else None
        rows.append(dict(case=f"bulk {label}", direction=direction, offload=offload, tcpfast=t,
                         kernel=k, ratio=ratio, target=target, met=met))
    cells = [header] + [(r["case"], r["direction"], "on" if r["offload"] else "off",
                         _fmt(r["tcpfast"]), _fmt(r["kernel"]),
                         "-" if r["ratio"] is None else f"{r['ratio']:.3f}x",
                         f">= {r['target']:g}", "-" if r["met"] is None else ("yes" if r["met"] else "NO"))
                        for r in rows]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(header))]
    print(file=out)
    for n, c in enumerate(cells):
        print("  ".join(str(v).ljust(w) if i < 3 else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(c, widths))), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
    print(file=out)
    return {"rows": rows}


def summarize_targets(rows: List[Dict[str, Any]], out=sys.stdout) -> None:
    print("issue-4 targets (MTU 1500; tcpfast Gbit/s of payload):", file=out)
    for r in rows:
        label = f"{'into' if r['direction'] == 'in' else 'out of'} tcpfast, offload {'on' if r['offload'] else 'off'}"
        verdict = ("not measured" if r["met"] is None else
                   f"{'met' if r['met'] else 'NOT met'} ({r['tcpfast']:.2f} Gbit/s)")
        print(f"  >= {r['target']:g} Gbit/s {label}: {verdict}", file=out)
    print("issue-6 ratio targets (tcpfast / kernel over veth; bulk receive >= 0.5x, send >= 0.4x):",
          file=out)
    for r in rows:
        want = RATIO_TARGETS[r["direction"]]
        verdict = ("not measured" if r["ratio"] is None else
                   f"{'met' if r['ratio'] >= want else 'NOT met'} ({r['ratio']:.3f}x)")
        print(f"  {'receive' if r['direction'] == 'in' else 'send'} >= {want}x, offload "
              f"{'on' if r['offload'] else 'off'}: {verdict}", file=out)


def print_details(all_cases: List[Dict[str, Any]], out=sys.stdout) -> None:
    print("per run (receiver's Gbit/s; CPU = cores busy per side and thread; A = tcpfast or veth "
          "end A, B = kernel peer):", file=out)
    for c in all_cases:
        name = f"{c['kind']:<7} {c['direction']:<3} offload={'on ' if c['offload'] else 'off'}"
        if c.get("error") and "gbps" not in c:
            print(f"  {name}  FAILED: {c['error']}", file=out)
            continue
        extra = []
        a, b = c.get("A", {}), c.get("B", {})
        st = a.get("stack_stats")
        if st:
            extra.append("stack: " + " ".join(f"{k}={st[k]}" for k in
                                              ("packets_in", "packets_out", "gso_in", "gso_out",
                                               "retransmits", "rto_expirations", "ooo_segments",
                                               "bad_checksum", "write_errors") if k in st))
        for side, r in (("A", a), ("B", b)):
            ti = r.get("tcp_info")
            if ti:
                extra.append(f"{side} tcp_info: rtt={ti['rtt_us']}us cwnd={ti['snd_cwnd']} "
                             f"retrans={ti['total_retrans']}")
        for side, r in (("A", a), ("B", b)):
            ns = r.get("netstat")
            if ns:
                extra.append(f"{side} kernel counters: " + " ".join(
                    f"{k.split('.', 1)[1]}={v}" for k, v in ns.items()))
        dev = b.get("dev") or a.get("dev")
        if dev and (dev.get("rx_dropped") or dev.get("tx_dropped")):
            extra.append(f"device drops rx={dev.get('rx_dropped')} tx={dev.get('tx_dropped')}")
        if c.get("backlog_dropped"):
            extra.append(f"kernel backlog drops (softnet_stat): {c['backlog_dropped']}")
        sys_cpu = (b if c["direction"] == "in" else a).get("system_cpu") or {}
        if sys_cpu:
            cores = c.get("cores") or {}
            extra.append("machine: " + " ".join(f"{k}={v:.0%}" for k, v in sys_cpu.items()
                                                if k in ("user", "system", "softirq", "idle")) +
                         (f"; cores busy {cores['machine_busy']:.2f}, by the two workers "
                          f"{cores['workers']:.2f}, elsewhere {cores['elsewhere']:.2f}"
                          if cores else ""))
        flag = f"  ERROR: {c['error']}" if c.get("error") else ""
        print(f"  {name}  {c['gbps']:7.2f} Gbit/s  {c['bytes'] / 1e6:9.1f} MB in {c['seconds']:.2f} s"
              f"  CPU {cpu_note(c)}{flag}", file=out)
        for e in extra:
            print(f"      {e}", file=out)


def busy_cores(seconds: float) -> float:
    """Cores busy (not idle, not waiting for I/O) over ``seconds`` of /proc/stat."""
    a = _system_cpu()
    time.sleep(seconds)
    b = _system_cpu()
    d = [y - x for x, y in zip(a, b)]
    total = sum(d) or 1
    return (1 - (d[3] + d[4]) / total) * (os.cpu_count() or 1)


def wait_idle(limit: float, threshold: float = 0.25) -> float:
    """Wait (at most ``limit`` s) until fewer than ``threshold`` cores are busy; the last figure."""
    deadline = time.monotonic() + limit
    while True:
        busy = busy_cores(0.5)
        if busy < threshold or time.monotonic() >= deadline:
            return busy


def _option_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_size(text: str) -> int:
    text = text.strip().upper().rstrip("B")
    mult = 1
    for suffix, m in (("KI", KIB), ("MI", MIB), ("GI", GIB), ("K", 1000), ("M", 10 ** 6),
                      ("G", 10 ** 9)):
        if text.endswith(suffix):
            mult, text = m, text[:-len(suffix)]
            break
    return int(float(text) * mult)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="about 1 s per case (--duration 1)")
    p.add_argument("--duration", type=float, help="seconds of sending per case (default 5)")
    p.add_argument("--bytes", type=parse_size, default=None,
                   help="stop sending after this many bytes (e.g. 1G, 500M, 1GiB) when that comes "
                        "before --duration (default: a 64 GiB safety bound)")
    p.add_argument("--mtu", type=int, default=1500, help="MTU of the TUN device and the veth pair")
    p.add_argument("--chunk", type=parse_size, default=256 * KIB,
                   help="bytes per sendall() and per recv_into() buffer (default 256 KiB)")
    p.add_argument("--repeat", type=int, default=1, help="runs per case; the median is reported")
    p.add_argument("--verify", action="store_true",
                   help="also compare the SHA-256 of the stream at both ends (costs CPU)")
    p.add_argument("--offload", choices=("off", "on", "both"), default="both")
    p.add_argument("--direction", choices=("in", "out", "both"), default="both")
    p.add_argument("--only", choices=("tcpfast", "veth", "both"), default="both",
                   help="run only one kind of case")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON here")
    p.add_argument("--profile", metavar="DIR",
                   help="record the tcpfast worker of each case with py-spy (--native --threads, "
                        "collapsed stacks, one file per case) into DIR; needs py-spy on PATH or "
                        "beside the Python used")
    p.add_argument("--stack-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a tcp option for tcpfast.Stack(**options), e.g. rcvbuf=4194304 (repeatable; "
                        "see tcpfast._tcb.OPTION_NAMES); the default is none, the stack's defaults")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help="before each case wait up to S seconds for the machine to be idle "
                        "(under 0.25 cores busy over half a second); for shared machines")
    p.add_argument("--io-timeout", type=float, default=20.0,
                   help="seconds any one socket call may block before the case fails")
    p.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return worker_main(json.loads(args.worker))

    if args.duration is None:
        args.duration = 1.0 if args.quick else 5.0
    if not 0 < args.duration <= 3600:
        p.error("--duration must be in (0, 3600] seconds")
    if args.bytes is None:
        args.bytes = 64 * GIB
    if args.bytes <= 0:
        p.error("--bytes must be positive")
    if not 576 <= args.mtu <= 65535:
        p.error("--mtu must be in 576..65535")
    if not 1 <= args.chunk <= 64 * MIB:
        p.error("--chunk must be in 1..64 MiB")
    args.stack_options = {}
    for item in args.stack_option:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--stack-option wants KEY=VALUE, not {item!r}")
        args.stack_options[key.strip()] = _option_value(value.strip())
    if not 1 <= args.repeat <= 100:
        p.error("--repeat must be in 1..100")
    args.grace = 30.0

    reason = netns_util.unavailable()
    if reason is None:
        probe = subprocess.run([args.python, "-c",
                                "import tcpfast, tcpfast._engine, pytun; print(getattr(tcpfast, '__version__', '?'))"],
                               capture_output=True, text=True, timeout=60,
                               cwd=os.path.dirname(os.path.abspath(__file__)))
        if probe.returncode != 0:
            reason = ("tcpfast (compiled) and python-pytun must be importable by "
                      f"{args.python}: {probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else probe.returncode}")
    if reason:
        print(f"tun_throughput: cannot run: {reason}", file=sys.stderr)
        return 2
    version = probe.stdout.strip()

    offloads = {"off": [False], "on": [True], "both": [False, True]}[args.offload]
    directions = {"in": ["in"], "out": ["out"], "both": ["in", "out"]}[args.direction]
    kinds = {"tcpfast": ["tcpfast"], "veth": ["veth"], "both": ["tcpfast", "veth"]}[args.only]

    # SIGTERM and SIGHUP end the run the way Ctrl-C does: through the finally below.
    def on_signal(signum, frame):  # noqa: ARG001
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even when started with it ignored

    before = busy_cores(0.5)
    if before > 0.3:
        print(f"warning: the machine is not idle: {before:.2f} cores busy before the run; "
              "figures will be low and noisy", file=sys.stderr)

    stale = netns_util.remove_stale()
    if stale:
        print(f"removed namespaces left by earlier killed runs: {stale}", file=sys.stderr)

    run = Run(args)
    all_cases: List[Dict[str, Any]] = []
    results: Dict[tuple, Dict[str, List[Dict[str, Any]]]] = {}
    interrupted = None
    total = len(offloads) * len(directions) * len(kinds) * args.repeat
    try:
        run.setup()
        n = 0
        for offload in offloads:
            if "veth" in kinds:
                run.set_veth_offload(offload)
            for direction in directions:
                for rep in range(args.repeat):
                    for kind in kinds:
                        n += 1
                        label = (f"[{n}/{total}] {kind:<7} {'kernel -> tcpfast' if direction == 'in' else 'tcpfast -> kernel'}"
                                 if kind == "tcpfast" else
                                 f"[{n}/{total}] {kind:<7} {'B -> A (as in)' if direction == 'in' else 'A -> B (as out)':<17}")
                        print(f"{label}  offload={'on ' if offload else 'off'} ...", end="",
                              file=sys.stderr, flush=True)
                        idle_before = wait_idle(args.wait_idle) if args.wait_idle > 0 else None
                        case = run.run_case(kind, direction, offload)
                        if idle_before is not None:
                            case["busy_cores_before"] = round(idle_before, 2)
                        case["repeat"] = rep
                        all_cases.append(case)
                        results.setdefault((direction, offload), {}).setdefault(kind, []).append(case)
                        if "gbps" in case:
                            msg = f" {case['gbps']:.2f} Gbit/s"
                            if case.get("error"):
                                msg += f"  ERROR: {case['error']}"
                        else:
                            msg = f" FAILED: {case['error']}"
                        print(msg, file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        interrupted = "interrupted (Ctrl-C)"
    except SystemExit as exc:
        interrupted = f"ended by signal {int(exc.code) - 128}" if isinstance(exc.code, int) else str(exc)
    except Exception as exc:  # noqa: BLE001 - reported, then the namespaces go
        interrupted = f"failed: {type(exc).__name__}: {exc}"
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)      # let the clean-up finish
        try:
            run.close()
        finally:
            signal.signal(signal.SIGINT, old)
    if interrupted:
        print(f"\n{interrupted}; namespaces removed. Results so far:", file=sys.stderr)

    print(f"\ncommand: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"tcpfast {version} over TUN vs kernel over veth; "
          f"MTU {args.mtu}, {args.duration:g} s or {args.bytes} bytes per case, chunk "
          f"{args.chunk} B, {args.repeat} run(s) per case (median), "
          f"{'stack options ' + repr(args.stack_options) + ', ' if args.stack_options else ''}"
          f"{os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}")
    noisy = [c for c in all_cases if (c.get("cores") or {}).get("elsewhere", 0) > 0.4]
    if all_cases:
        table = print_table(results, args)
        summarize_targets(table["rows"])
        print()
        print_details(all_cases)
        print()
        if before > 0.3 or noisy:
            print(f"WARNING: the machine was busy with other work ({before:.2f} cores before the "
                  f"run; {len(noisy)} case(s) with more than 0.4 cores busy outside the two "
                  "workers' threads: other processes, a profiler, or kernel work not charged to "
                  "them): these figures may understate both stacks. Run it on an idle machine.\n")
    else:
        table = {"rows": []}
        print("\n(no case finished)\n")
    print(TUN_OFF_MEANING)
    print(VETH_OFF_MEANING)
    for on, feats in sorted(run.veth_features.items()):
        for dev, f in feats.items():
            print(f"  veth {dev} with offload {'on ' if on else 'off'}: " +
                  ", ".join(f"{k} {'on' if v else 'off'}" for k, v in f.items()))
    tun_feats = {}
    for c in all_cases:
        if c["kind"] == "tcpfast" and c.get("B", {}).get("features"):
            tun_feats[c["offload"]] = c["B"]["features"]
    for on, f in sorted(tun_feats.items()):
        print(f"  TUN (kernel side) with offload {'on ' if on else 'off'}: " +
              ", ".join(f"{k} {'on' if v else 'off'}" for k, v in f.items()))

    if args.json:
        doc = {
            "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "python", "stack_option")},
            "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                        "python": platform.python_version(), "cpu": _cpu_model(),
                        "tcpfast": version},
            "rows": table["rows"], "cases": all_cases,
            "veth_features": {("on" if k else "off"): v for k, v in run.veth_features.items()},
            "meaning": {"tcpfast": TUN_OFF_MEANING, "veth": VETH_OFF_MEANING},
            "interrupted": interrupted, "busy_cores_before": round(before, 2),
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"\nresults written to {args.json}")

    failed = [c for c in all_cases if c.get("error")]
    if failed:
        print(f"\n{len(failed)} case(s) failed:", file=sys.stderr)
        for c in failed:
            print(f"  {c['kind']} {c['direction']} offload={'on' if c['offload'] else 'off'}: "
                  f"{c['error']}", file=sys.stderr)
    if interrupted:
        return 130 if "Ctrl-C" in interrupted else 1
    return 1 if failed else 0


def _cpu_model() -> Optional[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


if __name__ == "__main__":
    sys.exit(main())
