"""The sender thread and the process: it starts with the outbox, wakes, waits when idle,
ends with the outbox and survives a bug; flush, close and the exit flush keep their
deadlines; fork() leaves each process its own."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from opshift import (
    OpShift,
    UrllibTransport,
)
from opshift.outbox import Outbox, _delivery, _sender
from opshift.outbox._outbox import sender
from opshift.testing import FakeTransport, OpShiftServer

from ..helpers import SECRET, bodies, delivery, in_forked_child, python, quiet_outbox, refused_url


def test_the_sender_delivers_without_a_flush(live: OpShiftServer) -> None:
    """Queuing wakes the background sender by itself: the alert arrives with no flush()."""
    arrived = threading.Event()
    inner = UrllibTransport()

    def transport(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        answer = inner(url, body, headers, timeout)
        arrived.set()
        return answer

    outbox = Outbox(OpShift(SECRET, base_url=live.url, transport=transport))
    outbox.alert("h", title="unprompted")
    assert arrived.wait(10)
    outbox.close()
    assert bodies(live, "/api/alerts/trigger/h") == [{"title": "unprompted"}]


def test_the_sender_starts_with_the_outbox_and_waits_while_it_is_idle(
    live: OpShiftServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread runs before the first item and stays when idle: no item waits for a start."""
    monkeypatch.setattr(_sender, "IDLE_EXIT", 0.0)
    outbox = Outbox(OpShift(SECRET, base_url=live.url))
    first = sender(outbox).thread
    assert first is not None and first.is_alive()
    outbox.alert("h", title="first")
    assert outbox.flush(10)
    first.join(0.2)  # idle at once (IDLE_EXIT 0): it used to end here
    assert first.is_alive()
    outbox.alert("h", title="second")
    assert sender(outbox).thread is first
    assert outbox.flush(10)
    assert [b["title"] for b in bodies(live, "/api/alerts/trigger/h")] == ["first", "second"]
    outbox.close()
    first.join(10)
    assert not first.is_alive()


def test_a_dropped_outbox_is_collected_and_its_idle_sender_ends(
    live: OpShiftServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dropped outbox whose work is done is collected; its waiting thread ends at once."""
    import gc
    import weakref

    monkeypatch.setattr(_sender, "IDLE_EXIT", 0.0)
    monkeypatch.setattr(_sender, "PARKED_CHECK", 60.0)  # no wait for the parked check
    outbox = Outbox(OpShift(SECRET, base_url=live.url))
    outbox.alert("h", title="last")
    assert outbox.flush(10)
    thread = sender(outbox).thread
    assert thread is not None
    ref = weakref.ref(outbox)
    del outbox
    gc.collect()
    assert ref() is None
    thread.join(10)
    assert not thread.is_alive()
    assert [b["title"] for b in bodies(live, "/api/alerts/trigger/h")] == ["last"]


def test_a_close_whose_wake_up_the_sender_missed_still_ends_it(
    live: OpShiftServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() landing as the sender clears its wake-up: the idle sender ends, not waits."""
    monkeypatch.setattr(_sender, "IDLE_EXIT", 0.0)
    outbox = Outbox(OpShift(SECRET, base_url=live.url))
    work = delivery(outbox)
    real = work.deliver_due

    def deliver_due(**options: Any) -> float | None:
        delay = real(**options)
        work.stopping = True  # as stop() does, its wake-up already taken by the clear
        return delay

    monkeypatch.setattr(work, "deliver_due", deliver_due)
    thread = sender(outbox).thread
    assert thread is not None
    outbox.alert("h", title="last")
    thread.join(10)
    assert not thread.is_alive()
    assert [b["title"] for b in bodies(live, "/api/alerts/trigger/h")] == ["last"]


def test_the_sender_survives_a_failing_pass_and_says_so_once(
    live: OpShiftServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error in a sender pass is logged (once) and delivery goes on."""
    outbox = Outbox(OpShift(SECRET, base_url=live.url))
    real = delivery(outbox).deliver_due
    calls = 0

    def flaky(**kwargs: Any) -> float | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in a store")
        return real(**kwargs)

    monkeypatch.setattr(delivery(outbox), "deliver_due", flaky)
    monkeypatch.setattr(_delivery, "IDLE_POLL", 0.01)
    outbox.alert("h", title="t")
    sender(outbox).wake()  # the failing pass waits 5 s; wake it rather than wait
    assert outbox.flush(10)
    outbox.close()
    errors = [r for r in caplog.records if "could not use its queue" in r.getMessage()]
    assert len(errors) == 1
    assert errors[0].exc_info is not None  # a bug: with its traceback
    assert bodies(live, "/api/alerts/trigger/h") == [{"title": "t"}]


def test_when_no_thread_can_start_flush_delivers_in_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At interpreter shutdown no thread can start: the outbox delivers in the caller."""
    fake = FakeTransport(SECRET)
    outbox = Outbox(OpShift(SECRET, transport=fake))

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert outbox.alert("h", title="t") > 0  # queued, even with no sender
    assert outbox.flush(10)
    assert [r.json for r in fake.requests] == [{"title": "t"}]


def test_close_twice_and_use_after_close_are_calm(tmp_path: Path) -> None:
    """A second close() repeats the first's answer; pending and flush() after it are calm."""
    outbox = quiet_outbox(OpShift(SECRET, base_url=refused_url()), tmp_path / "o.sqlite3")
    outbox.alert("h", title="t")
    with outbox:
        assert outbox.close(0) is False
    assert outbox.close() is False
    assert outbox.pending == 1
    assert outbox.flush(1) is False


def test_flush_close_and_exit_keep_their_deadlines_without_a_sender_thread() -> None:
    """Inline flush, close(0) and the exit flush keep their deadlines while OpShift hangs."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        outbox = Outbox(OpShift(SECRET, base_url=url, timeout=30), background=False)
        for n in range(4):
            outbox.alert(f"hook-{n}", title="t")
        started = time.monotonic()
        assert outbox.flush(0.5) is False
        flushed_in = time.monotonic() - started
        started = time.monotonic()
        assert outbox.close(0) is False
        closed_in = time.monotonic() - started
        code = f"""
            import time
            from opshift import OpShift, Outbox
            outbox = Outbox(OpShift({SECRET!r}, base_url={url!r}, timeout=30),
                            background=False, exit_timeout=0.5)
            for n in range(4):
                outbox.alert(f"hook-{{n}}", title="t")
            """
        child = python(code)
        started = time.monotonic()
        child.communicate(timeout=60)
        exited_in = time.monotonic() - started
    assert flushed_in < 5  # one hung send bounded by what was left, not 4 x 30 s
    assert closed_in < 1
    assert exited_in < 10
    assert outbox.stats["retried"] <= 1  # a send cut short by the deadline is one retry


def test_exit_flush_delivers_and_is_bounded(live: OpShiftServer) -> None:
    """At interpreter exit the outbox flushes; a hung OpShift costs at most exit_timeout."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        hung = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code = """
            import time
            from opshift import OpShift, Outbox
            outbox = Outbox(OpShift({secret!r}, base_url={url!r}, timeout=30), exit_timeout=0.5)
            outbox.alert("deploy-failures", title="sent at exit")
            started = time.monotonic()
            import atexit
            atexit.register(lambda: print(round(time.monotonic() - started, 1), flush=True))
            """
        hung_child = python(code.format(secret=SECRET, url=hung))
        out, err = hung_child.communicate(timeout=60)
    assert hung_child.returncode == 0, err
    assert float(out.strip()) < 10  # bounded by exit_timeout, far from the 30 s send timeout
    ok_child = python(code.format(secret=SECRET, url=live.url))
    out, err = ok_child.communicate(timeout=60)
    assert ok_child.returncode == 0, err
    assert bodies(live, "/api/alerts/trigger/deploy-failures") == [{"title": "sent at exit"}]


def test_exit_flush_delivers_a_file_outbox(live: OpShiftServer, tmp_path: Path) -> None:
    """A cron job that queues to a file and exits has its items delivered by the exit flush."""
    code = f"""
        from opshift import OpShift, Outbox
        outbox = Outbox(OpShift({SECRET!r}, base_url={live.url!r}), {str(tmp_path / "o.db")!r})
        for n in range(3):
            outbox.alert("deploy-failures", title=f"t{{n}}")
        """
    child = python(code)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert "Could not flush" not in err
    assert [b["title"] for b in bodies(live, "/api/alerts/trigger/deploy-failures")] == [
        "t0",
        "t1",
        "t2",
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, on purpose
def test_forked_child_gets_its_own_outbox_and_no_parent_items(live: OpShiftServer) -> None:
    """After fork() the child's in-memory outbox is empty and delivers its own items."""
    outbox = quiet_outbox(OpShift(SECRET, base_url=live.url), clock=time.time)
    outbox.alert("parent-hook", title="the parent's")

    def child() -> bytes:
        empty = outbox.pending == 0
        outbox.alert("child-hook", title="the child's")
        sent = outbox.flush(10)
        return f"{empty},{sent}".encode()

    assert in_forked_child(child) == b"True,True"
    assert outbox.pending == 1
    assert outbox.flush(10)
    assert [r.path for r in live.requests] == [
        "/api/alerts/trigger/child-hook",
        "/api/alerts/trigger/parent-hook",
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, on purpose
def test_a_forked_childs_sender_runs_before_its_first_item(live: OpShiftServer) -> None:
    """A child's sender starts at fork, as the parent's did with the outbox, not on an item."""
    outbox = Outbox(OpShift(SECRET, base_url=live.url))

    def child() -> bytes:
        thread = sender(outbox).thread
        running = thread is not None and thread.is_alive()
        outbox.alert("child-hook", title="the child's")
        return f"{running},{sender(outbox).thread is thread},{outbox.flush(10)}".encode()

    assert in_forked_child(child) == b"True,True,True"
    assert [r.path for r in live.requests] == ["/api/alerts/trigger/child-hook"]
    outbox.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, on purpose
def test_forked_child_uses_the_file_with_connections_of_its_own(
    live: OpShiftServer, tmp_path: Path
) -> None:
    """After fork() a file outbox works in both processes, each with its own connections."""
    path = tmp_path / "o.sqlite3"
    outbox = quiet_outbox(OpShift(SECRET, base_url=live.url), path, clock=time.time)
    outbox.alert("parent-hook", title="the parent's")

    def child() -> bytes:
        seen = outbox.pending
        outbox.alert("child-hook", title="the child's")
        sent = outbox.flush(10)
        return f"{seen},{sent}".encode()

    assert in_forked_child(child) == b"1,True"  # the child delivered both: one file, shared
    assert outbox.pending == 0
    assert sorted(r.path for r in live.requests) == [
        "/api/alerts/trigger/child-hook",
        "/api/alerts/trigger/parent-hook",
    ]
    outbox.alert("parent-hook", title="again")
    assert outbox.flush(10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("logging_first", [True, False], ids=["logging-first", "outbox-first"])
def test_a_childs_sender_starts_after_loggings_fork_hook(logging_first: bool) -> None:
    """A child's sender starts once logging works in it, whether logging came first or last."""
    child = python(
        """
        import os, sys, threading
        from opshift import OpShift, Outbox   # imports no logging
        from opshift.outbox import _sender
        if LOGGING_FIRST:
            import logging
        outcome = []
        after_fork = _sender.Sender.after_fork
        def probe(self):  # where the child's sender thread starts: can another thread log?
            after_fork(self)
            logging = sys.modules["logging"]
            thread = threading.Thread(target=logging.getLogger, args=("probe",), daemon=True)
            thread.start()
            thread.join(5)
            outcome.append("stuck" if thread.is_alive() else "ok")
        _sender.Sender.after_fork = probe
        outbox = Outbox(OpShift("ab" * 32, base_url="http://127.0.0.1:9"))
        import logging  # the app's, after its outboxes (a no-op if it came first)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if outcome == ["ok"] else 1)
        print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
        """.replace("LOGGING_FIRST", str(logging_first))
    )
    out, err = child.communicate(timeout=60)
    assert out.strip() == "child 0", err
