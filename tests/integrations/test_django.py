"""Django: MonitoredCommand in a real project (SQLite), run through call_command and
through manage.py in a subprocess, pinging the local OpShift server."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opshift.testing import OpShiftServer

from ..helpers import ROOT, SECRET, bodies

pytest.importorskip("django")

import django
from django.core.management import CommandError, call_command
from django.test.utils import override_settings

PROJECT = Path(__file__).resolve().parent / "django_project"
PING = "/api/ping/nightly-import"


@pytest.fixture(scope="module", autouse=True)
def project() -> Iterator[None]:
    """The test project's settings, set up once (Django's are per process), its tables made."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(PROJECT))
        patch.setenv("DJANGO_SETTINGS_MODULE", "opshift_django_proj.settings")
        django.setup()
        call_command("migrate", run_syncdb=True, verbosity=0)
        yield


@pytest.fixture
def server() -> Iterator[OpShiftServer]:
    """A local OpShift that records every request; settings.OPSHIFT points at it."""
    with (
        OpShiftServer(SECRET, auto_create=True) as running,
        override_settings(OPSHIFT={"secret": SECRET, "base_url": running.url, "max_retries": 0}),
    ):
        yield running


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return str(out.getvalue())


def test_a_command_that_returns_pings_up_with_its_duration(server: OpShiftServer) -> None:
    """call_command: the command runs (rows written) and one up carries its duration."""
    assert "imported" in _run("nightly_import", "--rows", "5")
    (body,) = bodies(server, PING)
    assert body["status"] == "up" and server.requests[0].signature_valid
    metadata = body["metadata"]
    assert metadata["task"] == "nightly_import" and metadata["attempts"] == 1
    assert metadata["durationMs"] >= 0 and metadata["host"]


@pytest.mark.parametrize(
    ("flag", "error", "reason"),
    [
        pytest.param("--fail", CommandError, "CommandError: the feed is empty", id="command-error"),
        pytest.param(
            "--crash", ZeroDivisionError, "ZeroDivisionError: division by zero in row 7", id="crash"
        ),
    ],
)
def test_a_command_that_raises_pings_down_and_re_raises(
    server: OpShiftServer, flag: str, error: type[BaseException], reason: str
) -> None:
    """CommandError or any exception: down with monitor()'s reason and traceback, re-raised."""
    with pytest.raises(error):
        _run("nightly_import", flag)
    (body,) = bodies(server, PING)
    assert body["status"] == "down" and body["reason"] == reason
    assert body["metadata"]["traceback"].endswith(reason)


def test_system_exit_zero_is_a_success_and_non_zero_a_failure(server: OpShiftServer) -> None:
    """sys.exit(0) in handle() is an up; sys.exit(3) a down; both go on as SystemExit."""
    for code in (0, 3):
        with pytest.raises(SystemExit):
            _run("nightly_import", "--exit", str(code))
    assert [(b["status"], b.get("reason")) for b in bodies(server, PING)] == [
        ("up", None),
        ("down", "SystemExit: 3"),
    ]


def test_a_failure_raises_the_alert_when_asked(server: OpShiftServer) -> None:
    """opshift_alert_webhook: the down and an alert grouped by command and exception type."""
    with pytest.raises(KeyError):
        _run("alerting_import")
    (alert,) = bodies(server, "/api/alerts/trigger/import-failures")
    assert alert["title"] == "alerting_import failed: KeyError"
    assert alert["group_key"] == "django:alerting_import:KeyError" and alert["severity"] == "sev2"
    assert bodies(server, "/api/ping/alerting-import")[0]["status"] == "down"


def test_no_token_sends_nothing(server: OpShiftServer) -> None:
    """A MonitoredCommand without opshift_token is a plain command."""
    assert _run("unmonitored") == "hello\n"
    assert server.requests == []


def test_a_disabled_client_sends_nothing(
    server: OpShiftServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OPSHIFT_DISABLED (read as OpShift() reads it): the command runs, nothing is sent."""
    monkeypatch.setenv("OPSHIFT_DISABLED", "1")
    with override_settings(OPSHIFT={"base_url": server.url}):  # no secret: disabled needs none
        assert "imported" in _run("nightly_import")
        with pytest.raises(CommandError):
            _run("nightly_import", "--fail")
    assert server.requests == []


def test_settings_that_make_no_client_leave_the_command_running(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No settings.OPSHIFT and no OPSHIFT_SECRET: a warning, and the command still runs."""
    monkeypatch.delenv("OPSHIFT_SECRET", raising=False)
    monkeypatch.delenv("OPSHIFT_DISABLED", raising=False)
    with override_settings(), caplog.at_level(logging.WARNING, logger="opshift"):
        from django.conf import settings

        if hasattr(settings, "OPSHIFT"):
            del settings.OPSHIFT
        assert "imported" in _run("nightly_import")
    (record,) = caplog.records
    assert "nightly_import command runs unmonitored" in record.getMessage()
    assert "OPSHIFT_SECRET" in record.getMessage()


def _manage(server: OpShiftServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPSHIFT_", "DJANGO_"))},
        "OPSHIFT_SECRET": SECRET,
        "OPSHIFT_BASE_URL": server.url,
        "OPSHIFT_TEST_DB": str(tmp_path / "db.sqlite3"),
        "PYTHONPATH": str(ROOT / "src"),
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_manage_py_in_a_subprocess_pings_from_the_environment(tmp_path: Path) -> None:
    """manage.py in a subprocess, client from the environment: up; --fail: down and exit 1."""
    with OpShiftServer(SECRET, auto_create=True) as server:
        assert _manage(server, tmp_path, "migrate", "--run-syncdb", "-v", "0").returncode == 0
        done = _manage(server, tmp_path, "nightly_import")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "imported 1 batches\n"
        failed = _manage(server, tmp_path, "nightly_import", "--fail")
        assert failed.returncode == 1
        assert "CommandError: the feed is empty" in failed.stderr
        statuses = [b["status"] for b in bodies(server, PING)]
    assert statuses == ["up", "down"]


def test_settings_are_a_dict_of_the_constructors_arguments(server: OpShiftServer) -> None:
    """A bad settings.OPSHIFT key is said on the opshift logger, never raised."""
    with override_settings(OPSHIFT={"secret": SECRET, "nonsense": 1}):
        assert "imported" in _run("nightly_import")
    assert server.requests == []
