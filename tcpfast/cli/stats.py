"""``tcpfast stats``: the counters of a running stack (the one `tcpfast up` serves), in the spirit
of `netstat -s`: packets and bytes in and out, segments, retransmissions, resets, SYN cookies,
every kind of malformed packet dropped. Only the counters that are not zero, unless --all."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Dict

from tcpfast import control
from tcpfast.cli._client import add_control_argument, fail, request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--all", action="store_true", help="zero counters too")
    parser.add_argument("--json", action="store_true",
                        help="every counter (zeros too: stable keys) as a JSON object")
    add_control_argument(parser)


def format_counters(stats: Dict[str, int], all_: bool = False) -> str:
    """``name  value`` lines in the stack's order; zeros left out unless ``all_``."""
    shown = {k: v for k, v in stats.items() if all_ or v}
    if not shown:
        return "(every counter is zero)"
    width = max(len(k) for k in shown)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in shown.items())


def run(args: argparse.Namespace) -> int:
    try:
        stats = request(args, "stats")["stats"]
    except control.ControlError as exc:
        return fail("stats", exc)
    if args.json:
        json.dump(stats, sys.stdout, indent=1)
        print()
    else:
        print(format_counters(stats, args.all))
    return 0
