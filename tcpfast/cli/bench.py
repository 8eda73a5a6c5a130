"""``tcpfast bench``: tcpfast against the kernel's TCP, side by side, on this machine.

Creates its own private network namespaces (removed again at the end, also on Ctrl-C or a
failure) and runs every workload twice with the same Python code, changing only the socket
factory: (1) tcpfast over a TUN device with a kernel socket as peer, (2) the kernel to itself
over a veth pair with the same MTU and the same offload setting. The peer end always runs in a
process of its own. Each workload runs without and with offload.

Workloads:
  bulk_send  one stream, tcpfast (or the kernel) sending              Gbit/s
  bulk_recv  one stream, tcpfast (or the kernel) receiving            Gbit/s
  rr         64-byte request/response on one connection, NODELAY     p50 and p99 µs
  crr        connect, 64-byte request and response, close            connections/s
  streams    100 streams at once into one selector loop              Gbit/s, Jain fairness
  loss_send  bulk_send with 1 % of packets lost both ways            Gbit/s
  loss_recv  bulk_recv with 1 % of packets lost both ways            Gbit/s
  idle       10,000 idle connections held                            memory per connection
  wan_bulk_send, wan_bulk_recv (--workload wan_bulk runs both)
             bulk over a WAN path: 20 ms RTT (10 ms each way), no loss  Gbit/s
  wan_loss_send, wan_loss_recv (--workload wan_loss runs both)
             the same path with 1 % loss each way                    Gbit/s
  tls_send, tls_recv (--workload tls runs both)
             bulk through TLS (ssl.SSLContext.wrap_socket), one stream  Gbit/s

The WAN path is a user-space impairer (C, tcpfast._impair) between the measured end and its
peer, the same for both stacks; the kernel here has no netem. Its own forwarding capacity
(delay 0, MTU-sized packets) is measured before the first WAN case and printed beside the
results. WAN cases last --wan-duration seconds (default 8, --quick 2) to get past slow start.
Loss and WAN cases also print their retransmissions by cause.

The ratio column is tcpfast over the kernel (for latency, lower is better).
Needs root (network namespaces, TUN devices, veth pairs, the loss filter).

Exit status: 0 when every case ran, 1 when some failed (the table says why; the others are
still reported), 2 when this machine or user cannot run it, 130 when interrupted.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any, Dict, List

from tcpfast import netns
from tcpfast.bench import loss, report, runner, workloads


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="short cases (0.6 s each, WAN cases 2 s, 1,000 idle connections): "
                        "done in about 75 s")
    p.add_argument("--duration", type=float, metavar="S",
                   help="seconds per throughput, latency and rate case (default 3; --quick 0.6)")
    p.add_argument("--workload", action="append", metavar="NAME[,NAME]",
                   help=f"run only these ({', '.join(workloads.WORKLOADS)}; "
                        f"{', '.join(workloads.GROUPS)} name both directions); repeatable")
    p.add_argument("--offload", choices=("off", "on", "both"), default="both",
                   help="offload setting(s) to run (default both)")
    p.add_argument("--mtu", type=int, default=1500, help="MTU of the TUN device and veth pair")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    p.add_argument("--connections", type=int, metavar="N",
                   help="idle connections to hold (default 10000; --quick 1000)")
    p.add_argument("--streams", type=int, default=100, metavar="N",
                   help="concurrent streams (default 100)")
    p.add_argument("--loss", type=float, default=1.0, metavar="PERCENT",
                   help="packet loss of the loss_* workloads, each way (default 1)")
    p.add_argument("--wan-duration", type=float, metavar="S",
                   help="seconds per WAN case (default 8; --quick 2)")
    p.add_argument("--rtt", type=float, default=20.0, metavar="MS",
                   help="round-trip time of the WAN path, half each way (default 20)")
    p.add_argument("--wan-loss", type=float, default=1.0, metavar="PERCENT",
                   help="packet loss of the wan_loss workloads, each way (default 1)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the WAN path's random loss (default 1)")
    p.add_argument("--verify", action="store_true",
                   help="SHA-256 every bulk stream at both ends (always on under loss and "
                        "over the WAN path)")
    p.add_argument("--cc", choices=("cubic", "reno", "host"), default="cubic",
                   help="congestion control of both stacks and of the kernel peers (default "
                        "cubic, tcpfast's default; 'host' leaves the kernel sockets at the "
                        "host's default, which may be an algorithm tcpfast lacks, e.g. BBR)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a tcpfast.Stack TCP option for the tcpfast side (e.g. cc=newreno)")


def _options(args: argparse.Namespace) -> runner.Options:
    names: List[str] = []
    for item in args.workload or []:
        names += [n.strip() for n in item.split(",") if n.strip()]
    names = workloads.expand(names)                        # unknown names fail here
    extra: Dict[str, Any] = {}
    if args.wan_duration is not None:
        if not 0 < args.wan_duration <= 3600:
            raise ValueError("--wan-duration must be in (0, 3600] seconds")
        extra["wan_duration"] = args.wan_duration
    if not 0 <= args.rtt <= 2000:
        raise ValueError("--rtt must be in [0, 2000] milliseconds")
    if not 0 <= args.wan_loss < 50:
        raise ValueError("--wan-loss must be a percentage in [0, 50)")
    extra.update(wan_delay=args.rtt / 2 / 1000, wan_loss=args.wan_loss / 100, seed=args.seed)
    if args.duration is not None:
        if not 0 < args.duration <= 3600:
            raise ValueError("--duration must be in (0, 3600] seconds")
        extra["duration"] = args.duration
    if args.connections is not None:
        if not 1 <= args.connections <= 100_000:
            raise ValueError("--connections must be between 1 and 100000")
        extra["connections"] = args.connections
    if not 1 <= args.streams <= 1000:
        raise ValueError("--streams must be between 1 and 1000")
    if not 0 <= args.loss < 50:
        raise ValueError("--loss must be a percentage in [0, 50)")
    if not 576 <= args.mtu <= 65535:
        raise ValueError("--mtu must be between 576 and 65535")
    stack_options: Dict[str, Any] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        stack_options[key.strip()] = _literal(value.strip())
    extra.update(streams=args.streams, loss=args.loss / 100, mtu=args.mtu, verify=args.verify,
                 stack_options=stack_options, cc=None if args.cc == "host" else args.cc,
                 offloads={"off": [False], "on": [True], "both": [False, True]}[args.offload])
    if names:
        extra["workloads"] = names
    return runner.Options.quick(**extra) if args.quick else runner.Options(**extra)


def _literal(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _summary(case: Dict[str, Any]) -> str:
    if case.get("error"):
        return f"FAILED: {case['error']}"
    return ", ".join(f"{m['metric']} {report.fmt(m['value'], m['unit'])}"
                     for m in case.get("metrics", ()))


def _progress(event: str, info: Dict[str, Any]) -> None:
    if event == "calibrate":
        print("impairer ceiling (delay 0, MTU packets) ", end="", file=sys.stderr, flush=True)
    elif event == "calibrated":
        c = info["ceiling"]
        print(f"FAILED: {c['error']}" if c.get("error") else
              f"{c['pps']:,.0f} packets/s = {c['gbps']:.2f} Gbit/s "
              f"({c['pps_per_core']:,.0f} packets/s per CPU-second)", file=sys.stderr, flush=True)
    elif event == "start":
        label = (f"[{info['index']:>2}/{info['total']}] {info['workload']:<13} offload "
                 f"{'on ' if info['offload'] else 'off'} {info['kind']:<7} ")
        print(label, end="", file=sys.stderr, flush=True)
    else:
        case = info["case"]
        print(f"{_summary(case)} ({case['wall_seconds']:.1f} s)", file=sys.stderr, flush=True)


def _on_sigterm(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    try:
        options = _options(args)
        problem = netns.unavailable()
        # The loss workloads drop packets with an eBPF classifier, and the WAN path's devices
        # drop their kernel's copies with one.
        if problem is None and any(workloads.get(n).uses_loss or workloads.get(n).wan
                                   for n in options.workloads):
            problem = loss.unavailable()
            if problem is not None:
                problem = f"cannot load the packet-loss filter: {problem}"
        if problem is None and args.plot:
            problem = report.plot_available()
    except ValueError as exc:
        print(f"tcpfast bench: {exc}", file=sys.stderr)
        return 2
    if problem is not None:
        print(f"tcpfast bench: {problem}", file=sys.stderr)
        return 2

    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.time()
    interrupted = False
    bench = runner.Run(options, _progress)
    wan_note = (f" ({options.wan_duration:g} s per WAN case)"
                if any(workloads.get(n).wan for n in options.workloads) else "")
    print(f"tcpfast bench: {len(options.workloads)} workloads x "
          f"{len(options.offloads)} offload setting(s), {options.duration:g} s per case"
          f"{wan_note}; "
          f"namespaces {bench.ns_tun}, {bench.ns_a}, {bench.ns_b}", file=sys.stderr)
    try:
        with bench:
            bench.run_all()
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: namespaces removed; what finished is reported below",
              file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - set-up failures: say why, report what finished
        print(f"\ntcpfast bench: {type(exc).__name__}: {exc}", file=sys.stderr)
        bench.cases.append({"workload": "setup", "kind": "-", "offload": False,
                            "error": f"{type(exc).__name__}: {exc}"})
    finally:
        signal.signal(signal.SIGTERM, old_term)
    rows = report.rows(bench.cases)
    info = runner.machine()
    print(f"\ntcpfast vs the kernel: {info['cpu']}, {info['cores']} cores, Linux "
          f"{info['kernel']}, Python {info['python']}, MTU {options.mtu}, "
          + (f"congestion control {options.cc} on both stacks (the host's default: "
             f"{info.get('host_cc')})" if options.cc else
             f"congestion control: the host's default ({info.get('host_cc')}) for the kernel, "
             f"{options.stack_options.get('cc', 'cubic')} for tcpfast"))
    report.table(rows, sys.stdout)
    report.ceiling_line(bench.ceiling, bench.cases, sys.stdout)
    report.retransmit_lines(bench.cases, sys.stdout)
    status = 130 if interrupted else (1 if any(c.get("error") for c in bench.cases) else 0)
    if args.json:
        report.write_json(args.json, {
            "machine": info, "options": runner.options_dict(options), "started": started,
            "seconds": time.time() - started, "interrupted": interrupted,
            "features": bench.features, "impairer_ceiling": bench.ceiling, "rows": rows,
            "cases": bench.cases})
        print(f"results: {args.json}")
    if args.plot:
        try:
            report.plot(rows, args.plot, f"tcpfast vs kernel, {info['cpu']}, {info['cores']} "
                                         f"cores, Linux {info['kernel']}")
            print(f"chart: {args.plot}")
        except ValueError as exc:
            print(f"no chart: {exc}", file=sys.stderr)
    return status
