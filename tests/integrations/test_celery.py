"""Celery in-process: a real worker on the memory broker, a real scheduler's apply_async,
Celery's own signals; the pinger records what the hooks send."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import pytest

from opshift import ConfigurationError

from ..helpers import Clock
from .rig import ManualTimer, RecordingPinger, wait_for, worker

if TYPE_CHECKING:
    from celery import Celery

pytest.importorskip("celery")

from celery import signals
from celery.beat import Service

from opshift.integrations import celery as opshift_celery


def _get(result: Any) -> Any:
    """The task's result, polled every 10 ms for at most 10 s."""
    return result.get(timeout=10, interval=0.01)


def _beat(app: Celery, tmp: Any) -> Service:
    """A beat service as `celery beat` makes it, announced with Celery's beat_init."""
    service = Service(app, schedule_filename=str(tmp / "beat-schedule"))
    signals.beat_init.send(sender=service)
    return service


def _send_entry(service: Service, name: str) -> None:
    """What beat does when an entry is due: its scheduler instance's apply_async."""
    scheduler = service.scheduler
    scheduler.apply_async(scheduler.schedule[name])


def test_a_success_pings_up_with_its_metadata(app: Celery, pinger: RecordingPinger) -> None:
    """tasks='all': a monitored task's run sends one up with durationMs, attempts, ids."""
    opshift_celery.instrument(app, pinger, monitors={"jobs.*": "jobs"}, tasks="all")

    @app.task(name="jobs.add")
    def add(a: int, b: int) -> int:
        return a + b

    with worker(app):
        result = add.delay(2, 3)
        assert _get(result) == 5
    (ping,) = pinger.pings("jobs")
    assert ping["status"] == "up"
    assert ping["metadata"]["task"] == "jobs.add" and ping["metadata"]["task_id"] == result.id
    assert ping["metadata"]["attempts"] == 1 and ping["metadata"]["durationMs"] >= 0


def test_a_failure_pings_down_and_alerts(app: Celery, pinger: RecordingPinger) -> None:
    """A final failure: down with monitor()'s reason and traceback, plus the alert."""
    opshift_celery.instrument(
        app, pinger, monitors={"jobs.fail": "jobs"}, tasks="all", alert_webhook="failures"
    )

    @app.task(name="jobs.fail")
    def fail() -> None:
        raise KeyError("invoice 7")

    with worker(app), pytest.raises(KeyError):
        _get(fail.delay())
    (ping,) = pinger.pings("jobs")
    assert ping["status"] == "down" and ping["reason"] == "KeyError: 'invoice 7'"
    assert "raise KeyError" in ping["metadata"]["traceback"]
    alert = pinger.sent[-1]
    assert alert.kind == "alert" and alert.fields["group_key"] == "celery:jobs.fail:KeyError"


def test_retries_then_success_send_one_up_with_attempts(
    app: Celery, pinger: RecordingPinger
) -> None:
    """Fails twice, then succeeds: one up with attempts 3, no down."""
    opshift_celery.instrument(app, pinger, monitors={"jobs.flaky": "flaky"}, tasks="all")

    @app.task(name="jobs.flaky", bind=True, max_retries=3)
    def flaky(self: Any) -> str:
        if self.request.retries < 2:
            raise self.retry(exc=OSError("network"), countdown=0)
        return "ok"

    with worker(app):
        assert _get(flaky.delay()) == "ok"
    assert [(p["status"], p["metadata"]["attempts"]) for p in pinger.pings("flaky")] == [("up", 3)]


def test_exhausted_retries_send_one_down(app: Celery, pinger: RecordingPinger) -> None:
    """A task that exhausts its retries: one down, attempts counted, nothing per retry."""
    opshift_celery.instrument(app, pinger, monitors={"jobs.broken": "broken"}, tasks="all")

    @app.task(name="jobs.broken", bind=True, max_retries=2)
    def broken(self: Any) -> None:
        raise self.retry(exc=OSError("network down"), countdown=0)

    with worker(app), pytest.raises(OSError):
        _get(broken.delay())
    (ping,) = pinger.pings("broken")
    assert ping["status"] == "down" and ping["reason"] == "OSError: network down"
    assert ping["metadata"]["attempts"] == 3


def test_beat_mode_pings_only_runs_beat_started(
    app: Celery, pinger: RecordingPinger, tmp_path: Any
) -> None:
    """tasks='beat': the entry's name, stamped at dispatch, picks the token; .delay() is silent."""
    app.conf.beat_schedule = {
        "nightly-report": {"task": "jobs.report", "schedule": 3600.0},
        "cleanup-tmp": {"task": "jobs.report", "schedule": 3600.0},
    }
    opshift_celery.instrument(
        app, pinger, monitors={"nightly-report": "nightly", "cleanup-*": None}
    )
    ran = threading.Semaphore(0)

    @app.task(name="jobs.report")
    def report() -> None:
        ran.release()

    service = _beat(app, tmp_path)
    with worker(app):
        _get(report.delay())
        _send_entry(service, "cleanup-tmp")
        _send_entry(service, "nightly-report")
        assert ran.acquire(timeout=10) and ran.acquire(timeout=10) and ran.acquire(timeout=10)
        wait_for(lambda: pinger.pings("nightly"))
    assert [s.target for s in pinger.sent] == ["nightly"]
    assert pinger.pings("nightly")[0]["metadata"]["task"] == "jobs.report"
    service.scheduler.close()


def test_a_tasks_own_opshift_monitor_wins(app: Celery, pinger: RecordingPinger) -> None:
    """opshift_monitor='token' beats monitors; opshift_monitor=False opts a task out."""
    opshift_celery.instrument(app, pinger, monitors={"jobs.*": "everything"}, tasks="all")

    @app.task(name="jobs.sync", opshift_monitor="invoice-sync")
    def sync() -> None:
        pass

    @app.task(name="jobs.quiet", opshift_monitor=False)
    def quiet() -> None:
        pass

    with worker(app):
        _get(sync.delay())
        _get(quiet.delay())
    assert [s.target for s in pinger.sent] == ["invoice-sync"]


def test_max_runtime_sends_one_down_while_the_run_goes_on(
    app: Celery, pinger: RecordingPinger, clock: Clock, timer: ManualTimer
) -> None:
    """A run past max_runtime: one down at once, then its own outcome when it ends."""
    opshift_celery.instrument(
        app, pinger, monitors={"jobs.slow": "slow"}, tasks="all", max_runtime=30,
        clock=clock, timer=timer,
    )  # fmt: skip
    started, release = threading.Event(), threading.Event()

    @app.task(name="jobs.slow")
    def slow() -> None:
        started.set()
        assert release.wait(10)

    with worker(app):
        result = slow.delay()
        assert started.wait(10)
        clock.advance(30)
        assert timer.run_due() == 1
        assert pinger.pings("slow") == [
            {
                "status": "down",
                "reason": "still running after 30 s",
                "metadata": pinger.pings("slow")[0]["metadata"],
            }
        ]
        release.set()
        _get(result)
    assert [p["status"] for p in pinger.pings("slow")] == ["down", "up"]


def test_quick_runs_are_coalesced_under_the_ping_limit(
    app: Celery, pinger: RecordingPinger, clock: Clock, timer: ManualTimer
) -> None:
    """Five runs in a burst: one up now, one up with runs=4 once 7.5 s have passed."""
    opshift_celery.instrument(
        app, pinger, monitors={"jobs.tick": "tick"}, tasks="all", clock=clock, timer=timer
    )

    @app.task(name="jobs.tick")
    def tick() -> None:
        pass

    with worker(app):
        for _ in range(5):
            _get(tick.delay())
    assert len(pinger.pings("tick")) == 1
    clock.advance(7.5)
    timer.run_due()
    assert pinger.pings("tick")[1]["metadata"]["runs"] == 4


def test_a_failing_pinger_never_breaks_the_task(
    app: Celery, pinger: RecordingPinger, caplog: pytest.LogCaptureFixture
) -> None:
    """The ping raises: the task's result stands and the failure is logged on opshift."""
    opshift_celery.instrument(app, pinger, monitors={"jobs.*": "jobs"}, tasks="all")
    pinger.fail_with = RuntimeError("no room")

    @app.task(name="jobs.fine")
    def fine() -> str:
        return "fine"

    with caplog.at_level(logging.WARNING, logger="opshift"), worker(app):
        assert _get(fine.delay()) == "fine"
    assert any("no room" in r.getMessage() for r in caplog.records if r.name == "opshift")


def test_instrumenting_twice_is_an_error_and_uninstrument_removes_every_hook(
    app: Celery, pinger: RecordingPinger, tmp_path: Any
) -> None:
    """A second instrument() raises; uninstrument() disconnects and unwraps beat."""
    app.conf.beat_schedule = {"nightly": {"task": "jobs.n", "schedule": 60.0}}
    handle = opshift_celery.instrument(app, pinger, monitors={"nightly": "n"}, tasks="all")
    with pytest.raises(ConfigurationError, match="already instrumented"):
        opshift_celery.instrument(app, pinger)
    service = _beat(app, tmp_path)
    assert "apply_async" in vars(service.scheduler)
    handle.uninstrument()
    assert "apply_async" not in vars(service.scheduler)
    assert opshift_celery.instrumentation(app) is None

    @app.task(name="jobs.n")
    def n() -> None:
        pass

    with worker(app):
        _get(n.delay())
    assert pinger.sent == []
    opshift_celery.instrument(app, pinger)  # allowed again once uninstrumented
    service.scheduler.close()


def test_shared_tokens_are_a_warning_naming_both(
    app: Celery, pinger: RecordingPinger, caplog: pytest.LogCaptureFixture
) -> None:
    """Two beat entries on one token: one warning at instrument time naming both."""
    app.conf.beat_schedule = {
        "report-a": {"task": "jobs.a", "schedule": 60.0},
        "report-b": {"task": "jobs.b", "schedule": 60.0},
    }
    with caplog.at_level(logging.WARNING, logger="opshift"):
        opshift_celery.instrument(app, pinger, monitors={"report-*": "reports"})
    (line,) = [r.getMessage() for r in caplog.records if r.name == "opshift"]
    assert "'report-a'" in line and "'report-b'" in line and "'reports'" in line


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"tasks": "some"}, "tasks must be", id="tasks"),
        pytest.param({"max_runtime": -1}, "max_runtime", id="max-runtime"),
        pytest.param({"alert_webhook": ""}, "alert_webhook", id="webhook"),
    ],
)
def test_bad_options_fail_at_instrument(app: Celery, options: dict[str, Any], message: str) -> None:
    """A bad option is a ConfigurationError at instrument time, not at the first run."""
    with pytest.raises(ConfigurationError, match=message):
        opshift_celery.instrument(app, RecordingPinger(), **options)


def test_alerts_need_a_pinger_that_alerts(app: Celery) -> None:
    """alert_webhook with a ping-only pinger is refused at once."""

    class PingOnly:
        def ping(self, ping_token: str, **fields: Any) -> None:
            pass

    with pytest.raises(ConfigurationError, match="alert"):
        opshift_celery.instrument(app, PingOnly(), alert_webhook="hooks")
