"""The ``tcpfast`` command (also ``python -m tcpfast``).

Each subcommand is a module of this package with ``add_arguments(parser)`` and ``run(args) ->
int``; :data:`COMMANDS` names them in the order ``tcpfast --help`` lists them.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

COMMANDS = {
    "bench": "compare tcpfast with the kernel's TCP on this machine (needs root)",
    "up": "bring a stack up on a TUN device and serve echo and discard until Ctrl-C (needs root)",
    "ss": "list the connections of a running stack (as `ss -tan`)",
    "stats": "print the counters of a running stack (as `netstat -s`)",
    "capture": "write the packets of a running stack to a pcap file",
    "demo": "parse and build a kernel-style SYN; time the checksum (no privilege needed)",
}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tcpfast", description="tcpfast: a user-space TCP/IP stack for Python.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"tcpfast.cli.{name}")
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        modules[name] = module
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
