"""Delivery passes: outages and recovery, backoff per destination, final answers, expiry."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from opshift import (
    KeepAliveTransport,
    OpShift,
)
from opshift.outbox import Outbox
from opshift.testing import FakeTransport, OpShiftServer

from ..helpers import SECRET, Clock, bodies, one_pass, quiet_outbox, sender_pass


def test_outage_then_recovery_delivers_everything_in_order(
    caplog: pytest.LogCaptureFixture, spool: Path | None
) -> None:
    """OpShift down: items wait and are retried; back up: all arrive, FIFO per destination."""
    caplog.set_level(logging.INFO, logger="opshift")
    with OpShiftServer(SECRET, auto_create=True) as server:
        port = int(server.url.rsplit(":", 1)[1])
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, base_url=f"http://127.0.0.1:{port}"), spool, clock=clock)
    for n in range(4):
        outbox.alert("deploy-failures", title=f"deploy {n}")
        outbox.ping("payments-worker", status="down", reason=f"r{n}")
    assert one_pass(outbox) is False  # refused: both destinations fail and back off
    assert outbox.stats["retried"] == 2
    assert outbox.pending == 8
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "connection refused" in warnings[0]
    with OpShiftServer(SECRET, auto_create=True, port=port) as server:
        clock.advance(120)
        assert outbox.flush(10) is True
    assert bodies(server, "/api/alerts/trigger/deploy-failures") == [
        {"title": f"deploy {n}"} for n in range(4)
    ]
    assert [b["reason"] for b in bodies(server, "/api/ping/payments-worker")] == [
        f"r{n}" for n in range(4)
    ]
    assert outbox.stats["delivered"] == 8
    resumed = [r.getMessage() for r in caplog.records if "resumed" in r.getMessage()]
    assert len(resumed) == 2
    assert "item(s) were waiting" in resumed[0]


def test_outage_with_the_background_sender(tmp_path: Path) -> None:
    """The sender thread retries on its own with backoff until the server is back."""
    with OpShiftServer(SECRET, auto_create=True) as server:
        port = int(server.url.rsplit(":", 1)[1])
    client = OpShift(SECRET, base_url=f"http://127.0.0.1:{port}")
    outbox = Outbox(client, tmp_path / "o.sqlite3", backoff=0.01, backoff_max=0.05)
    for n in range(5):
        outbox.alert("deploy-failures", title=f"deploy {n}")
    with OpShiftServer(SECRET, auto_create=True, port=port) as server:
        assert outbox.flush(10) is True
    outbox.close()
    assert [b["title"] for b in bodies(server, "/api/alerts/trigger/deploy-failures")] == [
        f"deploy {n}" for n in range(5)
    ]


def test_a_429_on_one_token_does_not_delay_another(live: OpShiftServer, spool: Path | None) -> None:
    """Token A hits the 10-a-minute limit and backs off; token B goes out in the same pass."""
    outbox = quiet_outbox(OpShift(SECRET, base_url=live.url), spool)
    for n in range(12):
        outbox.ping("busy-token", metadata={"n": n})
    outbox.ping("quiet-token", status="down", reason="disk full")
    assert one_pass(outbox) is False
    assert [b["metadata"]["n"] for b in bodies(live, "/api/ping/busy-token")] == list(range(11))
    assert [r.status for r in live.requests if r.path == "/api/ping/busy-token"][-1] == 429
    assert bodies(live, "/api/ping/quiet-token") == [{"status": "down", "reason": "disk full"}]
    assert outbox.pending == 2  # busy-token's 11th and 12th wait for the next minute
    assert outbox.stats["retried"] == 1


def test_backoff_per_destination_doubles_with_jitter_up_to_the_cap(spool: Path | None) -> None:
    """After each failure the next attempt waits backoff * 2**n (times jitter), capped."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(
        OpShift(SECRET, transport=fake), spool, clock=clock, backoff=1.0, backoff_max=4.0
    )
    outbox.alert("h", title="t")
    fake.fail_next(503, times=4)
    attempts: list[float] = []
    start = clock.now
    for _ in range(30):  # half-second steps of the fake clock, one sender pass each
        before = len(fake.requests)
        sender_pass(outbox)
        if len(fake.requests) > before:
            attempts.append(clock.now - start)
        clock.advance(0.5)
    # Fails at 0, then waits 1, 2, 4, 4 (capped) seconds; the fifth attempt succeeds.
    assert attempts == [0.0, 1.0, 3.0, 7.0, 11.0]
    assert outbox.pending == 0
    assert outbox.stats == {
        "delivered": 1,
        "retried": 4,
        "dropped_rejected": 0,
        "dropped_expired": 0,
        "dropped_full": 0,
    }


def test_flush_tries_now_even_during_backoff(spool: Path | None) -> None:
    """flush() ignores backoff for its first attempt: OpShift may be back already."""
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool, backoff=30.0)
    outbox.alert("h", title="t")
    fake.fail_next(503)
    assert one_pass(outbox) is False
    assert one_pass(outbox) is True  # 30 s of backoff left, tried anyway
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        pytest.param(400, "title must be at most 200 characters", id="400"),
        pytest.param(401, "Invalid webhook signature", id="401"),
        pytest.param(403, "Team subscription is inactive or expired", id="403"),
        pytest.param(404, "Webhook not found", id="404"),
    ],
)
def test_final_errors_are_dropped_logged_and_counted(
    caplog: pytest.LogCaptureFixture, status: int, error: str, spool: Path | None
) -> None:
    """400/401/403/404 are final: dropped, counted, logged once at ERROR with OpShift's text."""
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool)
    outbox.alert("h", title="first")
    outbox.alert("h", title="second")
    fake.fail_next(status, {"error": error})
    assert one_pass(outbox) is True
    assert outbox.stats["dropped_rejected"] == 1
    assert outbox.stats["delivered"] == 1  # the next item of the same destination went on
    assert [r.json for r in fake.requests] == [{"title": "first"}, {"title": "second"}]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert str(status) in errors[0].getMessage()
    assert error in errors[0].getMessage()
    assert "/api/alerts/trigger/h" in errors[0].getMessage()


@pytest.mark.parametrize("status", [408, 429, 500, 501, 502, 503, 504, 301])
def test_retryable_statuses_keep_the_item(status: int, spool: Path | None) -> None:
    """Network errors, 5xx, 429, 408 and redirects (a base_url to fix) keep the item."""
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool)
    outbox.alert("h", title="t")
    fake.fail_next(status, {"error": "x"})
    assert one_pass(outbox) is False
    assert outbox.pending == 1
    assert outbox.stats["retried"] == 1
    assert one_pass(outbox) is True


def test_a_network_error_keeps_the_item(spool: Path | None) -> None:
    """A transport failure is retried later, never dropped."""
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool)
    outbox.ping("w", status="down")
    fake.raise_next(ConnectionResetError("reset"))
    assert one_pass(outbox) is False
    assert one_pass(outbox) is True
    assert outbox.stats["retried"] == 1


def test_an_html_4xx_from_a_proxy_is_retried_not_dropped(spool: Path | None) -> None:
    """Only OpShift's own JSON error makes a 4xx final; a firewall's HTML 403 keeps the item."""
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool)
    outbox.alert("h", title="t")
    fake.fail_next(
        403, b"<html>Access denied by the corporate proxy</html>", content_type="text/html"
    )
    assert one_pass(outbox) is False
    assert outbox.stats["dropped_rejected"] == 0
    assert outbox.stats["retried"] == 1
    assert one_pass(outbox) is True


def test_rejections_are_logged_once_per_batch(
    spool: Path | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A deleted webhook with many queued alerts logs one ERROR line, with the count."""
    outbox = quiet_outbox(
        OpShift(SECRET, transport=FakeTransport(SECRET, auto_create=False)), spool
    )
    for n in range(5):
        outbox.alert("deleted-hook", title=f"t{n}")
    assert one_pass(outbox) is True
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "(and 4 more to it)" in errors[0]
    assert "404" in errors[0]
    assert outbox.stats["dropped_rejected"] == 5


def test_repeated_failures_log_at_debug_only(
    spool: Path | None, caplog: pytest.LogCaptureFixture
) -> None:
    """The first failure of a streak is a WARNING; the next ones are DEBUG lines."""
    caplog.set_level(logging.DEBUG, logger="opshift")
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool)
    outbox.alert("h", title="t")
    fake.fail_next(503, times=3)
    for _ in range(3):
        one_pass(outbox)
    mine = ("Could not deliver a queued", "Delivery to /api/alerts/trigger/h failed again")
    levels = [r.levelno for r in caplog.records if r.getMessage().startswith(mine)]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_backoff_survives_thousands_of_failures(spool: Path | None) -> None:
    """Backoff stays capped (no overflow) after thousands of failures, then delivers."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool, clock=clock, max_age=10**9)
    outbox.alert("h", title="t")
    fake.fail_next(503, times=1100)
    for _ in range(1100):
        one_pass(outbox)
        clock.advance(61)
    assert outbox.stats["retried"] == 1100
    assert one_pass(outbox) is True
    assert outbox.stats["delivered"] == 1


def test_jitter_scales_the_backoff(spool: Path | None) -> None:
    """Full jitter: the wait is the random factor times the exponential backoff."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(
        OpShift(SECRET, transport=fake), spool, clock=clock, backoff=8.0, random=lambda: 0.25
    )
    outbox.alert("h", title="t")
    fake.fail_next(503)
    one_pass(outbox)
    clock.advance(1.9)
    sender_pass(outbox)
    assert len(fake.requests) == 1  # 0.25 x 8 s = 2 s: not yet
    clock.advance(0.1)
    sender_pass(outbox)
    assert len(fake.requests) == 2


def test_up_pings_expire_after_ping_ttl(
    caplog: pytest.LogCaptureFixture, spool: Path | None
) -> None:
    """An up ping older than ping_ttl is dropped unsent; alerts and down pings stay."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool, clock=clock)
    outbox.ping("w")  # up by default
    outbox.ping("w", status="up")
    outbox.ping("w", status="down", reason="r")
    outbox.alert("h", title="t")
    clock.advance(300.5)
    assert one_pass(outbox) is True
    assert [r.json for r in fake.requests] == [{"status": "down", "reason": "r"}, {"title": "t"}]
    assert outbox.stats["dropped_expired"] == 2
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "2 up ping(s) older than 300 s" in warning.getMessage()


def test_everything_expires_after_max_age(spool: Path | None) -> None:
    """Alerts and down pings older than max_age are dropped unsent."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool, clock=clock, max_age=3600)
    outbox.alert("h", title="old")
    outbox.ping("w", status="down")
    clock.advance(1800)
    outbox.alert("h", title="newer")
    clock.advance(1800.5)
    assert one_pass(outbox) is True
    assert [r.json for r in fake.requests] == [{"title": "newer"}]
    assert outbox.stats["dropped_expired"] == 2


def test_items_expire_while_their_destination_backs_off(spool: Path | None) -> None:
    """A destination in backoff still loses its stale up pings."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool, clock=clock, backoff=1000.0)
    outbox.ping("w")
    fake.fail_next(503)
    assert one_pass(outbox) is False
    clock.advance(301)
    sender_pass(outbox)  # a sender pass: the backoff is not over, the ping is stale
    assert outbox.pending == 0
    assert outbox.stats["dropped_expired"] == 1


def test_drains_through_keepalive(live: OpShiftServer) -> None:
    """A burst queued in memory goes out over one kept-alive connection."""
    with KeepAliveTransport() as transport:
        outbox = Outbox(OpShift(SECRET, base_url=live.url, transport=transport))
        for n in range(50):
            outbox.alert("deploy-failures", title=f"t{n}")
        assert outbox.close(10) is True
    assert live.connections == 1
    assert len(live.requests) == 50
