"""One end of ``tcpfast bench`` workloads, in a process of its own inside a network namespace.

    ip netns exec NS python -m tcpfast.bench.worker '<spec json>'

The spec says which socket factory the process uses (``tcpfast``: a :class:`tcpfast.Stack` on
a new TUN device, its ``socket`` method; ``kernel``: ``socket.socket``) and the address it
serves on. The process then takes one JSON command per line on stdin and answers one line on
stdout:

* ``{"op": "serve", "workload": W, "params": P}``: listen on a fresh port and serve workload W
  in a thread; answers ``PORT <n>``;
* ``{"op": "run", "workload": W, "params": P, "port": n, "host": H}``: run the measured end of
  W against ``H:n``; answers ``RESULT <json>``;
* ``{"op": "collect", "timeout": T}``: wait for the serving thread; answers ``RESULT <json>``;
* ``{"op": "exit"}``: stop the stack and leave (also on end of input).

It dies with its parent (PR_SET_PDEATHSIG), so a killed orchestrator leaves no worker behind.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import socket
import sys
import threading
import time
from typing import Any, Dict, Optional

from tcpfast.bench import workloads

# Counters worth a look after a case (deltas): the stack's, or the namespace's for the kernel.
STACK_KEYS = ("segments_in", "segments_out", "retransmits", "fast_retransmits", "rto_expirations",
              "dupacks_in", "ooo_segments", "bad_checksum", "malformed", "syn_cookies_sent")
NETSTAT_KEYS = ("Tcp.RetransSegs", "Tcp.InSegs", "Tcp.OutSegs", "TcpExt.TCPTimeouts",
                "TcpExt.TCPFastRetrans", "TcpExt.TCPSackRecovery", "TcpExt.TCPLossProbes",
                "TcpExt.TCPOFOQueue")

# Retransmissions by cause, every name reported (absent ones as None): tcpfast's per-connection
# counters summed by stack.stats() (the retrans_* ... undo_events family arrives with the new
# loss recovery; read with .get so that this works before and after it), and the kernel's from
# /proc/net/snmp and /proc/net/netstat of the worker's namespace, which holds only its own end.
STACK_RETRANS = ("retransmits", "rto_expirations", "fast_retransmits", "retrans_rto",
                 "retrans_fast", "retrans_rack", "retrans_tlp", "tlp_probes", "spurious_retrans",
                 "spurious_rtos", "dsack_in", "dsack_out", "undo_events")
NETSTAT_RETRANS = ("Tcp.RetransSegs", "TcpExt.TCPTimeouts", "TcpExt.TCPLossProbes",
                   "TcpExt.TCPLossProbeRecovery", "TcpExt.TCPFastRetrans",
                   "TcpExt.TCPSlowStartRetrans", "TcpExt.TCPLostRetransmit",
                   "TcpExt.TCPRetransFail", "TcpExt.TCPSpuriousRTOs", "TcpExt.TCPDSACKRecv",
                   "TcpExt.TCPDSACKOldSent", "TcpExt.TCPDSACKOfoSent", "TcpExt.TCPDSACKOfoRecv",
                   "TcpExt.TCPDSACKUndo", "TcpExt.TCPLossUndo", "TcpExt.TCPSackRecovery",
                   "TcpExt.TCPSACKReorder")


def _die_with_parent(parent: int) -> None:
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(3)


def _raise_nofile(want: int) -> None:
    """Idle connections need a descriptor or two each: raise the limit (root may)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def netstat() -> Dict[str, int]:
    """The namespace's TCP counters (/proc/net/snmp and /proc/net/netstat)."""
    out: Dict[str, int] = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for names, values in zip(lines[::2], lines[1::2]):
            prefix = names.split(":", 1)[0]
            for n, v in zip(names.split()[1:], values.split()[1:]):
                if v.lstrip("-").isdigit():
                    out[f"{prefix}.{n}"] = int(v)
    return out


def kernel_socket_factory(cc: Optional[str]):
    """kernel_socket_factory(cc) -> callable

    Kernel TCP sockets with congestion control ``cc`` (TCP_CONGESTION on each socket; an
    accepted socket takes its listener's). The host's default may be another algorithm (BBR on
    this project's machines, where the namespace's sysctl cannot be written): comparing
    tcpfast's CUBIC with the kernel's BBR would measure the algorithms, not the stacks."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if cc:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
            got = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0")
            if got.decode() != cc:
                s.close()
                raise RuntimeError(f"the kernel socket's congestion control is {got!r}, not {cc!r}")
        return s
    return make


class Worker:
    def __init__(self, spec: Dict[str, Any]) -> None:
        self.spec = spec
        self.stack = None
        self.serving: Optional[threading.Thread] = None
        self.served: Dict[str, Any] = {}
        cc = spec.get("cc")
        if spec["factory"] == "tcpfast":
            import tcpfast

            options = dict(spec.get("stack_options", {}))
            if cc:
                options.setdefault("cc", "newreno" if cc == "reno" else cc)
            self.stack = tcpfast.Stack(spec["address"], kernel_address=spec["kernel_address"],
                                       ifname=spec["ifname"], mtu=spec["mtu"],
                                       offload=spec["offload"], **options)
            self.stack.start()
            self.factory = self.stack.socket
        else:
            self.factory = kernel_socket_factory(cc)

    def info(self) -> Dict[str, Any]:
        info: Dict[str, Any] = {"pid": os.getpid(), "factory": self.spec["factory"]}
        if self.stack is not None:
            info.update(ifname=self.stack.ifname, offload_granted=bool(self.stack.offload))
        return info

    def retrans_counters(self) -> Dict[str, Any]:
        """The raw retransmission counters of this end (None where a counter does not exist)."""
        if self.stack is not None:
            st = self.stack.stats()
            return {k: st.get(k) for k in STACK_RETRANS}
        st = netstat()
        return {k: st.get(k) for k in NETSTAT_RETRANS}

    def retrans_delta(self, before: Dict[str, Any]) -> Dict[str, Any]:
        """``{"source", "deltas", "absent"}``: the change of each counter since ``before``."""
        after = self.retrans_counters()
        deltas = {k: (after[k] - before[k] if after[k] is not None and before.get(k) is not None
                      else None) for k in after}
        return {"source": "stack.stats()" if self.stack is not None else "/proc/net/netstat",
                "deltas": deltas, "absent": [k for k, v in deltas.items() if v is None]}

    def counters(self) -> Dict[str, int]:
        if self.stack is not None:
            st = self.stack.stats()
            out = {k: st[k] for k in STACK_KEYS if k in st}
            # The kernel's side of the TUN device: tx_dropped counts packets the kernel sent
            # that found the device's queue full (the engine too slow to read them).
            base = f"/sys/class/net/{self.stack.ifname}/statistics"
            for key in ("tx_packets", "tx_dropped", "rx_packets", "rx_dropped"):
                try:
                    with open(os.path.join(base, key)) as f:
                        out[f"tun_{key}"] = int(f.read())
                except OSError:
                    pass
            return out
        st = netstat()
        return {k: st[k] for k in NETSTAT_KEYS if k in st}

    # --- the commands --------------------------------------------------------------------------

    def serve(self, cmd: Dict[str, Any]) -> str:
        w = workloads.get(cmd["workload"])
        params = cmd["params"]
        listener = self.factory()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.spec["host"], 0))
        listener.listen(w.backlog)
        listener.settimeout(params["io_timeout"])
        self.served = {}
        before = self.retrans_counters()

        def body() -> None:
            try:
                self.served = w.serve(listener, params)
            except BaseException as exc:  # noqa: BLE001 - reported through collect
                self.served = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                listener.close()
            self.served["retransmits"] = self.retrans_delta(before)

        self.serving = threading.Thread(target=body, name=f"serve-{w.name}", daemon=True)
        self.serving.start()
        return f"PORT {listener.getsockname()[1]}"

    def run(self, cmd: Dict[str, Any]) -> str:
        w = workloads.get(cmd["workload"])
        before, cpu0, t0 = self.counters(), workloads.cpu_seconds(), time.monotonic()
        retrans0 = self.retrans_counters()
        try:
            result = w.run(self.factory, (cmd["host"], cmd["port"]), cmd["params"])
        except BaseException as exc:  # noqa: BLE001 - reported to the orchestrator
            result = {"error": f"{type(exc).__name__}: {exc}"}
        wall = time.monotonic() - t0
        after = self.counters()
        result["counters"] = {k: after[k] - before[k] for k in after
                              if k in before and after[k] != before[k]}
        result["retransmits"] = self.retrans_delta(retrans0)
        result["cpu_cores"] = (workloads.cpu_seconds() - cpu0) / wall if wall > 0 else None
        return "RESULT " + json.dumps(result)

    def collect(self, cmd: Dict[str, Any]) -> str:
        t = self.serving
        if t is not None:
            t.join(cmd.get("timeout", 30))
            if t.is_alive():
                return "RESULT " + json.dumps({"error": "the serving end did not finish in time"})
        self.serving = None
        return "RESULT " + json.dumps(self.served)

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()


def main(argv: Optional[list] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    _die_with_parent(spec["parent"])
    _raise_nofile(spec.get("nofile", 1024))
    out = sys.stdout

    def emit(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    try:
        worker = Worker(spec)
    except BaseException as exc:  # noqa: BLE001 - told to the orchestrator, which reports it
        emit("FAILED " + json.dumps(f"{type(exc).__name__}: {exc}"))
        return 1
    emit("READY " + json.dumps(worker.info()))
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "exit":
                break
            try:
                emit(getattr(worker, op)(cmd) if op in ("serve", "run", "collect") else
                     "ERROR " + json.dumps(f"unknown op {op!r}"))
            except BaseException as exc:  # noqa: BLE001
                emit("ERROR " + json.dumps(f"{type(exc).__name__}: {exc}"))
    finally:
        worker.stop()
    emit("STOPPED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
