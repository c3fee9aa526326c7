"""RQ: a heartbeat per job, from one worker's public hooks. Nothing patched at class level.

    outbox = Outbox(OpShift(), path="/var/lib/app/opshift.sqlite3")
    worker = Worker(["default"], connection=redis)
    opshift_rq.instrument(worker, outbox, monitors={"app.jobs.nightly_report": "nightly"})
    worker.work()

What each hook becomes (the core's rules, ``_core``):

- success: the worker's ``job_class`` becomes a subclass of itself (RQ's own extension
  point) whose ``success_callback`` runs the job's own ``on_success`` callback, then
  reports ``up``; in the process that ran the job (the work horse, or a
  ``SimpleWorker``'s own).
- failure: an exception handler (``push_exc_handler``) reports ``down``, only when no
  retry is left (``Retry(max=...)``): a retried attempt is counted, and the attempts ride
  on the final ping.
- a job that returns a ``Retry`` (where the worker has ``handle_job_retry``): no callback
  nor handler runs, so that method is wrapped on the instance: once RQ has re-enqueued the
  job, the attempt is counted (RQ's ``number_of_retries``); once RQ has failed it, no retry
  left, ``down`` "returned Retry: no retries left (max 2)".
- the work horse killed (a signal, the OOM killer): the worker instance's
  ``handle_work_horse_killed`` (which calls any ``work_horse_killed_handler``) is wrapped
  on the instance, so the worker's own process sends ``down`` with the signal and the
  horse's peak memory: "work horse killed: signal 9 (SIGKILL), maxrss 1.9 GB".
- RQ's cron scheduler: ``instrument_cron(scheduler)`` stamps each entry's name on the
  jobs it enqueues (their ``meta``), so ``monitors`` can name cron entries as beat entries.

A job is looked up in ``monitors`` by its cron entry's name, then its id, then its function
name (``app.jobs.nightly_report``). A forking ``Worker`` runs each job in a new process, so
the ``up`` spacing is kept in Redis (``SpacingGate``): a run within 7.5 s of the token's
last ``up`` is counted there, and rides on the next ``up``.
"""

from __future__ import annotations

import os
import signal
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable

from .. import _log
from ..errors import ConfigurationError
from ._core import UP_SPACING, Failure, Reporter, Run, failure_of, hostname, reporter_for
from ._match import Matcher, Monitors

if TYPE_CHECKING:
    from redis import Redis
    from rq.cron import CronScheduler
    from rq.job import Job
    from rq.worker import BaseWorker

    from ..types import Pinger, Severity
    from ._timer import Timer

__all__ = [
    "CRON_META",
    "Instrumentation",
    "SpacingGate",
    "instrument",
    "instrument_cron",
    "instrumentation",
    "killed_reason",
]

CRON_META = "opshift_cron_entry"  # the job meta key naming the cron entry that enqueued it
_INSTRUMENTED: weakref.WeakKeyDictionary[Any, Instrumentation] = weakref.WeakKeyDictionary()


def instrument(
    worker: BaseWorker,
    pinger: Pinger,
    *,
    monitors: Monitors = None,
    alert_webhook: str | None = None,
    alert_severity: Severity | None = None,
    clock: Callable[[], float] = time.monotonic,
    timer: Timer | None = None,
) -> Instrumentation:
    """Report the runs of the jobs ``worker`` performs to OpShift as pings.

    Args:
        worker: an RQ ``Worker`` (forking) or ``SimpleWorker``, before ``work()``.
        pinger: an ``Outbox`` (best: hooks never wait on the network) or an ``OpShift``
            client; anything with ``ping()``, and ``alert()`` with ``alert_webhook``.
        monitors: a cron entry's name, a job id or a function name (glob patterns
            allowed) -> ping token, or ``None`` to opt out; or a callable doing that.
        alert_webhook: a final failure also raises an alert on this webhook.
        alert_severity: that alert's severity (default: the webhook's).
        clock: monotonic seconds for the core's spacing (tests pass a fake).
        timer: calls back later (held ups); tests pass one they drive.

    Returns:
        The ``Instrumentation``; its ``uninstrument()`` removes every hook added here.

    Raises:
        ConfigurationError: the worker is already instrumented, or an option is invalid.
    """
    if worker in _INSTRUMENTED:
        raise ConfigurationError(
            f"RQ worker {worker.name!r} is already instrumented; call uninstrument() on the "
            "first handle before instrumenting it again."
        )
    reporter = reporter_for(
        pinger,
        source="rq",
        alert_webhook=alert_webhook,
        alert_severity=alert_severity,
        clock=clock,
        timer=timer,
        gate=SpacingGate(worker.connection),
    )
    handle = Instrumentation(worker, reporter, Matcher(monitors))
    _INSTRUMENTED[worker] = handle
    handle.connect()
    return handle


def instrumentation(worker: object) -> Instrumentation | None:
    """The live ``Instrumentation`` of ``worker``, or None if it is not instrumented."""
    return _INSTRUMENTED.get(worker)


def instrument_cron(scheduler: CronScheduler) -> list[str]:
    """Stamp each registered cron entry's name on the jobs it will enqueue.

    Call it once the entries are registered (where ``rq cron`` loads them). An entry's
    name is its ``name=`` (RQ 3), else its function's dotted name. Returns the names.
    """
    names = []
    for entry in scheduler.get_jobs():
        name = str(getattr(entry, "name", "") or entry.func_name)  # RQ 2.x: no names
        meta = dict(entry.job_options.get("meta") or {})
        meta[CRON_META] = name
        entry.job_options["meta"] = meta
        names.append(name)
    return names


class SpacingGate:
    """Rule 3 across processes: a forking worker's jobs each end in a new process, so the
    last ``up`` of a token and the runs held since are kept in Redis.

    ``admit`` answers, for one finished run: send an ``up`` now for this run and the runs
    held since the last (their number), or hold it (None), counted in Redis.
    """

    def __init__(self, connection: Redis, spacing: float = UP_SPACING) -> None:
        self.connection = connection
        self.spacing_ms = max(1, round(spacing * 1000))

    def admit(self, token: str) -> int | None:
        """The held runs to add to this run's ``up``, or None: hold this run."""
        key = f"opshift:rq:up:{token}"
        if self.connection.set(key, b"1", nx=True, px=self.spacing_ms):
            pipe = self.connection.pipeline()
            pipe.getset(f"{key}:held", 0)
            pipe.expire(f"{key}:held", 86400)
            held = pipe.execute()[0]
            return int(held or 0)
        pipe = self.connection.pipeline()
        pipe.incr(f"{key}:held")
        pipe.expire(f"{key}:held", 86400)
        pipe.execute()
        return None


class Instrumentation:
    """One worker's hooks: resolves jobs to tokens and hands finished runs to the core."""

    def __init__(self, worker: BaseWorker, reporter: Reporter, matcher: Matcher) -> None:
        self.worker = worker
        self.reporter = reporter
        self.matcher = matcher
        self._job_class: type[Job] | None = None
        self._base_job_class: type[Job] | None = None
        self._killed_wrapper: Callable[..., Any] | None = None
        self._retry_wrapper: Callable[..., Any] | None = None
        self._active = False

    def token(self, job: Job) -> str | None:
        """The ping token of ``job``'s runs: by cron entry, job id, then function name."""
        meta = job.meta if isinstance(job.meta, dict) else {}
        entry = meta.get(CRON_META)
        try:
            function: str | None = job.func_name
        except Exception:  # a job that cannot be deserialized still has an id
            function = None
        return self.matcher.token(entry if isinstance(entry, str) else None, job.id, function)

    def connect(self) -> None:
        """Add the hooks (``instrument`` calls this once)."""
        self._active = True
        push: Callable[[Any], None] = self.worker.push_exc_handler
        push(self.exception_handler)
        base = self.worker.job_class
        self._base_job_class = base
        self._job_class = _monitored_job_class(base, self)
        self.worker.job_class = self._job_class
        original: Callable[..., None] = self.worker.handle_work_horse_killed

        def handle_work_horse_killed(job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
            self.work_horse_killed(job, ret_val, rusage)
            original(job, retpid, ret_val, rusage)

        self._killed_wrapper = handle_work_horse_killed
        self.worker.handle_work_horse_killed = handle_work_horse_killed  # type: ignore[method-assign]
        retry_handler: Callable[..., None] | None = getattr(self.worker, "handle_job_retry", None)
        if retry_handler is not None:  # an RQ where a job may return a Retry
            handle_job_retry = _after_retry_handled(retry_handler, self)
            self._retry_wrapper = handle_job_retry
            self.worker.handle_job_retry = handle_job_retry  # type: ignore[method-assign]

    def uninstrument(self) -> None:
        """Remove every hook ``instrument`` added and send what the core still holds."""
        self._active = False  # a handler with others pushed after it stays, inert
        pop: Callable[[], Any] = self.worker.pop_exc_handler
        push: Callable[[Any], None] = self.worker.push_exc_handler
        try:
            last = pop()
            if last != self.exception_handler:
                push(last)
        except IndexError:
            pass
        if self.worker.job_class is self._job_class and self._base_job_class is not None:
            self.worker.job_class = self._base_job_class
        if vars(self.worker).get("handle_work_horse_killed") is self._killed_wrapper:
            del self.worker.handle_work_horse_killed  # the class's own method shows again
        if vars(self.worker).get("handle_job_retry") is self._retry_wrapper:
            del self.worker.handle_job_retry
        self.reporter.flush()
        if _INSTRUMENTED.get(self.worker) is self:
            del _INSTRUMENTED[self.worker]

    def _run(self, job: Job, token: str) -> Run:
        started, ended = job.started_at, job.ended_at
        duration = None
        if started is not None and ended is not None:
            duration = max(0, round((ended - started).total_seconds() * 1000))
        retries = (job.number_of_retries or 0) + _failed_attempts(job)
        return Run(
            token=token,
            task=_function(job),
            task_id=job.id,
            attempts=retries + 1,
            duration_ms=duration,
            host=hostname(),
            extra={"queue": job.origin},
        )

    def succeeded(self, job: Job) -> None:
        """A job returned (its own success callback, if any, has run)."""
        if not self._active:
            return
        try:
            token = self.token(job)
            if token is None:
                return
            self.reporter.succeeded(self._run(job, token))
        except Exception as error:
            _log.logger().warning("Could not report an RQ job's success to OpShift: %s", error)

    def exception_handler(self, job: Job, exc_type: Any, exc_value: Any, tb: Any) -> None:
        """RQ's exception handler: a down when no retry is left. Returns None, so the
        handlers after it run too."""
        if not self._active:
            return
        try:
            token = self.token(job)
            if token is None:
                return
            if _retries_left(job):
                _count_failed_attempt(job)
                if _log.debug_enabled():
                    _log.logger().debug(
                        "RQ job %s failed and will be retried: not a down ping", job.id
                    )
                return
            exc = exc_value if isinstance(exc_value, BaseException) else RuntimeError(str(exc_type))
            self.reporter.failed(self._run(job, token), failure_of(exc))
        except Exception as error:
            _log.logger().warning("Could not report an RQ job's failure to OpShift: %s", error)

    def returned_retry(self, job: Job, retry: Any) -> None:
        """The job returned ``retry`` and RQ has handled it: re-enqueued (an attempt, counted
        by RQ in ``number_of_retries``), or failed, no retry left: a down."""
        if not self._active:
            return
        try:
            token = self.token(job)
            if token is None:
                return
            from rq.job import JobStatus

            if job.get_status(refresh=False) != JobStatus.FAILED:
                if _log.debug_enabled():
                    _log.logger().debug(
                        "RQ job %s returned Retry and will be retried: not a down ping", job.id
                    )
                return
            reason = f"returned Retry: no retries left (max {getattr(retry, 'max', '?')})"
            self.reporter.failed(self._run(job, token), Failure(reason, "MaxRetriesExceeded"))
        except Exception as error:
            _log.logger().warning("Could not report an RQ job's Retry to OpShift: %s", error)

    def work_horse_killed(self, job: Job, ret_val: int | None, rusage: Any) -> None:
        """The work horse died (a signal, the OOM killer): a down from the worker."""
        if not self._active:
            return
        try:
            token = self.token(job)
            if token is None:
                return
            if _retries_left(job):
                _count_failed_attempt(job)
                return
            reason = killed_reason(ret_val, getattr(rusage, "ru_maxrss", None))
            self.reporter.failed(self._run(job, token), Failure(reason, "WorkHorseKilled"))
        except Exception as error:
            _log.logger().warning("Could not report an RQ work horse's death to OpShift: %s", error)

    def __repr__(self) -> str:
        return f"Instrumentation(worker={self.worker.name!r})"


def _function(job: Job) -> str:
    try:
        return str(job.func_name)
    except Exception:
        return "?"


def _attempts_key(job: Job) -> str:
    return f"opshift:rq:attempts:{job.id}"


def _count_failed_attempt(job: Job) -> None:
    """Count an attempt RQ will retry (``Retry(max=...)``): RQ keeps only the retries left."""
    pipe = job.connection.pipeline()
    pipe.incr(_attempts_key(job))
    pipe.expire(_attempts_key(job), 7 * 86400)
    pipe.execute()


def _failed_attempts(job: Job) -> int:
    """The attempts of ``job`` that failed and were retried, forgotten now (its run ends)."""
    pipe = job.connection.pipeline()
    pipe.get(_attempts_key(job))
    pipe.delete(_attempts_key(job))
    counted = pipe.execute()[0]
    return int(counted or 0)


def _retries_left(job: Job) -> bool:
    left = job.retries_left
    return left is not None and left > 0


def _memory(kilobytes: int) -> str:
    """``1.9 GB``, ``512 MB``, ``900 KB``: ``ru_maxrss`` (KiB on Linux) as a person reads it."""
    size = float(kilobytes) * 1024
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}" if unit == "GB" else f"{size / scale:.0f} {unit}"
    return f"{kilobytes} KB"


def killed_reason(status: int | None, maxrss_kb: int | None = None) -> str:
    """``"work horse killed: signal 9 (SIGKILL), maxrss 1.9 GB"`` from ``waitpid``'s status."""
    if status is not None and os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown"
        text = f"work horse killed: signal {number} ({name})"
    elif status is not None and os.WIFEXITED(status):
        text = f"work horse died: exit code {os.WEXITSTATUS(status)}"
    else:
        text = f"work horse died: status {status}"
    if isinstance(maxrss_kb, int) and maxrss_kb > 0:
        text += f", maxrss {_memory(maxrss_kb)}"
    return text


def _after_retry_handled(
    original: Callable[..., None], handle: Instrumentation
) -> Callable[..., None]:
    """``worker.handle_job_retry`` (RQ calls it with keywords), then ``returned_retry``."""

    def handle_job_retry(job: Job, queue: Any, retry: Any, *args: Any, **kwargs: Any) -> None:
        original(job, queue, retry, *args, **kwargs)
        handle.returned_retry(job, retry)

    return handle_job_retry


def _monitored_job_class(base: type[Job], handle: Instrumentation) -> type[Job]:
    """``base`` with a ``success_callback`` that runs the job's own, then reports the run."""

    class MonitoredJob(base):  # type: ignore[valid-type,misc]
        @property
        def success_callback(self) -> Callable[[Job, Any, Any], None]:
            callback = super().success_callback

            def succeeded(job: Job, connection: Any, result: Any) -> None:
                if callback is not None:
                    callback(job, connection, result)  # its failure fails the job, as in RQ
                handle.succeeded(job)

            return succeeded

    MonitoredJob.__name__ = MonitoredJob.__qualname__ = f"Monitored{base.__name__}"
    MonitoredJob.__module__ = base.__module__
    return MonitoredJob
