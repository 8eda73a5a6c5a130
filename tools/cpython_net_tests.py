#!/usr/bin/env python3
"""CPython's own network test suites, unchanged, on the kernel and under ``tcpfast.patch()``.

    python tools/cpython_net_tests.py [--modules test_socket,test_ssl,...] [--json PATH]

The interpreter ships its test suites (``python -m test``). Each module runs twice in a fresh
interpreter: once as it is (the kernel's sockets), once with ``tcpfast.patch()`` applied before
the first test (every TCP socket is then a tcpfast socket on the default stack: its loopback,
127.0.0.0/8 and ::1, no device and no privilege). Outcomes per test come from libregrtest's
JUnit XML. A test that passes on the kernel and not under tcpfast is a regression, unless
``tools/cpython_net_expected.txt`` names it with the reason; the exit status is 1 if any
regression is not named there (or a named one now passes: the file must stay true), else 0.

Tests that hang on this machine's kernel whatever the stack (VSOCK, which this VM has but no
peer answers) are left out with ``--ignore``; they are not TCP.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from typing import Dict, List, Tuple

MODULES = [
    "test_socket", "test_socketserver", "test_selectors", "test_httplib", "test_httpservers",
    "test_urllib2_localnet", "test_xmlrpc", "test_ftplib", "test_smtplib", "test_poplib",
    "test_imaplib", "test_ssl",
    "test_asyncio.test_streams", "test_asyncio.test_sock_lowlevel", "test_asyncio.test_sendfile",
    "test_asyncio.test_server", "test_asyncio.test_ssl",
]

# Left out on both stacks (fnmatch patterns over test ids): not TCP, and they hang here.
IGNORE = ["*VSOCK*"]

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = os.path.join(HERE, "cpython_net_expected.txt")

BOOT_TCPFAST = (
    "import sys, runpy, tcpfast\n"
    "tcpfast.patch()\n"
    "sys.argv = ['test'] + sys.argv[1:]\n"
    "runpy.run_module('test', run_name='__main__', alter_sys=True)\n"
)
BOOT_KERNEL = (
    "import sys, runpy\n"
    "sys.argv = ['test'] + sys.argv[1:]\n"
    "runpy.run_module('test', run_name='__main__', alter_sys=True)\n"
)


def run_module(module: str, tcpfast: bool, timeout: float) -> Tuple[Dict[str, str], float, str]:
    """Run one test module; returns ({test id: pass|failure|error|skipped}, seconds, tail of
    the output). A module that does not finish in ``timeout`` seconds counts its unreported
    tests as missing."""
    with tempfile.TemporaryDirectory() as tmp:
        xml_path = os.path.join(tmp, "results.xml")
        args = [sys.executable, "-c", BOOT_TCPFAST if tcpfast else BOOT_KERNEL,
                "--timeout", "120", "--junit-xml", xml_path]
        for pat in IGNORE:
            args += ["--ignore", pat]
        args.append(module)
        t0 = time.monotonic()
        try:
            proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=timeout, cwd=tmp)
            out = proc.stdout
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
                else (exc.stdout or "")
            out += f"\n[cpython_net_tests: killed after {timeout:.0f} s]"
        seconds = time.monotonic() - t0
        results: Dict[str, str] = {}
        if os.path.exists(xml_path):
            root = ET.parse(xml_path).getroot()
            for case in root.iter("testcase"):
                name = f"{case.get('classname', '')}.{case.get('name', '')}"
                kind = "pass"
                for child in case:
                    if child.tag in ("failure", "error", "skipped"):
                        kind = child.tag
                results[name] = kind
    return results, seconds, out[-3000:]


def load_expected(path: str = EXPECTED) -> Dict[str, str]:
    """Patterns of tests that pass on the kernel and are known not to under tcpfast, with the
    reason: ``pattern  # reason`` per line."""
    expected: Dict[str, str] = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                pattern, _, reason = line.partition("#")
                expected[pattern.strip()] = reason.strip()
    return expected


def explained(test_id: str, expected: Dict[str, str]) -> bool:
    return any(fnmatch.fnmatchcase(test_id, pat) for pat in expected)


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modules", default=",".join(MODULES),
                    help="comma-separated test modules (default: all of the issue's list)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per module run")
    ap.add_argument("--json", help="write every outcome as JSON")
    ap.add_argument("--kernel-only", action="store_true",
                    help="run the kernel side only (to see what passes on this machine)")
    o = ap.parse_args(argv)
    expected = load_expected()
    report = []
    unexplained: List[str] = []
    matched = set()
    rows = []
    for module in [m for m in o.modules.split(",") if m]:
        k, ks, kout = run_module(module, False, o.timeout)
        if o.kernel_only:
            t, ts, tout = {}, 0.0, ""
        else:
            t, ts, tout = run_module(module, True, o.timeout)
        kp = {n for n, r in k.items() if r == "pass"}
        tp = {n for n, r in t.items() if r == "pass"}
        regress = sorted(kp - tp) if not o.kernel_only else []
        known = [n for n in regress if explained(n, expected)]
        for n in known:
            matched.update(p for p in expected if fnmatch.fnmatchcase(n, p))
        new = [n for n in regress if n not in known]
        unexplained += new
        rows.append((module, len(k), len(kp), ks, len(t), len(tp), ts, len(known), len(new)))
        report.append({"module": module, "kernel": k, "tcpfast": t, "kernel_seconds": ks,
                       "tcpfast_seconds": ts, "regressions": regress, "unexplained": new,
                       "kernel_tail": kout if not k else "", "tcpfast_tail": tout if not t else ""})
        if not k:
            print(f"{module}: no results on the kernel:\n{kout}", file=sys.stderr)
        if not t and not o.kernel_only:
            print(f"{module}: no results under tcpfast:\n{tout}", file=sys.stderr)
    print(f"{'module':34} {'tests':>5} {'kernel pass':>11} {'tcpfast pass':>12} "
          f"{'known':>5} {'new':>4}  seconds (kernel/tcpfast)")
    for module, nk, pk, ks, nt, pt, ts, known, new in rows:
        print(f"{module:34} {nk:5d} {pk:11d} {pt:12d} {known:5d} {new:4d}  {ks:.0f}/{ts:.0f}")
    for n in unexplained:
        print(f"REGRESSION (passes on the kernel, not under tcpfast): {n}")
    stale = [p for p in expected if p not in matched] if not o.kernel_only and \
        o.modules == ",".join(MODULES) else []
    for p in stale:
        print(f"STALE entry in {os.path.basename(EXPECTED)} (nothing fails that it names): {p}")
    if o.json:
        with open(o.json, "w") as f:
            json.dump(report, f, indent=1)
    return 1 if unexplained or stale else 0


if __name__ == "__main__":
    sys.exit(main())
