"""The framework-neutral core: ping shapes, up spacing, never raising, matching, the timer."""

from __future__ import annotations

import logging
import threading
from typing import Callable

import pytest

from opshift import BadRequestError, ConfigurationError
from opshift.integrations._core import Reporter, Run, failure_of
from opshift.integrations._match import Matcher, shared_token_warnings
from opshift.integrations._timer import ThreadTimer

from ..helpers import Clock
from .rig import ManualTimer, RecordingPinger


def _reporter(**options: object) -> tuple[Reporter, RecordingPinger, Clock, ManualTimer]:
    clock = Clock()
    timer = ManualTimer(clock)
    pinger = RecordingPinger()
    reporter = Reporter(pinger, source="test", clock=clock, timer=timer, **options)  # type: ignore[arg-type]
    return reporter, pinger, clock, timer


def _run(to: str = "nightly", **fields: object) -> Run:
    values: dict[str, object] = {"task_id": "id-1", "host": "h", **fields}
    return Run(token=to, task="jobs.nightly", **values)  # type: ignore[arg-type]


def _failure() -> BaseException:
    try:
        raise ValueError("disk full")
    except ValueError as exc:
        return exc


def test_an_up_carries_duration_attempts_task_id_task_and_host() -> None:
    """A final success sends one up with the run's metadata, in the documented shape."""
    reporter, pinger, _, _ = _reporter()
    reporter.succeeded(_run(attempts=3, duration_ms=12))
    assert pinger.pings("nightly") == [
        {
            "status": "up",
            "metadata": {
                "durationMs": 12,
                "attempts": 3,
                "task_id": "id-1",
                "task": "jobs.nightly",
                "host": "h",
            },
        }
    ]


def test_a_down_carries_monitors_reason_and_the_traceback_tail() -> None:
    """A final failure: down, reason as client.monitor() writes it, traceback's tail."""
    reporter, pinger, _, _ = _reporter()
    reporter.failed(_run(), failure_of(_failure()))
    (ping,) = pinger.pings("nightly")
    assert ping["status"] == "down"
    assert ping["reason"] == "ValueError: disk full"
    assert ping["metadata"]["traceback"].endswith("ValueError: disk full")
    assert ping["metadata"]["attempts"] == 1


def test_a_final_failure_raises_one_grouped_alert_when_asked() -> None:
    """With alert_webhook: an alert titled task + type, grouped per task and type."""
    reporter, pinger, _, _ = _reporter(alert_webhook="task-failures", alert_severity="sev2")
    reporter.failed(_run(), failure_of(_failure()))
    alert = next(s for s in pinger.sent if s.kind == "alert")
    assert alert.target == "task-failures"
    assert alert.fields["title"] == "jobs.nightly failed: ValueError"
    assert alert.fields["group_key"] == "test:jobs.nightly:ValueError"
    assert alert.fields["severity"] == "sev2"
    assert "ValueError: disk full" in alert.fields["description"]


def test_ups_for_one_token_are_spaced_and_the_count_rides_on_the_next() -> None:
    """Runs within 7.5 s are held and counted; one up leaves as soon as spacing allows."""
    reporter, pinger, clock, timer = _reporter()
    reporter.succeeded(_run())
    clock.advance(1)
    reporter.succeeded(_run(task_id="id-2"))
    reporter.succeeded(_run(duration_ms=5))
    assert len(pinger.pings("nightly")) == 1
    clock.advance(6.4)
    assert timer.run_due() == 0  # 7.4 s after the first up: not yet
    clock.advance(0.1)
    assert timer.run_due() == 1
    held = pinger.pings("nightly")[1]
    assert held["metadata"]["runs"] == 2 and held["metadata"]["durationMs"] == 5
    reporter.succeeded(_run(to="other"))  # another token is not held back
    assert len(pinger.pings("other")) == 1


def test_a_run_given_as_its_maker_is_made_only_when_its_up_is_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """succeeded_later: a counted run's maker is never called; the sent up's is, once."""
    reporter, pinger, clock, timer = _reporter()
    made: list[int] = []

    def maker(duration_ms: int) -> Callable[[], Run]:
        def make() -> Run:
            made.append(duration_ms)
            return _run(duration_ms=duration_ms)

        return make

    reporter.succeeded_later("nightly", maker(1))
    reporter.succeeded_later("nightly", maker(2))
    reporter.succeeded_later("nightly", maker(3))
    assert made == [1]
    clock.advance(7.5)
    assert timer.run_due() == 1
    assert made == [1, 3]
    assert pinger.pings("nightly")[1]["metadata"]["durationMs"] == 3

    def broken() -> Run:
        raise RuntimeError("no run")

    with caplog.at_level(logging.WARNING, logger="opshift"):
        reporter.succeeded_later("broken", broken)
    assert "Could not report a run to OpShift as up on 'broken'" in caplog.text
    assert "no run" in caplog.text
    reporter.succeeded_later("broken", lambda: _run(to="broken"))  # counts the failed one
    assert pinger.pings("broken")[0]["metadata"]["runs"] == 2


def test_a_down_is_never_held_and_cancels_a_held_up() -> None:
    """A down goes at once; the held up would land after it, so its count waits instead."""
    reporter, pinger, clock, timer = _reporter()
    reporter.succeeded(_run())
    reporter.succeeded(_run())
    reporter.failed(_run(), failure_of(_failure()))
    assert [p["status"] for p in pinger.pings("nightly")] == ["up", "down"]
    clock.advance(10)
    assert timer.run_due() == 0
    reporter.succeeded(_run())
    assert pinger.pings("nightly")[-1]["metadata"]["runs"] == 2


def test_runs_from_many_threads_are_each_counted_once() -> None:
    """Runs ending on 8 threads at once: every one is counted in exactly one up."""
    reporter, pinger, clock, timer = _reporter()

    def many() -> None:
        for _ in range(500):
            reporter.succeeded(_run())

    threads = [threading.Thread(target=many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    clock.advance(7.5)
    timer.run_due()
    counted = [p["metadata"].get("runs", 1) for p in pinger.pings("nightly")]
    assert len(counted) == 2 and sum(counted) == 4000


class _Gate:
    """A gate that holds the first run it is asked about, then lets one through."""

    def __init__(self) -> None:
        self.answers: list[int | None] = [None, 1]

    def admit(self, token: str) -> int | None:
        return self.answers.pop(0)


def test_a_gate_keeps_the_spacing_elsewhere() -> None:
    """With a Gate: a held run sends nothing here; the next carries it (runs 2)."""
    reporter, pinger, _, timer = _reporter(gate=_Gate())
    reporter.succeeded(_run())
    assert pinger.sent == []
    reporter.succeeded(_run())
    assert pinger.pings("nightly")[0]["metadata"]["runs"] == 2
    assert timer.pending == []


def test_flush_sends_held_ups_now() -> None:
    """flush() (at exit, or uninstrument) sends what is held, spacing or not."""
    reporter, pinger, _, timer = _reporter()
    reporter.succeeded(_run())
    reporter.succeeded(_run())
    reporter.flush()
    assert len(pinger.pings("nightly")) == 2
    assert timer.pending == []


def test_a_failing_pinger_is_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing reaches the job: a ping that raises is a warning on the opshift logger."""
    reporter, pinger, _, _ = _reporter(alert_webhook="hooks")
    pinger.fail_with = RuntimeError("outbox closed")
    with caplog.at_level(logging.WARNING, logger="opshift"):
        reporter.succeeded(_run())
        reporter.failed(_run(), failure_of(_failure()))
        reporter.overrunning(_run(), 30)
    assert [r.name for r in caplog.records] == ["opshift", "opshift", "opshift"]
    assert "outbox closed" in caplog.records[0].getMessage()


def test_a_too_large_traceback_is_dropped_not_the_down() -> None:
    """When the metadata is refused for size, the down goes without its traceback."""
    reporter, pinger, _, _ = _reporter()
    real_ping = pinger.ping

    def picky(token: str, **fields: object) -> int:
        if "traceback" in (fields.get("metadata") or {}):  # type: ignore[operator]
            raise BadRequestError("metadata is over 100 KB")
        return real_ping(token, **fields)  # type: ignore[arg-type]

    pinger.ping = picky  # type: ignore[method-assign,assignment]
    reporter.failed(_run(), failure_of(_failure()))
    (ping,) = pinger.pings("nightly")
    assert ping["reason"] == "ValueError: disk full" and "traceback" not in ping["metadata"]


def test_overrunning_sends_one_down_with_the_limit() -> None:
    """max_runtime's report: a down saying how long the run has been going."""
    reporter, pinger, _, _ = _reporter()
    reporter.overrunning(_run(), 90)
    assert pinger.pings("nightly")[0]["reason"] == "still running after 90 s"


@pytest.mark.parametrize(
    ("name", "token"),
    [
        pytest.param("cleanup-tmp", "exact", id="exact-over-glob"),
        pytest.param("cleanup-logs", "first", id="first-glob-wins"),
        pytest.param("cleanup-x", "first", id="first-glob-wins-again"),
        pytest.param("report-daily", None, id="glob-opt-out"),
        pytest.param("unknown", None, id="no-match-not-monitored"),
    ],
)
def test_monitors_matching(name: str, token: str | None) -> None:
    """Exact keys beat globs; the first matching glob beats later ones; None opts out."""
    matcher = Matcher(
        {"cleanup-*": "first", "cleanup-l*": "second", "cleanup-tmp": "exact", "report-*": None}
    )
    assert matcher.token(name) == token


def test_monitors_may_be_a_callable_and_names_fall_back_in_order() -> None:
    """A callable maps names; the first name it answers for decides."""
    matcher = Matcher(lambda name: "t-" + name if name.startswith("tasks.") else None)
    assert matcher.token("entry", "tasks.a") == "t-tasks.a"
    assert matcher.token("entry") is None
    assert Matcher({"e": None, "tasks.*": "x"}).token("e", "tasks.a") is None


def test_monitors_with_a_bad_token_fail_at_setup() -> None:
    """A token OpShift would refuse is a ConfigurationError at instrument time."""
    with pytest.raises(ConfigurationError, match="monitors"):
        Matcher({"a": ""})
    with pytest.raises(ConfigurationError):
        Matcher(["a"])  # type: ignore[arg-type]


def test_shared_tokens_are_named() -> None:
    """Two owners of one token: a warning naming both; one owner twice is no warning."""
    lines = shared_token_warnings([("entry 'a'", "t"), ("entry 'b'", "t"), ("entry 'a'", "t")])
    assert len(lines) == 1 and "entry 'a' and entry 'b'" in lines[0]
    assert shared_token_warnings([("a", "t"), ("b", None), ("c", None)]) == []


def test_the_thread_timer_calls_back_and_cancels() -> None:
    """ThreadTimer runs due callbacks on its thread, in order; a cancelled one never runs."""
    timer = ThreadTimer()
    done = threading.Event()
    ran: list[str] = []
    timer.schedule(0.05, lambda: ran.append("cancelled")).cancel()
    timer.schedule(0.01, lambda: ran.append("first"))

    def last() -> None:
        ran.append("last")
        done.set()

    timer.schedule(0.06, last)
    assert done.wait(5)
    assert ran == ["first", "last"]
