"""Client-side limits: requests and tokens per minute, retry backoff, and the cost budget.

All three take an injectable clock/sleep or random source so tests can check them exactly.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mindmirror.student.errors import MindmirrorError
from mindmirror.training.teacher.prompts import Message

__all__ = ["Budget", "Prices", "RateLimiter", "RetryPolicy", "TokenEstimator"]


class _Bucket:
    """A token bucket refilled at ``per_minute / 60`` per second, holding at most ``burst``.

    A request larger than the bucket is let through once the bucket is full and drives it
    negative, so later requests wait: the long-run rate is still the limit.
    """

    def __init__(self, per_minute: float, burst_seconds: float, clock: Callable[[], float]):
        if per_minute <= 0:
            raise MindmirrorError(f"rate limits must be positive, got {per_minute}")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self.clock = clock
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self, amount: float) -> float:
        self._refill()
        needed = min(amount, self.capacity)
        return 0.0 if self.level >= needed else (needed - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits shared by all workers.

    Tokens are counted before the call as prompt estimate + ``max_tokens`` per sample, the
    way OpenAI counts them against a TPM limit.
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        burst_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.requests = _Bucket(rpm, burst_seconds, clock) if rpm else None
        self.tokens = _Bucket(tpm, burst_seconds, clock) if tpm else None
        self.sleep = sleep
        self._lock = asyncio.Lock()
        self.waited = 0.0

    async def acquire(self, tokens: float) -> None:
        if self.requests is None and self.tokens is None:
            return
        # One waiter at a time: first come, first served, and no two workers both see the
        # same free capacity.
        async with self._lock:
            while True:
                wait = max(
                    self.requests.wait_time(1) if self.requests else 0.0,
                    self.tokens.wait_time(tokens) if self.tokens else 0.0,
                )
                if wait <= 0:
                    break
                self.waited += wait
                await self.sleep(wait)
            if self.requests:
                self.requests.take(1)
            if self.tokens:
                self.tokens.take(tokens)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After wins when it sends one."""

    max_retries: int = 6
    base: float = 1.0
    cap: float = 60.0
    #: longest Retry-After honoured; beyond it the request is treated as failed this run
    max_retry_after: float = 600.0

    def delay(
        self, attempt: int, retry_after: float | None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        rng = rng or random.Random()  # noqa: S311 - jitter, not security
        if retry_after is not None:
            # A little jitter on top, so clients told the same instant do not all return at once.
            return min(retry_after, self.max_retry_after) + rng.uniform(0, 0.1 * self.base)
        return rng.uniform(0, min(self.cap, self.base * 2**attempt))


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0
    #: multiplier for Batch API calls (OpenAI bills them at half price)
    batch_discount: float = 0.5

    def __post_init__(self) -> None:
        if self.input_per_million < 0 or self.output_per_million < 0:
            raise MindmirrorError("prices cannot be negative")

    @property
    def free(self) -> bool:
        return self.input_per_million == 0 and self.output_per_million == 0

    def cost(self, prompt_tokens: float, completion_tokens: float, batch: bool = False) -> float:
        cost = (
            prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million
        ) / 1e6
        return cost * self.batch_discount if batch else cost


class TokenEstimator:
    """Prompt-token estimates before a call, for dry runs, TPM limits and the budget.

    Until the store has seen real usage it assumes 0.5 tokens per character, an upper bound
    for English text under common tokenizers (typical is ~0.25), so budget checks err on the
    safe side. After each call it learns the largest observed tokens-per-character.
    """

    DEFAULT_RATIO = 0.5
    PER_MESSAGE = 4

    def __init__(self, ratio: float | None = None) -> None:
        self.observed = ratio
        self.safety = 1.1

    @property
    def ratio(self) -> float:
        return self.DEFAULT_RATIO if self.observed is None else self.observed * self.safety

    @property
    def calibrated(self) -> bool:
        return self.observed is not None

    @staticmethod
    def characters(messages: Sequence[Message]) -> int:
        return sum(len(message["content"]) for message in messages)

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        # The epsilon keeps float noise (400 x 0.275 = 110.00000000000001) from adding a token.
        return math.ceil(self.characters(messages) * self.ratio - 1e-9) + self.PER_MESSAGE * (
            len(messages) + 1
        )

    def observe(self, messages: Sequence[Message], prompt_tokens: int) -> bool:
        """Learn from a real count; True when the ratio went up (worth persisting)."""
        characters = self.characters(messages)
        if characters == 0 or prompt_tokens <= 0:
            return False
        ratio = max(0.0, prompt_tokens - self.PER_MESSAGE * (len(messages) + 1)) / characters
        if self.observed is None or ratio > self.observed:
            self.observed = ratio
            return True
        return False


class Budget:
    """Spending cap for one invocation. A call is made only if its worst case (prompt
    estimate + ``max_tokens`` for every sample) fits next to what is spent and what the calls
    in flight could still cost, so the cap holds even when every in-flight call maxes out.

    A call that does not fit waits while others are in flight (they usually cost far less
    than their worst case, freeing room); the run stops only when nothing is in flight and it
    still does not fit.
    """

    def __init__(self, max_cost: float | None) -> None:
        if max_cost is not None and max_cost <= 0:
            raise MindmirrorError(f"--max-cost must be positive, got {max_cost}")
        self.max_cost = max_cost
        self.spent = 0.0
        self.reserved = 0.0
        self.in_flight = 0
        self._changed = asyncio.Condition()

    def _fits(self, worst_case: float) -> bool:
        return self.max_cost is None or self.spent + self.reserved + worst_case <= self.max_cost

    async def reserve(self, worst_case: float) -> bool:
        """Reserve ``worst_case``; False when it can never fit (nothing left in flight)."""
        async with self._changed:
            while not self._fits(worst_case):
                if self.in_flight == 0:
                    return False
                await self._changed.wait()
            self.reserved += worst_case
            self.in_flight += 1
            return True

    async def settle(self, reserved: float, actual: float) -> None:
        async with self._changed:
            self.reserved = max(0.0, self.reserved - reserved)
            self.in_flight -= 1
            self.spent += actual
            self._changed.notify_all()
