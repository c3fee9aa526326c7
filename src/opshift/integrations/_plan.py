"""``opshift plan MODULE:ATTR``: what to set in OpShift's dashboard for each scheduled job.

OpShift has no cron schedules: a monitor expects a ping every ``interval`` seconds, plus
``grace``. A job that runs at irregular gaps (weekdays only) needs an interval as long as
its **longest** gap, computed here with the scheduler's own schedule objects in their
timezone: a Celery app's beat entries (``crontab(0, 2, day_of_week="mon-fri")`` is 3
days, Friday to Monday, in the app's timezone) or an APScheduler scheduler's jobs (cron
and interval triggers, each in its trigger's timezone).

``plan(target, as_json=...)`` returns the text to print and the exit status; a target
that cannot be loaded raises ``ConfigurationError`` (the CLI's exit 2).
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigurationError
from ._core import UP_SPACING
from ._match import shared_token_warnings

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["EntryPlan", "grace_for", "load_target", "plan", "plan_entries", "plan_jobs"]

_HORIZON_DAYS = 400  # a year and a bit: monthly and yearly crontabs show their longest gap
_MAX_RUNS = 20_000  # a minutely crontab needs two weeks of runs to show its weekly pattern
_MINUTE = 60.0


@dataclass
class EntryPlan:
    """One beat entry: its token and the dashboard settings its schedule needs."""

    name: str
    task: str
    schedule: str
    token: str | None
    longest_gap_s: float | None
    shortest_gap_s: float | None
    interval_s: int | None
    grace_s: int | None
    warnings: list[str] = field(default_factory=list)


def grace_for(interval: float) -> int:
    """The grace to suggest: a tenth of the interval, at least a minute, at most an hour."""
    return int(min(max(interval / 10, _MINUTE), 3600.0))


def _kind(value: object) -> str | None:
    """``"celery"``, ``"apscheduler"``, or None: which scheduler ``value`` is, if any.

    Only frameworks the target's module imported are looked at: none is imported here.
    """
    celery = sys.modules.get("celery")
    if celery is not None and isinstance(value, celery.Celery):
        return "celery"
    base = sys.modules.get("apscheduler.schedulers.base")
    if base is not None and isinstance(value, base.BaseScheduler):
        return "apscheduler"
    return None


def load_target(target: str) -> Any:
    """The Celery app or APScheduler scheduler ``MODULE:ATTR`` names (``MODULE`` alone:
    its ``app``, ``celery`` or ``scheduler``).

    Raises:
        ConfigurationError: the module cannot be imported, or the attribute is neither.
    """
    module_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path:  # as `celery -A` does: the project is where you stand
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    names = [attr] if attr else ["app", "celery", "scheduler"]
    for name in names:
        value: Any = module
        try:
            for part in name.split("."):
                value = getattr(value, part)
        except AttributeError:
            continue
        if _kind(value) is not None:
            return value
        kind = type(value).__name__
        raise ConfigurationError(
            f"{module_name}:{name} is a {kind}, not a Celery app or an APScheduler scheduler"
        )
    raise ConfigurationError(
        f"{module_name!r} has no {' or '.join(names)}: name the app as MODULE:ATTR"
    )


def _walk(start: datetime, following: Callable[[datetime], datetime | None]) -> list[float]:
    """The gaps in seconds between successive runs from ``start``, over about a year."""
    gaps: list[float] = []
    previous = None
    last: datetime | None = start
    for _ in range(_MAX_RUNS):
        last = following(last) if last is not None else None
        if last is None:
            break
        if previous is not None:  # as timestamps: one tzinfo would hide a DST change
            gaps.append(last.timestamp() - previous.timestamp())
        previous = last
        if (last - start).days > _HORIZON_DAYS:
            break
    return gaps


def _gaps(schedule: Any, app: Celery) -> tuple[float, float] | None:
    """(longest, shortest) gap between a beat entry's runs in seconds, or None."""
    from celery import schedules

    made = schedules.maybe_schedule(schedule, app=app)
    if isinstance(made, schedules.crontab):
        cron = made

        def following(last: datetime) -> datetime:
            base, delta, _now = cron.remaining_delta(last)
            return base + delta  # type: ignore[no-any-return]

        gaps = _walk(app.now(), following)
        return (max(gaps), min(gaps)) if gaps else None
    every = getattr(made, "run_every", None)
    if every is not None and hasattr(every, "total_seconds"):
        return every.total_seconds(), every.total_seconds()
    return None


def trigger_gaps(trigger: Any) -> tuple[float, float] | None:
    """(longest, shortest) gap between an APScheduler trigger's runs, in its timezone.

    An interval trigger's gap is its interval; any other trigger (cron, and the
    combinations) is walked with its own ``get_next_fire_time`` over about a year. Jitter
    widens the gaps by up to its own length either way.
    """
    jitter = float(getattr(trigger, "jitter", None) or 0)
    length = getattr(trigger, "interval_length", None)
    if isinstance(length, (int, float)):
        return length + jitter, max(length - jitter, 0.0)
    if not callable(getattr(trigger, "get_next_fire_time", None)):
        return None
    steady = copy.copy(trigger)
    if jitter:
        steady.jitter = None
    zone = getattr(trigger, "timezone", None) or timezone.utc
    now = datetime.now(zone)

    def following(last: datetime) -> datetime | None:
        found: datetime | None = steady.get_next_fire_time(None if last is now else last, last)
        return found

    gaps = _walk(now, following)
    return (max(gaps) + jitter, max(min(gaps) - jitter, 0.0)) if gaps else None


def _human(seconds: float) -> str:
    """``3 d``, ``1 h 30 min``, ``45 s``: a gap as a person reads it."""
    seconds = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts) or "0 s"


def _advise(entry: EntryPlan, gaps: tuple[float, float] | None) -> EntryPlan:
    """Fill in ``entry``'s interval, grace and warnings from its (longest, shortest) gap."""
    if gaps is None:
        entry.warnings.append(
            "the gap between runs cannot be computed for this schedule (it may run only "
            "once more); set the interval to its longest gap by hand"
        )
        return entry
    longest, shortest = gaps
    entry.longest_gap_s, entry.shortest_gap_s = longest, shortest
    entry.interval_s = max(round(longest), round(UP_SPACING + 0.5))
    entry.grace_s = grace_for(longest)
    if shortest < _MINUTE:
        entry.warnings.append(
            f"runs every {_human(shortest)}, more than once a minute: OpShift takes "
            f"10 pings a minute per token, so ups go at most every {UP_SPACING:g} s, "
            "each counting the runs since the last"
        )
    if longest > shortest:
        entry.warnings.append(
            f"runs at irregular gaps ({_human(shortest)} to {_human(longest)}): the "
            "interval covers the longest, so a run missed after a short gap is "
            "noticed late"
        )
    return entry


def plan_entries(app: Celery) -> tuple[list[EntryPlan], list[str]]:
    """Every beat entry's plan, and the app-wide warnings (shared tokens)."""
    from .celery import instrumentation

    handle = instrumentation(app)
    app.finalize(auto=True)
    entries: list[EntryPlan] = []
    for name, spec in sorted((app.conf.beat_schedule or {}).items()):
        task = str(spec.get("task", "?"))
        token = handle.entry_token(name, task) if handle is not None else None
        schedule = spec.get("schedule")
        entry = EntryPlan(name, task, repr(schedule), token, None, None, None, None)
        entries.append(_advise(entry, _gaps(schedule, app)))
    notes = shared_token_warnings((f"beat entry {e.name!r}", e.token) for e in entries)
    if handle is None:
        notes.insert(0, "the app is not instrumented: no entry is monitored")
    return entries, notes


def plan_jobs(scheduler: Any) -> tuple[list[EntryPlan], list[str]]:
    """Every APScheduler job's plan, and the scheduler-wide warnings (shared tokens)."""
    from .apscheduler import instrumentation

    handle = instrumentation(scheduler)
    entries: list[EntryPlan] = []
    for job in sorted(scheduler.get_jobs(), key=lambda job: str(job.id)):
        trigger = job.trigger
        zone = getattr(trigger, "timezone", None)
        schedule = f"{trigger}, {zone}" if zone is not None else str(trigger)
        token = handle.token(str(job.id)) if handle is not None else None
        entry = EntryPlan(str(job.id), str(job.name), schedule, token, None, None, None, None)
        entries.append(_advise(entry, trigger_gaps(trigger)))
    notes = shared_token_warnings((f"job {e.name!r}", e.token) for e in entries)
    if handle is None:
        notes.insert(0, "the scheduler is not instrumented: no job is monitored")
    return entries, notes


def _text(header: str, entries: list[EntryPlan], notes: list[str]) -> str:
    lines = [header, ""]
    for entry in entries:
        lines.append(f"{entry.name}  ({entry.task}, {entry.schedule})")
        lines.append(f"  token: {entry.token or 'not monitored'}")
        if entry.longest_gap_s is not None and entry.interval_s and entry.grace_s:
            lines.append(f"  longest gap between runs: {_human(entry.longest_gap_s)}")
            lines.append(
                f"  set in the dashboard: interval {entry.interval_s} s "
                f"({_human(entry.interval_s)}), grace {entry.grace_s} s "
                f"({_human(entry.grace_s)}) plus the task's longest run time"
            )
        lines.extend(f"  warning: {warning}" for warning in entry.warnings)
        lines.append("")
    lines.extend(f"warning: {note}" for note in notes)
    return "\n".join(lines).rstrip("\n") + "\n"


def plan(target: str, *, as_json: bool = False) -> tuple[str, int]:
    """The ``opshift plan`` output for the Celery app or APScheduler scheduler ``target``,
    and its exit status.

    Raises:
        ConfigurationError: ``target`` cannot be loaded as either.
    """
    found = load_target(target)
    document: dict[str, Any]
    if _kind(found) == "apscheduler":
        entries, notes = plan_jobs(found)
        name, zone = type(found).__name__, str(found.timezone)
        document = {"scheduler": name, "timezone": zone}
        header = f"APScheduler {name}, timezone {zone}, {len(entries)} jobs"
    else:
        entries, notes = plan_entries(found)
        zone = str(found.timezone)
        document = {"app": found.main, "timezone": zone}
        header = f"Celery app {found.main!r}, timezone {zone}, {len(entries)} beat entries"
    if as_json:
        document.update(entries=[asdict(entry) for entry in entries], warnings=notes)
        return json.dumps(document, indent=2) + "\n", 0
    return _text(header, entries, notes), 0
