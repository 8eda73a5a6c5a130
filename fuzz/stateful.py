#!/usr/bin/env python3
"""Stateful fuzzing of the connection state machine (tcpfast._tcb.Tcb), from the command line.

    python fuzz/stateful.py --steps 10000000 --seed 1          # a long seeded run
    python fuzz/stateful.py --minutes 3 --seed 7                # as many steps as fit in 3 minutes
    python fuzz/stateful.py --replay repro.py                   # re-run a printed reproduction
    python fuzz/stateful.py --atheris -atheris_runs=100000      # coverage-guided (needs atheris)

The fuzzer itself is ``tcpfast.testing.fuzz_tcb`` (see its docstring for what is generated and
which invariants are checked after every step). A plain run is seeded and reproducible: the same
``--seed`` makes the same episodes. On a failure it prints the seed, the episode's configuration
and its actions, shrunk, as Python that ``--replay`` (or a regression test) runs again; the exit
status is then 1. Bugs listed in ``KNOWN_BUGS`` end their episode and are counted, not reported,
unless ``--report-known``.

``--atheris`` hands the choices to libFuzzer: each input is one episode whose configuration and
every step are read from the input's bytes. libFuzzer's coverage is that of the Python code
(generator, model, checks: atheris instruments it) plus one feature per distinct TCB outcome of a
step (state before and after, which TCB counters moved), so that inputs reaching new behaviour of
the compiled core are kept even though the core itself is not instrumented (that needs a clang
build with -fsanitize=fuzzer-no-link).

Run it with the interpreter whose site-packages (or PYTHONPATH) holds the built tcpfast; the
script drops its own directory's parent from ``sys.path`` so that it never imports an unbuilt tree.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if __name__ == "__main__" and not os.environ.get("PYTHONPATH"):
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() not in (_HERE, _HERE.parent)]


def _progress(t0: float):
    def show(st) -> None:
        dt = time.monotonic() - t0
        print(f"  {st.steps} steps, {st.episodes} episodes, {dt:.0f} s, "
              f"{st.steps / dt if dt else 0:.0f} steps/s, known {dict(st.known)}",
              file=sys.stderr, flush=True)
    return show


def plain(args) -> int:
    from tcpfast.testing import fuzz_tcb as fz
    t0 = time.monotonic()
    stop = t0 + args.minutes * 60 if args.minutes else None
    steps = args.steps if args.steps else (1 << 62)
    res = fz.run(args.seed, steps, max_findings=args.max_findings,
                 minimize_budget=args.minimize, progress=_progress(t0),
                 progress_every=args.progress, stop_at=stop, report_known=args.report_known)
    print(res.summary())
    for f in res.findings:
        print(f"\n# FAILED: {f.error}\n" + fz.format_repro(f))
    return 1 if res.findings else 0


def replay(path: str) -> int:
    from tcpfast.testing import fuzz_tcb as fz
    ns: dict = {}
    src = Path(path).read_text()
    src = src.replace("from tcpfast.testing.fuzz_tcb import replay; replay(cfg, actions)", "")
    exec(compile(src, path, "exec"), {**vars(fz)}, ns)
    err = fz.explain(ns["cfg"], ns["actions"])
    return 1 if err else 0


def _bucket_function(n_bits: int = 10):
    """A function with 2**n_bits distinct branch paths, one per value of its argument: atheris
    counts each path as coverage, so calling it with a hash of what a step did turns new TCB
    behaviour into new coverage."""
    lines = ["def bucket(k):"]

    def tree(lo: int, hi: int, depth: int) -> None:
        pad = "    " * depth
        if hi - lo == 1:
            lines.append(f"{pad}return {lo}")
            return
        mid = (lo + hi) // 2
        lines.append(f"{pad}if k < {mid}:")
        tree(lo, mid, depth + 1)
        lines.append(f"{pad}else:")
        tree(mid, hi, depth + 1)

    tree(0, 1 << n_bits, 1)
    ns: dict = {}
    exec("\n".join(lines), ns)
    return ns["bucket"]


def with_atheris(args, rest) -> int:
    try:
        import atheris
    except ImportError:
        print("atheris is not installed (pip install atheris): use the plain mode", file=sys.stderr)
        return 2
    with atheris.instrument_imports():
        from tcpfast.testing import fuzz_tcb as fz
    bucket = atheris.instrument_func(_bucket_function())
    stats = fz.Stats()
    last = {"c": None}

    def on_step(h) -> None:
        c = h.tcb.counters
        moved = tuple(k for k, v in c.items() if v != (last["c"] or {}).get(k, 0))
        last["c"] = c
        bucket(hash((h.info["state"], moved, h.trace[-1][0])) & 1023)

    t0 = time.monotonic()
    shown = {"t": t0}

    def one(data: bytes) -> None:
        last["c"] = None
        fz.run_bytes(data, stats, on_step)
        now = time.monotonic()
        if now - shown["t"] >= args.progress:
            shown["t"] = now
            _progress(t0)(stats)

    try:
        atheris.Setup([sys.argv[0]] + rest, one)
        atheris.Fuzz()
    finally:
        dt = time.monotonic() - t0
        print(f"atheris: {stats.steps} steps in {stats.episodes} inputs, {dt:.0f} s, "
              f"{stats.steps / dt if dt else 0:.0f} steps/s, known {dict(stats.known)}",
              file=sys.stderr)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps")
    ap.add_argument("--minutes", type=float, default=0, help="stop after this long")
    ap.add_argument("--max-findings", type=int, default=5)
    ap.add_argument("--minimize", type=float, default=30.0,
                    help="seconds to spend shrinking each failure (0: none)")
    ap.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines")
    ap.add_argument("--report-known", action="store_true",
                    help="report the bugs of KNOWN_BUGS as failures too")
    ap.add_argument("--replay", metavar="FILE", help="re-run a printed reproduction, step by step")
    ap.add_argument("--atheris", action="store_true", help="coverage-guided with atheris")
    args, rest = ap.parse_known_args(argv)
    if args.replay:
        return replay(args.replay)
    if args.atheris:
        return with_atheris(args, rest)
    if rest:
        ap.error(f"unknown arguments {rest}")
    if not args.steps and not args.minutes:
        args.steps = 100_000
    return plain(args)


if __name__ == "__main__":
    sys.exit(main())
