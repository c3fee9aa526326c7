"""When to retry a failed attempt, and how long to wait: a small frozen value object, no I/O."""

from __future__ import annotations

import time

from . import _validation
from .errors import NetworkError, OpShiftError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = ["RETRY_STATUSES", "RetryPolicy", "backoff_wait"]

RETRY_STATUSES = frozenset({500, 502, 503, 504})
_MAX_DOUBLINGS = 30  # 2.0 ** 1024 overflows; 2 ** 30 times any sane base is past any cap


def backoff_wait(failures: int, base: float, cap: float, jitter: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures (1 for the first): ``base``
    doubled per further failure, at most ``cap``, times ``jitter`` in [0, 1) (full jitter).

    The one backoff formula, for the client's retries and the outbox's deliveries alike;
    any failure count is safe (the doubling stops at ``_MAX_DOUBLINGS``).
    """
    doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
    return jitter * min(cap, base * 2.0**doublings)


class RetryPolicy:
    """Exponential backoff with full jitter, on network errors and 500/502/503/504 only.

    A retry happens only if, after its backoff, the call's deadline still leaves room for
    an attempt (a tenth of the timeout, at most 1 s), so ``timeout`` bounds the whole call.
    Frozen: make a changed copy with ``replace()``.

    Args:
        max_retries: Extra attempts after the first (0 disables retries).
        backoff: The first backoff in seconds; it doubles per retry, times a random factor.
        backoff_max: The cap on one backoff, in seconds.
        sleep: How to wait (``time.sleep``); tests pass a function that records the waits.
        random: A source of uniform numbers in [0, 1) for the jitter (``random.random``).
    """

    __slots__ = ("backoff", "backoff_max", "max_retries", "random", "sleep")

    max_retries: int
    backoff: float
    backoff_max: float
    sleep: Callable[[float], object]
    random: Callable[[], float] | None

    def __init__(
        self,
        max_retries: int = 2,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        *,
        sleep: Callable[[float], object] = time.sleep,
        random: Callable[[], float] | None = None,
    ) -> None:
        hint = "; 0 disables retries"
        set_ = object.__setattr__
        set_(self, "max_retries", _validation.check_int("max_retries", max_retries, hint=hint))
        set_(self, "backoff", _validation.check_number("retry_backoff", backoff, inclusive=True))
        set_(
            self,
            "backoff_max",
            _validation.check_number("backoff_max", backoff_max, inclusive=True),
        )
        set_(self, "sleep", sleep)
        set_(self, "random", random)

    def delay(
        self, error: OpShiftError, attempt: int, remaining: float, timeout: float
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up and raise.

        Args:
            error: Why attempt number ``attempt`` (1-based) failed.
            remaining: Seconds left until the call's deadline.
            timeout: The call's whole timeout, to size the room an attempt needs.
        """
        if attempt > self.max_retries or not retryable(error):
            return None
        wait = backoff_wait(attempt, self.backoff, self.backoff_max, self._jitter())
        if remaining - wait < min(1.0, timeout / 10):
            return None
        return wait

    def _jitter(self) -> float:
        rand = self.random
        if rand is None:
            import random  # on first retry only: most calls never need it

            rand = random.random
        return rand()

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with some fields changed, e.g. ``policy.replace(max_retries=0)``."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return RetryPolicy(**fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"RetryPolicy is frozen; use policy.replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("RetryPolicy is frozen")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RetryPolicy):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, n) for n in self.__slots__))

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_retries={self.max_retries}, backoff={self.backoff}, "
            f"backoff_max={self.backoff_max})"
        )


def retryable(error: OpShiftError) -> bool:
    """True for failures worth another attempt: network errors and 500/502/503/504."""
    return isinstance(error, NetworkError) or error.status_code in RETRY_STATUSES
