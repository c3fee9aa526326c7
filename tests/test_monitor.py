"""client.monitor(): up and down pings over real HTTP, and the job's outcome always wins."""

from __future__ import annotations

import asyncio
import datetime
import logging
import traceback
from typing import Any

import pytest

from opshift import BadRequestError, OpShift
from opshift.monitor import failure_reason
from opshift.testing import FakeTransport, OpShiftServer

from .helpers import SECRET, refused_url


class JobFailed(Exception):
    pass


def _last(server: OpShiftServer) -> dict[str, Any]:
    body = server.requests[-1].json
    assert isinstance(body, dict)
    assert server.requests[-1].signature_valid
    return body


def test_success_pings_up_with_duration(server: OpShiftServer) -> None:
    """A block that ends normally pings up with metadata, group_key and durationMs."""
    client = OpShift(SECRET, base_url=server.url)
    with client.monitor("payments-worker", metadata={"batch": 7}, group_key="payments"):
        pass
    body = _last(server)
    assert body["status"] == "up"
    assert "reason" not in body
    assert body["group_key"] == "payments"
    assert body["metadata"]["batch"] == 7
    assert isinstance(body["metadata"]["durationMs"], int)
    assert body["metadata"]["durationMs"] >= 0


def test_exception_pings_down_and_propagates_unchanged(server: OpShiftServer) -> None:
    """The job's exception object and traceback reach the caller untouched."""
    client = OpShift(SECRET, base_url=server.url)
    original = JobFailed("card processor unreachable")

    def job() -> None:
        with client.monitor("payments-worker"):
            raise original

    with pytest.raises(JobFailed) as caught:
        job()
    assert caught.value is original
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert frames[-1].name == "job"
    assert frames[-1].line == "raise original"
    body = _last(server)
    assert body["status"] == "down"
    assert body["reason"] == "JobFailed: card processor unreachable"
    assert server.monitors["payments-worker"].status == "down"


def test_decorator_reports_each_call_and_returns_the_value(server: OpShiftServer) -> None:
    """As a decorator, each call pings its own outcome and the function keeps its name and value."""
    client = OpShift(SECRET, base_url=server.url)

    @client.monitor("payments-worker")
    def add(a: int, b: int) -> int:
        """Adds."""
        if a < 0:
            raise ValueError("negative")
        return a + b

    assert add(2, 3) == 5
    with pytest.raises(ValueError, match="negative"):
        add(-1, 3)
    assert add.__name__ == "add"
    assert add.__doc__ == "Adds."
    statuses = [r.json["status"] for r in server.requests]
    assert statuses == ["up", "down"]
    assert server.requests[1].json["reason"] == "ValueError: negative"


def test_async_decorator_and_async_with(server: OpShiftServer) -> None:
    """Async functions and `async with` are monitored like sync ones."""
    client = OpShift(SECRET, base_url=server.url)

    @client.monitor("payments-worker")
    async def job(fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise JobFailed("async boom")
        return "done"

    async def main() -> str:
        assert await job(False) == "done"
        with pytest.raises(JobFailed):
            await job(True)
        async with client.monitor("payments-worker"):
            pass
        return "ok"

    assert asyncio.run(main()) == "ok"
    statuses = [r.json["status"] for r in server.requests]
    assert statuses == ["up", "down", "up"]


def test_long_message_is_cut_to_200_characters(server: OpShiftServer) -> None:
    """A huge exception message must not turn the down ping into a 400."""
    client = OpShift(SECRET, base_url=server.url)
    with pytest.raises(JobFailed), client.monitor("payments-worker"):
        raise JobFailed("x" * 5000)
    reason = _last(server)["reason"]
    assert len(reason) == 200
    assert reason.startswith("JobFailed: xxx")
    assert reason.endswith("\u2026")
    assert server.requests[-1].status == 200


def test_failing_ping_does_not_mask_the_jobs_outcome(caplog: pytest.LogCaptureFixture) -> None:
    """OpShift unreachable: the job's exception (or value) is what the caller sees; logged."""
    client = OpShift(SECRET, base_url=refused_url(), max_retries=0)
    with pytest.raises(JobFailed, match="real problem"), client.monitor("payments-worker"):
        raise JobFailed("real problem")

    @client.monitor("payments-worker")
    def job() -> int:
        return 42

    assert job() == 42
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "Could not report 'payments-worker' as down" in warnings[0].getMessage()
    assert "refused" in warnings[0].getMessage()
    assert "as up" in warnings[1].getMessage()


def test_keyboard_interrupt_counts_as_down_and_propagates(server: OpShiftServer) -> None:
    """Ctrl-C during the job pings down and still interrupts."""
    client = OpShift(SECRET, base_url=server.url)
    with pytest.raises(KeyboardInterrupt), client.monitor("payments-worker"):
        raise KeyboardInterrupt
    assert _last(server)["status"] == "down"
    assert _last(server)["reason"] == "KeyboardInterrupt"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        pytest.param(3, "down", id="exit-3"),
        pytest.param("fatal", "down", id="exit-message"),
        pytest.param(0, "up", id="exit-0"),
        pytest.param(None, "up", id="exit-none"),
    ],
)
def test_system_exit(server: OpShiftServer, code: object, status: str) -> None:
    """sys.exit(nonzero) is down; sys.exit() / sys.exit(0) is a clean, successful end."""
    client = OpShift(SECRET, base_url=server.url)
    with pytest.raises(SystemExit), client.monitor("payments-worker"):
        raise SystemExit(code)
    assert _last(server)["status"] == status


def test_invalid_metadata_fails_at_setup_not_at_the_end() -> None:
    """Bad metadata, group_key or token raise when the monitor is made."""
    client = OpShift(SECRET, base_url=refused_url())
    with pytest.raises(BadRequestError, match="metadata must be a JSON object"):
        client.monitor("payments-worker", metadata=[1])  # type: ignore[arg-type]
    with pytest.raises(BadRequestError, match="group_key must be at most 200"):
        client.monitor("payments-worker", group_key="g" * 201)
    with pytest.raises(BadRequestError, match="ping_token"):
        client.monitor("")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(ValueError("bad"), "ValueError: bad", id="message"),
        pytest.param(RuntimeError(), "RuntimeError", id="no-message"),
        pytest.param(
            OSError(28, "No space left on device"),
            "OSError: [Errno 28] No space left on device",
            id="oserror",
        ),
    ],
)
def test_failure_reason(exc: BaseException, expected: str) -> None:
    """The reason is the exception's type and message, or its type alone."""
    assert failure_reason(exc) == expected


class UnprintableError(Exception):
    """An exception whose __str__ itself raises, as some library exceptions do."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def test_job_exception_with_a_broken_str_still_propagates_unchanged(
    server: OpShiftServer,
) -> None:
    """Reporting a job's exception never replaces it, even when formatting it fails."""
    client = OpShift(SECRET, base_url=server.url)
    original = UnprintableError()
    with pytest.raises(UnprintableError) as caught, client.monitor("payments-worker"):
        raise original
    assert caught.value is original
    body = _last(server)
    assert body["status"] == "down"
    assert body["reason"] == "UnprintableError"


@pytest.mark.parametrize(
    ("metadata", "text"),
    [
        pytest.param(
            {"when": datetime.datetime(2026, 1, 1)}, "metadata.when is a datetime", id="datetime"
        ),
        pytest.param({"blob": "x" * 200_000}, "metadata must be at most 102400 bytes", id="200KB"),
        pytest.param({"ratio": float("nan")}, "metadata.ratio is nan", id="nan"),
    ],
)
def test_metadata_a_send_would_reject_fails_at_creation(
    metadata: dict[str, Any], text: str
) -> None:
    """The same rules as a send apply when the monitor is made, not at the job's end."""
    client = OpShift(SECRET, transport=FakeTransport(SECRET))
    with pytest.raises(BadRequestError) as caught:
        client.monitor("payments-worker", metadata=metadata)
    assert text in str(caught.value)


def test_down_ping_carries_the_traceback_tail(server: OpShiftServer) -> None:
    """A failed job's down ping holds the traceback's last 20 lines, at most 2,000 characters."""
    client = OpShift(SECRET, base_url=server.url)

    def ping_pong(n: int) -> None:  # alternating frames: the traceback never folds them
        if n == 0:
            raise JobFailed("card processor unreachable")
        pong_ping(n - 1)

    def pong_ping(n: int) -> None:
        ping_pong(n - 1)

    with pytest.raises(JobFailed), client.monitor("payments-worker", metadata={"batch": 7}):
        ping_pong(30)
    body = _last(server)
    tail = body["metadata"]["traceback"]
    lines = tail.splitlines()
    assert len(lines) == 20
    assert len(tail) <= 2000
    assert lines[-1].endswith("JobFailed: card processor unreachable")
    assert "in ping_pong" in tail
    assert body["metadata"]["batch"] == 7
    assert isinstance(body["metadata"]["durationMs"], int)


def test_traceback_is_cut_to_2000_characters(server: OpShiftServer) -> None:
    """A long exception message keeps the traceback tail within 2,000 characters."""
    client = OpShift(SECRET, base_url=server.url)
    with pytest.raises(JobFailed), client.monitor("payments-worker"):
        raise JobFailed("y" * 5000)
    tail = _last(server)["metadata"]["traceback"]
    assert len(tail) == 2000
    assert tail.endswith("y" * 100)


def test_success_carries_no_traceback(server: OpShiftServer) -> None:
    """An up ping has durationMs and no traceback."""
    client = OpShift(SECRET, base_url=server.url)
    with client.monitor("payments-worker"):
        pass
    assert "traceback" not in _last(server)["metadata"]


def test_down_ping_drops_the_traceback_when_metadata_is_near_the_limit(
    server: OpShiftServer,
) -> None:
    """Metadata close to 100 KB: the down ping still goes out, without its traceback."""
    client = OpShift(SECRET, base_url=server.url)
    big = {"blob": "x" * 102_300}
    with pytest.raises(JobFailed), client.monitor("payments-worker", metadata=big):
        raise JobFailed("boom")
    body = _last(server)
    assert body["status"] == "down"
    assert "traceback" not in body["metadata"]
    assert server.requests[-1].status == 200


def test_with_options_bounds_a_monitor_that_must_not_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """client.with_options(timeout=...) makes the job's report give up quickly; the job stands."""
    client = OpShift(SECRET, base_url=refused_url())
    fast = client.with_options(timeout=3, max_retries=0)

    @fast.monitor("nightly-backup")
    def backup() -> str:
        return "done"

    assert backup() == "done"
    assert client.timeout == 30.0
    assert "Could not report 'nightly-backup' as up" in caplog.text
