"""Sequence-number arithmetic modulo 2**32 (tcpfast.seq; RFC 9293 §3.4, RFC 1982).

Comparisons are Linux's ``(int32)(a - b) < 0``: a pair exactly 2**31 apart compares "before" both
ways, as ``_seq.pxd`` documents.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle
from tcpfast import seq as S

SETTINGS = settings(max_examples=300, deadline=None)

M = 1 << 32
H = 1 << 31
TOP = M - 1

# Sequence numbers with plenty of values near the wrap and the half-space boundary.
edges = st.sampled_from([0, 1, 2, H - 2, H - 1, H, H + 1, H + 2, TOP - 1, TOP])
u32 = st.one_of(edges, st.integers(0, TOP))


# --- literal comparisons ------------------------------------------------------------------------

def test_plain_order():
    assert S.lt(1, 2) and S.le(1, 2) and not S.gt(1, 2) and not S.ge(1, 2)
    assert S.gt(2, 1) and S.ge(2, 1) and not S.lt(2, 1) and not S.le(2, 1)


def test_equal():
    for a in (0, 1, H, TOP):
        assert not S.lt(a, a) and not S.gt(a, a)
        assert S.le(a, a) and S.ge(a, a)
        assert S.sub(a, a) == 0


def test_wrap_at_2_32():
    assert S.lt(TOP, 0)
    assert S.gt(0, TOP)
    assert S.lt(0xFFFFFFF0, 0x10)
    assert S.gt(0x10, 0xFFFFFFF0)
    assert S.le(TOP, 0) and S.ge(0, TOP)
    assert S.sub(0, TOP) == 1
    assert S.sub(TOP, 0) == -1
    assert S.sub(0x10, 0xFFFFFFF0) == 0x20


@pytest.mark.parametrize("base", [0, 1, 1000, H - 1, H, TOP - 5, TOP])
def test_half_space_boundary(base):
    just_inside = (base + H - 1) % M        # 2**31 - 1 ahead: after base
    just_outside = (base + H + 1) % M       # 2**31 + 1 ahead: that is 2**31 - 1 behind
    assert S.lt(base, just_inside) and S.gt(just_inside, base)
    assert not S.lt(just_inside, base)
    assert S.sub(just_inside, base) == H - 1
    assert S.gt(base, just_outside) and S.lt(just_outside, base)
    assert not S.lt(base, just_outside)
    assert S.sub(just_outside, base) == -(H - 1)


@pytest.mark.parametrize("a", [0, 1, 12345, H - 1, H, TOP])
def test_exactly_half_apart_is_before_both_ways(a):
    # Documented in _seq.pxd: (int32)(a - b) < 0 is true for both orders when |a - b| = 2**31.
    b = (a + H) % M
    assert S.lt(a, b) and S.lt(b, a)
    assert S.le(a, b) and S.le(b, a)
    assert S.gt(a, b) and S.gt(b, a)
    assert S.ge(a, b) and S.ge(b, a)
    assert S.sub(a, b) == -H and S.sub(b, a) == -H


# --- between / in_window --------------------------------------------------------------------------

def test_between_inclusive():
    assert S.between(10, 10, 20)
    assert S.between(10, 15, 20)
    assert S.between(10, 20, 20)
    assert not S.between(10, 9, 20)
    assert not S.between(10, 21, 20)
    assert S.between(7, 7, 7)
    assert not S.between(7, 8, 7)


def test_between_across_wrap():
    assert S.between(0xFFFFFFF0, TOP, 0x10)
    assert S.between(0xFFFFFFF0, 0, 0x10)
    assert S.between(0xFFFFFFF0, 0x10, 0x10)
    assert not S.between(0xFFFFFFF0, 0x11, 0x10)
    assert not S.between(0xFFFFFFF0, 0xFFFFFFEF, 0x10)


def test_between_walks_forward_from_lo():
    # hi "before" lo means the range runs almost all the way round.
    assert S.between(20, 5, 10)
    assert not S.between(20, 15, 10)
    assert not S.between(20, 11, 10)
    assert S.between(20, 30, 10)
    assert S.between(20, 0, 10)
    assert S.between(20, TOP, 10)


def test_in_window_half_open():
    assert S.in_window(100, 100, 10)
    assert S.in_window(109, 100, 10)
    assert not S.in_window(110, 100, 10)
    assert not S.in_window(99, 100, 10)


def test_in_window_empty_and_full():
    for x in (0, 5, H, TOP):
        assert not S.in_window(x, x, 0)
        assert S.in_window(x, 0, TOP) == (x != TOP)
    assert S.in_window(TOP - 1, 0, TOP)


def test_in_window_across_wrap():
    assert S.in_window(TOP, 0xFFFFFFFE, 10)
    assert S.in_window(0, 0xFFFFFFFE, 10)
    assert S.in_window(7, 0xFFFFFFFE, 10)
    assert not S.in_window(8, 0xFFFFFFFE, 10)
    assert not S.in_window(0xFFFFFFFD, 0xFFFFFFFE, 10)


# --- add / sub / max / min ----------------------------------------------------------------------

def test_add_wraps():
    assert S.add(TOP, 1) == 0
    assert S.add(5, TOP) == 4
    assert S.add(0, -1) == TOP
    assert S.add(3, -5) == TOP - 1
    assert S.add(H, H - 1) == TOP
    assert S.add(1, -TOP) == 2


def test_add_range():
    assert S.add(0, TOP) == TOP
    assert S.add(0, -TOP) == 1
    for n in (M, -M, 1 << 40):
        with pytest.raises(ValueError):
            S.add(0, n)


def test_sub_range_literals():
    assert S.sub(H - 1, 0) == H - 1
    assert S.sub(H, 0) == -H
    assert S.sub(H + 1, 0) == -(H - 1)
    assert S.sub(0, 1) == -1
    assert S.sub(5, 3) == 2


def test_max_min_follow_sequence_order():
    assert S.max(TOP, 1) == 1 and S.min(TOP, 1) == TOP
    assert S.max(1, TOP) == 1 and S.min(1, TOP) == TOP
    assert S.max(3, 9) == 9 and S.min(3, 9) == 3
    assert S.max(7, 7) == 7 and S.min(7, 7) == 7
    assert S.max(0, H - 1) == H - 1
    assert S.max(0, H + 1) == 0


# --- argument errors ----------------------------------------------------------------------------

TWO_ARG = [S.lt, S.le, S.gt, S.ge, S.sub, S.max, S.min]


@pytest.mark.parametrize("fn", TWO_ARG, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [-1, M, 1 << 64, -(1 << 64)])
def test_out_of_range_is_value_error(fn, bad):
    with pytest.raises(ValueError):
        fn(bad, 0)
    with pytest.raises(ValueError):
        fn(0, bad)


@pytest.mark.parametrize("bad", [-1, M])
def test_three_argument_out_of_range(bad):
    for args in ((bad, 0, 0), (0, bad, 0), (0, 0, bad)):
        with pytest.raises(ValueError):
            S.between(*args)
        with pytest.raises(ValueError):
            S.in_window(*args)
    with pytest.raises(ValueError):
        S.add(bad, 0)


@pytest.mark.parametrize("fn", TWO_ARG, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", ["1", None, b"\x01"])
def test_wrong_type_is_type_error(fn, bad):
    with pytest.raises(TypeError):
        fn(bad, 0)
    with pytest.raises(TypeError):
        fn(0, bad)


def test_float_is_type_error():
    # 1.5 must not silently become sequence number 1 (nor 2**31 + 0.5 become 2**31).
    for fn in TWO_ARG:
        with pytest.raises(TypeError):
            fn(1.5, 0)
        with pytest.raises(TypeError):
            fn(0, float(H))
    with pytest.raises(TypeError):
        S.between(0, 1.5, 2)
    with pytest.raises(TypeError):
        S.in_window(1.0, 0, 2)
    with pytest.raises(TypeError):
        S.add(0, 1.5)


def test_wrong_arity():
    with pytest.raises(TypeError):
        S.lt(1)
    with pytest.raises(TypeError):
        S.between(1, 2)


# --- properties against the oracle --------------------------------------------------------------

@SETTINGS
@given(u32, u32)
def test_comparisons_match_oracle(a, b):
    assert S.lt(a, b) == oracle.seq_lt(a, b)
    assert S.le(a, b) == oracle.seq_le(a, b)
    assert S.gt(a, b) == oracle.seq_gt(a, b)
    assert S.ge(a, b) == oracle.seq_ge(a, b)
    assert S.sub(a, b) == oracle.seq_sub(a, b)
    assert S.max(a, b) == oracle.seq_max(a, b)
    assert S.min(a, b) == oracle.seq_min(a, b)


@SETTINGS
@given(u32, u32, u32)
def test_between_and_window_match_oracle(a, b, c):
    assert S.between(a, b, c) == oracle.seq_between(a, b, c)
    assert S.in_window(a, b, c) == oracle.seq_in_window(a, b, c)


@SETTINGS
@given(u32, st.integers(-TOP, TOP))
def test_add_matches_oracle(a, n):
    assert S.add(a, n) == oracle.seq_add(a, n)


@SETTINGS
@given(u32, u32)
def test_algebra(a, b):
    d = S.sub(a, b)
    assert -H <= d < H
    assert S.add(b, d) == a
    assert S.lt(a, b) == (d < 0)
    assert S.gt(a, b) == S.lt(b, a) or (a - b) % M == H
    if (a - b) % M != H:
        # Away from the tie exactly one of <, ==, > holds.
        assert [S.lt(a, b), a == b, S.gt(a, b)].count(True) == 1
        assert S.le(a, b) == (S.lt(a, b) or a == b)
        assert S.ge(a, b) == (S.gt(a, b) or a == b)
        assert {S.max(a, b), S.min(a, b)} == {a, b}


@SETTINGS
@given(u32, st.integers(0, H - 1), st.integers(0, H - 1))
def test_between_agrees_with_offsets(lo, off_x, width):
    x = (lo + off_x) % M
    hi = (lo + width) % M
    assert S.between(lo, x, hi) == (off_x <= width)
    assert S.in_window(x, lo, width) == (off_x < width)
