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

from . import _log, _validation
from .errors import BadRequestError
from .types import Metadata, Pinger, PingStatus

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["JobMonitor", "failure_reason", "tail"]

F = TypeVar("F", bound=Callable[..., Any])
_REASON_LIMIT = _validation.TEXT_LIMITS["reason"]
# How much of a failure's output a down ping carries: the end, where the cause is.
TAIL_LINES = 20
TAIL_CHARS = 2000


class JobMonitor:
    """Context manager and decorator that reports a job's outcome as a ping.

    On success: ``up`` with ``metadata`` plus ``durationMs``. On an exception
    (``KeyboardInterrupt`` and a non-zero ``SystemExit`` included): ``down`` with reason
    ``"<ExceptionType>: <message>"`` cut to 200 characters and the traceback's last 20
    lines (at most 2,000 characters) in ``metadata["traceback"]``, then the exception
    propagates unchanged. Works with ``with``, ``async with``, and as a decorator of sync
    or async functions (each call is timed and reported on its own).

    Raises:
        BadRequestError: at creation, if ``ping_token``, ``metadata`` or ``group_key``
            would be rejected when the job ends (checked with the rules of a send).
    """

    def __init__(
        self,
        client: Pinger,
        ping_token: str,
        *,
        metadata: Metadata | None = None,
        group_key: str | None = None,
    ) -> None:
        fields: dict[str, Any] = {"metadata": metadata or {}}
        if group_key is not None:
            fields["group_key"] = group_key
        problem = _validation.path_problem("ping_token", ping_token)
        if problem is not None:
            raise _validation.bad_request(problem)
        _validation.encode("ping", fields)  # fail at setup, not silently at every run's end
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
        """Ping the outcome; never raise, so the job's own exception or value stands."""
        status: PingStatus = "up"
        try:
            started = self._started if self._started is not None else time.monotonic()
            metadata = {**self.metadata, "durationMs": round((time.monotonic() - started) * 1000)}
            reason = None
            if exc is not None and not _clean_exit(exc):
                status = "down"
                reason = failure_reason(exc)
                metadata["traceback"] = _traceback_tail(exc)
            try:
                self._ping(status, reason, metadata)
            except BadRequestError:
                if "traceback" not in metadata:
                    raise
                # Metadata near the 100 KB limit: the down ping matters more than its traceback.
                del metadata["traceback"]
                self._ping(status, reason, metadata)
        except Exception as error:
            _log.logger().warning(
                "Could not report %r as %s to OpShift (the job's own outcome stands): %s",
                self.ping_token,
                status,
                error,
            )

    def _ping(self, status: PingStatus, reason: str | None, metadata: Metadata) -> None:
        self.client.ping(
            self.ping_token,
            status=status,
            reason=reason,
            group_key=self.group_key,
            metadata=metadata,
        )

    def __repr__(self) -> str:
        return f"JobMonitor(ping_token={self.ping_token!r})"


def failure_reason(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"``, cut to the 200-character reason limit.

    An exception whose ``__str__`` raises is reported by its type name alone.
    """
    try:
        message = str(exc).strip()
    except Exception:
        message = ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if len(text) > _REASON_LIMIT:
        text = text[: _REASON_LIMIT - 1] + "\u2026"
    return text


def _clean_exit(exc: BaseException) -> bool:
    """``sys.exit()`` / ``sys.exit(0)`` is a successful end, not a failure."""
    return isinstance(exc, SystemExit) and exc.code in (None, 0)


def tail(text: str, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str:
    """The last ``lines`` lines of ``text``, at most ``chars`` characters: where a failure's
    cause usually is. Shared by ``monitor()``'s traceback and ``opshift run``'s stderr."""
    return "\n".join(text.splitlines()[-lines:])[-chars:]


def _traceback_tail(exc: BaseException) -> str:
    import traceback

    # format_exception survives an exception whose __str__ raises ("<exception str() failed>").
    formatted = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return tail("".join(formatted))
