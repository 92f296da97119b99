"""The retry schedule (policy/retry.py) as tables: attempt, wait, notice, give up."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from mssgw.policy.retry import RetrySchedule, after_temporary_failure, planned_attempts

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
MIN = 60
HOUR = 3600
#: The documented default: 5 min doubling to 4 h, notice after 4 h, give up after 5 days.
DEFAULT = RetrySchedule.of([300, 600, 1200, 2400, 4800, 9600, 14400], 4 * HOUR, 5 * 86400)


@pytest.mark.parametrize(
    ("attempts", "wait"),
    [(1, 300), (2, 600), (3, 1200), (4, 2400), (5, 4800), (6, 9600), (7, 14400), (8, 14400),
     (50, 14400), (0, 300)],
)  # fmt: skip
def test_delay_after_each_attempt_last_repeats(attempts: int, wait: int) -> None:
    assert DEFAULT.delay_after(attempts) == timedelta(seconds=wait)


@pytest.mark.parametrize(
    ("elapsed", "attempts", "notified", "give_up", "next_in", "notice"),
    [
        # first failure, right after queueing: 5 minutes, no notice
        (0, 1, False, False, 300, False),
        # third failure 15 min in: 20 minutes later
        (15 * MIN, 3, False, False, 1200, False),
        # just before 4 h: no notice yet
        (4 * HOUR - 1, 6, False, False, 9600, False),
        # at 4 h: notice due, once
        (4 * HOUR, 7, False, False, 14400, True),
        (5 * HOUR, 8, True, False, 14400, False),
        # near the end the retry is pulled to the deadline itself
        (5 * 86400 - HOUR, 40, True, False, HOUR, False),
        # an attempt at the deadline gives up, notice or not
        (5 * 86400, 41, True, True, None, False),
        (6 * 86400, 41, False, True, None, False),
    ],
)
def test_verdict_table(
    elapsed: int, attempts: int, notified: bool, give_up: bool, next_in: int | None, notice: bool
) -> None:
    now = T0 + timedelta(seconds=elapsed)
    verdict = after_temporary_failure(
        DEFAULT, queued_at=T0, attempts=attempts, delay_notified=notified, now=now
    )
    assert verdict.give_up is give_up
    assert verdict.notify_delay is notice
    if next_in is None:
        assert verdict.next_attempt_at is None
    else:
        assert verdict.next_attempt_at == now + timedelta(seconds=next_in)


def test_planned_attempts_small_schedule() -> None:
    schedule = RetrySchedule.of([10, 20], delay_notice_after=15, give_up_after=60)
    offsets = [int((t - T0).total_seconds()) for t in planned_attempts(schedule, T0)]
    # 0 → +10 → +20 → +20 → +20 would be 70, pulled to the 60 s deadline
    assert offsets == [0, 10, 30, 50, 60]


def test_default_schedule_gives_up_at_five_days() -> None:
    times = planned_attempts(DEFAULT, T0)
    assert times[-1] == T0 + timedelta(days=5)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert gaps[:7] == [300, 600, 1200, 2400, 4800, 9600, 14400]
    assert max(gaps) == 14400
    assert len(times) == 36


@pytest.mark.parametrize(
    ("delays", "notice", "give_up"), [([], 10, 10), ([0], 10, 10), ([5], 0, 10), ([5], 10, 0)]
)
def test_invalid_schedules_are_refused(delays: list[int], notice: int, give_up: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        RetrySchedule.of(delays, notice, give_up)
