"""When to try a deferred message again, warn its sender, or give up (SPEC FLOW-3).

Pure: a schedule, what happened to one queue row so far, and the present
instant in; a verdict out.  The relay worker applies it after every
temporary failure; nothing here reads a clock or the database, so the
schedule is checked with plain tables of values (``tests/policy/test_retry.py``).

The schedule is written in the configuration (``[relay]``):

* ``retry_schedule``: delays in seconds between attempts.  Attempt *n*
  (counting from 1) that failed temporarily is followed by
  ``retry_schedule[n-1]``; the last delay repeats.  Why a list rather than
  a formula: operators read and change it without arithmetic, and the
  default (5 min, doubling to 4 h) is one line.
* ``delay_notice_after``: once the message has waited this long, the
  sender receives one "delayed" DSN (RFC 3464 action ``delayed``), if its
  NOTIFY allows (RFC 3461 §4.1).
* ``give_up_after``: a temporary failure of an attempt made this long after
  the message was queued ends with a failure DSN.  The last retry is pulled
  forward to the deadline itself, so a message is given up at the stated
  lifetime and not up to one full delay later (Postfix's
  ``maximal_queue_lifetime`` behaves the same way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """The written schedule, in seconds (``RelaySettings`` holds the same values)."""

    delays: tuple[int, ...]
    delay_notice_after: int
    give_up_after: int

    def __post_init__(self) -> None:
        if not self.delays or any(d <= 0 for d in self.delays):
            raise ValueError("retry schedule needs at least one positive delay")
        if self.give_up_after <= 0 or self.delay_notice_after <= 0:
            raise ValueError("delay_notice_after and give_up_after must be positive")

    @classmethod
    def of(
        cls, delays: Sequence[int], delay_notice_after: int, give_up_after: int
    ) -> RetrySchedule:
        return cls(tuple(delays), delay_notice_after, give_up_after)

    def delay_after(self, attempts: int) -> timedelta:
        """Wait after the ``attempts``-th failed attempt (1-based); the last delay repeats."""
        index = min(max(attempts, 1), len(self.delays)) - 1
        return timedelta(seconds=self.delays[index])

    def deadline(self, queued_at: datetime) -> datetime:
        """The instant the message is given up (RFC 3464 §2.3.8 ``Will-Retry-Until``)."""
        return queued_at + timedelta(seconds=self.give_up_after)


@dataclass(frozen=True, slots=True)
class RetryVerdict:
    """What to do with a row whose attempt just failed temporarily.

    ``give_up``: bounce now (failure DSN).  Otherwise ``next_attempt_at``
    is when to try again, and ``notify_delay`` says a "delayed" DSN is due
    now (at most once per row: the caller records that it was sent).
    """

    give_up: bool
    next_attempt_at: datetime | None
    notify_delay: bool


def after_temporary_failure(
    schedule: RetrySchedule,
    *,
    queued_at: datetime,
    attempts: int,
    delay_notified: bool,
    now: datetime,
) -> RetryVerdict:
    """Verdict after attempt number ``attempts`` (1-based, this one included) failed with 4xx.

    A row is given up when the failed attempt happened at or after the
    deadline.  Otherwise the next attempt is ``now + delay``, but never
    later than the deadline: the final attempt then happens exactly at the
    deadline, and its temporary failure gives up.
    """
    deadline = schedule.deadline(queued_at)
    if now >= deadline:
        return RetryVerdict(give_up=True, next_attempt_at=None, notify_delay=False)
    next_at = min(now + schedule.delay_after(attempts), deadline)
    waited = now - queued_at
    notify = not delay_notified and waited >= timedelta(seconds=schedule.delay_notice_after)
    return RetryVerdict(give_up=False, next_attempt_at=next_at, notify_delay=notify)


def planned_attempts(schedule: RetrySchedule, queued_at: datetime) -> list[datetime]:
    """Every attempt instant if every attempt fails temporarily (for docs and the CLI).

    The first attempt is at ``queued_at``; the list ends with the attempt
    at which the row is given up.
    """
    times = [queued_at]
    attempts = 1
    while True:
        verdict = after_temporary_failure(
            schedule, queued_at=queued_at, attempts=attempts, delay_notified=True, now=times[-1]
        )
        if verdict.give_up or verdict.next_attempt_at is None:
            return times
        times.append(verdict.next_attempt_at)
        attempts += 1
