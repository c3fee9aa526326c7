"""`opshift plan` for an APScheduler scheduler: each job's token and longest gap, from its
own trigger in the trigger's timezone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import ROOT, SECRET

pytest.importorskip("apscheduler")

from opshift.integrations import apscheduler as opshift_aps
from opshift.integrations._plan import plan, trigger_gaps

DOC = ROOT / "docs" / "integrations" / "apscheduler.md"

SCHEDULER = """
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from opshift.integrations import apscheduler as opshift_aps
from tests.integrations.rig import RecordingPinger

def work():
    pass

scheduler = BackgroundScheduler(timezone="UTC")
scheduler.add_job(work, CronTrigger(hour=2, day_of_week="mon-fri", timezone="UTC"), id="weekdays")
scheduler.add_job(work, CronTrigger(hour=2, timezone="Europe/Paris"), id="paris")
scheduler.add_job(work, "interval", seconds=20, id="often")
scheduler.add_job(work, "interval", hours=24, id="daily-copy")
scheduler.add_job(work, "date", run_date="2099-01-01 00:00:00", id="once")
{instrument}
"""
INSTRUMENT = (
    'handle = opshift_aps.instrument(scheduler, RecordingPinger(), monitors={"weekdays": '
    '"report", "often": "tick", "paris": "daily", "daily-*": "daily"})'
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder to write scheduler modules in, as the current directory; forgotten after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("OPSHIFT_SECRET", SECRET)
    yield tmp_path
    for path in tmp_path.glob("*.py"):
        module = sys.modules.pop(path.stem, None)
        scheduler = getattr(module, "scheduler", None)
        handle = opshift_aps.instrumentation(scheduler) if scheduler is not None else None
        if handle is not None:
            handle.uninstrument()


def _plan(project: Path, name: str, *, instrument: bool = True) -> dict[str, Any]:
    code = SCHEDULER.format(instrument=INSTRUMENT if instrument else "")
    (project / f"{name}.py").write_text(textwrap.dedent(code), encoding="utf-8")
    text, status = plan(f"{name}:scheduler", as_json=True)
    assert status == 0
    document: dict[str, Any] = json.loads(text)
    return document


def test_a_weekday_cron_trigger_needs_a_three_day_interval(project: Path) -> None:
    """CronTrigger(hour=2, day_of_week='mon-fri'): longest gap 3 days, irregular, its token."""
    document = _plan(project, "aps_weekdays")
    assert document["scheduler"] == "BackgroundScheduler" and document["timezone"] == "UTC"
    weekdays = next(e for e in document["entries"] if e["name"] == "weekdays")
    assert weekdays["token"] == "report" and weekdays["task"] == "work"
    assert weekdays["longest_gap_s"] == 3 * 86400 and weekdays["shortest_gap_s"] == 86400
    assert weekdays["interval_s"] == 3 * 86400 and weekdays["grace_s"] == 3600
    assert any("irregular" in w for w in weekdays["warnings"])


def test_the_triggers_timezone_applies(project: Path) -> None:
    """02:00 in Europe/Paris: APScheduler runs twice on the autumn night (1 h); plan says so."""
    entries = _plan(project, "aps_paris")["entries"]
    paris = next(e for e in entries if e["name"] == "paris")
    assert paris["longest_gap_s"] == 24 * 3600 and paris["shortest_gap_s"] == 3600
    assert any("irregular gaps (1 h to 1 d)" in w for w in paris["warnings"])
    assert paris["schedule"].endswith(", Europe/Paris")


def test_interval_and_date_triggers_and_shared_tokens(project: Path) -> None:
    """20 s: over the ping limit; a date trigger: no gap; two jobs on 'daily': warned."""
    document = _plan(project, "aps_warnings")
    entries = {e["name"]: e for e in document["entries"]}
    assert entries["often"]["interval_s"] == 20
    assert "more than once a minute" in entries["often"]["warnings"][0]
    assert entries["daily-copy"]["longest_gap_s"] == 86400
    assert entries["once"]["interval_s"] is None and "cannot be computed" in str(entries["once"])
    (shared,) = document["warnings"]
    assert "job 'daily-copy' and job 'paris'" in shared


def test_a_scheduler_not_instrumented_monitors_nothing(project: Path) -> None:
    """Without instrument(): no job has a token, and a note says why."""
    document = _plan(project, "aps_bare", instrument=False)
    assert {e["token"] for e in document["entries"]} == {None}
    assert document["warnings"][0].startswith("the scheduler is not instrumented")


def test_jitter_widens_the_gaps() -> None:
    """An interval of 1 h with 60 s of jitter: 59 to 61 min; a cron trigger's too."""
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
    from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

    assert trigger_gaps(IntervalTrigger(hours=1, jitter=60)) == (3660.0, 3540.0)
    assert trigger_gaps(CronTrigger(minute=0, jitter=60, timezone="UTC")) == (3660.0, 3540.0)
    assert trigger_gaps(object()) is None


def test_the_docs_plan_output_is_what_plan_prints(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's setup, planned (in-process and by the CLI), prints the page's console block."""
    page = DOC.read_text(encoding="utf-8")
    setup = re.search(r"```python\n(.*?)```", page, re.S)
    shown = re.search(r"```console\n\$ opshift plan jobs:scheduler\n(.*?)```", page, re.S)
    assert setup is not None and shown is not None
    (project / "jobs.py").write_text(setup.group(1), encoding="utf-8")
    text, _ = plan("jobs:scheduler", as_json=False)
    assert text == shown.group(1)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "opshift", "plan", "jobs:scheduler"],
        capture_output=True, text=True, env=env, cwd=project, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown.group(1)
