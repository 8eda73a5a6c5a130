"""What the commands that talk to a running stack share: the --control option, and turning
control-channel errors into one line on stderr."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict

from tcpfast import control


def add_control_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control", metavar="PATH", default=None,
                        help=f"the stack's control socket (default: the only one in "
                             f"{control.CONTROL_DIR})")


def control_path(args: argparse.Namespace) -> str:
    """The control socket named by --control, or the only one in /run/tcpfast."""
    return control.find_control(args.control)


def request(args: argparse.Namespace, cmd: str) -> Dict[str, Any]:
    """One request to the stack the command line names."""
    return control.request(control_path(args), cmd)


def fail(command: str, exc: object) -> int:
    """Print ``tcpfast COMMAND: message`` on stderr; the exit status for it (1)."""
    print(f"tcpfast {command}: {exc}", file=sys.stderr)
    return 1
