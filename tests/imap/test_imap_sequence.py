"""Sequence sets (RFC 3501 §9, RFC 5182 ``$``)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssgw.imap.protocol.errors import BadCommand
from mssgw.imap.protocol.sequence import SequenceSet


def test_parse_and_format() -> None:
    s = SequenceSet.parse(b"2,4:7,9:*,*")
    assert s.ranges == ((2, 2), (4, 7), (9, None), (None, None))
    assert str(s) == "2,4:7,9:*,*"
    assert s.uses_star


def test_saved_result() -> None:
    s = SequenceSet.parse(b"$")
    assert s.saved and str(s) == "$"
    with pytest.raises(ValueError):
        s.resolve(10)


@pytest.mark.parametrize(
    "raw", [b"0", b"1:0", b"01", b"", b"1,", b",1", b"1::2", b"a", b"$,1", b"4294967296"]
)
def test_invalid(raw: bytes) -> None:
    with pytest.raises(BadCommand):
        SequenceSet.parse(raw)


def test_resolve_star_and_reversed_ranges() -> None:
    s = SequenceSet.parse(b"7:3,559:*")
    # RFC 3501 §6.4.8: 559:* includes the largest even when 559 is higher
    assert s.resolve(100) == [(3, 7), (100, 559)]
    assert s.contains(5, 100) and s.contains(100, 100) and not s.contains(9, 100)


def test_huge_range_costs_nothing() -> None:
    s = SequenceSet.parse(b"1:4294967295")
    assert s.resolve(10) == [(1, 4294967295)]
    assert s.contains(4294967295, 10)


def test_from_ints_compresses() -> None:
    assert str(SequenceSet.from_ints([5, 1, 2, 3, 9, 10])) == "1:3,5,9:10"
    assert str(SequenceSet.from_ints([])) == ""


@settings(settings.get_profile("mssgw-imap"))
@given(st.sets(st.integers(min_value=1, max_value=500), min_size=1))
def test_from_ints_round_trip(values: set[int]) -> None:
    s = SequenceSet.from_ints(values)
    parsed = SequenceSet.parse(bytes(s))
    assert set(parsed.iter(500)) == values
    assert parsed == s
