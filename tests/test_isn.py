"""RFC 6528 initial sequence numbers: SipHash-2-4 keyed with a per-stack secret, plus a 4 us clock."""
from tcpfast import _isn

KEY = (int.from_bytes(bytes(range(8)), "little"), int.from_bytes(bytes(range(8, 16)), "little"))


def test_siphash_reference_vectors():
    # The SipHash paper's test vectors (key 00..0f, messages 00..(n-1)).
    assert _isn.siphash(*KEY, b"") == 0x726FDB47DD0E0E31
    assert _isn.siphash(*KEY, bytes(range(15))) == 0xA129CA6149BE45E5
    assert _isn.siphash(*KEY, bytes(range(8))) == 0x93F5F5799A932462


L4, R4 = bytes([198, 18, 0, 2]), bytes([198, 18, 0, 1])


def test_isn_follows_the_4us_clock_for_one_tuple():
    a = _isn.isn(*KEY, L4, 80, R4, 40000, 1_000_000)
    b = _isn.isn(*KEY, L4, 80, R4, 40000, 1_000_000 + 400)
    assert (b - a) % 2**32 == 100          # M ticks every 4 microseconds (RFC 6528 §3)


def test_isn_differs_by_tuple_and_by_secret():
    base = _isn.isn(*KEY, L4, 80, R4, 40000, 0)
    assert _isn.isn(*KEY, L4, 80, R4, 40001, 0) != base
    assert _isn.isn(*KEY, L4, 81, R4, 40000, 0) != base
    assert _isn.isn(KEY[0] ^ 1, KEY[1], L4, 80, R4, 40000, 0) != base
    v6 = bytes(15) + b"\x02", bytes(15) + b"\x01"
    assert _isn.isn(*KEY, v6[0], 80, v6[1], 40000, 0) != _isn.isn(*KEY, v6[0], 80, v6[1], 40001, 0)


def test_isn_rejects_mixed_address_lengths():
    import pytest

    with pytest.raises(ValueError):
        _isn.isn(*KEY, L4, 80, bytes(16), 40000, 0)
    s1, s2 = _isn.new_secret(), _isn.new_secret()
    assert s1 != s2 and all(0 <= k < 2**64 for k in s1)
