"""``tcpfast ss``: the connections and listeners of a running stack (the one `tcpfast up`
serves), as `ss -tan` prints the kernel's: all of them by default, as `ss -tan` shows; -l for the
listeners only. -i adds the congestion window, smoothed RTT and RTO. For listeners the queues are
the stack's: Recv-Q the half-open connections (SYN queue), Send-Q the accept queue."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence

from tcpfast import control
from tcpfast.cli._client import add_control_argument, fail, request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("-l", "--listening", action="store_true", help="listeners only")
    which.add_argument("-a", "--all", action="store_true",
                       help="listeners and connections (the default)")
    parser.add_argument("-i", "--info", action="store_true", help="also cwnd, srtt and rto")
    # Accepted so that `tcpfast ss -tan` works as typed: the stack is TCP only and numeric.
    parser.add_argument("-t", "--tcp", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-n", "--numeric", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="the rows as JSON")
    add_control_argument(parser)


def _endpoint(ep: Optional[Sequence[Any]], like: Optional[Sequence[Any]] = None) -> str:
    """``addr:port`` as ss writes it (IPv6 in brackets); ``*`` for a listener's peer."""
    if ep is None:
        wildcard = "::" if like is not None and ":" in str(like[0]) else "0.0.0.0"
        ep = (wildcard, "*")
    host = str(ep[0])
    return f"[{host}]:{ep[1]}" if ":" in host else f"{host}:{ep[1]}"


def format_table(rows: List[Dict[str, Any]], info: bool = False) -> str:
    """The rows of ``Stack.connections()`` as ``ss -tan`` prints them."""
    header = ["State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port"]
    table = [header + (["Info"] if info else [])]
    for r in rows:
        line = [r.get("state", "?"), str(r.get("recv_queue", 0)), str(r.get("send_queue", 0)),
                _endpoint(r.get("local")), _endpoint(r.get("remote"), r.get("local"))]
        if info:
            extra = []
            if r.get("cwnd") is not None:
                extra.append(f"cwnd:{r['cwnd']}")
            if r.get("srtt") is not None:
                extra.append(f"rtt:{r['srtt'] * 1e3:.3f}ms")
            if r.get("rto") is not None:
                extra.append(f"rto:{r['rto'] * 1e3:.0f}ms")
            line.append(" ".join(extra))
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    out = []
    for row in table:
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].rjust(widths[2]),
                 row[3].ljust(widths[3]), row[4].ljust(widths[4])]
        if info:
            cells.append(row[5])
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _order(row: Dict[str, Any]) -> tuple:
    # Listeners first, then by local and peer port, as one reads ss's output.
    local = row.get("local") or ("", 0)
    remote = row.get("remote") or ("", 0)
    return (row.get("state") != "LISTEN", local[1], str(remote[0]), remote[1])


def run(args: argparse.Namespace) -> int:
    try:
        rows = request(args, "connections")["connections"]
    except control.ControlError as exc:
        return fail("ss", exc)
    if args.listening:
        rows = [r for r in rows if r.get("state") == "LISTEN"]
    rows.sort(key=_order)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        print(format_table(rows, info=args.info))
    return 0
