"""Internet checksum: compiled against pure Python, at 64 B, 1500 B and 64 KiB.

Run with ``pytest microbench --benchmark-only`` (see ``microbench/conftest.py``).
"""
import random

import pytest

import pure
from tcpfast import checksum as C

SIZES = {"64 B": 64, "1500 B": 1500, "64 KiB": 65536}
IMPLS = {
    "compiled": C.checksum,
    "pure-wordloop": pure.checksum_wordloop,   # the loop of tests/oracle.py
    "pure-unpack": pure.checksum,
    "pure-bigint": pure.checksum_bigint,
}


@pytest.fixture(scope="module")
def data():
    rng = random.Random(1071)
    return {label: rng.randbytes(n) for label, n in SIZES.items()}


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("size", list(SIZES))
def test_checksum(benchmark, data, size, impl):
    buf = data[size]
    fn = IMPLS[impl]
    assert fn(buf) == C.checksum(buf) == pure.checksum_wordloop(buf)
    benchmark.group = f"checksum {size}"
    benchmark.extra_info.update(impl=impl, bytes=len(buf))
    if impl == "pure-wordloop" and len(buf) > 4096:
        # Milliseconds per call: a few rounds are plenty.
        benchmark.pedantic(fn, args=(buf,), rounds=20, iterations=1, warmup_rounds=1)
    else:
        benchmark(fn, buf)


def test_checksum_of_unaligned_slice(benchmark, data):
    """The compiled sum over a memoryview at an odd offset (no copy, any alignment)."""
    buf = memoryview(b"\0" + data["64 KiB"])[1:]
    assert C.checksum(buf) == C.checksum(data["64 KiB"])
    benchmark.group = "checksum 64 KiB"
    benchmark.extra_info.update(impl="compiled-unaligned", bytes=len(buf))
    benchmark(C.checksum, buf)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "--benchmark-only", "-p", "no:cacheprovider"]))
