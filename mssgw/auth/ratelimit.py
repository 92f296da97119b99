"""Rate limiting of failed authentications (SPEC AUTH-4).

Why per account *and* per client address: a per-address limit alone lets a
botnet guess one account's password slowly from many addresses; a
per-account limit alone lets one address spray guesses over many accounts.
Each key gets a budget of failures over a sliding window; once spent, every
attempt on that key is refused (without checking the password, so a guess
costs the attacker time and us no Argon2 hashing) until the oldest failure
leaves the window.  A success clears the account's failures, not the
address's.

Sans-IO: the clock is injectable, and state is an in-memory dict bounded by
pruning (one node; several nodes each keep their own budget, which only
multiplies the allowance by the number of nodes).  The worker processes of
one gateway divide the budget instead (:meth:`RateLimiter.shared_by`), so
``gateway.workers`` never grants an attacker more guesses.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class Budget:
    max_failures: int
    window: float


@dataclass
class RateLimiter:
    """Failures per key over a sliding window; keys are ``"account:x"`` / ``"ip:y"``."""

    account: Budget = field(default_factory=lambda: Budget(10, 600.0))
    address: Budget = field(default_factory=lambda: Budget(30, 600.0))
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    @classmethod
    def shared_by(cls, workers: int) -> RateLimiter:
        """The default budgets divided between ``workers`` processes, rounded
        down (fail closed: together they allow no more than one process would),
        each keeping at least one attempt."""
        default = cls()
        return cls(
            account=_divided(default.account, workers),
            address=_divided(default.address, workers),
        )

    def _budget(self, key: str) -> Budget:
        return self.account if key.startswith("account:") else self.address

    def retry_after(self, keys: Iterable[str]) -> float | None:
        """Seconds to wait before any key may try again, or ``None`` if allowed."""
        now = self.clock()
        worst: float | None = None
        for key in keys:
            budget = self._budget(key)
            times = self._failures.get(key)
            if not times:
                continue
            while times and times[0] <= now - budget.window:
                times.popleft()
            if len(times) >= budget.max_failures:
                wait = times[0] + budget.window - now
                worst = wait if worst is None else max(worst, wait)
        return worst

    def failed(self, keys: Iterable[str]) -> None:
        now = self.clock()
        if len(self._failures) > self.max_keys:
            self._prune(now)
        for key in keys:
            budget = self._budget(key)
            times = self._failures.setdefault(key, deque(maxlen=budget.max_failures))
            times.append(now)

    def succeeded(self, account_key: str) -> None:
        self._failures.pop(account_key, None)

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            times = self._failures[key]
            if not times or times[-1] <= now - self._budget(key).window:
                del self._failures[key]


def _divided(budget: Budget, workers: int) -> Budget:
    return Budget(max(1, budget.max_failures // max(1, workers)), budget.window)


def account_key(address: str) -> str:
    return "account:" + address.strip().lower()


def address_key(ip: str | None) -> str:
    return "ip:" + (ip or "unknown")
