"""AUTH-4: failures are limited per account and per client address."""

from __future__ import annotations

from mssgw.auth.ratelimit import Budget, RateLimiter, account_key, address_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_account_budget_then_window_reopens() -> None:
    clock = Clock()
    limiter = RateLimiter(Budget(3, 60), Budget(100, 60), clock=clock)
    keys = [account_key("A@x.test"), address_key("192.0.2.1")]
    for _ in range(3):
        assert limiter.retry_after(keys) is None
        limiter.failed(keys)
    wait = limiter.retry_after(keys)
    assert wait is not None and 59 <= wait <= 60
    # Another address still cannot guess that account...
    assert limiter.retry_after([account_key("a@x.test"), address_key("192.0.2.9")]) is not None
    # ...and the first address may still try another account.
    assert limiter.retry_after([account_key("b@x.test"), address_key("192.0.2.1")]) is None
    clock.now += 61
    assert limiter.retry_after(keys) is None


def test_address_budget_spans_accounts() -> None:
    clock = Clock()
    limiter = RateLimiter(Budget(100, 60), Budget(5, 60), clock=clock)
    for i in range(5):
        limiter.failed([account_key(f"u{i}@x.test"), address_key("198.51.100.7")])
    assert limiter.retry_after([account_key("new@x.test"), address_key("198.51.100.7")]) is not None


def test_success_clears_the_account_only() -> None:
    clock = Clock()
    limiter = RateLimiter(Budget(2, 60), Budget(2, 60), clock=clock)
    keys = [account_key("a@x.test"), address_key("ip")]
    limiter.failed(keys)
    limiter.succeeded(account_key("a@x.test"))
    limiter.failed(keys)
    assert limiter.retry_after([account_key("a@x.test")]) is None
    assert limiter.retry_after([address_key("ip")]) is not None
