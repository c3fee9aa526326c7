"""APScheduler 3.x: a heartbeat per job, from one scheduler listener. Nothing patched.

    outbox = Outbox(OpShift(), path="/var/lib/app/opshift.sqlite3")
    opshift_apscheduler.instrument(scheduler, outbox, monitors={"nightly-*": "nightly"})

``instrument`` adds one listener (``scheduler.add_listener``, with a mask of the events
below, so the scheduler calls it for nothing else); ``uninstrument`` removes it.
What each event becomes (the core's rules, ``_core``; APScheduler never retries, so every
run is final):

- ``EVENT_JOB_SUBMITTED``: the runs' start is noted, for ``durationMs``. It can arrive
  after the run's own end (the scheduler sends it once its pass is over): then the run's
  duration counts from its scheduled time.
- ``EVENT_JOB_EXECUTED``: ``up``. ``EVENT_JOB_ERROR``: ``down`` with the exception and the
  traceback's tail (APScheduler's traceback holds the frames only: the exception's own line
  is added back).
- ``EVENT_JOB_MISSED`` (later than ``misfire_grace_time``): ``down`` at once, "missed the
  02:00 run". ``EVENT_JOB_MAX_INSTANCES``: ``down`` at once, "skipped the 02:00 run:
  previous run still going". The scheduler knows both locally; no other process does.
- ``EVENT_JOB_ADDED``: tokens shared by two jobs are logged as a warning.

Every ping's metadata has ``task`` (the job id) and ``scheduled`` (the run's scheduled
time, ISO 8601, in the trigger's timezone).
"""

from __future__ import annotations

import time
import traceback
import weakref
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from .. import _log
from ..errors import ConfigurationError
from ._core import Failure, Reporter, Run, failure_of, reporter_for
from ._match import Matcher, Monitors, shared_token_warnings

if TYPE_CHECKING:
    from ..types import Pinger, Severity
    from ._timer import Timer

__all__ = ["Instrumentation", "instrument", "instrumentation", "run_label"]

_INSTRUMENTED: weakref.WeakKeyDictionary[Any, Instrumentation] = weakref.WeakKeyDictionary()
_Key = tuple[str, datetime]  # (job id, scheduled run time)
_End = Callable[[str, Any, Callable[[], Run]], None]  # (token, event, the run's maker)


def instrument(
    scheduler: Any,
    pinger: Pinger,
    *,
    monitors: Monitors = None,
    alert_webhook: str | None = None,
    alert_severity: Severity | None = None,
    clock: Callable[[], float] = time.monotonic,
    timer: Timer | None = None,
) -> Instrumentation:
    """Report the runs of ``scheduler``'s jobs to OpShift as pings, through one listener.

    Args:
        scheduler: an APScheduler 3.x scheduler (``BackgroundScheduler``,
            ``BlockingScheduler``, ``AsyncIOScheduler``...), started or not.
        pinger: an ``Outbox`` (best: the listener never waits on the network) or an
            ``OpShift`` client; anything with ``ping()``, and ``alert()`` with
            ``alert_webhook``.
        monitors: job id (glob patterns allowed) -> ping token, or ``None`` to opt out;
            or a callable ``job_id -> token | None``. A job nothing matches is not
            monitored.
        alert_webhook: a failed, missed or skipped run also raises an alert on this webhook.
        alert_severity: that alert's severity (default: the webhook's).
        clock: monotonic seconds for durations and ``up`` spacing (tests pass a fake).
        timer: calls back later (held ups); tests pass one they drive.

    Returns:
        The ``Instrumentation``; its ``uninstrument()`` removes the listener.

    Raises:
        ConfigurationError: the scheduler is already instrumented, it is no APScheduler
            scheduler, or an option is invalid.
    """
    if scheduler in _INSTRUMENTED:
        raise ConfigurationError(
            f"{type(scheduler).__name__} is already instrumented; call uninstrument() on the "
            "first handle before instrumenting it again."
        )
    if not callable(getattr(scheduler, "add_listener", None)):
        raise ConfigurationError(
            f"instrument() needs an APScheduler 3.x scheduler, not {type(scheduler).__name__}."
        )
    reporter = reporter_for(
        pinger,
        source="apscheduler",
        alert_webhook=alert_webhook,
        alert_severity=alert_severity,
        clock=clock,
        timer=timer,
    )
    handle = Instrumentation(scheduler, reporter, Matcher(monitors))
    _INSTRUMENTED[scheduler] = handle
    handle.connect()
    return handle


def instrumentation(scheduler: object) -> Instrumentation | None:
    """The live ``Instrumentation`` of ``scheduler``, or None if it is not instrumented."""
    return _INSTRUMENTED.get(scheduler)


def _nothing(token: str, event: Any) -> None:
    """A job was added: its token is looked up (and a shared one warned of), nothing sent."""


def run_label(when: datetime) -> str:
    """``02:00`` (``02:00:30`` with seconds): a scheduled run as a reason names it."""
    return when.strftime("%H:%M:%S" if when.second else "%H:%M")


class Instrumentation:
    """One scheduler's listener: resolves jobs to tokens and hands runs to the core."""

    kept = 1_000  # job ids' tokens, and runs' starts a generation, remembered

    def __init__(self, scheduler: Any, reporter: Reporter, matcher: Matcher) -> None:
        self.scheduler = scheduler
        self.reporter = reporter
        self.matcher = matcher
        self._started: dict[_Key, float] = {}  # running runs' submissions: newest generation
        self._older: dict[_Key, float] = {}  # the one before; older ones are forgotten
        self._ended: dict[_Key, bool] = {}  # runs that ended before their submission
        self._warned: set[str] = set()  # tokens already warned about
        self._owners: dict[str, str] = {}  # token -> the first job id seen with it
        self._tokens: dict[str, str | None] = {}  # job id -> token, looked up once
        self._listener = self._listener_for({}, {})  # connect() makes the real one
        self._connected = False

    def token(self, job_id: str) -> str | None:
        """The ping token of ``job_id``'s runs (None: not monitored)."""
        try:
            return self._tokens[job_id]
        except KeyError:
            pass
        token = self.matcher.token(job_id)
        if len(self._tokens) >= self.kept:  # one-off jobs come and go: keep the cache small
            self._tokens.clear()
        self._tokens[job_id] = token
        if token is not None:
            self._note_owner(job_id, token)
        return token

    def _note_owner(self, job_id: str, token: str) -> None:
        """Warn, once per token, when a second job maps to a token (O(1) per new job id:
        one-off jobs added by the thousand must not cost a scan of every job each)."""
        first = self._owners.setdefault(token, job_id)
        if first != job_id and token not in self._warned:
            self._warned.add(token)
            line = shared_token_warnings([(f"job {first!r}", token), (f"job {job_id!r}", token)])
            _log.logger().warning("APScheduler: %s", line[0])

    def connect(self) -> None:
        """Add the listener (``instrument`` calls this once)."""
        from apscheduler import events  # type: ignore[import-untyped]

        ends: dict[int, _End] = {  # a run over or never run; the listener does EXECUTED
            events.EVENT_JOB_ERROR: self._errored,
            events.EVENT_JOB_MISSED: self._missed,
        }
        others: dict[int, Callable[[str, Any], None]] = {
            events.EVENT_JOB_ADDED: _nothing,  # token() warns of a shared token
            events.EVENT_JOB_MAX_INSTANCES: self._skipped,
        }
        mask = events.EVENT_JOB_SUBMITTED | events.EVENT_JOB_EXECUTED
        for code in [*ends, *others]:
            mask |= code
        self._listener = self._listener_for(ends, others)
        self.scheduler.add_listener(self._listener, mask)
        self._connected = True
        try:
            for job in self.scheduler.get_jobs():
                self.token(str(job.id))
        except Exception as error:
            _log.logger().warning("Could not list APScheduler's jobs: %s", error)

    def uninstrument(self) -> None:
        """Remove the listener and send what the core still holds."""
        if self._connected:
            self.scheduler.remove_listener(self._listener)
            self._connected = False
        self._started.clear()
        self._older.clear()
        self._ended.clear()
        self.reporter.flush()
        if _INSTRUMENTED.get(self.scheduler) is self:
            del _INSTRUMENTED[self.scheduler]

    def _listener_for(
        self, ends: dict[int, _End], others: dict[int, Callable[[str, Any], None]]
    ) -> Callable[[Any], None]:
        """The one listener: one event in, at most one ping (and alert) out. The
        scheduler's mask check passes it only a run's submission and end, and the events
        in ``ends`` (a run over or never run) and ``others``.

        Every run brings two events, its submission and its end: those two are handled
        inline, with one call to the core, and a run that an ``up`` already due only
        counts is never made (``_run``): the bar of 1.10x a no-op job's cost (about 40 us)
        leaves about 4 us for both, and the scheduler's dispatch to a listener takes
        about 1 (benchmarks/apscheduler_overhead.py).
        """
        from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_SUBMITTED  # type: ignore[import-untyped]

        tokens, token_of, started, older = self._tokens, self.token, self._started, self._older
        ended = self._ended
        clock, succeeded, run_of = self.reporter.clock, self.reporter.succeeded_later, self._run
        over = EVENT_JOB_EXECUTED
        for code in ends:
            over |= code

        def listen(event: Any) -> None:
            try:
                job_id = event.job_id
                token = tokens.get(job_id)
                if token is None:  # not monitored, or not looked up yet
                    token = None if job_id in tokens else token_of(str(job_id))
                    if token is None:
                        return
                code = event.code
                if code == EVENT_JOB_SUBMITTED:
                    # No lock: the executor's threads would queue on it (measured: 4x the
                    # cost of a no-op job with 10 threads); single dict operations are
                    # atomic. A run's end removes its start; past `kept` runs still going
                    # (or left by a race), the oldest generation is forgotten.
                    now = clock()
                    for when in event.scheduled_run_times:
                        if not ended or not ended.pop((job_id, when), False):
                            started[job_id, when] = now
                    if len(started) > self.kept:
                        older.clear()
                        older.update(started)
                        started.clear()
                elif code & over:
                    when = event.scheduled_run_time
                    key = (job_id, when)
                    begun = started.pop(key, None)
                    if begun is None:
                        begun = older.pop(key, None) if older else None
                    if begun is not None:
                        run = partial(run_of, token, job_id, when, begun, clock())
                    else:  # not announced yet (or forgotten): its announcement starts nothing
                        if len(ended) > self.kept:
                            ended.clear()
                        ended[key] = True
                        run = partial(run_of, token, job_id, when, None, time.time())
                    if code == EVENT_JOB_EXECUTED:
                        succeeded(token, run)
                    else:
                        ends[code](token, event, run)
                else:
                    other = others.get(code)
                    if other is not None:
                        other(token, event)
            except Exception as error:
                _log.logger().warning("Could not report an APScheduler job's run: %s", error)

        return listen

    def listen(self, event: Any) -> None:
        """Take one scheduler event as the listener does (a testing seam)."""
        self._listener(event)

    @staticmethod
    def _run(token: str, job_id: Any, when: datetime, begun: float | None, ended: float) -> Run:
        """Make the Run of a run that ended, when it is needed: most runs in a burst are
        only counted, and a Run costs a tenth of the bar's margin. Given no event: it holds
        the job's return value, which is not ours to keep alive.

        Its duration counts from its submission (``begun`` to ``ended``, on the reporter's
        clock); when that was not announced before the run ended (the scheduler announces
        a pass's submissions once the pass is over: a quick run can end first), or was
        forgotten (``begun`` None), from its scheduled time (``ended`` in epoch seconds).
        """
        if begun is not None:
            duration_ms = round((ended - begun) * 1000)
        else:
            duration_ms = max(0, round((ended - when.timestamp()) * 1000))
        return Run(token, str(job_id), None, 1, duration_ms, None, None, when)

    def _errored(self, token: str, event: Any, run: Callable[[], Run]) -> None:
        exc = event.exception  # always set on EVENT_JOB_ERROR
        frames = event.traceback if isinstance(event.traceback, str) else ""
        text = (
            "Traceback (most recent call last):\n"
            + frames
            + "".join(traceback.format_exception_only(type(exc), exc))
        )
        self.reporter.failed(run(), failure_of(exc, text))

    def _missed(self, token: str, event: Any, _: Callable[[], Run]) -> None:
        """A run of a batch that was submitted with the others but was too late to start:
        ``down``, with no duration."""
        when = event.scheduled_run_time
        run = Run(token=token, task=str(event.job_id), scheduled=when)
        self.reporter.failed(run, Failure(f"missed the {run_label(when)} run", "MissedRun"))

    def _skipped(self, token: str, event: Any) -> None:
        when = event.scheduled_run_times[-1]  # one down for the pass: its latest run
        run = Run(token=token, task=str(event.job_id), scheduled=when)
        reason = f"skipped the {run_label(when)} run: previous run still going"
        self.reporter.failed(run, Failure(reason, "SkippedRun"))

    def __repr__(self) -> str:
        return f"Instrumentation(scheduler={type(self.scheduler).__name__})"
