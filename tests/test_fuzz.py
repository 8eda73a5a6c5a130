"""Fuzzing tcpfast.wire: random and mutated buffers must never crash it or escape as anything but
``WireError``, and its entry points must agree with each other.

The engine is ``fuzz/fuzz_wire.py`` (also a standalone script for long runs: ``--count``, ``--seed``);
see its docstring for what is generated and checked. In short, for every buffer:

* ``check_packet``, ``parse_packet`` (with and without checksums), ``parse_ipv4``/``parse_ipv6``,
  ``parse_tcp``/``parse_icmp`` and the four views with all their accessors raise nothing but
  ``WireError``, and never read outside the buffer (it sits against a ``PROT_NONE`` guard page);
* ``check_packet(b) == OK`` iff ``parse_packet(b)`` succeeds, and a ``WireError`` carries the
  reason ``check_packet`` gave; the layer parsers and views agree with ``parse_packet``;
* what parses is rebuilt by ``build_packet`` and parses back to the same packet.

``test_fuzz_quick`` (20,000 buffers, a few seconds) runs by default; ``test_fuzz_million`` is marked
``slow`` (1,000,000 buffers, about two minutes): ``pytest -m slow tests/test_fuzz.py``.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "fuzz" / "fuzz_wire.py"


def _load_engine():
    spec = importlib.util.spec_from_file_location("fuzz_wire", ENGINE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fuzz_wire", mod)
    spec.loader.exec_module(mod)
    return mod


fw = _load_engine()

# A fixed seed by default, so that a failure reproduces; TCPFAST_FUZZ_SEED picks another.
SEED = int(os.environ.get("TCPFAST_FUZZ_SEED", "20240611"))


def _assert_clean(res):
    print(res.summary())
    if res.failures:
        lines = [f"{len(res.failures)} failing buffers (seed {SEED}); first ones:"]
        for i, kind, hx, err in res.failures[:5]:
            lines.append(f"  #{i} [{kind}] {err}\n    bytes.fromhex({hx!r})")
        pytest.fail("\n".join(lines), pytrace=False)


def _assert_coverage(res, count):
    """The generator reached the deep paths, not just the first length check."""
    reasons = res.checker.reasons
    stats = res.checker.stats
    assert res.count == count
    for reason in fw.Reason:
        assert reasons[reason.name] > 0, f"no buffer ended with {reason.name}"
    assert reasons["OK"] > count // 10
    for key in ("tcp", "icmp", "round_trip", "fill_checksum", "ipv4view", "ipv6view"):
        assert stats[key] > count // 200, (key, stats)


def test_fuzz_quick():
    count = 20_000
    res = fw.run(count, SEED, max_failures=20)
    _assert_clean(res)
    _assert_coverage(res, count)


@pytest.mark.slow
def test_fuzz_million():
    count = 1_000_000
    res = fw.run(count, SEED + 1, max_failures=20)
    _assert_clean(res)
    _assert_coverage(res, count)


def test_every_reason_reachable_from_the_fixtures():
    """Sanity check of the harness itself: a few hand-made edits of a kernel SYN give the reason
    each edit should give (if these fail, the fuzz statistics above mean little)."""
    from tcpfast import wire
    from tcpfast.wire import Reason

    syn = [p for p in fw.load_fixture_packets() if p[0] >> 4 == 4][0]

    def edited(fn, fix=True):
        b = bytearray(syn)
        fn(b)
        if fix:
            fw.fix_checksums(b)
        return wire.check_packet(bytes(b))

    assert edited(lambda b: None) is Reason.OK
    assert wire.check_packet(b"") is Reason.TRUNCATED
    assert edited(lambda b: b.__setitem__(0, 0x55)) is Reason.BAD_VERSION
    assert edited(lambda b: b.__setitem__(0, 0x44)) is Reason.BAD_IHL
    assert edited(lambda b: (b.__setitem__(0, 0x4F), b.__delitem__(slice(50, None)))) is Reason.HEADER_OVERRUN
    assert edited(lambda b: b.__setitem__(3, 61)) is Reason.BAD_TOTAL_LENGTH
    assert edited(lambda b: b.__setitem__(8, 1), fix=False) is Reason.BAD_IP_CHECKSUM
    assert edited(lambda b: b.__setitem__(6, 0x20)) is Reason.FRAGMENT
    assert edited(lambda b: b.__setitem__(9, 17)) is Reason.UNKNOWN_PROTOCOL
    assert edited(lambda b: b.__setitem__(32, 0x40)) is Reason.BAD_DATA_OFFSET
    assert edited(lambda b: b.__setitem__(32, 0xF0)) is Reason.OPTIONS_OVERRUN
    assert edited(lambda b: b.__setitem__(41, 3)) is Reason.BAD_OPTION_LENGTH
    assert edited(lambda b: b.__setitem__(41, 3), fix=False) is Reason.BAD_CHECKSUM
    rng = fw.random.Random(1)
    # Nine Destination Options headers (no Fragment header, which ends the walk, RFC 8200 §4.5).
    chain = b"".join(bytes([60 if i < 8 else 6, 0]) + bytes(6) for i in range(9))
    v6 = fw.ipv6(fw.tcp_segment(rng), 6, rng, (60, chain))
    assert wire.check_packet(bytes(fw.fix_checksums(v6))) is Reason.EXT_HEADER_LIMIT
    frag_first = bytes([6, 0]) + (1).to_bytes(2, "big") + bytes(4)     # offset 0, M set
    v6 = fw.ipv6(fw.tcp_segment(rng), 6, rng, (44, frag_first))
    assert wire.check_packet(bytes(fw.fix_checksums(v6))) is Reason.FRAGMENT


def test_guard_pages_catch_overreads():
    """The guard page is really there: reading one byte past the placed buffer faults (checked in
    a child process, which the fault kills)."""
    import subprocess
    code = (
        "import ctypes, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('fw', {str(ENGINE)!r})\n"
        "fw = importlib.util.module_from_spec(spec); spec.loader.exec_module(fw)\n"
        "g = fw.GuardedBuffer()\n"
        "mv = g.place(b'x' * 10, tail=True)\n"
        "addr = ctypes.addressof(ctypes.c_char.from_buffer(mv))\n"
        "print(ctypes.string_at(addr, 10), flush=True)\n"
        "ctypes.string_at(addr, 11)\n"
        "print('not reached', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=str(ENGINE.parent))
    assert "b'xxxxxxxxxx'" in proc.stdout
    assert "not reached" not in proc.stdout
    assert proc.returncode < 0 or proc.returncode == 139   # killed by SIGSEGV


def test_agrees_with_oracle():
    """Differential: check_packet's verdict and parse_packet's result agree with tests/oracle.py
    on every generated buffer (valid, mutated, truncated, ext-header chains, ICMP)."""
    import oracle

    from tcpfast import wire

    gen = fw.Generator(SEED + 2)
    unknown = []
    for i in range(10_000):
        _, b = next(gen)
        for verify in (True, False):
            r = wire.check_packet(b, verify_checksums=verify)
            ro = oracle.check_packet(b, verify_checksums=verify)
            if int(r) != int(ro):
                unknown.append((b.hex(), verify, r.name, ro.name))
                continue
            if r is not wire.Reason.OK:
                continue
            p = wire.parse_packet(b, verify_checksums=verify)
            po = oracle.parse_packet(b, verify_checksums=verify)
            if p.tcp is not None:
                if not (p == po and vars(p.ip) == vars(po.ip) and vars(p.tcp) == vars(po.tcp)):
                    unknown.append((b.hex(), verify, repr(p), repr(po)))
                continue
            a, o = p.icmp, po.icmp
            if (vars(p.ip), a.type, a.code, a.data, a.mtu, a.checksum) != \
                    (vars(po.ip), o.type, o.code, o.data, o.mtu, o.checksum):
                unknown.append((b.hex(), verify, repr(p), repr(po)))
            elif a.quoted != o.quoted or a != o:
                unknown.append((b.hex(), verify, repr(a), repr(o)))
    assert not unknown, "tcpfast and the oracle disagree:\n" + "\n".join(map(str, unknown[:5]))
