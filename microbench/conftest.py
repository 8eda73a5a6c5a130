"""Micro-benchmarks of tcpfast's compiled core against pure Python (pytest-benchmark).

    pip install '.[bench]'
    pytest microbench --benchmark-only

Run from the checkout with the ``pytest`` entry point (as for the tests), so that the installed,
compiled tcpfast is imported rather than the source tree.

Each benchmark group puts a compiled figure beside its pure-Python figures (``microbench/pure.py``,
``microbench/pure_tcb.py``); ``microbench/README.md`` lists them all:

* ``checksum 64 B`` / ``1500 B`` / ``64 KiB`` (``bench_checksum.py``): ``tcpfast.checksum.checksum``
  against the word loop of ``tests/oracle.py`` (``pure-wordloop``, the baseline of the issue's
  target), ``sum(struct.unpack())`` (``pure-unpack``) and big-integer arithmetic (``pure-bigint``);
* ``parse 1500 B TCP/IPv4`` and ``emit pure ACK`` (``bench_wire.py``): the C parser and emitter
  against ``struct``;
* ``seq ...`` (``bench_seq.py``): the ``tcpfast._seq`` wrappers against the same arithmetic in
  Python (the call dominates);
* ``rtx queue ...`` and ``rtx SACK scoreboard ...`` (``bench_rtx.py``): segments sent and released
  by ACKs through a ``Tcb``, and the RFC 6675 scoreboard, against a pure TCB and scoreboard;
* ``segment -> ACK ...`` (``bench_segment.py``): one in-order segment into an ESTABLISHED ``Tcb``
  and its ACK out, against the pure TCB;
* ``engine bulk MTU ...`` (``bench_engine.py``): the simulated pair in C (Gbit/s, no pure side).

After pytest-benchmark's own table, a summary prints each compiled figure's speedup over each
pure-Python one (ratio of medians) and the 64 KiB checksum's throughput, with the issue's targets:
64 KiB checksum >= 4 GB/s and >= 50x the pure-Python oracle. Nothing here asserts on speed.

pytest collects ``test_*.py`` by default; the hook below also collects this directory's
``bench_*.py`` files, so no configuration outside ``microbench/`` is needed.
"""
from __future__ import annotations

import pytest

TARGET_GBPS = 4.0
TARGET_SPEEDUP = 50.0


def pytest_collect_file(file_path, parent):
    # A file named on the command line (``pytest microbench/bench_seq.py``) is collected by pytest's
    # own Python plugin whatever its name: collecting it here too would run every benchmark twice.
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") \
            and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def _impl(bench) -> str:
    return bench.extra_info.get("impl", bench.name)


def summary_lines(benchmarks) -> list:
    """The ratio table: for every group, each compiled figure against each pure one."""
    groups: dict = {}
    for b in benchmarks:
        if not b or b.has_error:
            continue
        groups.setdefault(b.group or "", []).append(b)
    lines = []
    rows = []
    for group in sorted(groups):
        entries = groups[group]
        compiled = [b for b in entries if _impl(b).startswith("compiled")]
        pure = [b for b in entries if _impl(b).startswith("pure")]
        for c in compiled:
            cm = c.stats.median
            for p in pure:
                rows.append((group, _impl(c), _impl(p), cm, p.stats.median, p.stats.median / cm))
            if not pure and not c.extra_info.get("payload_bytes"):
                rows.append((group, _impl(c), "-", cm, float("nan"), float("nan")))
    if not rows:
        return lines
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    lines.append(f"{'group':<{w0}}  {'compiled':<{w1}}  {'vs pure':<{w2}}  {'compiled':>11}  {'pure':>11}  {'speedup':>9}")
    for g, ci, pi, cm, pm, ratio in rows:
        lines.append(f"{g:<{w0}}  {ci:<{w1}}  {pi:<{w2}}  {_t(cm):>11}  {_t(pm):>11}  {ratio:>8.1f}x")
    # Throughput of the engine (payload Gbit/s of the simulated pair, issue 3's >= 3 Gbit/s).
    for group in sorted(groups):
        for b in groups[group]:
            payload = b.extra_info.get("payload_bytes")
            if payload:
                gbits = payload * 8 / b.stats.median / 1e9
                lines.append(f"{group}: {gbits:.2f} Gbit/s of payload on one core "
                             f"({b.extra_info.get('segments', '?')} segments; target >= 3 Gbit/s "
                             f"at MTU 1500)")
    # Throughput of the checksum, and the targets for 64 KiB.
    for group in sorted(groups):
        for b in groups[group]:
            nbytes = b.extra_info.get("bytes")
            if nbytes and group.startswith("checksum") and _impl(b).startswith("compiled"):
                gbps = nbytes / b.stats.median / 1e9
                line = f"{group}: compiled {gbps:.2f} GB/s"
                if nbytes == 65536:
                    oracle = [p for p in groups[group] if _impl(p) == "pure-wordloop"]
                    speedup = oracle[0].stats.median / b.stats.median if oracle else float("nan")
                    ok = gbps >= TARGET_GBPS and speedup >= TARGET_SPEEDUP
                    line += (f", {speedup:.0f}x the pure-Python oracle (target >= {TARGET_GBPS:g} GB/s and "
                             f">= {TARGET_SPEEDUP:g}x: {'met' if ok else 'NOT met'})")
                lines.append(line)
    return lines


def _t(seconds: float) -> str:
    if seconds != seconds:      # NaN
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not getattr(session, "benchmarks", None):
        return
    lines = summary_lines(session.benchmarks)
    if lines:
        terminalreporter.write_sep("-", "tcpfast: compiled vs pure Python (ratio of medians)")
        for line in lines:
            terminalreporter.write_line(line)
