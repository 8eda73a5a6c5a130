"""Sequence-number arithmetic (RFC 9293 §3.4, RFC 1982): tcpfast._seq against pure Python.

Run with ``pytest microbench --benchmark-only`` (see ``microbench/conftest.py``).

The compiled helpers are ``cdef inline`` functions in ``tcpfast/_seq.pxd``: the engine calls them
from C, where each is one subtraction and one compare. From Python the only way in is
``tcpfast._seq``'s wrappers (re-exported by ``tcpfast.seq``), which also check that the arguments
are 32-bit values, so:

* ``seq <op> (8 calls)``: each wrapper called from a Python loop, beside the same expression as a
  pure-Python function (``microbench/pure.py``). This measures the cost of a call, and the compiled
  figure is expected to be close to the pure one, or behind it: argument checks cost about as much
  as the arithmetic they guard.
* ``seq lt x4096 (map)``: the nearest thing to a batch that the module offers. ``_seq`` has no
  vector API, so ``map()`` drives the wrapper from C (no bytecode per comparison), beside ``map()``
  over the pure function and a list comprehension with the expression inlined (``pure-inline``,
  no call at all: the fastest pure-Python form). A batch measured in C, with no Python call per
  comparison, would need a compiled helper that ``_seq`` does not have.

Every case first checks that compiled and pure results agree on its inputs (and, once per module,
on edge values and a random sample, against RFC 1982 §3.2 written out too).
"""
from __future__ import annotations

import random
from typing import Callable, Dict, List, Sequence, Tuple

import pytest

import pure
from tcpfast import _seq as S

M32 = 0xFFFFFFFF

# Pairs that cross the wrap, sit 2**31 - 1 apart, or are equal.
PAIRS: List[Tuple[int, int]] = [
    (0xFFFFFFF0, 0x10), (0x10, 0xFFFFFFF0), (5, 3), (3, 5), (0, 0x7FFFFFFF),
    (123456, 123456), (0x80000000, 0x7FFFFFFF), (0xFFFFFFFF, 0),
]
# (lo, x, hi) for between, (x, start, size) for in_window.
TRIPLES: List[Tuple[int, int, int]] = [
    (0xFFFFFF00, 0x10, 0x100), (0, 5, 10), (10, 5, 0), (0x7FFFFFF0, 0x80000010, 0x80000020),
    (1, 1, 1), (0xFFFFFFFF, 0, 0), (100, 50000, 65535), (0, 0xFFFFFFFF, 0xFFFFFFFF),
]

# name -> (compiled wrapper, pure-Python oracle, inputs)
OPS: Dict[str, Tuple[Callable, Callable, Sequence[tuple]]] = {
    "lt": (S.lt, pure.seq_lt, PAIRS),
    "le": (S.le, pure.seq_le, PAIRS),
    "gt": (S.gt, pure.seq_gt, PAIRS),
    "ge": (S.ge, pure.seq_ge, PAIRS),
    "between": (S.between, pure.seq_between, TRIPLES),
    "in_window": (S.in_window, pure.seq_in_window, TRIPLES),
    "add": (S.add, pure.seq_add, PAIRS),
    "sub": (S.sub, pure.seq_sub, PAIRS),
}


@pytest.fixture(scope="module")
def agreed() -> None:
    """Compiled and pure agree on edge values and a random sample; the pure comparison agrees
    with RFC 1982 §3.2 wherever RFC 1982 defines it (everywhere but 2**31 apart)."""
    rng = random.Random(1982)
    edges = [0, 1, 2, 0x7FFFFFFE, 0x7FFFFFFF, 0x80000000, 0x80000001, 0xFFFFFFFE, 0xFFFFFFFF]
    values = edges + [rng.getrandbits(32) for _ in range(60)]
    for a in values:
        for b in values:
            for name in ("lt", "le", "gt", "ge", "add", "sub"):
                c, p, _ = OPS[name]
                assert c(a, b) == p(a, b), (name, a, b)
            if (a - b) & M32 != 0x80000000:
                assert pure.seq_lt(a, b) == pure.seq_lt_rfc1982(a, b), (a, b)
                assert pure.seq_gt(a, b) == pure.seq_lt_rfc1982(b, a), (a, b)
            for x in values[:16]:
                assert S.between(a, x, b) == pure.seq_between(a, x, b), (a, x, b)
                assert S.in_window(x, a, b) == pure.seq_in_window(x, a, b), (x, a, b)


def _loop(fn: Callable, args: Sequence[tuple]) -> Callable[[], None]:
    """A closure calling ``fn`` once per input, unrolled by arity so no ``*args`` is timed."""
    if len(args[0]) == 2:
        def run2() -> None:
            for a, b in args:
                fn(a, b)
        return run2

    def run3() -> None:
        for a, b, c in args:
            fn(a, b, c)
    return run3


@pytest.mark.parametrize("impl", ["compiled", "pure"])
@pytest.mark.parametrize("op", list(OPS))
def test_seq_call(benchmark, agreed, op: str, impl: str) -> None:
    compiled, oracle, args = OPS[op]
    assert [compiled(*t) for t in args] == [oracle(*t) for t in args]
    fn = compiled if impl == "compiled" else oracle
    benchmark.group = f"seq {op} ({len(args)} calls)"
    benchmark.extra_info["impl"] = f"compiled-seq.{op}" if impl == "compiled" else "pure"
    benchmark(_loop(fn, args))


# --- a batch of comparisons ---------------------------------------------------------------------

BATCH = 4096


@pytest.fixture(scope="module")
def batch() -> Tuple[List[int], List[int], int]:
    """Random pairs within a window of each other (as TCP compares them), and how many are 'lt'."""
    rng = random.Random(793)
    a = [rng.getrandbits(32) for _ in range(BATCH)]
    b = [(x + rng.randrange(-(1 << 20), 1 << 20)) & M32 for x in a]
    return a, b, sum(pure.seq_lt_rfc1982(x, y) for x, y in zip(a, b))


def _inline_lt(a: List[int], b: List[int]) -> int:
    return sum([((x - y) & 0xFFFFFFFF) >= 0x80000000 for x, y in zip(a, b)])


BATCH_IMPLS: Dict[str, Callable[[List[int], List[int]], int]] = {
    "compiled-map": lambda a, b: sum(map(S.lt, a, b)),
    "pure-map": lambda a, b: sum(map(pure.seq_lt, a, b)),
    "pure-inline": _inline_lt,
}


@pytest.mark.parametrize("impl", list(BATCH_IMPLS))
def test_seq_batch(benchmark, agreed, batch, impl: str) -> None:
    a, b, expected = batch
    fn = BATCH_IMPLS[impl]
    assert fn(a, b) == expected
    benchmark.group = f"seq lt x{BATCH} (map)"
    benchmark.extra_info["impl"] = impl
    assert benchmark(fn, a, b) == expected


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "--benchmark-only", "-p", "no:cacheprovider"]))
