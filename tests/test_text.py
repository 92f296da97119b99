"""is_digits: ASCII digits only (protocol numbers)."""

from __future__ import annotations

import pytest

from mssgw.text import is_digits


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", True), ("0123456789", True), ("", False), ("1a", False), ("-1", False),
     ("²", False), ("٣", False), ("１", False), (" 1", False)],
)
def test_is_digits(text: str, expected: bool) -> None:
    assert is_digits(text) is expected
