"""AlertHandler: log records become grouped, rate-limited alerts, queued without blocking."""

from __future__ import annotations

import logging
import logging.config
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from opshift import AlertHandler, OpShift, Outbox
from opshift.outbox._outbox import sender
from opshift.testing import OpShiftServer

from ..helpers import (
    SECRET,
    Clock,
    MakeRig,
    app_alerts,
    fan_out,
    one_pass,
    quiet_logger,
    refused_url,
)

# -- grouping and the rate limit ---------------------------------------------------------


def test_a_thousand_ids_are_one_group_and_one_alert_at_the_server(live: OpShiftServer) -> None:
    """One template for 1,000 ids: one group_key, one request; OpShift counts the next one."""
    clock = Clock()
    outbox = Outbox(OpShift(SECRET, base_url=live.url), background=False)
    handler = AlertHandler("app-errors", outbox=outbox, clock=clock)
    log = quiet_logger("app.payments.thousand")
    log.addHandler(handler)
    try:
        for payment_id in range(1_000):
            log.error("Payment %s failed", payment_id)
        assert outbox.flush(10) is True
        (first,) = app_alerts(live)
        assert first["title"] == "Payment 0 failed"
        assert "suppressed" not in first["metadata"]
        clock.advance(60)
        log.error("Payment %s failed", 1_000)
        assert outbox.flush(10) is True
    finally:
        log.removeHandler(handler)
    first, second = app_alerts(live)
    assert second["title"] == "Payment 1000 failed"
    assert second["metadata"]["suppressed"] == 999
    assert first["group_key"] == second["group_key"]
    assert first["group_key"].startswith("log:app.payments.thousand:")
    assert len(first["group_key"]) <= 200
    (alert,) = live.alerts
    assert alert.occurrence_count == 2
    assert [r.status for r in live.requests] == [200, 200]


def test_templated_messages_fold_into_one_alert_without_a_rate_limit(make: MakeRig) -> None:
    """min_interval=0 sends every record; all 1,000 share a group_key and OpShift counts them."""
    rig = make(min_interval=0)
    for payment_id in range(1_000):
        rig.log.error("Payment %s failed", payment_id)
    sent = rig.sent()
    assert len(sent) == 1_000
    assert len({body["group_key"] for body in sent}) == 1
    assert len({body["title"] for body in sent}) == 1_000
    (alert,) = rig.fake.alerts
    assert alert.occurrence_count == 1_000


def test_group_key_depends_on_logger_template_and_exception_type(make: MakeRig) -> None:
    """Another logger, template or exception type is another group; arguments and level are not."""
    rig = make(min_interval=0)
    other = quiet_logger(rig.log.name + ".other")
    other.addHandler(rig.handler)
    try:
        rig.log.error("Payment %s failed", 1)
        rig.log.error("Payment %s failed", 2)
        rig.log.critical("Payment %s failed", 3)
        rig.log.error("Refund %s failed", 1)
        other.error("Payment %s failed", 1)
        for error in (ValueError("a"), KeyError("b"), ValueError("c")):
            try:
                raise error
            except Exception:
                rig.log.exception("Payment %s failed", 1)
    finally:
        other.removeHandler(rig.handler)
    keys = [body["group_key"] for body in rig.sent()]
    assert keys[0] == keys[1] == keys[2]
    assert len({keys[0], keys[3], keys[4], keys[5], keys[6]}) == 5
    assert keys[5] == keys[7]  # the same exception type, another message argument


def test_group_key_is_stable_across_processes(make: MakeRig) -> None:
    """The key is a hash of text, not of id() or hash(): every process of a fleet agrees."""
    rig = make()
    rig.log.error("Payment %s failed", 1)
    (body,) = rig.sent()
    code = (
        "import logging\n"
        "from opshift._alert_text import group_key\n"
        f"print(group_key({rig.log.name!r}, 'Payment %s failed', ''))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == body["group_key"]


def test_rate_limit_counts_repeats_and_the_next_alert_carries_them(make: MakeRig) -> None:
    """One alert per group per min_interval; the repeats in between ride on the next one."""
    rig = make(min_interval=60)
    rig.log.error("Queue %s is stuck", "a")  # sent
    rig.clock.advance(10)
    rig.log.error("Queue %s is stuck", "b")  # suppressed 1
    rig.log.warning("Another group")  # its own limit: sent
    rig.clock.advance(49.9)
    rig.log.error("Queue %s is stuck", "c")  # suppressed 2 (59.9 s after the first)
    rig.clock.advance(0.1)
    rig.log.error("Queue %s is stuck", "d")  # 60 s: sent, carrying 2
    rig.clock.advance(1)
    rig.log.error("Queue %s is stuck", "e")  # suppressed again, counting from 0
    rig.clock.advance(60)
    rig.log.error("Queue %s is stuck", "f")  # sent, carrying 1
    sent = rig.sent()
    assert [(body["title"], body["metadata"].get("suppressed")) for body in sent] == [
        ("Queue a is stuck", None),
        ("Another group", None),
        ("Queue d is stuck", 2),
        ("Queue f is stuck", 1),
    ]


def test_an_escalation_is_not_held_back_by_the_rate_limit(make: MakeRig) -> None:
    """A CRITICAL in a group flooded with ERRORs is sent at once, at its own severity."""
    rig = make(min_interval=60)
    for n in range(5):
        rig.log.error("Replica %s lagging", n)
    rig.log.critical("Replica %s lagging", 99)
    rig.log.critical("Replica %s lagging", 100)
    assert [(b["title"], b["severity"]) for b in rig.sent()] == [
        ("Replica 0 lagging", "sev2"),
        ("Replica 99 lagging", "sev1"),
    ]


def test_the_group_table_stays_bounded_under_a_flood_of_distinct_messages() -> None:
    """3,072 distinct messages inside one interval: the table is capped, nothing is silenced."""
    from opshift.handler import _MAX_GROUPS

    clock = Clock()
    # Refused, so closing the outbox at the end gives up at once instead of sending them all.
    client = OpShift(SECRET, base_url=refused_url(), max_retries=0)
    outbox = Outbox(client, background=False, max_pending=20_000)
    handler = AlertHandler("app-errors", outbox=outbox, clock=clock, min_interval=60)
    log = quiet_logger("app.flood")
    log.addHandler(handler)
    try:
        for n in range(3 * _MAX_GROUPS):
            log.error(f"distinct message {n}")  # f-strings: every record is its own group
            clock.advance(0.001)
        assert len(handler._groups) == _MAX_GROUPS
        assert outbox.pending == 3 * _MAX_GROUPS
        log.error("distinct message 0")  # forgotten, so sent again rather than held back
        assert outbox.pending == 3 * _MAX_GROUPS + 1
        clock.advance(120)
        log.error("one more")  # past the cap with every other group idle: they all go
        assert len(handler._groups) == 1
    finally:
        log.removeHandler(handler)
        outbox.close(0)


# -- severity --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "level", "expected"),
    [
        pytest.param(None, logging.CRITICAL, "sev1", id="critical"),
        pytest.param(None, logging.ERROR, "sev2", id="error"),
        pytest.param(None, logging.WARNING, "sev3", id="warning"),
        pytest.param(None, logging.INFO, "sev4", id="info"),
        pytest.param(None, logging.DEBUG, "sev4", id="debug"),
        pytest.param(None, 60, "sev1", id="above-critical"),
        pytest.param(None, 45, "sev2", id="between-error-and-critical"),
        pytest.param(None, 35, "sev3", id="between-warning-and-error"),
        pytest.param(None, 5, "sev4", id="below-debug"),
        pytest.param("sev0", logging.WARNING, "sev0", id="one-value-warning"),
        pytest.param("sev0", logging.CRITICAL, "sev0", id="one-value-critical"),
        pytest.param({"ERROR": "sev1"}, logging.ERROR, "sev1", id="map-error"),
        pytest.param({"ERROR": "sev1"}, 45, "sev1", id="map-error-covers-45"),
        pytest.param({"ERROR": "sev1"}, logging.CRITICAL, "sev1", id="map-keeps-default"),
        pytest.param({"ERROR": "sev1"}, logging.WARNING, "sev3", id="map-keeps-warning"),
        pytest.param({"error": "sev0"}, logging.ERROR, "sev0", id="map-lowercase-name"),
        pytest.param({35: "sev2"}, 38, "sev2", id="map-custom-int-level"),
        pytest.param({35: "sev2"}, logging.WARNING, "sev3", id="map-custom-int-below"),
    ],
)
def test_severity_from_the_level(severity: Any, level: int, expected: str, make: MakeRig) -> None:
    """Defaults CRITICAL sev1, ERROR sev2, WARNING sev3; in-between levels round down."""
    rig = make(severity=severity)
    rig.log.log(level, "something happened")
    (body,) = rig.sent()
    assert body["severity"] == expected


# -- the alert's shape -----------------------------------------------------------------


class PaymentError(Exception):
    """An application exception, for the qualified type name."""


def test_title_description_and_metadata(make: MakeRig) -> None:
    """Title: first line. Description: message then traceback. Metadata: where, who, what."""
    rig = make()
    try:
        raise PaymentError("card declined")
    except PaymentError:
        line = sys._getframe().f_lineno + 1
        rig.log.exception("Payment %s failed\nretry scheduled", 42)
    (body,) = rig.sent()
    assert body["title"] == "Payment 42 failed"
    description = body["description"]
    assert description.startswith(
        "Payment 42 failed\nretry scheduled\nTraceback (most recent call last):\n"
    )
    assert description.endswith("tests.handler.test_alerts.PaymentError: card declined")
    assert body["severity"] == "sev2"
    assert body["metadata"] == {
        "logger": rig.log.name,
        "level": "ERROR",
        "location": f"{__file__}:{line}",
        "function": "test_title_description_and_metadata",
        "process": os.getpid(),
        "thread": threading.current_thread().name,
        "host": socket.gethostname(),
        "exception": f"{__name__}.PaymentError",
    }


def test_builtin_exception_type_is_its_bare_name(make: MakeRig) -> None:
    """ValueError, not builtins.ValueError."""
    rig = make()
    try:
        int("x")
    except ValueError:
        rig.log.exception("parse failed")
    (body,) = rig.sent()
    assert body["metadata"]["exception"] == "ValueError"


def test_a_long_traceback_keeps_its_end_within_2000_characters(make: MakeRig) -> None:
    """The cause is at the end: a cut keeps the message's start and the traceback's tail."""
    rig = make()

    try:
        try:
            raise OSError("x" * 3_000)
        except OSError as exc:
            raise RuntimeError("the real cause") from exc
    except RuntimeError:
        rig.log.exception("Import %s failed", "batch-7")
    (body,) = rig.sent()
    description = body["description"]
    assert len(description) == 2_000
    assert description.startswith("Import batch-7 failed\n\u2026")
    assert description.endswith("RuntimeError: the real cause")


def test_a_long_message_and_a_long_traceback_share_the_room(make: MakeRig) -> None:
    """Both long: the message keeps 500 characters of its start, the traceback its end."""
    rig = make()
    try:
        raise RuntimeError("x" * 3_000 + " END")
    except RuntimeError:
        rig.log.exception("M" * 3_000)
    (body,) = rig.sent()
    description = body["description"]
    assert len(description) == 2_000
    assert description.startswith("M" * 499 + "\u2026\n\u2026")
    assert description.endswith("x END")
    assert body["title"] == "M" * 199 + "\u2026"


def test_a_long_message_without_traceback_is_cut_with_an_ellipsis(make: MakeRig) -> None:
    """No traceback: the message's first 1,999 characters and an ellipsis."""
    rig = make()
    rig.log.error("%s", "y" * 5_000)
    (body,) = rig.sent()
    assert body["description"] == "y" * 1_999 + "\u2026"
    assert body["title"] == "y" * 199 + "\u2026"


def test_a_blank_message_gets_a_title_from_the_logger_and_level(make: MakeRig) -> None:
    """The title is required: a blank message falls back to "ERROR in <logger>"."""
    rig = make()
    rig.log.error("   \n  ")
    rig.log.warning("\n\n  the real first line\nmore")
    blank, leading = rig.sent()
    assert blank["title"] == f"ERROR in {rig.log.name}"
    assert "description" not in blank
    assert leading["title"] == "the real first line"


def test_stack_info_comes_before_the_traceback(make: MakeRig) -> None:
    """stack_info is included, and the exception's line still ends the description."""
    rig = make()

    def fail() -> None:  # in a new thread, so the stack is short enough to keep whole
        try:
            raise KeyError("missing")
        except KeyError:
            rig.log.error("lookup failed", exc_info=True, stack_info=True)

    thread = threading.Thread(target=fail)
    thread.start()
    thread.join()
    (body,) = rig.sent()
    description = body["description"]
    assert description.index("Stack (most recent call last)") < description.index("Traceback")
    assert description.endswith("KeyError: 'missing'")


def test_a_record_from_another_process_keeps_its_traceback_text(make: MakeRig) -> None:
    """A record received from a SocketHandler has exc_text but no exc_info: it is used."""
    rig = make()
    record = logging.makeLogRecord(
        {"name": rig.log.name, "levelno": logging.ERROR, "levelname": "ERROR",
         "msg": "worker crashed", "exc_text": "Traceback ...\nOSError: disk full"}
    )  # fmt: skip
    rig.log.handle(record)
    (body,) = rig.sent()
    assert body["description"] == "worker crashed\nTraceback ...\nOSError: disk full"


def test_text_that_is_not_valid_utf8_still_makes_a_valid_alert(make: MakeRig) -> None:
    """A lone surrogate (an undecodable file name) is escaped, not a validation failure."""
    rig = make()
    rig.log.error("cannot open %s", "/data/caf\udce9.csv")
    (body,) = rig.sent()
    assert body["title"] == "cannot open /data/caf\\udce9.csv"


def test_the_secret_never_reaches_an_alert(
    make: MakeRig, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message or traceback that contains the client's secret is sent with it redacted."""
    rig = make()
    try:
        raise RuntimeError(f"bad token {SECRET}")
    except RuntimeError:
        rig.log.exception("env: OPSHIFT_SECRET=%s", SECRET)
    (body,) = rig.sent()
    raw = rig.fake.requests[0].body.decode()
    assert SECRET not in raw
    assert body["title"] == "env: OPSHIFT_SECRET=[redacted]"
    assert body["description"].endswith("RuntimeError: bad token [redacted]")
    rig.log.error("%s%s", "t" * 190, SECRET)  # the cut at 200 characters would leave a piece
    assert rig.sent()[1]["title"] == "t" * 190 + "[redacted]"
    assert SECRET[:8] not in rig.fake.requests[1].body.decode()
    assert SECRET not in repr(rig.handler)
    assert SECRET not in capsys.readouterr().err


# -- no recursion ----------------------------------------------------------------------


def test_the_sdks_own_warnings_never_becomeapp_alerts(
    root_handlers: list[logging.Handler], caplog: pytest.LogCaptureFixture
) -> None:
    """On the root logger at WARNING, the outbox's delivery warnings are not fed back."""
    caplog.set_level(logging.WARNING, logger="opshift")
    outbox = Outbox(OpShift(SECRET, base_url=refused_url(), max_retries=0), background=False)
    handler = AlertHandler("app-errors", outbox=outbox, level="WARNING")
    logging.getLogger().addHandler(handler)
    root_handlers.append(handler)
    logging.getLogger("app.root").error("Checkout failed")
    assert outbox.pending == 1
    assert one_pass(outbox) is False  # refused: the outbox logs a warning on "opshift"
    logging.getLogger("opshift.outbox").error("a child of the SDK's logger")
    sdk = [r for r in caplog.records if r.name.startswith("opshift")]
    assert any("Could not deliver" in r.getMessage() for r in sdk)
    assert outbox.pending == 1  # only the application's record was queued
    outbox.close(0)


def test_a_record_logged_inside_emit_is_ignored(make: MakeRig) -> None:
    """A message whose formatting logs again (same thread) does not recurse or deadlock."""
    rig = make()

    class Loud:
        def __str__(self) -> str:
            rig.log.error("logged from inside emit")
            return "outer"

    rig.log.error("%s", Loud())
    assert [body["title"] for body in rig.sent()] == ["outer"]
    rig.log.error("after")  # the flag is reset once emit returns
    assert [body["title"] for body in rig.sent()] == ["outer", "after"]


def test_other_threads_are_not_blocked_out_while_one_emits(make: MakeRig) -> None:
    """The re-entry flag is per thread: records from other threads still become alerts."""
    rig = make(min_interval=0)
    fan_out(rig.log.error, [("from thread %d", n) for n in range(8)])
    assert sorted(body["title"] for body in rig.sent()) == [f"from thread {n}" for n in range(8)]


def test_queuing_an_alert_holds_no_lock_other_threads_wait_on(
    make: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one thread queues an alert, another thread's record goes through the handler."""
    rig = make(min_interval=60)
    queue = rig.handler.outbox.alert
    other: list[threading.Thread] = []

    def alert(*args: Any, **kwargs: Any) -> int:
        if not other:  # the first record: log another from a thread, and wait for it
            other.append(threading.Thread(target=rig.log.error, args=("Cache down",)))
            other[0].start()
            other[0].join(10)
            assert not other[0].is_alive(), "the other thread waited on the handler's lock"
        return queue(*args, **kwargs)

    monkeypatch.setattr(rig.handler.outbox, "alert", alert)
    rig.log.error("Queue stuck")
    assert sorted(body["title"] for body in rig.sent()) == ["Cache down", "Queue stuck"]


def test_a_repeat_logged_while_its_groups_alert_is_built_is_counted_once(
    make: MakeRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repeat logged while its group's alert is built is counted, not sent twice."""
    rig = make(min_interval=60)
    queue = rig.handler.outbox.alert
    repeated: list[bool] = []

    def alert(*args: Any, **kwargs: Any) -> int:
        if not repeated:
            repeated.append(True)
            repeat = threading.Thread(target=rig.log.error, args=("Queue %s stuck", "b"))
            repeat.start()
            repeat.join(10)
            assert not repeat.is_alive(), "the repeat waited on the handler's lock"
        return queue(*args, **kwargs)

    monkeypatch.setattr(rig.handler.outbox, "alert", alert)
    rig.log.error("Queue %s stuck", "a")
    rig.clock.advance(60)
    rig.log.error("Queue %s stuck", "c")
    assert [(b["title"], b["metadata"].get("suppressed")) for b in rig.sent()] == [
        ("Queue a stuck", None),
        ("Queue c stuck", 1),
    ]


# -- never blocking, delivery after an outage --------------------------------------------


def test_emit_returns_at_once_while_opshift_never_answers() -> None:
    """Against a server that accepts and never answers, 50 records log in well under 5 s."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # never accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        outbox = Outbox(OpShift(SECRET, base_url=url, timeout=30), exit_timeout=0)
        handler = AlertHandler("app-errors", outbox=outbox, min_interval=0)
        log = quiet_logger("app.silent")
        log.addHandler(handler)
        started = time.monotonic()
        try:
            for n in range(50):
                log.error("Order %d failed", n)
        finally:
            log.removeHandler(handler)
        elapsed = time.monotonic() - started
        assert outbox.pending == 50
        outbox.close(0)
    assert elapsed < 5  # one send alone would wait 30 s


def test_alerts_logged_during_an_outage_arrive_when_opshift_is_back() -> None:
    """Refused while down; the handler's own outbox keeps them and delivers after restart."""
    with OpShiftServer(SECRET, auto_create=True) as server:
        port = int(server.url.rsplit(":", 1)[1])
    client = OpShift(SECRET, base_url=f"http://127.0.0.1:{port}")
    handler = AlertHandler("app-errors", client=client, min_interval=0)
    log = quiet_logger("app.outage")
    log.addHandler(handler)
    try:
        for name in ("db", "cache", "queue"):
            log.error("Lost connection to %s", name)
            log.error("Different template for %s", name)
        assert handler.outbox.pending == 6
        with OpShiftServer(SECRET, auto_create=True, port=port) as server:
            assert handler.outbox.flush(10) is True
    finally:
        log.removeHandler(handler)
        handler.close()
    titles = sorted(body["title"] for body in app_alerts(server))
    assert titles == sorted(
        [f"Lost connection to {n}" for n in ("db", "cache", "queue")]
        + [f"Different template for {n}" for n in ("db", "cache", "queue")]
    )


def test_a_full_outbox_counts_and_reports_every_refused_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Full: each refused record is counted, warned of once, and queued again once room is made."""
    answers = {"status": 503}

    def transport(url: str, body: bytes, headers: Any, timeout: float) -> tuple[int, bytes]:
        return answers["status"], b'{"status": "created", "message": "Alert created"}'

    outbox = Outbox(OpShift(SECRET, transport=transport), background=False, max_pending=2)
    handler = AlertHandler("app-errors", outbox=outbox)
    log = quiet_logger("app.full")
    log.addHandler(handler)
    try:
        with caplog.at_level(logging.WARNING, logger="opshift"):
            for n in range(5):
                log.error(f"distinct failure {n}")  # distinct: no rate limit folds them
        assert (outbox.pending, outbox.stats["dropped_full"]) == (2, 3)
        (warning,) = [r.getMessage() for r in caplog.records if "Outbox full" in r.getMessage()]
        assert "dropped the new alert to /api/alerts/trigger/app-errors" in warning
        answers["status"] = 200
        assert outbox.flush(5) is True
        log.error("after the outage")
        assert (outbox.pending, outbox.stats["dropped_full"]) == (1, 3)
    finally:
        log.removeHandler(handler)
        handler.close()


def _full_of_alerts(path: Any = None) -> tuple[Outbox, AlertHandler, logging.Logger]:
    """An AlertHandler on an outbox (max_pending 2) that OpShift's 503s have filled."""
    outbox = Outbox(
        OpShift(SECRET, transport=lambda *call: (503, b"{}")),
        path,
        background=False,
        max_pending=2,
    )
    handler = AlertHandler("app-errors", outbox=outbox)
    log = quiet_logger(f"app.full.{id(handler)}")
    log.addHandler(handler)
    for n in range(3):
        log.error(f"distinct failure {n}")
    assert outbox.stats["dropped_full"] == 1
    return outbox, handler, log


def test_a_closed_full_outbox_is_reported_closed_not_counted_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After close(), a record is the handler's error ("closed"), not a silent refusal."""
    outbox, handler, log = _full_of_alerts()
    errors: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", errors.append)
    outbox.close(0)
    log.error("after close")
    assert len(errors) == 1
    assert outbox.stats["dropped_full"] == 1
    log.removeHandler(handler)


def test_a_full_file_outbox_refuses_without_waiting_for_the_sender(tmp_path: Any) -> None:
    """While the sender holds the file (a lock wait), a refused record still returns at once."""
    outbox, handler, log = _full_of_alerts(tmp_path / "spool.db")
    held = sender(outbox).locks()[-1]  # the lock the sender holds through its file's writes
    emitted = threading.Thread(target=log.error, args=("while the sender waits",), daemon=True)
    with held:
        emitted.start()
        emitted.join(10)
        assert not emitted.is_alive()
    assert outbox.stats["dropped_full"] == 2
    log.removeHandler(handler)
    outbox.close(0)
