"""Queuing: ping and alert validate and return at once, never wait, and stay bounded."""

from __future__ import annotations

import socket
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

import opshift
from opshift import (
    BadRequestError,
    ConfigurationError,
    OpShift,
    OpShiftError,
)
from opshift.outbox import Outbox
from opshift.outbox._outbox import sender
from opshift.testing import FakeTransport, OpShiftServer

from ..helpers import SECRET, one_pass, quiet_outbox, refused_url


def test_enqueue_returns_an_id_and_the_sender_delivers(live: OpShiftServer) -> None:
    """ping and alert return ids at once; the background sender delivers them, signed."""
    with Outbox(OpShift(SECRET, base_url=live.url)) as outbox:
        first = outbox.alert("deploy-failures", title="Deploy failed", severity="sev1")
        second = outbox.ping("payments-worker", status="down", reason="disk full")
        assert isinstance(first, int)
        assert 0 < first < second
        assert outbox.flush(10) is True
        assert outbox.pending == 0
        assert outbox.stats == {
            "delivered": 2,
            "retried": 0,
            "dropped_rejected": 0,
            "dropped_expired": 0,
            "dropped_full": 0,
        }
    assert {r.path for r in live.requests} == {
        "/api/alerts/trigger/deploy-failures",
        "/api/ping/payments-worker",
    }
    assert all(r.signature_valid for r in live.requests)
    assert live.monitors["payments-worker"].status == "down"


def test_bad_input_raises_and_queues_nothing() -> None:
    """Validation happens at enqueue: BadRequestError, and nothing waits afterwards."""
    outbox = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)))
    with pytest.raises(BadRequestError, match="title is required"):
        outbox.alert("deploy-failures", title="")
    with pytest.raises(BadRequestError, match="metadata"):
        outbox.ping("w", metadata={"when": object()})
    with pytest.raises(BadRequestError, match="ping_token"):
        outbox.ping("")
    assert outbox.pending == 0


def test_enqueue_never_waits_on_a_server_that_never_answers() -> None:
    """With OpShift hanging, ping/alert still return at once; the sender does the waiting."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        outbox = Outbox(OpShift(SECRET, base_url=url, timeout=30), exit_timeout=0)
        started = time.monotonic()
        for n in range(20):
            outbox.alert("deploy-failures", title=f"t{n}")
        elapsed = time.monotonic() - started
        assert outbox.pending == 20
        outbox.close(0)
    assert elapsed < 5  # the server would hold a single send for 30 s


def test_the_file_is_committed_before_enqueue_returns(tmp_path: Path) -> None:
    """Another connection sees the item as soon as alert() returns: nothing to lose."""
    path = tmp_path / "outbox.sqlite3"
    outbox = quiet_outbox(OpShift(SECRET, base_url=refused_url()), path)
    outbox.alert("deploy-failures", title="Deploy failed")
    with closing(sqlite3.connect(path)) as other:
        assert other.execute("SELECT kind, destination, body FROM items").fetchall() == [
            ("alert", "/api/alerts/trigger/deploy-failures", b'{"title":"Deploy failed"}')
        ]


def test_closed_outbox_refuses_new_items() -> None:
    """Queuing after close() is a clear error, not a silent drop."""
    outbox = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)))
    outbox.close()
    with pytest.raises(OpShiftError, match="closed"):
        outbox.alert("h", title="t")


@pytest.mark.parametrize("where", ["memory", "file"])
def test_full_outbox_drops_the_oldest_up_ping_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    """When full, the oldest waiting up ping makes room; with none left, the new item goes."""
    path = tmp_path / "o.sqlite3" if where == "file" else None
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), path, max_pending=3)
    outbox.ping("w", metadata={"n": 1})
    outbox.alert("h", title="a1")
    outbox.ping("w", metadata={"n": 2})
    assert outbox.alert("h", title="a2") > 0  # drops up ping n=1
    assert outbox.alert("h", title="a3") > 0  # drops up ping n=2
    assert outbox.alert("h", title="a4") == 0  # no up ping left: the new alert is dropped
    assert outbox.pending == 3
    assert outbox.stats["dropped_full"] == 3
    assert one_pass(outbox) is True
    assert [r.json for r in fake.requests] == [{"title": "a1"}, {"title": "a2"}, {"title": "a3"}]
    warnings = [r.getMessage() for r in caplog.records if "Outbox full" in r.getMessage()]
    assert len(warnings) == 1  # at most one line a minute
    assert "max_pending=3" in warnings[0]


def test_disabled_client_keeps_nothing_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With OpShift disabled the outbox validates, returns 0 and creates no file or thread."""
    monkeypatch.setenv("OPSHIFT_DISABLED", "1")
    outbox = Outbox(OpShift(), tmp_path / "o.sqlite3")
    assert outbox.alert("h", title="t") == 0
    with pytest.raises(BadRequestError):
        outbox.alert("h", title="")
    assert outbox.pending == 0
    assert one_pass(outbox) is True
    assert sender(outbox).thread is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_pending", 0),
        ("ping_ttl", 0),
        ("max_age", float("inf")),
        ("exit_timeout", -1),
        ("backoff", float("nan")),
    ],
)
def test_bad_settings_are_configuration_errors(option: str, value: object) -> None:
    """Each setting is checked at construction with the setting's name in the message."""
    with pytest.raises(ConfigurationError, match=option):
        Outbox(OpShift(SECRET), **{option: value})  # type: ignore[arg-type]


def test_an_outbox_needs_an_opshift_client() -> None:
    """Anything but an OpShift client is refused at construction."""
    with pytest.raises(ConfigurationError, match="needs an OpShift client"):
        Outbox(FakeTransport(SECRET))  # type: ignore[arg-type]


def test_outbox_is_exported_and_its_repr_says_where(tmp_path: Path) -> None:
    """`from opshift import Outbox` works; the repr names memory or the file, no secret."""
    assert opshift.Outbox is Outbox
    assert repr(Outbox(OpShift(SECRET), background=False)) == ("Outbox(memory, max_pending=10000)")
    path = tmp_path / "o.sqlite3"
    assert repr(quiet_outbox(OpShift(SECRET), path)) == f"Outbox({str(path)!r}, max_pending=10000)"
