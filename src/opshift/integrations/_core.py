"""The shared core: what a finished run sends, and when. Framework modules only translate.

Rule 1 (one count per run). A run counts once, when its final attempt ends: ``succeeded``
(``succeeded_later``) or ``failed`` is called once per run by the framework module, never
for an attempt that will be retried. The attempts so far ride on that one ping.

Rule 2 (shapes). ``up``: metadata ``durationMs``, ``attempts``, ``task_id``, ``task``,
``host`` (and ``runs`` when it stands for several runs, Rule 3), plus a framework's own
fields (``Run.extra``). ``down``: reason ``"<ExceptionType>: <message>"`` cut to 200
characters, as ``client.monitor()`` writes it (or the framework's own words for a run that
never ran: "missed the 02:00 run"), and the same metadata plus the traceback's tail
(``monitor.tail``). With an alert webhook
a final failure also raises an alert titled ``"<task> failed: <ExceptionType>"``, grouped
by ``"<source>:<task>:<ExceptionType>"`` so repeats fold into one open alert.

Rule 3 (spacing). ``up`` pings for one token go out at least ``UP_SPACING`` (7.5 s) apart,
8 a minute, so OpShift's 10 a minute always leave room for a ``down``. A run that ends
sooner is held and counted; one ``up`` for the held runs (the latest one's metadata, with
``runs``) leaves as soon as the spacing allows, by the timer. A ``down`` is never held: it
goes at once and cancels a held ``up`` (which would otherwise land after it and hide
it); the held count then rides on the next ``up``. Spacing is per process, unless a
``Gate`` keeps it elsewhere (an RQ work horse lives for one job, so RQ's is in Redis: a
run within the spacing is counted there and rides on the next ``up`` that passes).

Rule 4 (never break the job). No method raises: a failure to ping or alert is logged on
the ``opshift`` logger. With an ``Outbox`` as the pinger nothing here touches the network.
A down whose traceback makes the metadata too large goes without the traceback.

Rule 5 (fork). A forked child starts with no held state and its own locks and timer
thread; what the parent held is the parent's to send.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Protocol

from .. import _log
from .._ids import id_problem
from ..errors import BadRequestError, ConfigurationError
from ..monitor import failure_reason, tail
from ..outbox import _process
from ._timer import Cancel, ThreadTimer, Timer

if TYPE_CHECKING:
    from datetime import datetime

    from ..types import Metadata, Pinger, PingStatus, Severity

__all__ = [
    "UP_SPACING",
    "Alerter",
    "Failure",
    "Gate",
    "Reporter",
    "Run",
    "failure_of",
    "hostname",
    "reporter_for",
]

UP_SPACING = 7.5  # seconds between two ups of one token: 8 a minute, under OpShift's 10
_TITLE_LIMIT = 200
_DESCRIPTION_LIMIT = 2000


class Gate(Protocol):
    """Rule 3 kept outside this process (an RQ work horse lives for one job): for a
    finished run, the number of runs held since the token's last ``up`` if an ``up`` may
    go now, or None if this run is to be held (and counted there)."""

    def admit(self, token: str) -> int | None: ...


class Alerter(Protocol):
    """What ``alert_webhook`` needs of the pinger: ``OpShift.alert``'s signature."""

    def alert(
        self,
        webhook_url: str,
        *,
        title: str,
        description: str | None = ...,
        severity: Severity | None = ...,
        metadata: Metadata | None = ...,
        group_key: str | None = ...,
    ) -> Any: ...


class Run(NamedTuple):
    """One run of a job, as the framework module knows it when the run ends.

    A tuple, not a frozen dataclass: one is made per run, on the job's own thread, and a
    frozen dataclass costs twice as much to make (benchmarks/apscheduler_overhead.py).
    """

    token: str
    task: str
    task_id: str | None = None
    attempts: int = 1
    duration_ms: int | None = None
    host: str | None = None
    extra: Metadata | None = None  # a framework's own fields
    scheduled: datetime | None = None  # the run's scheduled time, sent in ISO 8601

    def metadata(self) -> Metadata:
        """The metadata every ping for this run carries."""
        fields: Metadata = {}
        if self.duration_ms is not None:
            fields["durationMs"] = self.duration_ms
        fields["attempts"] = self.attempts
        if self.task_id is not None:
            fields["task_id"] = self.task_id
        fields["task"] = self.task
        fields["host"] = self.host if self.host is not None else hostname()
        if self.scheduled is not None:
            fields["scheduled"] = self.scheduled.isoformat()
        if self.extra:
            fields.update(self.extra)
        return fields


@dataclass(frozen=True)
class Failure:
    """Why a run failed: the down ping's reason, the exception's type name, a traceback."""

    reason: str
    error_type: str
    traceback: str | None = None


def failure_of(exc: BaseException, traceback_text: str | None = None) -> Failure:
    """The ``Failure`` for an exception, in ``client.monitor()``'s form."""
    if traceback_text is None and exc.__traceback__ is not None:
        import traceback

        traceback_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Failure(failure_reason(exc), type(exc).__name__, traceback_text)


_HOST: list[str] = []


def hostname() -> str:
    """This machine's host name (looked up once)."""
    if not _HOST:
        _HOST.append(socket.gethostname())
    return _HOST[0]


class _Token:
    """One token's spacing state (Rule 3), guarded by its own lock, except the count.

    A run counts itself with ``next(arrivals)``, atomic without the lock, so a run that an
    already scheduled ``up`` will carry takes no lock: hooks run on many threads (an
    APScheduler executor's ten), and queuing them on one lock per token cost 3x the time
    of a no-op job. The sender reads the count with a ``next()`` of its own (``reads``).
    """

    __slots__ = ("arrivals", "handle", "last_up", "latest", "lock", "reads", "sent")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_up = float("-inf")
        self.arrivals = itertools.count(1)
        self.reads = 0  # the arrivals' numbers the sender took to read the count
        self.sent = 0  # runs an up has carried so far
        self.latest: Run | Callable[[], Run] | None = None  # the latest run, or its maker
        self.handle: Cancel | None = None

    def take_held(self) -> int:
        """The runs counted but not yet sent, from now on sent; the caller holds ``lock``."""
        self.reads += 1
        total = next(self.arrivals) - self.reads
        held, self.sent = total - self.sent, total
        return held


def _made(run: Run | Callable[[], Run]) -> Run:
    """``run`` itself, or the Run it makes (see ``Reporter.succeeded_later``)."""
    return run if isinstance(run, Run) else run()


def _due(state: _Token) -> bool:
    """Whether an ``up`` for the token is scheduled (it will count every run so far)."""
    return state.handle is not None


_REPORTERS: weakref.WeakSet[Reporter] = weakref.WeakSet()


class Reporter:
    """Turns finished runs into pings (and alerts), keeping Rules 1-5 above.

    Args:
        pinger: anything with ``ping()`` (an ``Outbox`` is best: it never waits on the
            network); with ``alert_webhook`` it needs ``alert()`` too.
        source: the framework's name, the first part of an alert's ``group_key``.
        alert_webhook: if set, a final failure also raises an alert on this webhook.
        alert_severity: the alert's severity (default: the webhook's own).
        clock: monotonic seconds, for the spacing; tests pass a fake one.
        timer: calls back later (held ups, ``max_runtime``); tests pass one they drive.
        spacing: seconds between two ``up`` pings of one token.
        gate: keeps the spacing across processes instead (see ``Gate``).
    """

    def __init__(
        self,
        pinger: Pinger,
        *,
        source: str,
        alert_webhook: str | None = None,
        alert_severity: Severity | None = None,
        clock: Callable[[], float] = time.monotonic,
        timer: Timer | None = None,
        spacing: float = UP_SPACING,
        gate: Gate | None = None,
    ) -> None:
        self.pinger = pinger
        self.gate = gate
        self.source = source
        self.alert_webhook = alert_webhook
        self.alert_severity = alert_severity
        self.clock = clock
        self.timer: Timer = timer if timer is not None else ThreadTimer(clock)
        self.spacing = spacing
        self._reset()
        _REPORTERS.add(self)

    def _reset(self) -> None:
        self._tokens: dict[str, _Token] = {}
        self._tokens_lock = threading.Lock()

    def _token(self, token: str) -> _Token:
        state = self._tokens.get(token)  # no lock once made: hooks run on many threads
        if state is not None:
            return state
        with self._tokens_lock:
            state = self._tokens.get(token)
            if state is None:
                state = self._tokens[token] = _Token()
            return state

    def succeeded(self, run: Run) -> None:
        """Report a run's final success: ``up`` now, or held until the spacing allows."""
        self.succeeded_later(run.token, run)

    def succeeded_later(self, token: str, run: Run | Callable[[], Run]) -> None:
        """``succeeded``, ``run`` perhaps a callable making the Run, called only if it is sent:
        a run that an ``up`` already due only counts costs no Run (APScheduler's bursts)."""
        try:
            if self.gate is not None:
                self._through_gate(_made(run), self.gate)
                return
            state = self._tokens.get(token) or self._token(token)
            state.latest = run
            next(state.arrivals)
            if state.handle is not None:  # _due(), inlined: every coalesced run passes here
                return  # an up is already due: it counts this run when it is sent
            with state.lock:
                if _due(state):  # again, now under the lock
                    return
                wait = state.last_up + self.spacing - self.clock()
                if wait > 0:
                    state.handle = self.timer.schedule(wait, lambda: self._release(token))
                    return
                self._send_held(state)
        except Exception as error:
            self._log_failure(token, run, "up", error)

    def _through_gate(self, run: Run, gate: Gate) -> None:
        held = gate.admit(run.token)
        if held is None:
            return  # within the spacing: counted by the gate, rides on the next up
        metadata = run.metadata()
        if held:
            metadata["runs"] = held + 1
        self.pinger.ping(run.token, status="up", metadata=metadata)

    def _release(self, token: str) -> None:
        """The timer's call: send the held up, if a down has not cancelled it."""
        state = self._token(token)
        with state.lock:
            if state.handle is None or state.latest is None:
                return
            state.handle = None
            try:
                self._send_held(state)
            except Exception as error:
                self._log_failure(token, state.latest, "up", error)

    def _send_held(self, state: _Token) -> None:
        """Send one up for the held runs (none: nothing); the caller holds ``state.lock``."""
        latest = state.latest
        if latest is None:
            return
        run = _made(latest)  # first: if making it fails, the held runs stay counted
        runs = state.take_held()
        if runs <= 0:
            return
        state.last_up = self.clock()
        metadata = run.metadata()
        if runs > 1:
            metadata["runs"] = runs
        self.pinger.ping(run.token, status="up", metadata=metadata)

    def failed(self, run: Run, failure: Failure) -> None:
        """Report a run's final failure: ``down`` at once, then the alert if configured."""
        try:
            state = self._token(run.token)
            with state.lock:
                if state.handle is not None:  # a held up must not land after this down
                    state.handle.cancel()
                    state.handle = None
                metadata = run.metadata()
                if failure.traceback:
                    metadata["traceback"] = tail(failure.traceback)
                self._ping_down(run.token, failure.reason, metadata)
        except Exception as error:
            self._log_failure(run.token, run, "down", error)
        if self.alert_webhook is not None:
            self._alert(run, failure)

    def overrunning(self, run: Run, seconds: float) -> None:
        """Report a run still going after ``seconds`` (``max_runtime``): one ``down`` now."""
        self.failed(run, Failure(f"still running after {seconds:g} s", "MaxRuntimeExceeded", None))

    def _ping_down(self, token: str, reason: str, metadata: Metadata) -> None:
        try:
            self.pinger.ping(token, status="down", reason=reason, metadata=metadata)
        except BadRequestError:
            if "traceback" not in metadata:
                raise
            del metadata["traceback"]  # near the size limit: the down matters more
            self.pinger.ping(token, status="down", reason=reason, metadata=metadata)

    def _alert(self, run: Run, failure: Failure) -> None:
        try:
            alert: Callable[..., Any] = getattr(self.pinger, "alert")  # noqa: B009
            metadata = run.metadata()
            metadata["reason"] = failure.reason
            alert(
                str(self.alert_webhook),
                title=f"{run.task} failed: {failure.error_type}"[:_TITLE_LIMIT],
                description=(tail(failure.traceback) if failure.traceback else failure.reason)[
                    -_DESCRIPTION_LIMIT:
                ],
                severity=self.alert_severity,
                metadata=metadata,
                group_key=f"{self.source}:{run.task}:{failure.error_type}"[:_TITLE_LIMIT],
            )
        except Exception as error:
            _log.logger().warning(
                "Could not raise the OpShift alert for %s's failure (the task's own outcome "
                "stands): %s",
                run.task,
                error,
            )

    def flush(self) -> None:
        """Send every held ``up`` now, spacing or not (at exit, or when uninstrumented)."""
        with self._tokens_lock:
            states = list(self._tokens.items())
        for token, state in states:
            with state.lock:
                if state.handle is None or state.latest is None:
                    continue
                state.handle.cancel()
                state.handle = None
                try:
                    self._send_held(state)
                except Exception as error:
                    self._log_failure(token, state.latest, "up", error)

    @staticmethod
    def _log_failure(
        token: str, run: Run | Callable[[], Run], status: PingStatus, error: Exception
    ) -> None:
        if not isinstance(run, Run):  # not made yet (its making may be what failed)
            what = "a run"
        elif run.task_id is None:
            what = f"a run of {run.task}"
        else:
            what = f"{run.task} run {run.task_id}"
        _log.logger().warning(
            "Could not report %s to OpShift as %s on %r (the task's own outcome stands): %s",
            what,
            status,
            token,
            error,
        )


def reporter_for(
    pinger: Pinger,
    *,
    source: str,
    alert_webhook: str | None = None,
    alert_severity: Severity | None = None,
    clock: Callable[[], float] = time.monotonic,
    timer: Timer | None = None,
    gate: Gate | None = None,
) -> Reporter:
    """A ``Reporter`` for a framework's ``instrument()``, its alerting options checked.

    Raises:
        ConfigurationError: ``alert_webhook`` is not a usable webhook id, or the pinger
            has no ``alert()`` to raise it with.
    """
    if alert_webhook is not None:
        problem = id_problem(alert_webhook, prefix="/api/alerts/trigger/", id_name="webhook_url")
        if problem is not None:
            raise ConfigurationError(f"alert_webhook: {problem}")
        if not callable(getattr(pinger, "alert", None)):
            raise ConfigurationError(
                f"alert_webhook needs a pinger with alert(); {type(pinger).__name__} has none."
            )
    return Reporter(
        pinger,
        source=source,
        alert_webhook=alert_webhook,
        alert_severity=alert_severity,
        clock=clock,
        timer=timer,
        gate=gate,
    )


def _after_fork_in_child() -> None:
    for reporter in list(_REPORTERS):
        reporter._reset()


def _flush_at_exit() -> None:
    for reporter in list(_REPORTERS):
        reporter.flush()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
_process.before_exit_flush(_flush_at_exit)  # held ups queued before the outboxes' flush
