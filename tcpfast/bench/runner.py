"""One run of ``tcpfast bench``: its namespaces, its worker processes and its cases.

Layout (every name carries the run's pid, so two runs never meet, and a run killed outright is
cleaned up by the next one):

* ``tcpfb-<pid>-tun``: a :class:`tcpfast.Stack` on a TUN device (198.18.0.2, the *local* end,
  in one worker process) and a kernel socket on the device's kernel side (198.18.0.1, the *peer*,
  in another process);
* ``tcpfb-<pid>-va`` and ``tcpfb-<pid>-vb``: the kernel's own TCP at both ends of a veth pair of
  the same MTU (198.18.1.1 local, 198.18.1.2 peer), each end in its own process.

Both cases run the same workload code (:mod:`tcpfast.bench.workloads`); only the local end's
socket factory differs. Offload ``off`` is ``Stack(offload=False)`` against veth with checksum,
scatter-gather, TSO, GSO and GRO all switched off; ``on`` is ``Stack(offload=True)`` (virtio-net
header, checksum offload and TSO on the TUN device) against veth's default features.
Loss (the ``loss_*`` workloads) is added on the peer's device, both ways (:mod:`.loss`).

The ``wan_*`` workloads run over a WAN path of their own for each stack (:mod:`.wan`:
local end ⇄ impairer ⇄ peer, three namespaces per stack, addresses 198.18.0.2 and 198.18.0.1),
the impairer (:mod:`.impair`, C without the GIL) running in a thread of this process for the
length of the case, with the same delay and loss for both stacks. Before the first WAN case the
impairer's own ceiling is measured (:func:`.impair.calibrate`) and kept in :attr:`Run.ceiling`.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from tcpfast import netns
from tcpfast.bench import impair, loss, wan, workloads

NS_PREFIX = "tcpfb-"                # every namespace a run makes is named tcpfb-<pid>-<tag>
TUN_LOCAL, TUN_PEER, TUN_PREFIX = "198.18.0.2", "198.18.0.1", 24
VETH_LOCAL, VETH_PEER, VETH_PREFIX = "198.18.1.1", "198.18.1.2", 24
VETH_A, VETH_B = "tfbva", "tfbvb"
KINDS = ("tcpfast", "kernel")


@dataclass
class Options:
    """What one run measures; the command line's options."""

    workloads: List[str] = field(default_factory=lambda: list(workloads.WORKLOADS))
    offloads: List[bool] = field(default_factory=lambda: [False, True])
    duration: float = 3.0
    mtu: int = 1500
    connections: int = 10_000      # idle
    hold: float = 3.0              # idle: seconds the connections sit idle
    streams: int = 100
    loss: float = 0.01
    chunk: int = 256 * 1024
    io_timeout: float = 15.0
    verify: bool = False
    # The WAN workloads: a case must last long enough to leave slow start behind (at 20 ms RTT
    # the window doubles 50 times a second, but the first seconds still weigh), so they run
    # 8 s each, 2 s with --quick.
    wan_duration: float = 8.0
    wan_delay: float = 0.010       # one way, each direction: 20 ms RTT
    wan_loss: float = 0.01         # each direction, wan_loss_* only
    seed: int = 1
    calibrate: bool = True
    python: str = sys.executable
    stack_options: Dict[str, Any] = field(default_factory=dict)
    # One congestion control for both stacks (and the kernel peers), so that the comparison is
    # of the TCP implementations: "cubic" (both stacks' default; the kernel's own unless the
    # host chose another, as this project's machines chose BBR) or "reno" (tcpfast: newreno).
    cc: Optional[str] = "cubic"   # None: the kernel sockets keep the host's default

    @classmethod
    def quick(cls, **overrides: Any) -> "Options":
        """Every workload, both offload settings, in about 75 s (WAN cases 2 s each)."""
        base = dict(duration=0.6, connections=1000, hold=0.3, wan_duration=2.0)
        base.update(overrides)
        return cls(**base)

    def params(self) -> Dict[str, Any]:
        """What the workloads see."""
        return dict(duration=self.duration, connections=self.connections, hold=self.hold,
                    streams=self.streams, chunk=self.chunk, io_timeout=self.io_timeout,
                    verify=self.verify)


class WorkerProcess:
    """A worker (:mod:`tcpfast.bench.worker`) inside a namespace, its stdout read by a thread."""

    def __init__(self, ns: str, spec: Dict[str, Any], python: str, label: str) -> None:
        self.label = label
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.stderr = tempfile.TemporaryFile(mode="w+")
        argv = netns.exec_argv(ns) + [python, "-u", "-m", "tcpfast.bench.worker", json.dumps(spec)]
        # Its own session, so a Ctrl-C at the terminal reaches only the orchestrator, which
        # then ends the workers by pid and removes the namespaces. Started in "/": `-m` puts
        # the working directory first on sys.path, and a source checkout there (no compiled
        # core) would shadow the installed package.
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, start_new_session=True,
                                     cwd="/")
        threading.Thread(target=self._read, daemon=True, name=f"read-{label}").start()
        self.info: Dict[str, Any] = {}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, deadline: float) -> str:
        """The rest of the next line; it must start with ``prefix``."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the {self.label} worker gave no answer in time")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                raise RuntimeError(f"the {self.label} worker exited ({self.proc.returncode}): "
                                   f"{self.stderr_text()}")
            word, _, rest = line.partition(" ")
            if word == prefix:
                return rest
            if word in ("ERROR", "FAILED"):
                raise RuntimeError(f"{self.label} worker: {json.loads(rest)}")

    def ask(self, cmd: Dict[str, Any], prefix: str, timeout: float) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.expect(prefix, time.monotonic() + timeout)

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        text = self.stderr.read().strip()
        return text[-1500:] if text else "(nothing on stderr)"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, grace: float = 10.0) -> None:
        """Ask it to stop its stack and leave; kill it if it does not."""
        if self.alive():
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "exit"}\n')
                self.proc.stdin.close()
                self.proc.wait(grace)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if self.alive():
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.stderr.close()


Progress = Callable[[str, Dict[str, Any]], None]


class Run:
    """Everything one run creates, removed by :meth:`close` (also after Ctrl-C or a failure)."""

    def __init__(self, options: Options, progress: Optional[Progress] = None) -> None:
        self.o = options
        self.progress = progress or (lambda event, info: None)
        tag = f"{NS_PREFIX}{os.getpid()}"
        self.ns_tun, self.ns_a, self.ns_b = f"{tag}-tun", f"{tag}-va", f"{tag}-vb"
        self.made: List[str] = []
        self.tag = tag
        self.pairs: Dict[Tuple[str, bool, bool], Tuple[WorkerProcess, WorkerProcess]] = {}
        self.wan_paths: Dict[str, wan.WanPath] = {}
        self.ceiling: Optional[Dict[str, Any]] = None
        self.veth_defaults: Dict[str, Dict[str, bool]] = {}
        self.features: Dict[str, Any] = {}
        self.links_before = set(netns.links())
        self.cases: List[Dict[str, Any]] = []
        self.tun_index = 0

    # --- set-up and tear-down ----------------------------------------------------------------

    def setup(self) -> None:
        netns.remove_stale(NS_PREFIX)
        for ns in (self.ns_tun, self.ns_a, self.ns_b):
            netns.create(ns)
            self.made.append(ns)
        netns.add_veth(self.ns_a, VETH_A, self.ns_b, VETH_B, self.o.mtu)
        netns.address_up(self.ns_a, VETH_A, f"{VETH_LOCAL}/{VETH_PREFIX}")
        netns.address_up(self.ns_b, VETH_B, f"{VETH_PEER}/{VETH_PREFIX}")
        self.veth_defaults = {
            VETH_A: netns.call_in(self.ns_a, lambda: netns.get_features(VETH_A)),
            VETH_B: netns.call_in(self.ns_b, lambda: netns.get_features(VETH_B)),
        }
        self.check_isolation()

    def check_isolation(self) -> None:
        """Nothing this run made may show up in the namespace it started in."""
        ours = {n for n in set(netns.links()) - self.links_before if n.startswith("tfb")}
        if ours:
            raise RuntimeError(f"devices of this run appeared outside its namespaces: {sorted(ours)}")

    def close(self) -> None:
        for pair in self.pairs.values():
            for w in pair:
                w.close(grace=5)
        self.pairs.clear()
        for path in self.wan_paths.values():
            try:
                path.close()
            except Exception as exc:  # noqa: BLE001 - keep removing the others
                print(f"warning: could not remove the WAN path of {path.kind}: {exc}",
                      file=sys.stderr)
        self.wan_paths.clear()
        for ns in reversed(self.made):
            try:
                netns.remove(ns)
            except Exception as exc:  # noqa: BLE001 - keep removing the others
                print(f"warning: could not remove namespace {ns}: {exc}", file=sys.stderr)
        self.made.clear()

    def __enter__(self) -> "Run":
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- workers ------------------------------------------------------------------------------

    def _spec(self, factory: str, host: str, offload: bool, **extra: Any) -> Dict[str, Any]:
        nofile = 3 * self.o.connections + 4096
        return dict(factory=factory, host=host, parent=os.getpid(), mtu=self.o.mtu,
                    offload=offload, nofile=nofile, cc=self.o.cc, **extra)

    def wan_path(self, kind: str) -> wan.WanPath:
        """The WAN path of ``kind``, made on first use."""
        path = self.wan_paths.get(kind)
        if path is None:
            path = wan.WanPath(self.tag, kind, self.o.mtu)
            self.wan_paths[kind] = path      # registered first: close() removes a half-made one
            path.setup()
            self.check_isolation()
        return path

    def pair(self, kind: str, offload: bool,
             over_wan: bool = False) -> Tuple[WorkerProcess, WorkerProcess]:
        """The (local, peer) workers of ``kind`` at this offload setting (on the WAN path with
        ``over_wan``), started on first use."""
        key = (kind, offload, over_wan)
        pair = self.pairs.get(key)
        if pair is not None and all(w.alive() for w in pair):
            return pair
        self.drop_pair(key)
        for other in [k for k in self.pairs if k[1] != offload]:
            self.drop_pair(other)              # one setting at a time: the TUN device goes too
        if over_wan:
            path = self.wan_path(kind)
            self.features[f"wan {kind} offload {'on' if offload else 'off'}"] = \
                path.set_offload(offload)
            if kind == "tcpfast":
                self.tun_index += 1
                # The TUN's kernel side gets no IPv4 address: what the stack sends is for the
                # impairer's packet socket only, and that namespace's kernel drops it.
                local = WorkerProcess(path.ns_local, self._spec(
                    "tcpfast", wan.LOCAL, offload, address=f"{wan.LOCAL}/{wan.PREFIX}",
                    kernel_address=None, ifname=f"tfbwt{self.tun_index}",
                    stack_options=self.o.stack_options), self.o.python, "tcpfast (WAN)")
            else:
                local = WorkerProcess(path.ns_local, self._spec("kernel", wan.LOCAL, offload),
                                      self.o.python, "kernel (local, WAN)")
            ns_peer, peer_host = path.ns_peer, wan.PEER
        elif kind == "tcpfast":
            self.tun_index += 1
            ifname = f"tfbt{self.tun_index}"
            local = WorkerProcess(self.ns_tun, self._spec(
                "tcpfast", TUN_LOCAL, offload, address=f"{TUN_LOCAL}/{TUN_PREFIX}",
                kernel_address=TUN_PEER, ifname=ifname, stack_options=self.o.stack_options),
                self.o.python, "tcpfast")
            ns_peer, peer_host = self.ns_tun, TUN_PEER
        else:
            self.set_veth_offload(offload)
            local = WorkerProcess(self.ns_a, self._spec("kernel", VETH_LOCAL, offload),
                                  self.o.python, "kernel (local)")
            ns_peer, peer_host = self.ns_b, VETH_PEER
        try:
            local.info = json.loads(local.expect("READY", time.monotonic() + 60))
            if over_wan and kind == "tcpfast":
                self.wan_path(kind).adopt_tun(local.info["ifname"])
            peer = WorkerProcess(ns_peer, self._spec("kernel", peer_host, offload), self.o.python,
                                 f"kernel peer of {kind}")
            try:
                peer.info = json.loads(peer.expect("READY", time.monotonic() + 60))
            except BaseException:
                peer.close(grace=1)
                raise
        except BaseException:
            local.close(grace=1)
            raise
        if kind == "tcpfast":
            granted = {"requested": offload, "granted": local.info.get("offload_granted")}
            if over_wan:
                self.features[f"wan tcpfast offload {'on' if offload else 'off'}"]["tcpfast"] = \
                    granted
            else:
                self.features[f"tcpfast offload {'on' if offload else 'off'}"] = granted
        self.pairs[key] = (local, peer)
        self.check_isolation()
        return local, peer

    def drop_pair(self, key: Tuple[str, bool, bool]) -> None:
        pair = self.pairs.pop(key, None)
        if pair is not None:
            for w in pair:
                w.close(grace=5)

    def set_veth_offload(self, on: bool) -> None:
        """Off: every feature off on both ends. On: veth's defaults (checksums, SG, TSO and GSO
        on; GRO off)."""
        read = {}
        for ns, dev in ((self.ns_a, VETH_A), (self.ns_b, VETH_B)):
            want = self.veth_defaults[dev] if on else {k: False for k in netns.FEATURES}
            read[dev] = netns.call_in(ns, lambda d=dev, w=want: netns.set_features(d, w))
        self.features[f"veth offload {'on' if on else 'off'}"] = read

    # --- loss ------------------------------------------------------------------------------------

    def _loss_place(self, kind: str, local: WorkerProcess) -> Tuple[str, str]:
        """(namespace, device) of the peer's end of the path: the loss goes there, both ways."""
        if kind == "tcpfast":
            return self.ns_tun, local.info["ifname"]
        return self.ns_b, VETH_B

    # --- one case -----------------------------------------------------------------------------

    def impairment(self, w: workloads.Workload) -> impair.Impairment:
        """What the WAN path does to each direction in workload ``w``."""
        return impair.Impairment(delay=self.o.wan_delay,
                                 loss=self.o.wan_loss if w.wan_lossy else 0.0, seed=self.o.seed)

    def measure_ceiling(self) -> Dict[str, Any]:
        """The impairer's forwarding capacity here (measured once per run)."""
        if self.ceiling is None:
            try:
                self.ceiling = impair.calibrate(self.tag, self.o.mtu)
            except Exception as exc:  # noqa: BLE001 - reported beside the WAN results
                self.ceiling = {"error": f"{type(exc).__name__}: {exc}"}
        return self.ceiling

    def run_case(self, name: str, kind: str, offload: bool) -> Dict[str, Any]:
        w = workloads.get(name)
        params = self.o.params()
        if w.wan:
            params["duration"] = self.o.wan_duration
        case: Dict[str, Any] = {"workload": name, "kind": kind, "offload": offload}
        started = time.monotonic()
        lossy: Optional[Tuple[str, str]] = None
        forwarder: Optional[impair.Forwarder] = None
        try:
            local, peer = self.pair(kind, offload, over_wan=w.wan)
            if w.uses_loss:
                lossy = self._loss_place(kind, local)
                ns, dev = lossy
                netns.call_in(ns, lambda: loss.attach(dev, self.o.loss))
                case["loss"] = self.o.loss
            if w.wan:
                path = self.wan_path(kind)
                imp = self.impairment(w)
                case["impairment"] = imp.as_dict()
                forwarder = impair.Forwarder(path.local_port(local.info.get("ifname")),
                                             path.peer_port(), imp,
                                             max_seconds=w.timeout(params) + 60).start()
            port = int(peer.ask({"op": "serve", "workload": name, "params": params}, "PORT", 30))
            if w.wan:
                host = wan.PEER
            else:
                host = TUN_PEER if kind == "tcpfast" else VETH_PEER
            case["local"] = json.loads(local.ask(
                {"op": "run", "workload": name, "params": params, "host": host, "port": port},
                "RESULT", w.timeout(params)))
            case["peer"] = json.loads(peer.ask({"op": "collect", "timeout": 20}, "RESULT", 30))
        except BaseException as exc:
            case["error"] = f"{type(exc).__name__}: {exc}"
            self.drop_pair((kind, offload, w.wan))  # start afresh for the next case
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            if forwarder is not None:
                try:
                    drained = forwarder.drain() if "error" not in case else False
                    # Side a is the local end: a_to_b is what it sent, b_to_a what it got.
                    c = forwarder.stop()
                    case["impairer"] = {"local_to_peer": c["a_to_b"], "peer_to_local": c["b_to_a"],
                                        "stopped": forwarder.reason, "drained": drained,
                                        "cpu_seconds": forwarder.cpu_seconds}
                except Exception as exc:  # noqa: BLE001 - the case fails with the reason
                    case.setdefault("error", f"impairer: {type(exc).__name__}: {exc}")
            if lossy is not None:
                ns, dev = lossy
                try:
                    netns.call_in(ns, lambda: loss.detach(dev))
                except Exception:  # noqa: BLE001 - the device may be gone with its worker
                    pass
            case["wall_seconds"] = time.monotonic() - started
        if "error" not in case:
            errors = [f"{end}: {case[end]['error']}" for end in ("local", "peer")
                      if case[end].get("error")]
            if errors:
                case["error"] = "; ".join(errors)
            else:
                try:
                    case["metrics"] = w.metrics(case["local"], case["peer"], params)
                except Exception as exc:  # noqa: BLE001 - a failed check fails the case
                    case["error"] = f"{type(exc).__name__}: {exc}"
        self.cases.append(case)
        return case

    def run_all(self) -> List[Dict[str, Any]]:
        """Every workload, tcpfast then kernel, at each offload setting; ``progress`` is called
        before and after each case."""
        plan = [(name, kind, off) for off in self.o.offloads for name in self.o.workloads
                for kind in KINDS]
        if self.o.calibrate and any(workloads.get(n).wan for n in self.o.workloads):
            self.progress("calibrate", {})
            self.progress("calibrated", {"ceiling": self.measure_ceiling()})
        for i, (name, kind, off) in enumerate(plan, 1):
            info = {"index": i, "total": len(plan), "workload": name, "kind": kind, "offload": off}
            self.progress("start", info)
            case = self.run_case(name, kind, off)
            self.progress("done", dict(info, case=case))
        for key in list(self.pairs):
            self.drop_pair(key)
        return self.cases


def machine() -> Dict[str, Any]:
    """What the figures were measured on."""
    import platform

    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version
        tcpfast_version = version("tcpfast")
    except Exception:  # noqa: BLE001 - an uninstalled checkout
        tcpfast_version = None
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
            host_cc = f.read().strip()
    except OSError:
        host_cc = None
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "tcpfast": tcpfast_version,
            "hostname": platform.node(), "host_cc": host_cc}


def options_dict(o: Options) -> Dict[str, Any]:
    d = asdict(o)
    d.pop("python", None)
    return d
