"""Disabled mode: OpShift(enabled=False) or OPSHIFT_DISABLED validates calls, sends nothing."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Mapping

import pytest

import opshift.transport
from opshift import BadRequestError, ConfigurationError, OpShift
from opshift.testing import FakeTransport

from .helpers import SECRET


class NoNetwork(Exception):
    """Raised by anything that tries to open a connection while the SDK is disabled."""


def refuse(*args: object, **kwargs: object) -> None:
    """Stand-in for socket.create_connection / socket.connect: any use fails the test."""
    raise NoNetwork(f"network used: {args!r}")


def refusing_transport(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[int, bytes]:
    """A transport that must never be called."""
    raise NoNetwork(f"transport called for {url}")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every attempt to connect a socket raise NoNetwork."""
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def disabled_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPSHIFT_DISABLED=1 and no secret in the environment, as on a laptop or in CI."""
    monkeypatch.setenv("OPSHIFT_DISABLED", "1")
    monkeypatch.delenv("OPSHIFT_SECRET", raising=False)


@pytest.mark.usefixtures("no_network", "disabled_env")
def test_environment_switch_needs_no_secret_and_touches_no_network() -> None:
    """OPSHIFT_DISABLED=1: OpShift() works without a secret; ping and alert answer locally."""
    client = OpShift()
    assert client.enabled is False
    ping = client.ping("payments-worker", status="down", reason="disk full")
    assert ping == {
        "message": "OpShift disabled",
        "monitor": {"name": "payments-worker", "status": "down", "monitoringActive": False},
        "pingStatus": "down",
    }
    alert = client.alert("deploy-failures", title="Deploy failed", severity="sev1")
    assert alert["status"] == "filtered"
    assert alert["message"] == "OpShift disabled"
    assert "disabled" in alert["reason"]
    assert "alertId" not in alert


@pytest.mark.parametrize("value", ["1", "true", "yes", "TRUE", " Yes "])
def test_each_documented_value_disables(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """1, true and yes (any case, surrounding spaces ignored) switch the SDK off."""
    monkeypatch.setenv("OPSHIFT_DISABLED", value)
    assert OpShift(transport=refusing_transport).enabled is False


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_off_values_leave_it_enabled(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """0, false, no or empty mean enabled."""
    monkeypatch.setenv("OPSHIFT_DISABLED", value)
    assert OpShift(SECRET, transport=refusing_transport).enabled is True


def test_an_unknown_value_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo such as "ture" must not silently send from CI: it fails at construction."""
    monkeypatch.setenv("OPSHIFT_DISABLED", "ture")
    with pytest.raises(ConfigurationError, match="OPSHIFT_DISABLED must be 1, true or yes"):
        OpShift(SECRET)


def test_an_explicit_secret_stays_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """With enabled left out, the environment switch wins over code that passes a secret."""
    monkeypatch.setenv("OPSHIFT_DISABLED", "yes")
    client = OpShift(SECRET, transport=refusing_transport)
    assert client.enabled is False
    assert client.ping("w")["message"] == "OpShift disabled"


def test_an_explicit_enabled_true_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpShift(enabled=True) sends even where CI sets OPSHIFT_DISABLED=1 (a test of the SDK)."""
    monkeypatch.setenv("OPSHIFT_DISABLED", "1")
    fake = FakeTransport(SECRET)
    client = OpShift(SECRET, enabled=True, transport=fake)
    assert client.enabled is True
    assert client.ping("w")["pingStatus"] == "up"
    assert len(fake.requests) == 1


@pytest.mark.usefixtures("no_network")
def test_enabled_false_in_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """enabled=False needs no secret either, and never builds the default transport."""
    monkeypatch.delenv("OPSHIFT_SECRET", raising=False)
    monkeypatch.delenv("OPSHIFT_DISABLED", raising=False)
    monkeypatch.setattr(opshift.transport, "UrllibTransport", refuse)  # building one fails
    client = OpShift(enabled=False)
    assert client.ping("w")["pingStatus"] == "up"
    assert "enabled=False" in repr(client)


@pytest.mark.usefixtures("disabled_env")
def test_inputs_are_still_validated() -> None:
    """A bad call fails in dev exactly as it would in production."""
    client = OpShift(transport=refusing_transport)
    with pytest.raises(BadRequestError, match="title is required"):
        client.alert("deploy-failures", title="  ")
    with pytest.raises(BadRequestError, match="status must be one of up, down"):
        client.ping("w", status="sideways")  # type: ignore[arg-type]
    with pytest.raises(BadRequestError, match="ping_token"):
        client.ping("")
    with pytest.raises(ConfigurationError, match="base_url"):
        OpShift(base_url="ftp://example.com")


@pytest.mark.usefixtures("disabled_env")
def test_one_info_line_at_construction(caplog: pytest.LogCaptureFixture) -> None:
    """Construction logs once at INFO on the opshift logger; calls log nothing more."""
    caplog.set_level(logging.DEBUG, logger="opshift")
    client = OpShift(transport=refusing_transport)
    client.ping("w")
    client.alert("h", title="t")
    records = [r for r in caplog.records if r.name == "opshift"]
    assert [r.levelno for r in records] == [logging.INFO]
    assert "OpShift is disabled (OPSHIFT_DISABLED is set)" in records[0].getMessage()


@pytest.mark.usefixtures("disabled_env")
def test_monitor_runs_the_job_and_sends_nothing() -> None:
    """monitor() still runs and times the job, and its exception still propagates."""
    client = OpShift(transport=refusing_transport)

    @client.monitor("nightly-backup")
    def job(fail: bool) -> str:
        if fail:
            raise ValueError("boom")
        return "done"

    assert job(False) == "done"
    with pytest.raises(ValueError, match="boom"):
        job(True)


@pytest.mark.usefixtures("disabled_env")
def test_heartbeat_starts_no_thread() -> None:
    """heartbeat() on a disabled client starts no thread and pings nothing."""
    before = threading.active_count()
    heartbeat = OpShift(transport=refusing_transport).heartbeat("w", interval=60)
    assert not heartbeat.running
    assert threading.active_count() == before
    assert heartbeat.stop() is True
    assert heartbeat.pings_sent == 0
