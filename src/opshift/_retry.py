"""When to retry a failed attempt, and how long to wait: a small value object, no I/O."""

from __future__ import annotations

from .errors import NetworkError, OpShiftError

RETRY_STATUSES = frozenset({500, 502, 503, 504})


class RetryPolicy:
    """Exponential backoff with full jitter, on network errors and 500/502/503/504 only.

    A retry happens only if, after its backoff, the call's deadline still leaves room for
    an attempt (a tenth of the timeout, at most 1 s), so ``timeout`` bounds the whole call.
    """

    __slots__ = ("backoff", "backoff_max", "max_retries")

    def __init__(self, max_retries: int = 2, backoff: float = 0.5, backoff_max: float = 8.0):
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max

    def delay(
        self, error: OpShiftError, attempt: int, remaining: float, timeout: float, rand: float
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up and raise.

        Args:
            error: Why attempt number ``attempt`` (1-based) failed.
            remaining: Seconds left until the call's deadline.
            timeout: The call's whole timeout, to size the room an attempt needs.
            rand: A uniform number in [0, 1) for the jitter.
        """
        if attempt > self.max_retries:
            return None
        if not isinstance(error, NetworkError) and error.status_code not in RETRY_STATUSES:
            return None
        wait = rand * min(self.backoff_max, self.backoff * 2.0 ** (attempt - 1))
        if remaining - wait < min(1.0, timeout / 10):
            return None
        return wait

    def __repr__(self) -> str:
        return f"RetryPolicy(max_retries={self.max_retries}, backoff={self.backoff})"
