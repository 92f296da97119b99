"""Pure parts of the sync: duplicate rule, diff, guards."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mssgw.directory.base import IndexItem, ScanStats
from mssgw.directory.sync import Guards, Plan, check_guards, compute_plan, merge_duplicate

N, L = "national", "local"


@given(st.lists(st.tuples(st.sampled_from("abc"), st.text("0123456789abcdef", min_size=4,
                                                            max_size=4)), max_size=30))
def test_duplicate_rule_does_not_depend_on_order(rows: list[tuple[str, str]]) -> None:
    forward: dict[str, str] = {}
    backward: dict[str, str] = {}
    for a, h in rows:
        merge_duplicate(forward, a, h)
    for a, h in reversed(rows):
        merge_duplicate(backward, a, h)
    assert forward == backward
    assert forward == {a: min(h for b, h in rows if b == a) for a, _ in rows}


def _old(**items: tuple[str, str, str]) -> dict[str, IndexItem]:
    return {k: IndexItem(*v) for k, v in items.items()}


@pytest.mark.parametrize(
    ("old", "new", "scope", "complete", "owners", "expected"),
    [
        # added / changed / removed / unchanged
        (_old(a=("1", N, ""), b=("2", N, "")), {"a": "1", "b": "9", "c": "3"}, N, True, (),
         ({"c"}, {"b"}, set(), 1, 0)),
        (_old(a=("1", N, ""), b=("2", N, "")), {"a": "1"}, N, True, (),
         (set(), set(), {"b"}, 1, 0)),
        # a national source never touches local rows, nor removes them
        (_old(a=("1", L, ""), b=("2", L, "")), {"a": "9"}, N, True, (),
         (set(), set(), set(), 0, 1)),
        # a local row takes over a national one, even with the same content
        (_old(a=("1", N, "")), {"a": "1"}, L, True, (), (set(), {"a"}, set(), 0, 0)),
        # a local sync removes local rows only
        (_old(a=("1", N, ""), b=("2", L, "")), {}, L, True, (), (set(), set(), {"b"}, 0, 0)),
        # incremental: only rows of returned owners can go
        (_old(a=("1", N, "P/1"), b=("2", N, "P/2"), c=("3", N, "")), {}, N, False, ("P/1",),
         (set(), set(), {"a"}, 0, 0)),
    ],
)
def test_compute_plan(old: dict[str, IndexItem], new: dict[str, str], scope: str,
                      complete: bool, owners: tuple[str, ...],
                      expected: tuple[set[str], set[str], set[str], int, int]) -> None:
    plan = compute_plan(old, new, scope, complete, frozenset(owners))
    assert (set(plan.added), set(plan.changed), set(plan.removed), plan.unchanged,
            plan.skipped_local) == expected


def _plan(removed: int, scope_size: int) -> Plan:
    return Plan(frozenset(), frozenset(), frozenset(str(i) for i in range(removed)), 0, 0,
                scope_size)


@pytest.mark.parametrize(
    ("removed", "size", "read", "invalid", "refusal"),
    [
        (0, 0, 0, 0, None),  # empty source, empty replica: nothing to protect
        (10, 100, 100, 1, None),  # exactly at the limits
        (11, 100, 100, 0, "would remove 11 of 100 entries"),
        (100, 100, 0, 0, "would remove 100 of 100"),  # empty file on a full replica
        (0, 100, 100, 2, "2 of 100 lines invalid"),
        (0, 0, 10, 1, "1 of 10 lines invalid"),  # first sync: only the invalid guard
    ],
)
def test_guards(removed: int, size: int, read: int, invalid: int, refusal: str | None) -> None:
    stats = ScanStats(read=read, valid=read - invalid, invalid=invalid)
    found = check_guards(_plan(removed, size), stats, Guards(0.10, 0.01))
    if refusal is None:
        assert found is None
    else:
        assert found is not None and refusal in found
