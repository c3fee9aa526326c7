"""``opshift plan MODULE:ATTR``: what to set in OpShift's dashboard for each beat entry.

OpShift has no cron schedules: a monitor expects a ping every ``interval`` seconds, plus
``grace``. A beat entry that runs at irregular gaps (weekdays only) needs an interval as
long as its **longest** gap, computed here with Celery's own schedule objects in the
app's timezone (so ``crontab(0, 2, day_of_week="mon-fri")`` is 3 days, Friday to Monday).

``plan(target, as_json=...)`` returns the text to print and the exit status; a target
that cannot be loaded raises ``ConfigurationError`` (the CLI's exit 2).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ._core import UP_SPACING
from ._match import shared_token_warnings

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["EntryPlan", "grace_for", "load_app", "plan", "plan_entries"]

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


def load_app(target: str) -> Celery:
    """The Celery app ``MODULE:ATTR`` names (``MODULE`` alone: its ``app`` or ``celery``).

    Raises:
        ConfigurationError: the module cannot be imported, or the attribute is no app.
    """
    from celery import Celery

    module_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path:  # as `celery -A` does: the project is where you stand
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from exc
    names = [attr] if attr else ["app", "celery"]
    for name in names:
        value: Any = module
        try:
            for part in name.split("."):
                value = getattr(value, part)
        except AttributeError:
            continue
        if isinstance(value, Celery):
            return value
        kind = type(value).__name__
        raise ConfigurationError(f"{module_name}:{name} is a {kind}, not a Celery app")
    raise ConfigurationError(
        f"{module_name!r} has no {' or '.join(names)}: name the app as MODULE:ATTR"
    )


def _gaps(schedule: Any, app: Celery) -> tuple[float, float] | None:
    """(longest, shortest) gap between two runs in seconds, or None if not computable."""
    from celery import schedules

    made = schedules.maybe_schedule(schedule, app=app)
    if isinstance(made, schedules.crontab):
        cron = made
        start = last = app.now()
        gaps: list[float] = []
        previous = None
        for _ in range(_MAX_RUNS):
            base, delta, _now = cron.remaining_delta(last)
            last = base + delta
            if previous is not None:  # as timestamps: one tzinfo would hide a DST change
                gaps.append(last.timestamp() - previous.timestamp())
            previous = last
            if (last - start).days > _HORIZON_DAYS:
                break
        return (max(gaps), min(gaps)) if gaps else None
    every = getattr(made, "run_every", None)
    if every is not None and hasattr(every, "total_seconds"):
        return every.total_seconds(), every.total_seconds()
    return None


def _human(seconds: float) -> str:
    """``3 d``, ``1 h 30 min``, ``45 s``: a gap as a person reads it."""
    seconds = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts) or "0 s"


def _seconds(value: int) -> str:
    """``259200 s (3 d)``; ``30 s`` alone when the two read the same."""
    human = _human(value)
    return f"{value} s" if human == f"{value} s" else f"{value} s ({human})"


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
        gaps = _gaps(schedule, app)
        entry = EntryPlan(name, task, repr(schedule), token, None, None, None, None)
        if gaps is None:
            entry.warnings.append(
                "the gap between runs cannot be computed for this schedule; set the "
                "interval to its longest gap by hand"
            )
        else:
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
        entries.append(entry)
    notes = shared_token_warnings((f"beat entry {e.name!r}", e.token) for e in entries)
    if handle is None:
        notes.insert(0, "the app is not instrumented: no entry is monitored")
    return entries, notes


def plan(target: str, *, as_json: bool = False) -> tuple[str, int]:
    """The ``opshift plan`` output for the Celery app ``target`` and its exit status.

    Raises:
        ConfigurationError: ``target`` cannot be loaded as a Celery app.
    """
    app = load_app(target)
    entries, notes = plan_entries(app)
    timezone = str(app.timezone)
    if as_json:
        document = {
            "app": app.main,
            "timezone": timezone,
            "entries": [asdict(entry) for entry in entries],
            "warnings": notes,
        }
        return json.dumps(document, indent=2) + "\n", 0
    lines = [f"Celery app {app.main!r}, timezone {timezone}, {len(entries)} beat entries", ""]
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
    return "\n".join(lines).rstrip("\n") + "\n", 0
