"""`opshift plan`'s function: each beat entry's token, longest gap, interval and grace,
computed with Celery's own schedules in the app's timezone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from opshift import ConfigurationError

from ..helpers import ROOT, SECRET

pytest.importorskip("celery")

from opshift.integrations import celery as opshift_celery
from opshift.integrations._plan import plan

DOC = ROOT / "docs" / "integrations" / "celery.md"

APP = """
from celery import Celery
from celery.schedules import crontab
from opshift.integrations import celery as opshift_celery
from tests.integrations.rig import RecordingPinger

app = Celery("{name}")
app.conf.timezone = "{timezone}"
app.conf.beat_schedule = {{
    "weekdays": {{"task": "t.report", "schedule": crontab(0, 2, day_of_week="mon-fri")}},
    "often": {{"task": "t.tick", "schedule": 20.0}},
    "daily": {{"task": "t.daily", "schedule": crontab(0, 2)}},
    "daily-copy": {{"task": "t.daily", "schedule": 86400.0}},
}}
{instrument}
"""
INSTRUMENT = (
    'handle = opshift_celery.instrument(app, RecordingPinger(), monitors={"weekdays": "report",'
    ' "often": "tick", "daily*": "daily"})'
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder to write app modules in, as the current directory; modules forgotten after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("OPSHIFT_SECRET", SECRET)
    yield tmp_path
    for path in tmp_path.glob("*.py"):
        module = sys.modules.pop(path.stem, None)
        app = getattr(module, "app", None)
        handle = opshift_celery.instrumentation(app) if app is not None else None
        if handle is not None:
            handle.uninstrument()


def _write(folder: Path, name: str, *, timezone: str = "UTC", instrument: bool = True) -> None:
    code = APP.format(name=name, timezone=timezone, instrument=INSTRUMENT if instrument else "")
    (folder / f"{name}.py").write_text(textwrap.dedent(code), encoding="utf-8")


def test_a_weekday_crontab_needs_a_three_day_interval(project: Path) -> None:
    """crontab(0, 2, day_of_week='mon-fri'): longest gap 3 days, irregular, its token."""
    _write(project, "plan_weekdays")
    text, status = plan("plan_weekdays:app", as_json=True)
    assert status == 0
    entries = {e["name"]: e for e in json.loads(text)["entries"]}
    weekdays = entries["weekdays"]
    assert weekdays["token"] == "report"
    assert weekdays["longest_gap_s"] == 3 * 86400 and weekdays["shortest_gap_s"] == 86400
    assert weekdays["interval_s"] == 3 * 86400 and weekdays["grace_s"] == 3600
    assert any("irregular" in w for w in weekdays["warnings"])


def test_sub_minute_schedules_and_shared_tokens_are_warned(project: Path) -> None:
    """A 20 s schedule is over a minute's share of pings; two entries share 'daily'."""
    _write(project, "plan_warnings")
    document = json.loads(plan("plan_warnings:app", as_json=True)[0])
    often = next(e for e in document["entries"] if e["name"] == "often")
    assert often["interval_s"] == 20 and "more than once a minute" in often["warnings"][0]
    (shared,) = document["warnings"]
    assert "'daily'" in shared and "'daily-copy'" in shared


def test_the_apps_timezone_applies(project: Path) -> None:
    """In Europe/Paris a 02:00 daily run is 25 h apart across the autumn clock change."""
    _write(project, "plan_paris", timezone="Europe/Paris")
    entries = json.loads(plan("plan_paris:app", as_json=True)[0])["entries"]
    daily = next(e for e in entries if e["name"] == "daily")
    assert daily["longest_gap_s"] == 25 * 3600 and daily["shortest_gap_s"] == 23 * 3600


def test_an_app_not_instrumented_monitors_nothing(project: Path) -> None:
    """Without instrument(): every entry 'not monitored', and a note saying why."""
    _write(project, "plan_bare", instrument=False)
    text, status = plan("plan_bare", as_json=False)
    assert status == 0
    assert text.count("token: not monitored") == 4
    assert "warning: the app is not instrumented" in text


@pytest.mark.parametrize(
    ("target", "message"),
    [
        pytest.param("no_such_module_here:app", "cannot import", id="no-module"),
        pytest.param("plan_target:nothing", "has no nothing", id="no-attribute"),
        pytest.param("plan_target:INSTRUMENT", "not a Celery app", id="not-an-app"),
    ],
)
def test_a_bad_target_is_a_configuration_error(project: Path, target: str, message: str) -> None:
    """A target that is not a Celery app raises ConfigurationError (the CLI's exit 2)."""
    (project / "plan_target.py").write_text("INSTRUMENT = 1\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=message):
        plan(target, as_json=False)


def test_the_docs_plan_output_is_what_plan_prints(project: Path) -> None:
    """The Celery page's setup example, planned, prints exactly the page's console block."""
    page = DOC.read_text(encoding="utf-8")
    setup = re.search(r"```python\n(.*?)```", page, re.S)
    shown = re.search(r"```console\n\$ opshift plan proj:app\n(.*?)```", page, re.S)
    assert setup is not None and shown is not None
    (project / "proj.py").write_text(setup.group(1), encoding="utf-8")
    text, _ = plan("proj:app", as_json=False)
    assert text == shown.group(1)


def test_the_cli_prints_the_plan_and_exits_0(project: Path) -> None:
    """`opshift plan proj:app` prints what plan() returns; a target that fails to load is 2."""
    page = DOC.read_text(encoding="utf-8")
    setup = re.search(r"```python\n(.*?)```", page, re.S)
    shown = re.search(r"```console\n\$ opshift plan proj:app\n(.*?)```", page, re.S)
    assert setup is not None and shown is not None
    (project / "proj.py").write_text(setup.group(1), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "opshift", "plan", "proj:app"],
        capture_output=True, text=True, env=env, cwd=project, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown.group(1)
    missing = subprocess.run(
        [sys.executable, "-m", "opshift", "plan", "no_such_module:app"],
        capture_output=True, text=True, env=env, cwd=project, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.startswith("opshift: error:")
