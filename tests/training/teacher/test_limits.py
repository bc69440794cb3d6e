import asyncio
import random

import pytest
from mindmirror.student.errors import MindmirrorError
from mindmirror.training.teacher.backends.openai_backend import parse_retry_after
from mindmirror.training.teacher.limits import (
    Budget,
    Prices,
    RateLimiter,
    RetryPolicy,
    TokenEstimator,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_rpm_limit_spaces_requests_after_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, burst_seconds=2, clock=clock, sleep=clock.sleep)

    async def go() -> list[float]:
        times = []
        for _ in range(6):
            await limiter.acquire(0)
            times.append(clock.now)
        return times

    times = asyncio.run(go())
    # 1 request/s with a burst of 2: two at once, then one per second.
    assert times == pytest.approx([0, 0, 1, 2, 3, 4])


def test_tpm_limit_counts_tokens_and_lets_a_huge_request_through_once_full() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=6000, burst_seconds=1, clock=clock, sleep=clock.sleep)  # 100/s

    async def go() -> list[float]:
        times = []
        for tokens in (100, 100, 250, 50):
            await limiter.acquire(tokens)
            times.append(clock.now)
        return times

    times = asyncio.run(go())
    # bucket of 100: 100 now; 100 after 1 s; 250 (> bucket) once full at 2 s, leaving -150;
    # 50 then needs 200 more tokens: 2 s later.
    assert times == pytest.approx([0, 1, 2, 4])


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    policy = RetryPolicy(max_retries=5, base=1.0, cap=8.0)
    rng = random.Random(0)
    for attempt in range(6):
        bound = min(8.0, 2.0**attempt)
        delays = [policy.delay(attempt, None, rng) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > 0.8 * bound  # full jitter spreads over the range


def test_retry_after_wins_over_backoff() -> None:
    policy = RetryPolicy(base=1.0)
    delay = policy.delay(0, 7.0, random.Random(1))
    assert 7.0 <= delay <= 7.1
    assert policy.delay(0, 10_000.0) <= policy.max_retry_after + 0.1


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # past
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_budget_counts_in_flight_worst_case() -> None:
    async def go() -> None:
        budget = Budget(1.0)
        assert await budget.reserve(0.4)
        assert await budget.reserve(0.4)
        # 0.8 reserved: a third could exceed 1.0, so it waits for an in-flight call to settle.
        third = asyncio.create_task(budget.reserve(0.4))
        await asyncio.sleep(0.01)
        assert not third.done()
        await budget.settle(0.4, 0.1)  # finished, cheaper than feared: room again
        assert await third
        assert budget.spent == pytest.approx(0.1)
        await budget.settle(0.4, 0.3)
        await budget.settle(0.4, 0.35)
        # Nothing in flight and it still does not fit: refuse instead of waiting forever.
        assert budget.spent == pytest.approx(0.75)
        assert not await budget.reserve(0.3)
        assert await budget.reserve(0.25)
        assert await Budget(None).reserve(1e9)

    asyncio.run(go())
    with pytest.raises(MindmirrorError):
        Budget(0)


def test_prices_and_estimator() -> None:
    prices = Prices(2.0, 10.0, batch_discount=0.5)
    assert prices.cost(1_000_000, 100_000) == pytest.approx(3.0)
    assert prices.cost(1_000_000, 100_000, batch=True) == pytest.approx(1.5)
    estimator = TokenEstimator()
    messages = [{"role": "user", "content": "x" * 400}]
    assert estimator.prompt_tokens(messages) == 200 + 8  # 0.5 tokens/char until calibrated
    assert estimator.observe(messages, 108)
    assert not estimator.observe(messages, 50)  # only learns upward
    assert estimator.prompt_tokens(messages) == 110 + 8  # observed 0.25 x 1.1 safety
