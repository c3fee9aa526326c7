"""AlertHandler set up from code or dictConfig, its arguments checked; disabled mode and close."""

from __future__ import annotations

import logging
import logging.config
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import opshift
from opshift import AlertHandler, ConfigurationError, OpShift, OpShiftError, Outbox
from opshift.outbox._outbox import sender
from opshift.testing import FakeTransport, OpShiftServer

from ..helpers import (
    SECRET,
    MakeRig,
    app_alerts,
    in_forked_child,
    quiet_logger,
)

HERE = __name__  # this module, for dictConfig's "ext://" references


# -- dictConfig --------------------------------------------------------------------------


@pytest.fixture
def configured() -> Iterator[list[str]]:
    """Names of loggers a test configures with dictConfig; their handlers are closed after."""
    names: list[str] = []
    yield names
    for name in names:
        log = logging.getLogger(name)
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()


def test_dictconfig_factory_form_takes_strings_and_numbers(
    live: OpShiftServer, monkeypatch: pytest.MonkeyPatch, configured: list[str]
) -> None:
    """The "()" form: level as a name, a severity mapping of names, an ext:// outbox."""
    outbox = Outbox(OpShift(SECRET, base_url=live.url))
    monkeypatch.setattr(sys.modules[HERE], "CONFIG_OUTBOX", outbox, raising=False)
    configured.append("app.dictconfig.factory")
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "opshift": {
                    "()": "opshift.AlertHandler",
                    "webhook_url": "app-errors",
                    "level": "WARNING",
                    "severity": {"ERROR": "sev1", "WARNING": "sev4", "45": "sev0"},
                    "min_interval": 30,
                    "outbox": f"ext://{HERE}.CONFIG_OUTBOX",
                }
            },
            "loggers": {"app.dictconfig.factory": {"handlers": ["opshift"], "level": "DEBUG"}},
        }
    )
    (handler,) = logging.getLogger("app.dictconfig.factory").handlers
    assert isinstance(handler, AlertHandler)
    assert handler.outbox is outbox
    assert handler.level == logging.WARNING
    assert handler.min_interval == 30.0
    log = logging.getLogger("app.dictconfig.factory")
    log.info("not sent: below the handler's level")
    log.warning("Disk at %d%%", 91)
    log.error("Payment failed")
    log.log(45, "Between ERROR and CRITICAL")
    assert outbox.flush(10) is True
    assert [(a["title"], a["severity"]) for a in app_alerts(live)] == [
        ("Disk at 91%", "sev4"),
        ("Payment failed", "sev1"),
        ("Between ERROR and CRITICAL", "sev0"),
    ]
    outbox.close()


def test_dictconfig_class_form_makes_its_client_from_the_environment(
    live: OpShiftServer, monkeypatch: pytest.MonkeyPatch, configured: list[str]
) -> None:
    """The "class" form with no client: OpShift() from OPSHIFT_SECRET / OPSHIFT_BASE_URL."""
    monkeypatch.setenv("OPSHIFT_SECRET", SECRET)
    monkeypatch.setenv("OPSHIFT_BASE_URL", live.url)
    monkeypatch.delenv("OPSHIFT_DISABLED", raising=False)
    configured.append("app.dictconfig.class")
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "opshift": {
                    "class": "opshift.AlertHandler",
                    "webhook_url": "app-errors",
                    "severity": "sev0",
                    "min_interval": 0.5,
                }
            },
            "loggers": {"app.dictconfig.class": {"handlers": ["opshift"]}},
        }
    )
    (handler,) = logging.getLogger("app.dictconfig.class").handlers
    assert isinstance(handler, AlertHandler)
    assert handler.level == logging.ERROR  # the default when the config gives none
    assert handler.client.base_url == live.url
    logging.getLogger("app.dictconfig.class").error("Nightly export failed")
    assert handler.outbox.flush(10) is True
    (request,) = live.requests
    assert request.signature_valid
    assert request.json["title"] == "Nightly export failed"
    assert request.json["severity"] == "sev0"


def test_dictconfig_reports_a_bad_argument(configured: list[str]) -> None:
    """A bad value fails dictConfig at once, with the ConfigurationError as the cause."""
    configured.append("app.dictconfig.bad")
    with pytest.raises(ValueError, match="opshift") as caught:
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "opshift": {
                        "()": "opshift.AlertHandler",
                        "webhook_url": "app-errors",
                        "severity": "critical",
                    }
                },
                "loggers": {"app.dictconfig.bad": {"handlers": ["opshift"]}},
            }
        )
    assert isinstance(caught.value.__cause__, ConfigurationError)
    assert "sev0, sev1, sev2, sev3, sev4" in str(caught.value.__cause__)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        pytest.param({"webhook_url": ""}, "webhook_url", id="empty-webhook"),
        pytest.param({"webhook_url": None}, "webhook_url", id="no-webhook"),
        pytest.param({"severity": "sev9"}, "severity", id="unknown-severity"),
        pytest.param({"severity": {"ERROR": "high"}}, "severity", id="bad-mapped-severity"),
        pytest.param({"severity": {"LOUD": "sev1"}}, "LOUD", id="unknown-level-in-mapping"),
        pytest.param({"severity": 2}, "severity", id="severity-number"),
        pytest.param({"level": "LOUD"}, "level", id="unknown-level"),
        pytest.param({"level": -1}, "level", id="negative-level"),
        pytest.param({"level": True}, "level", id="bool-level"),
        pytest.param({"min_interval": -1}, "min_interval", id="negative-interval"),
        pytest.param({"min_interval": float("nan")}, "min_interval", id="nan-interval"),
        pytest.param({"min_interval": "60"}, "min_interval", id="string-interval"),
        pytest.param({"client": "my_app.client"}, "ext://", id="unresolved-client"),
        pytest.param({"outbox": 42}, "outbox must be an Outbox", id="not-an-outbox"),
        pytest.param({"clock": 1.0}, "clock", id="clock-not-callable"),
    ],
)
def test_bad_arguments_are_configuration_errors(options: dict[str, Any], match: str) -> None:
    """Each bad argument fails at construction, naming what is wrong."""
    options.setdefault("webhook_url", "app-errors")
    client = OpShift(SECRET, transport=FakeTransport(SECRET))
    options.setdefault("client", client)
    with pytest.raises(ConfigurationError, match=match):
        AlertHandler(**options)


def test_client_and_a_different_outbox_are_refused() -> None:
    """An outbox sends with its own client, so a second, different client is an error."""
    one, other = OpShift(SECRET), OpShift(SECRET)
    outbox = Outbox(one, background=False)
    with pytest.raises(ConfigurationError, match="not both"):
        AlertHandler("app-errors", client=other, outbox=outbox)
    assert AlertHandler("app-errors", client=one, outbox=outbox).client is one


def test_no_client_and_no_secret_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no client and no OPSHIFT_SECRET, the mistake shows at start-up, not at the outage."""
    monkeypatch.delenv("OPSHIFT_SECRET", raising=False)
    monkeypatch.delenv("OPSHIFT_DISABLED", raising=False)
    with pytest.raises(ConfigurationError, match="OPSHIFT_SECRET"):
        AlertHandler("app-errors")


# -- failures, disabled mode, close ------------------------------------------------------


def test_a_broken_record_goes_to_handle_error_and_emit_does_not_raise(
    make: MakeRig, capsys: pytest.CaptureFixture[str]
) -> None:
    """getMessage raising (a bad % argument) is reported by handleError on stderr."""
    rig = make()
    rig.log.error("%d items", "not a number")  # must not raise into the caller
    assert "--- Logging error ---" in capsys.readouterr().err
    assert rig.sent() == []
    rig.log.error("%d items", 3)  # a failed record does not count against the rate limit
    assert [body["title"] for body in rig.sent()] == ["3 items"]


def test_a_broken_record_after_an_interval_leaves_the_next_one_free_to_go(
    make: MakeRig, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record that fails starts no interval: the next goes at once, with the repeats."""
    rig = make(min_interval=60)
    rig.log.error("%d items", 1)
    rig.log.error("%d items", 2)  # counted
    rig.clock.advance(60)
    rig.log.error("%d items", "not a number")
    assert "--- Logging error ---" in capsys.readouterr().err
    rig.log.error("%d items", 4)
    assert [(b["title"], b["metadata"].get("suppressed")) for b in rig.sent()] == [
        ("1 items", None),
        ("4 items", 1),
    ]


def test_the_handlers_filters_drop_and_on_312_replace_records(make: MakeRig) -> None:
    """A filter returning False drops a record; one returning a record (3.12+) replaces it."""
    import sys

    rig = make(min_interval=0)
    rig.handler.addFilter(lambda record: "secret-order" not in record.getMessage())
    if sys.version_info >= (3, 12):

        def rename(record: logging.LogRecord) -> logging.LogRecord:
            copy = logging.makeLogRecord(record.__dict__)
            copy.msg, copy.args = f"[billing] {record.getMessage()}", None
            return copy

        rig.handler.addFilter(rename)
    rig.log.error("Charge failed for secret-order 9")
    rig.log.error("Charge failed for order %d", 7)
    shown = "[billing] " if sys.version_info >= (3, 12) else ""
    assert [body["title"] for body in rig.sent()] == [f"{shown}Charge failed for order 7"]


class _Held:
    """A log argument whose text waits until released: a record caught mid-build."""

    def __init__(self, fails: bool = False) -> None:
        self.building = threading.Event()
        self.go = threading.Event()
        self.fails = fails

    def __str__(self) -> str:
        self.building.set()
        assert self.go.wait(10)
        if self.fails:
            raise ValueError("unprintable")
        return "B"


def test_a_repeat_counted_while_its_groups_alert_failed_rides_on_the_next(
    make: MakeRig, capsys: pytest.CaptureFixture[str]
) -> None:
    """A repeat counted while the group's alert was built, which then failed, rides on the next."""
    rig = make(min_interval=60)
    held = _Held(fails=True)
    first = threading.Thread(target=rig.log.error, args=("Job %s failed", held))
    first.start()
    assert held.building.wait(10)
    rig.log.error("Job %s failed", "A")  # within the interval: counted
    held.go.set()
    first.join(10)
    assert "--- Logging error ---" in capsys.readouterr().err
    rig.log.error("Job %s failed", "C")
    assert [(b["title"], b["metadata"].get("suppressed")) for b in rig.sent()] == [
        ("Job C failed", 1)
    ]


def test_repeats_a_failed_alert_carried_survive_a_newer_alert_of_its_group(
    make: MakeRig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Repeats a slow alert that then failed carried go on the group's next, not lost."""
    rig = make(min_interval=60)
    rig.log.error("Job %s failed", "A")
    rig.log.error("Job %s failed", "B")  # counted: rides on the group's next alert
    rig.clock.advance(61)
    held = _Held(fails=True)
    slow = threading.Thread(target=rig.log.error, args=("Job %s failed", held))
    slow.start()  # carries B's count, and takes longer than the interval to build
    assert held.building.wait(10)
    rig.clock.advance(61)
    rig.log.error("Job %s failed", "C")  # a newer alert of the group, sent meanwhile
    held.go.set()
    slow.join(10)
    assert "--- Logging error ---" in capsys.readouterr().err
    rig.clock.advance(61)
    rig.log.error("Job %s failed", "D")
    assert [(b["title"], b["metadata"].get("suppressed")) for b in rig.sent()] == [
        ("Job A failed", None),
        ("Job C failed", None),
        ("Job D failed", 1),  # B, which the failed alert could not carry
    ]


def _mid_alert(
    logger_name: str,
) -> tuple[AlertHandler, FakeTransport, logging.Logger, _Held, threading.Thread]:
    """A handler with its own outbox, and a record another thread is caught building."""
    fake = FakeTransport(SECRET)
    handler = AlertHandler("app-errors", client=OpShift(SECRET, transport=fake))
    log = quiet_logger(logger_name)
    log.addHandler(handler)
    held = _Held()
    logging_thread = threading.Thread(target=log.error, args=("Job %s failed", held))
    logging_thread.start()
    assert held.building.wait(10)
    return handler, fake, log, held, logging_thread


def test_close_waits_for_an_alert_another_thread_is_building() -> None:
    """close() lets a record being built in another thread reach the outbox first."""
    handler, fake, log, held, logging_thread = _mid_alert("app.close-race")
    closing = threading.Thread(target=handler.close)
    closing.start()
    closing.join(0.2)
    assert closing.is_alive()  # waiting for the record, not closing the outbox under it
    held.go.set()
    logging_thread.join(10)
    closing.join(10)
    log.removeHandler(handler)
    assert [r.json["title"] for r in fake.requests] == ["Job B failed"]


def test_close_waits_only_for_alerts_begun_before_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record admitted once close() began is not waited for: a storm cannot hold it up."""
    began = threading.Event()

    def budget(outbox: Outbox) -> float:
        began.set()
        return 60.0  # a wait for the late record would outlast the join below

    monkeypatch.setattr(opshift.handler, "close_budget", budget)
    handler, fake, log, first, first_thread = _mid_alert("app.close-storm")
    closing = threading.Thread(target=handler.close)
    closing.start()
    assert began.wait(10)
    late = _Held()
    late_thread = threading.Thread(target=log.error, args=("Late job %s failed", late))
    late_thread.start()  # admitted once close() waits (it holds the lock until then)
    assert late.building.wait(10)
    first.go.set()
    closing.join(10)
    assert not closing.is_alive()  # closed while the late record is still being built
    late.go.set()
    for thread in (first_thread, late_thread):
        thread.join(10)
    log.removeHandler(handler)
    assert [r.json["title"] for r in fake.requests] == ["Job B failed"]
    assert "--- Logging error ---" in capsys.readouterr().err  # the late one: not silent


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, on purpose
def test_a_forked_childs_close_does_not_wait_for_the_parents_alerts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An alert a parent's thread was building at fork() is not the child's to wait for."""
    monkeypatch.setattr(opshift.handler, "close_budget", lambda outbox: 60.0)
    handler, _, log, held, building = _mid_alert("app.fork-close")

    def child() -> bytes:
        closing = threading.Thread(target=handler.close, daemon=True)
        closing.start()
        closing.join(10)
        return b"waiting" if closing.is_alive() else b"closed"

    assert in_forked_child(child) == b"closed"
    held.go.set()
    building.join(10)
    log.removeHandler(handler)
    handler.close()


def test_handle_error_is_the_handlers_own(make: MakeRig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault in the outbox (here: closed under it) reaches handleError, not the caller."""
    rig = make()
    failures: list[logging.LogRecord] = []
    monkeypatch.setattr(rig.handler, "handleError", failures.append)
    rig.handler.outbox.close(0)
    rig.log.error("nobody will queue this")
    assert [r.getMessage() for r in failures] == ["nobody will queue this"]


def test_disabled_mode_builds_and_validates_but_sends_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OPSHIFT_DISABLED=1, no secret: alerts are built and validated, kept nowhere, no thread."""
    monkeypatch.setenv("OPSHIFT_DISABLED", "1")
    monkeypatch.delenv("OPSHIFT_SECRET", raising=False)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was used while OpShift is disabled")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    handler = AlertHandler("app-errors")
    assert handler.client.enabled is False
    queued: list[dict[str, Any]] = []
    original = handler.outbox.alert

    def spy(webhook_url: str, **fields: Any) -> int:
        queued.append(fields)
        result = original(webhook_url, **fields)
        assert result == 0  # validated, then dropped: nothing kept
        return result

    monkeypatch.setattr(handler.outbox, "alert", spy)
    log = quiet_logger("app.disabled")
    log.addHandler(handler)
    try:
        log.error("Payment %s failed", 7)
    finally:
        log.removeHandler(handler)
    assert [fields["title"] for fields in queued] == ["Payment 7 failed"]
    assert handler.outbox.pending == 0
    assert sender(handler.outbox).thread is None
    handler.close()


def test_close_closes_the_outbox_it_made_after_a_brief_flush(live: OpShiftServer) -> None:
    """Its own outbox is flushed and closed, so a record logged just before exit arrives."""
    handler = AlertHandler("app-errors", client=OpShift(SECRET, base_url=live.url))
    log = quiet_logger("app.close.own")
    log.addHandler(handler)
    log.error("Shutting down with an error")
    log.removeHandler(handler)
    handler.close()
    assert [body["title"] for body in app_alerts(live)] == ["Shutting down with an error"]
    with pytest.raises(OpShiftError, match="closed"):
        handler.outbox.alert("app-errors", title="after close")
    handler.close()  # twice is fine


def test_close_leaves_an_outbox_it_was_given_open(live: OpShiftServer) -> None:
    """A passed-in outbox belongs to the caller: still open after the handler closes."""
    outbox = Outbox(OpShift(SECRET, base_url=live.url))
    handler = AlertHandler("app-errors", outbox=outbox)
    handler.close()
    assert outbox.alert("app-errors", title="still open") > 0
    assert outbox.close(10) is True
    assert [body["title"] for body in app_alerts(live)] == ["still open"]


def test_a_record_after_close_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    """A logger still holding a closed handler gets handleError on stderr, not an exception."""
    handler = AlertHandler("app-errors", client=OpShift(SECRET, transport=FakeTransport(SECRET)))
    handler.close()
    log = quiet_logger("app.close.after")
    log.addHandler(handler)
    try:
        log.error("too late")
    finally:
        log.removeHandler(handler)
    assert "This Outbox is closed" in capsys.readouterr().err


def test_alert_handler_is_exported_lazily() -> None:
    """`from opshift import AlertHandler` works; its repr names the webhook and level."""
    from opshift.handler import AlertHandler as Direct

    assert opshift.AlertHandler is Direct
    handler = AlertHandler(
        "app-errors", client=OpShift(SECRET, transport=FakeTransport(SECRET)), level="WARNING"
    )
    assert repr(handler) == "<AlertHandler 'app-errors' (WARNING)>"
    handler.close()


def test_a_failed_construction_leaves_nothing_for_logging_shutdown() -> None:
    """No secret: AlertHandler() raises, and interpreter exit adds no AttributeError."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSHIFT_")}
    done = subprocess.run(
        [sys.executable, "-c", "import opshift\nopshift.AlertHandler('app-errors')\n"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 1
    assert (
        done.stderr.rstrip()
        .splitlines()[-1]
        .startswith("opshift.errors.ConfigurationError: No OpShift secret")
    )
    assert "AttributeError" not in done.stderr


def test_the_webhook_may_be_its_dashboard_url_and_a_path_is_refused_at_once() -> None:
    """AlertHandler takes the dashboard URL for its webhook; a/b fails at construction."""
    fake = FakeTransport(SECRET, auto_create=True)
    client = OpShift(SECRET, transport=fake)
    url = f"{client.base_url}/api/alerts/trigger/app-errors"
    handler = AlertHandler(url, client=client, level="ERROR")
    log = quiet_logger("app.url-webhook")
    log.addHandler(handler)
    try:
        log.error("boom")
        assert handler.outbox.flush(5)
    finally:
        log.removeHandler(handler)
        handler.close()
    assert [r.path for r in fake.requests] == ["/api/alerts/trigger/app-errors"]
    with pytest.raises(ConfigurationError, match="webhook_url must be the id alone"):
        AlertHandler("a/b", client=client)
