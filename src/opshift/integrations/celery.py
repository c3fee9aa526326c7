"""Celery: a heartbeat per beat entry or task, from Celery's own signals. Nothing patched.

    outbox = Outbox(OpShift(), path="/var/lib/app/opshift.sqlite3")
    opshift_celery.instrument(app, outbox, monitors={"nightly-report": "nightly-report"})

Call ``instrument`` where the app is made (the module ``-A`` names), so ``celery worker``
and ``celery beat`` both run it. What each signal becomes (the core's rules, ``_core``):

- ``beat_init``: the scheduler instance's ``apply_async`` is wrapped, so every message it
  sends carries the entry's name in the ``opshift_beat_entry`` header (stamped by a
  ``before_task_publish`` receiver while the wrapper runs). Works with any scheduler
  class, and with beat in its own process.
- ``task_prerun``: a monitored run starts its clock (and its ``max_runtime`` timer).
- ``task_success``: ``up``. ``task_failure``: ``down`` (only final failures reach it: a
  retry goes to ``task_retry``, which sends nothing; the attempts ride on the final ping).
- ``task_received`` (in the worker's parent process): the run's token is noted, so that
  when the pool child dies (``WorkerLostError``) or hits its hard time limit, the parent's
  ``task_failure`` sends ``down`` for it. ``task_postrun`` forgets the run.
"""

from __future__ import annotations

import contextvars
import re
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

from .. import _log, _validation
from ..errors import ConfigurationError
from ._core import Failure, Reporter, Run, failure_of, reporter_for
from ._match import Matcher, Monitors, shared_token_warnings

if TYPE_CHECKING:
    from celery import Celery

    from ..types import Pinger, Severity
    from ._timer import Cancel, Timer

__all__ = ["HEADER", "Instrumentation", "instrument", "instrumentation"]

HEADER = "opshift_beat_entry"  # the message header naming the beat entry that sent a run
_PARENT_KEPT = 1_000  # runs the parent remembers before it prunes the ones no longer held
_beat_entry: contextvars.ContextVar[str | None] = contextvars.ContextVar(HEADER, default=None)
_INSTRUMENTED: weakref.WeakKeyDictionary[Any, Instrumentation] = weakref.WeakKeyDictionary()
_SIGNAL = re.compile(r"signal (\d+) \((\w+)\)")
_EXITCODE = re.compile(r"exitcode (-?\d+)")


@dataclass
class _Live:
    """A monitored run in progress, in the process that runs it."""

    token: str
    started: float
    handle: Cancel | None = None


@dataclass
class _Received:
    """A monitored run the worker's parent process received (for a lost child)."""

    token: str
    task: str
    attempts: int
    host: str | None


@dataclass
class _Hooks:
    """What ``instrument`` connected, so ``uninstrument`` removes exactly that."""

    signals: list[tuple[Any, Callable[..., None]]] = field(default_factory=list)
    schedulers: list[tuple[Any, Callable[..., Any]]] = field(default_factory=list)


def instrument(
    app: Celery,
    pinger: Pinger,
    *,
    monitors: Monitors = None,
    tasks: Literal["beat", "all"] = "beat",
    alert_webhook: str | None = None,
    alert_severity: Severity | None = None,
    max_runtime: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    timer: Timer | None = None,
) -> Instrumentation:
    """Report the runs of ``app``'s beat entries (or tasks) to OpShift as pings.

    Args:
        app: the Celery app; call this where it is made, so worker and beat both run it.
        pinger: an ``Outbox`` (best: hooks never wait on the network) or an ``OpShift``
            client; anything with ``ping()``, and ``alert()`` with ``alert_webhook``.
        monitors: beat entry or task name (glob patterns allowed) -> ping token, or
            ``None`` to opt out; or a callable ``name -> token | None``. A task's own
            ``opshift_monitor=`` option wins (``False`` opts it out).
        tasks: ``"beat"``: only runs beat started; ``"all"``: every run of a named task.
        alert_webhook: a final failure also raises an alert on this webhook.
        alert_severity: that alert's severity (default: the webhook's).
        max_runtime: a run still going after this many seconds sends one ``down``.
        clock: monotonic seconds for durations and ``up`` spacing (tests pass a fake).
        timer: calls back later (held ups, ``max_runtime``); tests pass one they drive.

    Returns:
        The ``Instrumentation``; its ``uninstrument()`` removes every hook added here.

    Raises:
        ConfigurationError: the app is already instrumented, or an option is invalid.
    """
    if app in _INSTRUMENTED:
        raise ConfigurationError(
            f"Celery app {app.main!r} is already instrumented; call uninstrument() on the "
            "first handle before instrumenting it again."
        )
    if tasks not in ("beat", "all"):
        raise ConfigurationError(f"tasks must be 'beat' or 'all', not {tasks!r}.")
    if max_runtime is not None:
        max_runtime = _validation.check_number("max_runtime", max_runtime)
    reporter = reporter_for(
        pinger,
        source="celery",
        alert_webhook=alert_webhook,
        alert_severity=alert_severity,
        clock=clock,
        timer=timer,
    )
    handle = Instrumentation(app, reporter, Matcher(monitors), tasks, max_runtime)
    _INSTRUMENTED[app] = handle
    handle.connect()
    return handle


def instrumentation(app: object) -> Instrumentation | None:
    """The live ``Instrumentation`` of ``app``, or None if it is not instrumented."""
    return _INSTRUMENTED.get(app)


class Instrumentation:
    """One app's hooks: resolves runs to tokens and hands finished runs to the core."""

    def __init__(
        self,
        app: Celery,
        reporter: Reporter,
        matcher: Matcher,
        tasks: Literal["beat", "all"],
        max_runtime: float | None,
    ) -> None:
        self.app = app
        self.reporter = reporter
        self.matcher = matcher
        self.tasks = tasks
        self.max_runtime = max_runtime
        self._hooks = _Hooks()
        self._live: dict[str, _Live] = {}
        self._received: dict[str, _Received] = {}
        self._warned: set[str] = set()
        from billiard.exceptions import TimeLimitExceeded, WorkerLostError

        self._parent_errors: tuple[type[BaseException], ...] = (
            WorkerLostError,
            TimeLimitExceeded,
        )

    # -- which token a run goes to

    def token(self, task: str, entry: str | None) -> str | None:
        """The ping token for a run of ``task``, sent by beat ``entry`` (None if not beat)."""
        own = getattr(self._registered(task), "opshift_monitor", None)
        if own is False or (self.tasks == "beat" and entry is None):
            return None
        if isinstance(own, str):
            return own
        return self.matcher.token(entry, task)

    def _finalized(self) -> bool:
        return bool(getattr(self.app, "finalized", False))

    def _registered(self, task: str) -> object:
        """The task object, once the app is finalized (reading the registry finalizes it)."""
        return self.app.tasks.get(task) if self._finalized() else None

    def entry_token(self, entry: str, task: str) -> str | None:
        """The ping token of a beat entry's runs (as ``opshift plan`` shows it)."""
        return self.token(task, entry)

    def shared_tokens(self) -> list[str]:
        """A warning per token that two beat entries, or two tasks, would share."""
        owners: list[tuple[str, str | None]] = []
        for name, spec in (self.app.conf.beat_schedule or {}).items():
            task = spec.get("task") if isinstance(spec, dict) else None
            if isinstance(task, str):
                owners.append((f"beat entry {name!r}", self.token(task, name)))
        if self.tasks == "all" and self._finalized():
            for name in sorted(self.app.tasks):
                owners.append((f"task {name!r}", self.token(name, None)))
        return shared_token_warnings(owners)

    def _warn_shared(self, **_: object) -> None:
        for line in self.shared_tokens():
            if line not in self._warned:
                self._warned.add(line)
                _log.logger().warning("Celery app %r: %s", self.app.main, line)

    # -- connecting and disconnecting

    def connect(self) -> None:
        """Connect every receiver (``instrument`` calls this once)."""
        from celery import signals

        for signal, receiver in (
            (signals.beat_init, self._on_beat_init),
            (signals.before_task_publish, self._on_publish),
            (signals.task_received, self._on_received),
            (signals.task_prerun, self._on_prerun),
            (signals.task_success, self._on_success),
            (signals.task_failure, self._on_failure),
            (signals.task_retry, self._on_retry),
            (signals.task_postrun, self._on_postrun),
        ):
            signal.connect(receiver, weak=False)
            self._hooks.signals.append((signal, receiver))
        self._warn_shared()  # the beat schedule's entries now; the tasks once finalized
        if not self._finalized():
            self.app.on_after_finalize.connect(self._warn_shared, weak=False)
            self._hooks.signals.append((self.app.on_after_finalize, self._warn_shared))

    def uninstrument(self) -> None:
        """Remove every hook ``instrument`` added and send what the core still holds."""
        for signal, receiver in self._hooks.signals:
            signal.disconnect(receiver)
        for scheduler, wrapper in self._hooks.schedulers:
            if scheduler.__dict__.get("apply_async") is wrapper:
                del scheduler.apply_async  # the class's own method shows through again
        self._hooks = _Hooks()
        for live in self._live.values():
            if live.handle is not None:
                live.handle.cancel()
        self._live.clear()
        self._received.clear()
        self.reporter.flush()
        if _INSTRUMENTED.get(self.app) is self:
            del _INSTRUMENTED[self.app]

    # -- beat: stamp each message with its entry's name

    def _on_beat_init(self, sender: Any = None, **_: Any) -> None:
        try:
            if getattr(sender, "app", None) is not self.app:
                return
            scheduler = sender.scheduler
            original = scheduler.apply_async
            if getattr(original, "opshift_wraps", None) is not None:
                return

            def apply_async(entry: Any, *args: Any, **kwargs: Any) -> Any:
                token = _beat_entry.set(str(entry.name))
                try:
                    return original(entry, *args, **kwargs)
                finally:
                    _beat_entry.reset(token)

            apply_async.opshift_wraps = original  # type: ignore[attr-defined]
            scheduler.apply_async = apply_async  # on this instance only: no class patched
            self._hooks.schedulers.append((scheduler, apply_async))
        except Exception as error:
            _log.logger().warning("Could not hook into Celery beat's scheduler: %s", error)

    def _on_publish(self, sender: Any = None, headers: Any = None, **_: Any) -> None:
        entry = _beat_entry.get()
        if entry is not None and isinstance(headers, dict):
            headers[HEADER] = entry

    # -- the worker

    def _on_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        try:
            if getattr(sender, "app", None) is not self.app:
                return
            fields = request.request_dict
            entry = fields.get(HEADER)
            name = str(fields.get("task") or request.task_name)
            token = self.token(name, entry if isinstance(entry, str) else None)
            if token is None:
                return
            if len(self._received) >= _PARENT_KEPT:
                self._prune_received()
            retries = fields.get("retries")
            self._received[str(request.id)] = _Received(
                token,
                name,
                (retries if isinstance(retries, int) else 0) + 1,
                getattr(request, "hostname", None),
            )
        except Exception as error:
            _log.logger().warning("Could not note a received Celery task: %s", error)

    def _prune_received(self) -> None:
        """Forget runs the parent no longer holds (they ended in a pool child)."""
        from celery.worker import state

        held = state.requests
        for task_id in [key for key in self._received if key not in held]:
            del self._received[task_id]
        while len(self._received) >= _PARENT_KEPT:  # still full: forget the oldest
            del self._received[next(iter(self._received))]

    def _on_prerun(self, sender: Any = None, task_id: Any = None, **_: Any) -> None:
        try:
            if getattr(sender, "app", None) is not self.app or task_id is None:
                return
            request = sender.request
            token = self.token(sender.name, _entry_of(request))
            if token is None:
                return
            live = _Live(token, self.reporter.clock())
            if self.max_runtime is not None:
                run = self._run(sender, token, None)
                seconds = self.max_runtime
                live.handle = self.reporter.timer.schedule(
                    seconds, lambda: self.reporter.overrunning(run, seconds)
                )
            self._live[str(task_id)] = live
        except Exception as error:
            _log.logger().warning("Could not start monitoring a Celery task: %s", error)

    def _run(self, task: Any, token: str, live: _Live | None) -> Run:
        request = task.request
        retries = getattr(request, "retries", 0)
        duration = None
        if live is not None:
            duration = round((self.reporter.clock() - live.started) * 1000)
        return Run(
            token=token,
            task=str(task.name),
            task_id=getattr(request, "id", None),
            attempts=(retries if isinstance(retries, int) else 0) + 1,
            duration_ms=duration,
            host=getattr(request, "hostname", None),
        )

    def _on_success(self, sender: Any = None, **_: Any) -> None:
        try:
            live = self._live.get(str(getattr(sender.request, "id", "")))
            if live is not None:
                self.reporter.succeeded(self._run(sender, live.token, live))
        except Exception as error:
            _log.logger().warning("Could not report a Celery task's success: %s", error)

    def _on_failure(
        self, sender: Any = None, task_id: Any = None, exception: Any = None, **kwargs: Any
    ) -> None:
        try:
            if isinstance(exception, self._parent_errors):
                self._lost(str(task_id), exception)
                return
            live = self._live.get(str(task_id))
            if live is None:
                return
            einfo = kwargs.get("einfo")
            text = getattr(einfo, "traceback", None)
            failure = failure_of(exception, text if isinstance(text, str) else None)
            self.reporter.failed(self._run(sender, live.token, live), failure)
        except Exception as error:
            _log.logger().warning("Could not report a Celery task's failure: %s", error)

    def _lost(self, task_id: str, exc: BaseException) -> None:
        """The parent's report of a run whose pool child died or hit its hard time limit."""
        noted = self._received.pop(task_id, None)
        live = self._live.pop(task_id, None)  # the same process with the solo pool
        if live is not None and live.handle is not None:
            live.handle.cancel()
        if noted is None:
            return
        run = Run(noted.token, noted.task, task_id, noted.attempts, None, noted.host)
        self.reporter.failed(run, Failure(lost_reason(exc), type(exc).__name__, None))

    def _on_retry(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        if _log.debug_enabled() and request is not None:
            _log.logger().debug(
                "Celery task %s attempt %s failed and will be retried: not a down ping",
                getattr(request, "id", "?"),
                (getattr(request, "retries", 0) or 0) + 1,
            )

    def _on_postrun(self, sender: Any = None, task_id: Any = None, **_: Any) -> None:
        live = self._live.pop(str(task_id), None)
        self._received.pop(str(task_id), None)
        if live is not None and live.handle is not None:
            live.handle.cancel()

    def __repr__(self) -> str:
        return f"Instrumentation(app={self.app.main!r}, tasks={self.tasks!r})"


def _entry_of(request: Any) -> str | None:
    """The beat entry a task's request names in its header, if beat sent it."""
    value = getattr(request, HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None)
        value = headers.get(HEADER) if isinstance(headers, dict) else None
    return value if isinstance(value, str) else None


def lost_reason(exc: BaseException) -> str:
    """``"worker lost: signal 9 (SIGKILL)"``, or the hard time limit that was hit."""
    text = str(exc)
    if type(exc).__name__ == "TimeLimitExceeded":
        limit = exc.args[0] if exc.args else "?"
        return f"hard time limit exceeded ({limit} s)"
    found = _SIGNAL.search(text)
    if found:
        return f"worker lost: signal {found.group(1)} ({found.group(2)})"
    found = _EXITCODE.search(text)
    if found:
        return f"worker lost: exit code {found.group(1)}"
    return f"worker lost: {text}"[:200]
