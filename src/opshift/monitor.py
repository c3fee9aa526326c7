"""Job monitoring in one line: ping ``up`` when a block or function succeeds, ``down`` if it fails.

    with client.monitor("nightly-backup"):
        run_backup()

    @client.monitor("invoice-sync")
    def sync_invoices(): ...

The job's own outcome always wins: its exception (or return value) is what the caller
sees, and a failed ping is only logged, so a monitoring outage never breaks the job.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any, Callable, TypeVar, cast

from . import _validation
from .types import Metadata, PingStatus

if TYPE_CHECKING:
    from types import TracebackType

    from .client import OpShift

__all__ = ["JobMonitor", "failure_reason"]

F = TypeVar("F", bound=Callable[..., Any])
_REASON_LIMIT = _validation.TEXT_LIMITS["reason"]


class JobMonitor:
    """Context manager and decorator that reports a job's outcome as a ping.

    On success: ``up`` with ``metadata`` plus ``durationMs``. On an exception
    (``KeyboardInterrupt`` and a non-zero ``SystemExit`` included): ``down`` with reason
    ``"<ExceptionType>: <message>"`` cut to 200 characters, then the exception propagates
    unchanged. Works with ``with``, ``async with``, and as a decorator of sync or async
    functions (each call is timed and reported on its own).
    """

    def __init__(
        self,
        client: OpShift,
        ping_token: str,
        *,
        metadata: Metadata | None = None,
        group_key: str | None = None,
    ) -> None:
        fields: dict[str, Any] = {"metadata": metadata or {}}
        if group_key is not None:
            fields["group_key"] = group_key
        problem = _validation.path_problem("ping_token", ping_token)
        problem = problem or _validation.fields_problem("ping", fields)
        if problem is not None:  # Fail at setup, not silently at the end of every run.
            raise _validation.bad_request(problem)
        self.client = client
        self.ping_token = ping_token
        self.metadata = dict(metadata or {})
        self.group_key = group_key
        self._started: float | None = None

    def __enter__(self) -> JobMonitor:
        self._started = time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._report(exc)  # returns None, so the job's exception propagates unchanged

    async def __aenter__(self) -> JobMonitor:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import asyncio

        await asyncio.to_thread(self._report, exc)

    def __call__(self, func: F) -> F:
        """Decorate a function so every call is monitored (async functions too)."""
        import inspect

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh():
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)

        return cast(F, wrapper)

    def _fresh(self) -> JobMonitor:
        """A monitor of its own for one call, so concurrent calls keep separate timings."""
        return JobMonitor(
            self.client, self.ping_token, metadata=self.metadata, group_key=self.group_key
        )

    def _report(self, exc: BaseException | None) -> None:
        started = self._started if self._started is not None else time.monotonic()
        metadata = {**self.metadata, "durationMs": round((time.monotonic() - started) * 1000)}
        failed = exc is not None and not _clean_exit(exc)
        status: PingStatus = "down" if failed else "up"
        reason = failure_reason(exc) if failed and exc is not None else None
        try:
            self.client.ping(
                self.ping_token,
                status=status,
                reason=reason,
                group_key=self.group_key,
                metadata=metadata,
            )
        except Exception as error:
            from .client import _logger

            _logger().warning(
                "Could not report %r as %s to OpShift (the job's own outcome stands): %s",
                self.ping_token,
                status,
                error,
            )

    def __repr__(self) -> str:
        return f"JobMonitor(ping_token={self.ping_token!r})"


def failure_reason(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"``, cut to the 200-character reason limit."""
    message = str(exc).strip()
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(text) > _REASON_LIMIT:
        text = text[: _REASON_LIMIT - 1] + "\u2026"
    return text


def _clean_exit(exc: BaseException) -> bool:
    """``sys.exit()`` / ``sys.exit(0)`` is a successful end, not a failure."""
    return isinstance(exc, SystemExit) and exc.code in (None, 0)
