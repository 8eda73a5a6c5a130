"""``tcpfast capture -w FILE``: write the packets of a running stack (the one `tcpfast up`
serves), in and out, to FILE as pcap (LINKTYPE_RAW: tcpdump -r and Wireshark read it), until
Ctrl-C, --count packets or --duration seconds, whichever comes first; then print how many packets
FILE holds. FILE must be a regular file (not a pipe or a terminal: the stack writes packets as
they pass and must never wait for a reader). This command opens it, with its own permissions, and
hands the open file to the stack."""
from __future__ import annotations

import argparse
import os
import signal
import stat
import sys
import time
from typing import Optional

from tcpfast import control, pcap
from tcpfast.cli._client import add_control_argument, control_path, fail

_POLL = 0.05        # seconds between looks at the packet count or the clock


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-w", "--write", metavar="FILE", required=True,
                        help="the pcap file to write (created or truncated)")
    parser.add_argument("-c", "--count", type=int, default=None, metavar="N",
                        help="stop after N packets (FILE then holds exactly N)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds")
    add_control_argument(parser)


def _open_output(path: str) -> int:
    """Open ``path`` for the capture: a regular file, created or truncated, never a FIFO (whose
    open would wait for a reader) or a device."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise control.ControlError(f"{path} is not a regular file: the stack writes packets as "
                                   "they pass and must never wait for a reader")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_CLOEXEC,
                     0o644)
    except OSError as exc:
        raise control.ControlError(f"cannot open {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):     # replaced between the stat and the open
        os.close(fd)
        raise control.ControlError(f"{path} is not a regular file")
    return fd


def run(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        return fail("capture", "--count must be at least 1")
    if args.duration is not None and args.duration < 0:
        return fail("capture", "--duration must not be negative")
    try:
        path = control_path(args)
        fd = _open_output(args.write)
    except control.ControlError as exc:
        return fail("capture", exc)
    # SIGINT and SIGTERM end the capture between two requests, never in the middle of one.
    stop_signal: list = []
    old = {sig: signal.signal(sig, lambda signum, frame: stop_signal.append(signum))
           for sig in (signal.SIGINT, signal.SIGTERM)}
    status, error = 0, None
    try:
        try:
            session = control.CaptureSession(path, fd)
        except control.ControlError as exc:
            return fail("capture", exc)
        print(f"tcpfast capture: writing {args.write} from {path}; Ctrl-C stops", file=sys.stderr,
              flush=True)
        try:
            _wait(session, args.count, args.duration, stop_signal)
            session.stop()
        except control.ControlError as exc:
            # The stack went away: what it wrote up to then is still in the file.
            status, error = 1, exc
            session.close()
        with os.fdopen(os.dup(fd), "r+b") as f:
            written = pcap.truncate(f, args.count) if args.count else pcap.count(f)
    except pcap.PcapError as exc:
        return fail("capture", f"{args.write} is not a readable pcap file: {exc}")
    finally:
        os.close(fd)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if error is not None:
        fail("capture", error)
    print(f"{written} packet{'' if written == 1 else 's'} written to {args.write}")
    return status


def _wait(session: control.CaptureSession, count: Optional[int], duration: Optional[float],
          stop_signal: list) -> None:
    deadline = None if duration is None else time.monotonic() + duration
    while not stop_signal:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return
        if count is not None and session.packets() >= count:
            return
        time.sleep(_POLL if deadline is None else max(0.0, min(_POLL, deadline - now)))
