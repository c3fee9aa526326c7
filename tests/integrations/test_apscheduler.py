"""APScheduler: a real BackgroundScheduler (and a BlockingScheduler) running real jobs; the
listener's pings recorded. Every wait is on a scheduler event, with a deadline."""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

from opshift import ConfigurationError, OpShift
from opshift.testing import FakeTransport

from ..helpers import SECRET, Clock
from .rig import ManualTimer, RecordingPinger

pytest.importorskip("apscheduler")

from apscheduler import events  # type: ignore[import-untyped]
from apscheduler.schedulers.background import (  # type: ignore[import-untyped]
    BackgroundScheduler,
)
from apscheduler.schedulers.blocking import BlockingScheduler  # type: ignore[import-untyped]

from opshift.integrations import apscheduler as opshift_aps

DEADLINE = 10.0
UTC = timezone.utc


class Seen:
    """A listener added after the instrumentation's, so by the time it has seen an event,
    the instrumentation has handled it: ``wait(code, n)`` waits for the n-th such event."""

    def __init__(self, scheduler: Any) -> None:
        self.codes: list[int] = []
        self.changed = threading.Condition()
        scheduler.add_listener(self)

    def __call__(self, event: Any) -> None:
        with self.changed:
            self.codes.append(event.code)
            self.changed.notify_all()

    def wait(self, code: int, count: int = 1) -> None:
        """Return once ``count`` events of ``code`` were seen; fail after the deadline."""
        with self.changed:
            if not self.changed.wait_for(lambda: self.codes.count(code) >= count, DEADLINE):
                raise AssertionError(f"event {code} not seen {count} times: {self.codes}")


@pytest.fixture
def scheduler() -> Iterator[Any]:
    """A BackgroundScheduler in UTC; shut down and uninstrumented after the test."""
    made = BackgroundScheduler(timezone="UTC")
    yield made
    if made.running:
        made.shutdown(wait=True)
    handle = opshift_aps.instrumentation(made)
    if handle is not None:
        handle.uninstrument()


def _now() -> datetime:
    return datetime.now(UTC)


def _boom() -> None:
    raise ValueError("disk full")


def test_a_run_pings_up_with_duration_and_scheduled_time(
    scheduler: Any, pinger: RecordingPinger
) -> None:
    """An executed job sends one up: durationMs, attempts 1, the job id, its scheduled time."""
    opshift_aps.instrument(scheduler, pinger, monitors={"nightly-*": "nightly"})
    seen = Seen(scheduler)
    when = _now()
    scheduler.add_job(lambda: 42, "date", run_date=when, id="nightly-report")
    scheduler.start()
    seen.wait(events.EVENT_JOB_EXECUTED)
    (ping,) = pinger.pings("nightly")
    assert ping["status"] == "up"
    metadata = ping["metadata"]
    assert metadata["task"] == "nightly-report" and metadata["attempts"] == 1
    assert metadata["scheduled"] == when.isoformat() and metadata["durationMs"] >= 0


def test_an_error_pings_down_with_the_exception_line_added_to_the_frames(
    scheduler: Any, pinger: RecordingPinger
) -> None:
    """A job that raises: down with monitor()'s reason; the tail ends with the exception."""
    opshift_aps.instrument(scheduler, pinger, monitors={"import": "imp"}, alert_webhook="jobs")
    seen = Seen(scheduler)
    scheduler.add_job(_boom, "date", run_date=_now(), id="import")
    scheduler.start()
    seen.wait(events.EVENT_JOB_ERROR)
    (ping,) = pinger.pings("imp")
    assert ping["status"] == "down" and ping["reason"] == "ValueError: disk full"
    tail = ping["metadata"]["traceback"]
    assert tail.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("disk full")' in tail and tail.endswith("ValueError: disk full")
    alert = pinger.sent[-1]
    assert alert.kind == "alert" and alert.fields["title"] == "import failed: ValueError"
    assert alert.fields["group_key"] == "apscheduler:import:ValueError"


def test_dashboard_urls_as_tokens_go_to_their_ids_and_a_path_is_refused_at_once(
    scheduler: Any,
) -> None:
    """monitors and alert_webhook may be dashboard URLs; a path is refused by instrument()."""
    fake = FakeTransport(SECRET, auto_create=True)
    client = OpShift(SECRET, transport=fake)
    for bad in ({"monitors": {"import": "jobs/import"}}, {"alert_webhook": "hooks?id=1"}):
        with pytest.raises(ConfigurationError, match="must be the id alone"):
            opshift_aps.instrument(scheduler, client, **bad)
    opshift_aps.instrument(
        scheduler,
        client,
        monitors={"import": f"{client.base_url}/api/ping/imp"},
        alert_webhook=f"{client.base_url}/api/alerts/trigger/jobs",
    )
    seen = Seen(scheduler)
    scheduler.add_job(_boom, "date", run_date=_now(), id="import")
    scheduler.start()
    seen.wait(events.EVENT_JOB_ERROR)
    assert [r.path for r in fake.requests] == ["/api/ping/imp", "/api/alerts/trigger/jobs"]


def test_a_missed_run_pings_down_at_once(scheduler: Any, pinger: RecordingPinger) -> None:
    """A run later than misfire_grace_time: down 'missed the 02:00 run', no run, no up."""
    opshift_aps.instrument(scheduler, pinger, monitors={"backup": "backup"})
    seen = Seen(scheduler)
    ran: list[int] = []
    past = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    scheduler.add_job(ran.append, "date", args=[1], run_date=past, id="backup")
    scheduler.start()
    seen.wait(events.EVENT_JOB_MISSED)
    assert ran == []
    (ping,) = pinger.pings("backup")
    assert ping["status"] == "down" and ping["reason"] == "missed the 02:00 run"
    assert ping["metadata"]["scheduled"] == past.isoformat()
    assert "durationMs" not in ping["metadata"]


def test_a_run_skipped_for_max_instances_pings_down_at_once(
    scheduler: Any, pinger: RecordingPinger
) -> None:
    """The previous run still going when the next is due: down at once, then its up."""
    opshift_aps.instrument(scheduler, pinger, monitors={"sync": "sync"})
    seen = Seen(scheduler)
    release = threading.Event()
    job = scheduler.add_job(
        release.wait, "interval", hours=1, args=[DEADLINE], next_run_time=_now(), id="sync"
    )
    scheduler.start()
    seen.wait(events.EVENT_JOB_SUBMITTED)
    again = datetime(2026, 1, 5, 2, 30, 15, tzinfo=UTC)
    job.modify(next_run_time=max(again, _now()))  # due now, while the first still runs
    seen.wait(events.EVENT_JOB_MAX_INSTANCES)
    (down,) = pinger.pings("sync")
    assert down["status"] == "down"
    assert down["reason"].startswith("skipped the ")
    assert down["reason"].endswith(" run: previous run still going")
    release.set()
    seen.wait(events.EVENT_JOB_EXECUTED)
    assert [p["status"] for p in pinger.pings("sync")] == ["down", "up"]


def test_the_reason_names_the_run_in_the_triggers_time() -> None:
    """run_label: hours and minutes, seconds only when the run has some."""
    assert opshift_aps.run_label(datetime(2026, 1, 5, 2, 0)) == "02:00"
    assert opshift_aps.run_label(datetime(2026, 1, 5, 2, 30, 15)) == "02:30:15"


def test_duration_counts_from_the_submission(
    scheduler: Any, pinger: RecordingPinger, clock: Clock, timer: ManualTimer
) -> None:
    """durationMs is the injected clock's time between the submission and the end."""
    opshift_aps.instrument(scheduler, pinger, monitors={"slow": "slow"}, clock=clock, timer=timer)
    seen = Seen(scheduler)
    submitted, release = threading.Event(), threading.Event()
    scheduler.add_listener(lambda _: submitted.set(), events.EVENT_JOB_SUBMITTED)

    def slow() -> None:
        release.wait(DEADLINE)
        clock.advance(2.5)

    scheduler.add_job(slow, "date", run_date=_now(), id="slow")
    scheduler.start()
    assert submitted.wait(DEADLINE)
    release.set()
    seen.wait(events.EVENT_JOB_EXECUTED)
    assert pinger.pings("slow")[0]["metadata"]["durationMs"] == 2500


def test_a_run_that_ends_before_its_submission_is_announced(
    pinger: RecordingPinger, clock: Clock, timer: ManualTimer
) -> None:
    """A run ending before its submission is announced counts from its scheduled time."""
    scheduler = BackgroundScheduler(timezone="UTC")
    handle = opshift_aps.instrument(
        scheduler, pinger, monitors={"quick": "quick"}, clock=clock, timer=timer
    )
    for seconds_ago in (3, 1.5):  # the first up goes at once, the second is held
        when = _now() - timedelta(seconds=seconds_ago)
        handle.listen(events.JobExecutionEvent(events.EVENT_JOB_EXECUTED, "quick", "x", when))
        clock.advance(0.001)
        handle.listen(events.JobSubmissionEvent(events.EVENT_JOB_SUBMITTED, "quick", "x", [when]))
    handle.uninstrument()  # sends the held one
    durations = [p["metadata"]["durationMs"] for p in pinger.pings("quick")]
    assert len(durations) == 2
    assert 3000 <= durations[0] < 60_000 and 1500 <= durations[1] < 60_000


def test_durations_count_from_the_submission_for_a_long_run_an_error_and_at_uninstrument(
    pinger: RecordingPinger, clock: Clock, timer: ManualTimer
) -> None:
    """A long late run, a failed run and a flushed held run: durationMs from submission."""
    scheduler = BackgroundScheduler(timezone="UTC")
    handle = opshift_aps.instrument(
        scheduler, pinger, monitors=lambda job_id: job_id, clock=clock, timer=timer
    )
    handle.kept = 2
    late = _now() - timedelta(minutes=10)  # within its misfire grace time
    handle.listen(events.JobSubmissionEvent(events.EVENT_JOB_SUBMITTED, "etl", "x", [late]))
    for _ in range(10):  # a quick job ticks: far more than `kept` submissions
        when = _now()
        handle.listen(events.JobSubmissionEvent(events.EVENT_JOB_SUBMITTED, "tick", "x", [when]))
        clock.advance(0.1)
        handle.listen(events.JobExecutionEvent(events.EVENT_JOB_EXECUTED, "tick", "x", when))
    handle.listen(events.JobSubmissionEvent(events.EVENT_JOB_SUBMITTED, "boom", "x", [late]))
    clock.advance(2)
    handle.listen(events.JobExecutionEvent(events.EVENT_JOB_EXECUTED, "etl", "x", late))
    error = ValueError("disk full")
    failed = events.JobExecutionEvent(
        events.EVENT_JOB_ERROR, "boom", "x", late, exception=error, traceback=""
    )
    handle.listen(failed)
    assert pinger.pings("etl")[0]["metadata"]["durationMs"] == 3000
    assert pinger.pings("boom")[0]["metadata"]["durationMs"] == 2000
    assert [p["metadata"]["durationMs"] for p in pinger.pings("tick")] == [100]  # one held
    handle.kept = 1_000
    handle.uninstrument()  # sends the held tick: the latest one's own duration
    assert pinger.pings("tick")[1]["metadata"] == {
        **pinger.pings("tick")[1]["metadata"],
        "durationMs": 100,
        "runs": 9,
    }


def test_ups_are_spaced_and_counted(
    scheduler: Any, pinger: RecordingPinger, clock: Clock, timer: ManualTimer
) -> None:
    """Three runs in a burst: one up now; the held one, with runs 2, once spacing allows."""
    opshift_aps.instrument(scheduler, pinger, monitors={"tick": "tick"}, clock=clock, timer=timer)
    seen = Seen(scheduler)
    scheduler.start()
    for count in range(1, 4):
        scheduler.add_job(lambda: None, "date", run_date=_now(), id="tick")
        seen.wait(events.EVENT_JOB_EXECUTED, count)
    assert len(pinger.pings("tick")) == 1
    clock.advance(7.5)
    assert timer.run_due() == 1
    assert pinger.pings("tick")[1]["metadata"]["runs"] == 2


def test_a_held_up_carries_the_latest_run_and_keeps_no_return_value(
    scheduler: Any, pinger: RecordingPinger, clock: Clock, timer: ManualTimer
) -> None:
    """A held up carries the latest run's duration and keeps no job's return value alive."""
    opshift_aps.instrument(scheduler, pinger, monitors={"tick": "tick"}, clock=clock, timer=timer)
    seen = Seen(scheduler)
    submitted = threading.Semaphore(0)
    scheduler.add_listener(lambda _: submitted.release(), events.EVENT_JOB_SUBMITTED)
    results: list[weakref.ref[Result]] = []

    def job(seconds: float) -> Result:
        assert submitted.acquire(timeout=DEADLINE)  # its start is noted: durations are exact
        clock.advance(seconds)
        result = Result()
        results.append(weakref.ref(result))
        return result

    scheduler.start()
    for count, seconds in enumerate((1.0, 2.0, 3.0), 1):
        scheduler.add_job(job, "date", run_date=_now(), id="tick", args=[seconds])
        seen.wait(events.EVENT_JOB_EXECUTED, count)
    scheduler.shutdown(wait=True)  # its threads and futures are gone; the up is still held
    gc.collect()
    assert [ref() for ref in results] == [None, None, None]
    clock.advance(7.5)
    assert timer.run_due() == 1
    first, held = pinger.pings("tick")
    assert first["metadata"]["durationMs"] == 1000
    assert held["metadata"]["durationMs"] == 3000 and held["metadata"]["runs"] == 2


class Result:
    """A job's return value (weakly referenced)."""


def test_jobs_not_matched_send_nothing_and_a_callable_maps_ids(
    scheduler: Any, pinger: RecordingPinger
) -> None:
    """Only jobs monitors names are monitored; a callable maps ids; None opts out."""
    opshift_aps.instrument(
        scheduler, pinger, monitors=lambda job_id: f"t-{job_id}" if job_id != "quiet" else None
    )
    seen = Seen(scheduler)
    scheduler.add_job(lambda: None, "date", run_date=_now(), id="loud")
    scheduler.add_job(lambda: None, "date", run_date=_now(), id="quiet")
    scheduler.start()
    seen.wait(events.EVENT_JOB_EXECUTED, 2)
    assert [s.target for s in pinger.sent] == ["t-loud"]


def test_a_failing_pinger_never_breaks_the_scheduler(
    scheduler: Any, pinger: RecordingPinger, caplog: pytest.LogCaptureFixture
) -> None:
    """A pinger that raises: a warning on the opshift logger; the jobs go on running."""
    pinger.fail_with = RuntimeError("outbox closed")
    opshift_aps.instrument(scheduler, pinger, monitors={"*": "all"})
    seen = Seen(scheduler)
    ran: list[str] = []
    with caplog.at_level(logging.WARNING, logger="opshift"):
        scheduler.add_job(ran.append, "date", args=["a"], run_date=_now(), id="a")
        scheduler.add_job(_boom, "date", run_date=_now(), id="b")
        scheduler.start()
        seen.wait(events.EVENT_JOB_EXECUTED)
        seen.wait(events.EVENT_JOB_ERROR)
    assert ran == ["a"]
    assert sum("outbox closed" in r.getMessage() for r in caplog.records) == 2


def test_instrumenting_twice_or_a_non_scheduler_is_a_configuration_error(
    scheduler: Any, pinger: RecordingPinger
) -> None:
    """Twice on one scheduler, a thing with no add_listener, a pinger without alert()."""
    handle = opshift_aps.instrument(scheduler, pinger)
    with pytest.raises(ConfigurationError, match="already instrumented"):
        opshift_aps.instrument(scheduler, pinger)
    with pytest.raises(ConfigurationError, match=r"APScheduler 3\.x scheduler"):
        opshift_aps.instrument(object(), pinger)
    handle.uninstrument()
    with pytest.raises(ConfigurationError, match="alert"):
        opshift_aps.instrument(scheduler, object(), alert_webhook="hooks")  # type: ignore[arg-type]
    assert opshift_aps.instrumentation(scheduler) is None


def test_uninstrument_removes_the_listener(scheduler: Any, pinger: RecordingPinger) -> None:
    """After uninstrument() runs send nothing; instrumenting again works."""
    opshift_aps.instrument(scheduler, pinger, monitors={"*": "all"}).uninstrument()
    seen = Seen(scheduler)
    scheduler.add_job(lambda: None, "date", run_date=_now(), id="a")
    scheduler.start()
    seen.wait(events.EVENT_JOB_EXECUTED)
    assert pinger.sent == []
    assert repr(opshift_aps.instrument(scheduler, pinger)).startswith("Instrumentation(")


class Counting(BackgroundScheduler):  # type: ignore[misc]
    """A BackgroundScheduler that records the listeners added and removed."""

    def __init__(self) -> None:
        super().__init__(timezone="UTC")
        self.added: list[tuple[Any, int]] = []
        self.removed: list[Any] = []

    def add_listener(self, callback: Any, mask: int = events.EVENT_ALL) -> None:
        self.added.append((callback, mask))
        super().add_listener(callback, mask)

    def remove_listener(self, callback: Any) -> None:
        self.removed.append(callback)
        super().remove_listener(callback)


def test_one_listener_for_the_jobs_events_only(pinger: RecordingPinger) -> None:
    """instrument() adds one listener, masked to the job events it reports; uninstrument removes it."""
    scheduler = Counting()
    handle = opshift_aps.instrument(scheduler, pinger, monitors={"*": "all"})
    ((listener, mask),) = scheduler.added
    job_events = (
        events.EVENT_JOB_ADDED
        | events.EVENT_JOB_SUBMITTED
        | events.EVENT_JOB_EXECUTED
        | events.EVENT_JOB_ERROR
        | events.EVENT_JOB_MISSED
        | events.EVENT_JOB_MAX_INSTANCES
    )
    assert mask == job_events
    handle.uninstrument()
    assert scheduler.removed == [listener]


def test_shared_tokens_are_warned_at_instrument_and_when_a_job_is_added(
    scheduler: Any, pinger: RecordingPinger, caplog: pytest.LogCaptureFixture
) -> None:
    """Two jobs on one token: a warning naming both, once, whenever the second appears."""
    scheduler.add_job(lambda: None, "interval", hours=1, id="a-1")
    scheduler.start()
    with caplog.at_level(logging.WARNING, logger="opshift"):
        opshift_aps.instrument(scheduler, pinger, monitors={"a-*": "a"})
        seen = Seen(scheduler)
        assert caplog.records == []
        scheduler.add_job(lambda: None, "interval", hours=1, id="a-2")
        scheduler.add_job(lambda: None, "interval", hours=1, id="b")
        seen.wait(events.EVENT_JOB_ADDED, 2)
    (record,) = caplog.records
    assert "job 'a-1' and job 'a-2'" in record.getMessage()


def _in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_a_blocking_scheduler_reports_from_its_own_thread(pinger: RecordingPinger) -> None:
    """BlockingScheduler.start() blocks its thread; its runs report the same way."""
    scheduler = BlockingScheduler(timezone="UTC")
    handle = opshift_aps.instrument(scheduler, pinger, monitors={"main": "main"})
    seen = Seen(scheduler)
    scheduler.add_job(lambda: None, "date", run_date=_now(), id="main")
    thread = _in_thread(scheduler.start)
    try:
        seen.wait(events.EVENT_JOB_EXECUTED)
    finally:
        seen.wait(events.EVENT_SCHEDULER_STARTED)
        scheduler.shutdown(wait=True)
        thread.join(DEADLINE)
        handle.uninstrument()
    assert not thread.is_alive()
    assert [p["status"] for p in pinger.pings("main")] == ["up"]


def test_starts_are_forgotten_a_generation_at_a_time_and_a_broken_event_only_warns(
    pinger: RecordingPinger, clock: Clock, timer: ManualTimer, caplog: pytest.LogCaptureFixture
) -> None:
    """Past `kept` starts the oldest generation is forgotten; a bad event only warns."""
    scheduler = BackgroundScheduler(timezone="UTC")
    handle = opshift_aps.instrument(
        scheduler, pinger, monitors=lambda job_id: job_id, clock=clock, timer=timer
    )
    handle.kept = 2
    when = _now() - timedelta(seconds=100)
    for number in range(6):  # submitted at 0, 1, ... 5 s
        handle.listen(
            events.JobSubmissionEvent(events.EVENT_JOB_SUBMITTED, f"j-{number}", "x", [when])
        )
        clock.advance(1)
    clock.advance(4)
    for number in range(6):  # all end at 10 s
        handle.listen(events.JobExecutionEvent(events.EVENT_JOB_EXECUTED, f"j-{number}", "x", when))
    durations = [pinger.pings(f"j-{number}")[0]["metadata"]["durationMs"] for number in range(6)]
    assert all(100_000 <= ms < 200_000 for ms in durations[:3])
    assert durations[3:] == [7000, 6000, 5000]
    with caplog.at_level(logging.WARNING, logger="opshift"):
        handle.listen(object())
    assert "Could not report an APScheduler job's run" in caplog.records[-1].getMessage()
    handle.uninstrument()
    handle.uninstrument()  # twice: nothing left to remove
