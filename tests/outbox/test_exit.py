"""Interpreter exit: one exit_timeout for every outbox and handler together, and what is left
behind said where someone sees it (stderr when no handler outside the SDK would show it)."""

from __future__ import annotations

import logging
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from opshift import AlertHandler, OpShift, Outbox
from opshift.outbox import _report
from opshift.outbox._sqlite import SQLiteStore
from opshift.testing import OpShiftServer

from ..helpers import SECRET, python, refused_url

EXIT_TIMEOUT = 2.0  # an AlertHandler's own outbox's default


def _exit_of(code: str) -> tuple[str, str, float]:
    """Run ``code`` in a new interpreter; its stdout, stderr and the seconds its exit took
    (from the end of ``code`` to the end of the process)."""
    child = python(textwrap.dedent(code) + "\nimport time\nprint('END', time.time(), flush=True)\n")
    out, err = child.communicate(timeout=60)
    ended = time.time()
    assert child.returncode == 0, err
    last = [line for line in out.splitlines() if line.startswith("END ")][-1]
    return out, err, ended - float(last.split()[1])


HANDLER_ON_ROOT = f"""
import logging, sys
from opshift import AlertHandler, OpShift
{{setup}}
logging.getLogger().addHandler(
    AlertHandler("x", client=OpShift({SECRET!r}, base_url={{url!r}}))
)
logging.error("boom")
"""


def test_a_handlers_own_outbox_takes_one_exit_timeout_and_reports_its_loss() -> None:
    """OpShift unreachable: exit takes one exit_timeout, not two, and the loss is on stderr."""
    _, err, took = _exit_of(HANDLER_ON_ROOT.format(setup="", url=refused_url()))
    assert took < 2 * EXIT_TIMEOUT, (took, err)
    assert "1 item lost (in memory)" in err
    assert "/api/alerts/trigger/x" in err
    assert err.count("lost") == 1  # said once, though both the flush and close() saw it


def test_a_longer_exit_timeout_elsewhere_does_not_lengthen_a_handlers_share() -> None:
    """Another outbox's exit_timeout of 10 leaves the handler's own outbox one 2 s share."""
    setup = "from opshift import Outbox\nother = Outbox(OpShift('ab' * 32), exit_timeout=10)"
    _, err, took = _exit_of(HANDLER_ON_ROOT.format(setup=setup, url=refused_url()))
    assert took < 2 * EXIT_TIMEOUT - 0.5, (took, err)
    assert "1 item lost (in memory)" in err


def test_a_root_level_of_error_does_not_silence_a_loss() -> None:
    """basicConfig(level=ERROR), "only errors": an alert lost at exit is one of them."""
    setup = (
        "logging.basicConfig(level=logging.ERROR, stream=sys.stdout,"
        " format='LOGGED %(levelname)s %(message)s')"
    )
    out, err, _ = _exit_of(HANDLER_ON_ROOT.format(setup=setup, url=refused_url()))
    assert "LOGGED ERROR 1 item lost (in memory)" in out, (out, err)


def test_a_loss_goes_through_logging_when_a_handler_would_show_it() -> None:
    """With a console handler beside AlertHandler, the loss is logged there, not printed raw."""
    setup = "logging.basicConfig(stream=sys.stdout, format='LOGGED %(name)s %(message)s')"
    out, err, _ = _exit_of(HANDLER_ON_ROOT.format(setup=setup, url=refused_url()))
    assert "LOGGED opshift 1 item lost (in memory)" in out
    assert "lost" not in err


def test_a_file_outbox_says_what_it_keeps_for_the_next_run(tmp_path: Path) -> None:
    """Left in the file at exit: count, destination and path, on stderr."""
    path = tmp_path / "o.sqlite3"
    code = f"""
        from opshift import OpShift, Outbox
        outbox = Outbox(OpShift({SECRET!r}, base_url={refused_url()!r}), {str(path)!r},
                        exit_timeout=0.2)
        for n in range(3):
            outbox.ping("payments-worker", status="down")
        """
    _, err, _ = _exit_of(code)
    assert f"items kept in {path} for the next run" in err
    assert "/api/ping/payments-worker" in err


def test_a_job_sharing_a_file_neither_waits_for_nor_reports_another_processs_claim(
    tmp_path: Path,
) -> None:
    """A cron job sharing a live worker's file exits at once, silent on the worker's items."""
    path = tmp_path / "o.sqlite3"
    worker = Outbox(OpShift(SECRET, base_url=refused_url()), path, background=False)
    worker.alert("worker-errors", title="being sent")
    store = SQLiteStore(str(path))  # the worker's sender, mid-send: it holds the destination
    assert store.claim(time.time(), 90.0) is not None
    code = f"""
        from opshift import OpShift, Outbox
        from opshift.testing import FakeTransport
        client = OpShift({SECRET!r}, transport=FakeTransport({SECRET!r}))
        outbox = Outbox(client, {str(path)!r}, exit_timeout=30)
        outbox.ping("nightly-backup")
        """
    _, err, took = _exit_of(code)
    assert took < 15, (took, err)
    assert "kept" not in err and "worker-errors" not in err, err
    store.close()
    worker.close(0)


def test_several_outboxes_share_one_exit_budget() -> None:
    """Two outboxes on a hung OpShift flush side by side: exit takes one exit_timeout."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code = f"""
            from opshift import OpShift, Outbox
            boxes = [Outbox(OpShift({SECRET!r}, base_url={url!r}, timeout=30), exit_timeout=1.0)
                     for _ in range(2)]
            for box in boxes:
                box.alert("h", title="t")
            """
        _, err, took = _exit_of(code)
    assert took < 2 * 1.0, (took, err)
    assert err.count("1 item lost (in memory)") == 2


def test_an_alert_still_being_built_at_exit_waits_within_the_one_budget() -> None:
    """A thread stuck building an alert at exit: close() waits only what the flush left."""
    stuck = """
        import threading
        class Stuck:
            def __str__(self):
                threading.Event().wait()  # a log argument whose text never comes
        building = threading.Event()
        def log_stuck():
            building.set()
            logging.error("job %s failed", Stuck())
        threading.Thread(target=log_stuck, daemon=True).start()
        building.wait()
        """
    code = HANDLER_ON_ROOT.format(setup="", url=refused_url()) + textwrap.dedent(stuck)
    _, err, took = _exit_of(code)
    assert took < 2 * EXIT_TIMEOUT - 0.5, (took, err)
    assert "1 item lost (in memory)" in err  # "boom"; the stuck one never reached the outbox


@pytest.fixture
def sdk_logger() -> Iterator[logging.Logger]:
    """The opshift logger with no handlers and no parents; restored afterwards."""
    log = logging.getLogger("opshift")
    saved = (log.handlers[:], log.propagate, log.level)
    log.handlers, log.propagate, log.level = [], False, logging.NOTSET
    yield log
    log.handlers, log.propagate, log.level = saved[0], saved[1], saved[2]


def test_only_a_handler_outside_the_sdk_counts_as_showing_a_record(
    sdk_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AlertHandlers never show the SDK's records; any other handler or lastResort does."""
    handler = AlertHandler("x", client=OpShift(SECRET, base_url=refused_url()))
    try:
        assert _report.shown_elsewhere(logging.WARNING)  # no handler: lastResort prints it
        monkeypatch.setattr(logging, "lastResort", None)
        assert not _report.shown_elsewhere(logging.WARNING)
        sdk_logger.addHandler(handler)
        assert not _report.shown_elsewhere(logging.WARNING)
        quiet = logging.StreamHandler()
        quiet.setLevel(logging.CRITICAL)
        sdk_logger.addHandler(quiet)
        assert not _report.shown_elsewhere(logging.WARNING)  # too high a level to show it
        sdk_logger.addHandler(logging.NullHandler())
        assert _report.shown_elsewhere(logging.WARNING)
        sdk_logger.setLevel(logging.ERROR)
        assert not _report.shown_elsewhere(logging.WARNING)  # the logger drops it first
    finally:
        handler.close()


def test_the_report_honours_the_applications_own_silencing(
    sdk_logger: logging.Logger, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """logging.disable or the opshift logger's own level silence it; a filtered warning too."""
    monkeypatch.setattr(logging, "lastResort", None)  # nobody shows it: stderr would
    logging.disable(logging.ERROR)
    try:
        _report.say("gone", logging.ERROR)
    finally:
        logging.disable(logging.NOTSET)
    sdk_logger.setLevel(logging.CRITICAL)
    _report.say("gone", logging.ERROR)
    sdk_logger.setLevel(logging.ERROR)
    _report.say("kept", logging.WARNING)
    assert capsys.readouterr().err == ""
    _report.say("lost", logging.ERROR)
    assert capsys.readouterr().err == "opshift: lost\n"
    monkeypatch.setattr("sys.stderr", None)
    _report.say("lost", logging.ERROR)  # no stream at all: nothing, and no error


def test_an_integrations_held_up_goes_out_with_an_outbox_made_after_it(
    live: OpShiftServer,
) -> None:
    """Held ups are queued before the exit flush, though the outbox came after the import."""
    code = f"""
        from opshift import OpShift, Outbox
        from opshift.integrations._core import Run, reporter_for
        outbox = Outbox(OpShift({SECRET!r}, base_url={live.url!r}))
        reporter = reporter_for(outbox, source="test")
        reporter.succeeded(Run(token="nightly", task="first"))
        reporter.succeeded(Run(token="nightly", task="second"))  # held: within the spacing
        """
    _, err, _ = _exit_of(code)
    tasks = [r.json["metadata"]["task"] for r in live.requests if isinstance(r.json, dict)]
    assert tasks == ["first", "second"], err


def test_an_exit_callback_interrupted_still_lets_the_outboxes_flush(
    live: OpShiftServer,
) -> None:
    """Ctrl-C in a callback before the flush (a hung direct send): the outbox still delivers."""
    code = f"""
        from opshift import OpShift, Outbox
        from opshift.outbox import _process
        outbox = Outbox(OpShift({SECRET!r}, base_url={live.url!r}))
        def interrupted():
            raise KeyboardInterrupt
        _process.before_exit_flush(interrupted)
        outbox.ping("nightly")
        """
    _, err, _ = _exit_of(code)
    assert [r.path for r in live.requests] == ["/api/ping/nightly"], err
    assert "An exit callback failed" in err
