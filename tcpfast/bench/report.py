"""The output of ``tcpfast bench``: rows (tcpfast, kernel, ratio), the table, JSON and a chart.

The ratio is always tcpfast's figure over the kernel's. For throughput and rates higher is
better, so a ratio above 1 means tcpfast did better; for latency lower is better, so a ratio
below 1 means tcpfast did better. The chart turns every ratio into "relative performance"
(ratio, or 1/ratio for latency) so that longer bars are always better.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, TextIO, Tuple

# The targets on the benchmark's own ratios: (workload, metric) -> (comparison, ratio).
TARGETS: Dict[Tuple[str, str], Tuple[str, float]] = {
    ("bulk_recv", "throughput"): (">=", 0.5),
    ("bulk_send", "throughput"): (">=", 0.4),
    ("rr", "p50 latency"): ("<=", 2.0),
    ("crr", "connection rate"): (">=", 0.3),
}


def _value(case: Optional[Dict[str, Any]], metric: str) -> Optional[Dict[str, Any]]:
    if not case or case.get("error"):
        return None
    for m in case.get("metrics", ()):
        if m["metric"] == metric:
            return m
    return None


def rows(cases: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per (workload, metric, offload), in the order the cases ran."""
    by_key: Dict[Tuple[str, bool, str], Dict[str, Any]] = {}
    order: List[Tuple[str, bool]] = []
    for c in cases:
        key = (c["workload"], c["offload"])
        if key not in order:
            order.append(key)
        by_key[(c["workload"], c["offload"], c["kind"])] = c
    out = []
    for name, offload in order:
        pair = {k: by_key.get((name, offload, k)) for k in ("tcpfast", "kernel")}
        metrics: List[Dict[str, Any]] = []
        for c in pair.values():
            for m in (c or {}).get("metrics", ()):
                if m["metric"] not in [x["metric"] for x in metrics]:
                    metrics.append(m)
        errors = {k: c["error"] for k, c in pair.items() if c is not None and c.get("error")}
        if not metrics:
            out.append({"workload": name, "offload": offload, "metric": None, "unit": "",
                        "tcpfast": None, "kernel": None, "ratio": None, "target": None,
                        "met": None, "errors": errors})
            continue
        for m in metrics:
            t, k = _value(pair["tcpfast"], m["metric"]), _value(pair["kernel"], m["metric"])
            tv = t["value"] if t else None
            kv = k["value"] if k else None
            ratio = None
            if tv is not None and kv and not m.get("ratio_meaningless"):
                ratio = tv / kv
            target = TARGETS.get((name, m["metric"]))
            met = None
            if target is not None and ratio is not None:
                met = ratio >= target[1] if target[0] == ">=" else ratio <= target[1]
            out.append({"workload": name, "offload": offload, "metric": m["metric"],
                        "unit": m["unit"], "better": m["better"], "tcpfast": tv, "kernel": kv,
                        "comparable": not m.get("ratio_meaningless"),
                        "notes": [f"{side}: {x['note']}" for side, x in (("tcpfast", t), ("kernel", k))
                                  if x and x.get("note")],
                        "ratio": ratio, "target": list(target) if target else None, "met": met,
                        "errors": errors})
    return out


def fmt(value: Optional[float], unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("conn/s", "bytes") or (unit == "" and value >= 100):
        return f"{value:,.0f} {unit}".strip()
    if unit == "µs":
        return f"{value:.1f} µs"
    if unit == "":
        return f"{value:.3f}"
    return f"{value:.2f} {unit}"


def table(rs: List[Dict[str, Any]], out: TextIO) -> None:
    """The side-by-side table; failed cases show why."""
    head = ("workload", "metric", "offload", "tcpfast", "kernel", "ratio", "target")
    lines = []
    for r in rs:
        target = ""
        if r["target"]:
            op, val = r["target"]
            target = f"{'≥' if op == '>=' else '≤'} {val:g}x " + ("ok" if r["met"] else
                                                                  "MISSED" if r["met"] is False
                                                                  else "?")
        lines.append((r["workload"], r["metric"] or "(failed)", "on" if r["offload"] else "off",
                      fmt(r["tcpfast"], r["unit"]), fmt(r["kernel"], r["unit"]),
                      "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", target))
    widths = [max(len(h), *(len(x[i]) for x in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    right = {3, 4, 5}

    def line(cells: Tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(line(head), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for x in lines:
        print(line(x), file=out)
    for r in rs:
        for note in r.get("notes", ()):
            print(f"NOTE {r['workload']} offload {'on' if r['offload'] else 'off'} {note}", file=out)
    failed = [(r["workload"], r["offload"], k, e) for r in rs for k, e in r["errors"].items()]
    seen = set()
    for name, off, kind, err in failed:
        if (name, off, kind) in seen:
            continue
        seen.add((name, off, kind))
        print(f"FAILED {name} offload {'on' if off else 'off'} ({kind}): {err}", file=out)


# --- retransmissions by cause and the impairer's ceiling ------------------------------------------

# (label, counter) per stack; a label is shown when the stack has the counter. The kernel's
# TCPTimeouts and tcpfast's rto_expirations count timer expirations (events), the rest segments
# or probes as named.
TCPFAST_CAUSES = (("total", ("retransmits",)), ("rto", ("retrans_rto",)),
                  ("fast", ("retrans_fast",)), ("rack", ("retrans_rack",)),
                  ("tlp", ("retrans_tlp",)), ("rto events", ("rto_expirations",)),
                  ("fast recoveries", ("fast_retransmits",)), ("tlp probes", ("tlp_probes",)),
                  ("spurious", ("spurious_retrans",)), ("spurious rto", ("spurious_rtos",)),
                  ("dsack in", ("dsack_in",)), ("dsack out", ("dsack_out",)),
                  ("undo", ("undo_events",)))
KERNEL_CAUSES = (("total", ("Tcp.RetransSegs",)), ("fast", ("TcpExt.TCPFastRetrans",)),
                 ("slow start", ("TcpExt.TCPSlowStartRetrans",)),
                 ("rto events", ("TcpExt.TCPTimeouts",)), ("tlp probes", ("TcpExt.TCPLossProbes",)),
                 ("tlp recovered", ("TcpExt.TCPLossProbeRecovery",)),
                 ("lost rexmit", ("TcpExt.TCPLostRetransmit",)),
                 ("spurious rto", ("TcpExt.TCPSpuriousRTOs",)),
                 ("dsack in", ("TcpExt.TCPDSACKRecv",)),
                 ("dsack out", ("TcpExt.TCPDSACKOldSent", "TcpExt.TCPDSACKOfoSent")),
                 ("undo", ("TcpExt.TCPDSACKUndo", "TcpExt.TCPLossUndo")))


def causes(record: Optional[Dict[str, Any]], tcpfast: bool) -> List[Tuple[str, Optional[int]]]:
    """(label, count) of a worker's ``retransmits`` record; None where the stack lacks it."""
    deltas = (record or {}).get("deltas", {})
    out = []
    for label, names in (TCPFAST_CAUSES if tcpfast else KERNEL_CAUSES):
        values = [deltas.get(n) for n in names]
        out.append((label, None if any(v is None for v in values) else sum(values)))
    return out


def retransmit_lines(cases: List[Dict[str, Any]], out: TextIO) -> None:
    """A compact "retransmits by cause" line per loss and WAN case: the measured end's, and for
    the receiving workloads also the peer's (the kernel, which is then the sender)."""
    lines = []
    for c in cases:
        if c.get("error") or not c["workload"].startswith(("loss", "wan")):
            continue
        ends = [("local", c["kind"] == "tcpfast", c.get("local"))]
        if c["workload"].endswith("_recv"):
            ends.append(("peer", False, c.get("peer")))
        for end, is_tcpfast, result in ends:
            pairs = causes((result or {}).get("retransmits"), is_tcpfast)
            shown = ", ".join(f"{label} {v:,}" for label, v in pairs if v is not None)
            absent = [label for label, v in pairs if v is None]
            who = c["kind"] if end == "local" else "its kernel peer"
            lines.append(f"  {c['workload']:<14} {'on ' if c['offload'] else 'off'} "
                         f"{who:<15} {shown}" + (f" (n/a: {', '.join(absent)})" if absent else ""))
    if lines:
        print("\nretransmits by cause (deltas over each case):", file=out)
        for line in lines:
            print(line, file=out)


def ceiling_line(ceiling: Optional[Dict[str, Any]], cases: List[Dict[str, Any]],
                 out: TextIO) -> None:
    """The impairer's measured ceiling beside the WAN results, and a warning for each WAN case
    whose throughput came within 80 % of it (the impairer may then have been the limit)."""
    if ceiling is None:
        return
    if ceiling.get("error"):
        print(f"\nimpairer ceiling: not measured ({ceiling['error']})", file=out)
        return
    bound = "" if ceiling["saturated"] else "at least "
    print(f"\nimpairer ceiling (delay 0, no loss, {ceiling['mtu']}-byte packets, one direction): "
          f"{bound}{ceiling['pps']:,.0f} packets/s = {ceiling['gbps']:.2f} Gbit/s measured"
          f"{'' if ceiling['saturated'] else ' (the load generator was the slower)'}; "
          f"{ceiling['pps_per_core']:,.0f} packets/s = {ceiling['gbps_per_core']:.2f} Gbit/s "
          f"per CPU-second of its thread", file=out)
    for c in cases:
        if not c["workload"].startswith("wan") or c.get("error") or c["offload"]:
            continue
        m = _value(c, "throughput")
        if m is not None and m["value"] >= 0.8 * ceiling["gbps"]:
            print(f"NOTE {c['workload']} offload off ({c['kind']}): {m['value']:.2f} Gbit/s is "
                  f"within 80 % of the impairer's ceiling; the path may be the limit", file=out)
    for c in cases:
        imp = c.get("impairer") or {}
        for direction, cnt in imp.items():
            if isinstance(cnt, dict) and (cnt.get("kernel_drops") or cnt.get("queue_drops")):
                print(f"NOTE {c['workload']} offload {'on' if c['offload'] else 'off'} "
                      f"({c['kind']}): the impairer dropped packets it did not mean to "
                      f"({direction}: {cnt.get('kernel_drops', 0)} socket-buffer drops, "
                      f"{cnt.get('queue_drops', 0)} queue drops)", file=out)


def write_json(path: str, doc: Dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=False)
        f.write("\n")


def plot_available() -> Optional[str]:
    """Why ``--plot`` cannot work here, or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return ("--plot needs matplotlib: pip install 'tcpfast[bench]' (or pip install matplotlib)")
    return None


def plot(rs: List[Dict[str, Any]], path: str, title: str) -> None:
    """A PNG bar chart of relative performance (kernel = 1.0; longer is better), one bar per
    offload setting for each metric that has a ratio, the targets marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels: List[str] = []
    bars: Dict[bool, List[float]] = {False: [], True: []}
    targets: List[Optional[float]] = []
    for r in rs:
        if r["metric"] is None or not r["comparable"]:
            continue
        label = f"{r['workload']}: {r['metric']}"
        if label not in labels:
            labels.append(label)
            for off in bars:
                bars[off].append(float("nan"))
            t = r["target"]
            targets.append(None if not t else (t[1] if t[0] == ">=" else 1.0 / t[1]))
        i = labels.index(label)
        if r["ratio"]:
            bars[r["offload"]][i] = r["ratio"] if r["better"] == "higher" else 1.0 / r["ratio"]
    if not labels:
        raise ValueError("nothing to plot: no case produced a ratio")
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(labels) + 1.6))
    ys = list(range(len(labels)))
    h = 0.38
    ax.barh([y - h / 2 for y in ys], bars[False], h, label="offload off", color="#4c72b0")
    ax.barh([y + h / 2 for y in ys], bars[True], h, label="offload on", color="#dd8452")
    for y, t in zip(ys, targets):
        if t is not None:
            ax.plot([t, t], [y - 0.45, y + 0.45], color="black", linewidth=2)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlabel("relative performance: tcpfast / kernel (latency: kernel / tcpfast); "
                  "1.0 = kernel, longer is better; black marks = targets")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
