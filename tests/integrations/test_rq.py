"""RQ against a real redis-server: its SimpleWorker and its forking Worker run real jobs in
burst mode; the hooks' pings are recorded (in-process) or reach a local OpShift (forked)."""

from __future__ import annotations

import inspect
import logging
import os
import signal
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from opshift import ConfigurationError, OpShift
from opshift.testing import OpShiftServer

from ..helpers import SECRET, bodies
from .rig import RecordingPinger

pytest.importorskip("rq")

from redis import Redis
from rq import Queue, Retry, SimpleWorker, Worker
from rq.job import Job
from rq.worker import BaseWorker

from opshift.integrations import rq as opshift_rq

from . import rq_jobs

FORK_WARNING = "ignore:.*fork.*:DeprecationWarning"  # 3.12+: fork() with threads running


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    """A connection to the session's redis-server, its database emptied before the test."""
    client = Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def queue(redis: Redis) -> Queue:
    """The default queue on that server."""
    return Queue("default", connection=redis)


def _burst(worker: BaseWorker) -> None:
    worker.work(burst=True, logging_level="ERROR")


def test_a_success_pings_up_with_its_metadata(
    redis: Redis, queue: Queue, pinger: RecordingPinger
) -> None:
    """SimpleWorker: a monitored function's run sends one up with durationMs, ids, queue."""
    worker = SimpleWorker([queue], connection=redis)
    opshift_rq.instrument(worker, pinger, monitors={"tests.integrations.rq_jobs.*": "jobs"})
    job = queue.enqueue(rq_jobs.add, 2, 3)
    _burst(worker)
    assert job.return_value() == 5
    (ping,) = pinger.pings("jobs")
    assert ping["status"] == "up"
    metadata = ping["metadata"]
    assert metadata["task"] == "tests.integrations.rq_jobs.add" and metadata["task_id"] == job.id
    assert metadata["attempts"] == 1 and metadata["durationMs"] >= 0
    assert metadata["queue"] == "default"


def test_a_failure_pings_down_and_alerts(
    redis: Redis, queue: Queue, pinger: RecordingPinger
) -> None:
    """A job that raises: down with monitor()'s reason and traceback, and the alert."""
    worker = SimpleWorker([queue], connection=redis)
    opshift_rq.instrument(
        worker, pinger, monitors={"tests.integrations.rq_jobs.fail": "f"}, alert_webhook="hooks"
    )
    queue.enqueue(rq_jobs.fail)
    _burst(worker)
    (ping,) = pinger.pings("f")
    assert ping["status"] == "down" and ping["reason"] == "KeyError: 'invoice 7'"
    assert 'raise KeyError("invoice 7")' in ping["metadata"]["traceback"]
    alert = pinger.sent[-1]
    assert alert.fields["group_key"] == "rq:tests.integrations.rq_jobs.fail:KeyError"


def test_retries_then_success_send_one_up_with_attempts(
    redis: Redis, queue: Queue, pinger: RecordingPinger
) -> None:
    """Fails twice with Retry(max=3), then succeeds: one up, attempts 3, no down."""
    worker = SimpleWorker([queue], connection=redis)
    opshift_rq.instrument(worker, pinger, monitors={"*flaky": "flaky"})
    queue.enqueue(rq_jobs.flaky, 2, retry=Retry(max=3))
    _burst(worker)
    assert [(p["status"], p["metadata"]["attempts"]) for p in pinger.pings("flaky")] == [("up", 3)]


def test_exhausted_retries_send_one_down(
    redis: Redis, queue: Queue, pinger: RecordingPinger
) -> None:
    """Retry(max=2) and always failing: one down, after the third attempt."""
    worker = SimpleWorker([queue], connection=redis)
    opshift_rq.instrument(worker, pinger, monitors={"*flaky": "flaky"})
    queue.enqueue(rq_jobs.flaky, 10, retry=Retry(max=2))
    _burst(worker)
    (ping,) = pinger.pings("flaky")
    assert ping["status"] == "down" and ping["reason"] == "OSError: network down (attempt 3)"
    assert ping["metadata"]["attempts"] == 3


RETURNS_RETRY = pytest.mark.skipif(
    not hasattr(BaseWorker, "handle_job_retry"), reason="this RQ has no job returning a Retry"
)


@RETURNS_RETRY
def test_a_job_returning_retry_until_none_is_left_sends_one_down(
    redis: Redis, queue: Queue, pinger: RecordingPinger
) -> None:
    """A job that returns Retry(max=2) every time: one down after the third attempt, no up."""
    worker = SimpleWorker([queue], connection=redis)
    opshift_rq.instrument(worker, pinger, monitors={"*asks_again": "again"}, alert_webhook="hooks")
    job = queue.enqueue(rq_jobs.asks_again, 10, 2)
    _burst(worker)
    (ping,) = pinger.pings("again")
    assert ping["status"] == "down" and ping["reason"] == "returned Retry: no retries left (max 2)"
    assert ping["metadata"]["attempts"] == 3 and job.get_status() == "failed"
    group = pinger.sent[-1].fields["group_key"]
    assert group == "rq:tests.integrations.rq_jobs.asks_again:MaxRetriesExceeded"


@RETURNS_RETRY
def test_a_job_returning_retry_then_a_value_sends_one_up_with_attempts(
    redis: Redis, queue: Queue, pinger: RecordingPinger, caplog: pytest.LogCaptureFixture
) -> None:
    """Returns Retry(max=3) twice, then a value: one up, attempts 3; debug says why no down."""
    worker = SimpleWorker([queue], connection=redis)
    opshift_rq.instrument(worker, pinger, monitors={"*asks_again": "again"})
    job = queue.enqueue(rq_jobs.asks_again, 2, 3)
    with caplog.at_level(logging.DEBUG, logger="opshift"):
        _burst(worker)
    assert [(p["status"], p["metadata"]["attempts"]) for p in pinger.pings("again")] == [("up", 3)]
    assert job.return_value() == "ok"
    retried = "returned Retry and will be retried: not a down"
    assert sum(retried in r.getMessage() for r in caplog.records) == 2


def test_monitors_name_job_ids_and_the_jobs_own_callback_still_runs(
    redis: Redis, queue: Queue, pinger: RecordingPinger
) -> None:
    """A job id picks a token; an unmatched job sends nothing; on_success runs as before."""
    from rq import Callback

    worker = SimpleWorker([queue], connection=redis)
    opshift_rq.instrument(worker, pinger, monitors={"nightly": "nightly"})
    queue.enqueue(rq_jobs.add, 1, 1, job_id="nightly", on_success=Callback(_note_success))
    queue.enqueue(rq_jobs.add, 1, 2, job_id="other")
    _burst(worker)
    assert [s.target for s in pinger.sent] == ["nightly"]
    assert redis.get("noted") == b"2"


def _note_success(job: Job, connection: Redis, result: Any) -> None:
    connection.set("noted", result)


def test_ups_are_spaced_across_processes_in_redis(
    redis: Redis, queue: Queue, pinger: RecordingPinger
) -> None:
    """Three runs at once: one up; two counted in Redis ride on the next up after the spacing."""
    worker = SimpleWorker([queue], connection=redis)
    opshift_rq.instrument(worker, pinger, monitors={"*.noop": "tick"})
    for _ in range(3):
        queue.enqueue(rq_jobs.noop)
    _burst(worker)
    assert len(pinger.pings("tick")) == 1
    assert redis.get("opshift:rq:up:tick:held") == b"2"
    redis.delete("opshift:rq:up:tick")
    queue.enqueue(rq_jobs.noop)
    _burst(worker)
    assert pinger.pings("tick")[1]["metadata"]["runs"] == 3


def test_cron_entries_map_to_tokens(redis: Redis, queue: Queue, pinger: RecordingPinger) -> None:
    """instrument_cron stamps each cron entry's name on its jobs; monitors names the entry."""
    from rq.cron import CronScheduler

    cron = CronScheduler(connection=redis, logging_level="ERROR")
    named = "name" in inspect.signature(cron.register).parameters
    entry = "nightly-report" if named else "tests.integrations.rq_jobs.noop"
    if named:
        cron.register(rq_jobs.noop, "default", interval=3600, name=entry)
    else:
        cron.register(rq_jobs.noop, "default", interval=3600)
    assert opshift_rq.instrument_cron(cron) == [entry]
    worker = SimpleWorker([queue], connection=redis)
    monitors = {entry: "report", "*.noop": "function"} if named else {entry: "report"}
    opshift_rq.instrument(worker, pinger, monitors=monitors)
    cron.enqueue_jobs()
    _burst(worker)
    (ping,) = pinger.pings("report")
    assert ping["metadata"]["task"] == "tests.integrations.rq_jobs.noop"


@pytest.fixture
def server() -> Iterator[OpShiftServer]:
    """A local OpShift: a forked work horse's pings cross processes to it."""
    with OpShiftServer(SECRET, auto_create=True) as running:
        yield running


@pytest.mark.filterwarnings(FORK_WARNING)
def test_the_forking_worker_reports_success_failure_and_a_killed_horse(
    redis: Redis, queue: Queue, server: OpShiftServer
) -> None:
    """Forking Worker: up/down from horses; a horse SIGKILLed twice (one retry): one down."""
    worker = Worker([queue], connection=redis)
    client = OpShift(SECRET, base_url=server.url, max_retries=0)
    opshift_rq.instrument(
        worker,
        client,
        monitors={"*.add": "add", "*.fail": "fail", "*.kill_self": "oom"},
    )
    queue.enqueue(rq_jobs.add, 1, 2)
    queue.enqueue(rq_jobs.fail)
    killed = queue.enqueue(rq_jobs.kill_self, retry=Retry(max=1))  # killed twice: one down
    _burst(worker)
    assert [b["status"] for b in bodies(server, "/api/ping/add")] == ["up"]
    assert [b["status"] for b in bodies(server, "/api/ping/fail")] == ["down"]
    (down,) = bodies(server, "/api/ping/oom")
    assert down["status"] == "down" and down["metadata"]["task_id"] == killed.id
    assert down["metadata"]["attempts"] == 2
    assert down["reason"].startswith("work horse killed: signal 9 (SIGKILL), maxrss ")
    assert killed.get_status() == "failed"


@RETURNS_RETRY
@pytest.mark.filterwarnings(FORK_WARNING)
def test_the_forking_worker_reports_a_job_returning_retry_until_none_is_left(
    redis: Redis, queue: Queue, server: OpShiftServer
) -> None:
    """Forking Worker: a job returning Retry(max=1) twice: one down from the last horse."""
    worker = Worker([queue], connection=redis)
    client = OpShift(SECRET, base_url=server.url, max_retries=0)
    opshift_rq.instrument(worker, client, monitors={"*.asks_again": "again"})
    job = queue.enqueue(rq_jobs.asks_again, 10, 1)
    _burst(worker)
    (down,) = bodies(server, "/api/ping/again")
    assert down["status"] == "down" and down["metadata"]["task_id"] == job.id
    assert down["reason"] == "returned Retry: no retries left (max 1)"
    assert down["metadata"]["attempts"] == 2 and job.get_status() == "failed"


def test_killed_reasons() -> None:
    """waitpid statuses as reasons: a signal with the peak memory, an exit code."""
    killed = signal.SIGKILL.value  # a status whose low bits are the signal
    assert opshift_rq.killed_reason(killed, 1_992_294) == (
        "work horse killed: signal 9 (SIGKILL), maxrss 1.9 GB"
    )
    assert opshift_rq.killed_reason(killed, 524_288) == (
        "work horse killed: signal 9 (SIGKILL), maxrss 512 MB"
    )
    assert opshift_rq.killed_reason(3 << 8, 900) == "work horse died: exit code 3, maxrss 900 KB"
    assert opshift_rq.killed_reason(None) == "work horse died: status None"
    assert os.WIFSIGNALED(killed)


def test_instrumenting_twice_is_an_error_and_uninstrument_removes_the_hooks(
    redis: Redis, queue: Queue, pinger: RecordingPinger
) -> None:
    """Twice is a ConfigurationError; uninstrument() restores the worker and sends nothing."""
    worker = SimpleWorker([queue], connection=redis)
    job_class = worker.job_class
    handle = opshift_rq.instrument(worker, pinger, monitors={"*": "all"})
    with pytest.raises(ConfigurationError, match="already instrumented"):
        opshift_rq.instrument(worker, pinger)
    assert worker.job_class is not job_class
    handle.uninstrument()
    assert worker.job_class is job_class and "handle_work_horse_killed" not in vars(worker)
    assert "handle_job_retry" not in vars(worker)
    queue.enqueue(rq_jobs.add, 1, 1)
    queue.enqueue(rq_jobs.fail)
    queue.enqueue(rq_jobs.asks_again, 10, 1)
    _burst(worker)
    assert pinger.sent == [] and opshift_rq.instrumentation(worker) is None
    assert repr(opshift_rq.instrument(worker, pinger)).startswith("Instrumentation(")


def test_a_failing_pinger_never_breaks_a_job(
    redis: Redis, queue: Queue, pinger: RecordingPinger, caplog: pytest.LogCaptureFixture
) -> None:
    """A pinger that raises: warnings on the opshift logger; the job's result stands."""
    pinger.fail_with = RuntimeError("outbox closed")
    worker = SimpleWorker([queue], connection=redis)
    opshift_rq.instrument(worker, pinger, monitors={"*": "all"})
    job = queue.enqueue(rq_jobs.add, 2, 2)
    queue.enqueue(rq_jobs.fail)
    queue.enqueue(rq_jobs.asks_again, 10, 1)
    with caplog.at_level(logging.WARNING, logger="opshift"):
        _burst(worker)
    assert job.return_value() == 4 and job.get_status() == "finished"
    assert sum("outbox closed" in r.getMessage() for r in caplog.records) == 3


def _other_handler(job: Job, *exc_info: Any) -> None:
    job.connection.set("other-handler", job.id)


def test_a_handler_pushed_after_ours_stays_and_ours_goes_inert(
    redis: Redis, queue: Queue, pinger: RecordingPinger
) -> None:
    """A handler pushed after ours survives uninstrument(); ours stays in RQ's stack, inert."""
    worker = SimpleWorker([queue], connection=redis)
    handle = opshift_rq.instrument(worker, pinger, monitors={"*": "all"})
    push: Callable[[Any], None] = worker.push_exc_handler  # RQ leaves it untyped
    push(_other_handler)
    handle.uninstrument()
    job = queue.enqueue(rq_jobs.fail)
    _burst(worker)
    assert pinger.sent == [] and redis.get("other-handler") == job.id.encode()
    handle.work_horse_killed(job, 9, None)  # the hooks RQ would call: inert
    handle.returned_retry(job, Retry(max=1))
    assert pinger.sent == []


def test_a_retried_attempt_is_logged_at_debug(
    redis: Redis, queue: Queue, pinger: RecordingPinger, caplog: pytest.LogCaptureFixture
) -> None:
    """With debug logging on, each retried attempt says why it is not a down."""
    worker = SimpleWorker([queue], connection=redis)
    opshift_rq.instrument(worker, pinger, monitors={"*flaky": "flaky"})
    queue.enqueue(rq_jobs.flaky, 1, retry=Retry(max=1))
    with caplog.at_level(logging.DEBUG, logger="opshift"):
        _burst(worker)
    assert any("will be retried: not a down" in r.getMessage() for r in caplog.records)


def test_a_monitors_callable_that_raises_never_breaks_a_job(
    redis: Redis, queue: Queue, pinger: RecordingPinger, caplog: pytest.LogCaptureFixture
) -> None:
    """A monitors callable that raises: warnings; the jobs' results stand."""

    def broken(name: str) -> str | None:
        raise RuntimeError("no monitors today")

    worker = SimpleWorker([queue], connection=redis)
    handle = opshift_rq.instrument(worker, pinger, monitors=broken)
    done = queue.enqueue(rq_jobs.add, 1, 1)
    queue.enqueue(rq_jobs.fail)
    with caplog.at_level(logging.WARNING, logger="opshift"):
        _burst(worker)
        handle.work_horse_killed(done, 9, None)  # the hook RQ would call
    assert done.return_value() == 2 and pinger.sent == []
    assert sum("no monitors today" in r.getMessage() for r in caplog.records) == 3


def test_an_unknown_signal_is_named_so() -> None:
    """A signal number Python has no name for still reads as a signal."""
    assert opshift_rq.killed_reason(126) == "work horse killed: signal 126 (unknown)"
