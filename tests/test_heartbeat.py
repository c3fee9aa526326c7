"""client.heartbeat(): ticks over real HTTP, prompt stop, failures logged, fork-safe."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Mapping

import pytest

from opshift import ConfigurationError, OpShift
from opshift.testing import FakeTransport, OpShiftServer

from .helpers import SECRET


class CountingTransport:
    """Wraps a transport; sets an event once ``target`` requests have gone through."""

    def __init__(self, inner: object, target: int) -> None:
        self.inner = inner
        self.target = target
        self.count = 0
        self.reached = threading.Event()

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        try:
            return self.inner(url, body, headers, timeout)  # type: ignore[operator, no-any-return]
        finally:
            self.count += 1
            if self.count >= self.target:
                self.reached.set()


def test_ticks_over_http_and_stops_promptly(
    server: OpShiftServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Pings go out every interval; stop() returns without waiting out the interval."""
    from opshift import UrllibTransport

    counter = CountingTransport(UrllibTransport(), target=3)
    client = OpShift(SECRET, base_url=server.url, transport=counter)
    heartbeat = client.heartbeat("payments-worker", interval=0.05, metadata={"worker": "a"})
    with heartbeat:
        running_inside = heartbeat.running
        assert counter.reached.wait(10)
    assert running_inside
    assert not heartbeat.running
    assert heartbeat.pings_sent >= 3
    bodies = [r.json for r in server.requests]
    assert bodies[0] == {"status": "up", "metadata": {"worker": "a"}}
    assert all(r.signature_valid for r in server.requests)
    assert any("under 6 s" in r.getMessage() for r in caplog.records)  # warned once
    assert sum("under 6 s" in r.getMessage() for r in caplog.records) == 1


def test_stop_does_not_wait_out_a_long_interval(server: OpShiftServer) -> None:
    counter = CountingTransport(FakeTransport(SECRET), target=1)
    heartbeat = OpShift(SECRET, transport=counter).heartbeat("w", interval=3600).start()
    assert counter.reached.wait(10)
    started = time.monotonic()
    assert heartbeat.stop() is True
    assert time.monotonic() - started < 5  # the interval is an hour
    assert counter.count == 1


def test_failures_are_logged_and_retried_next_tick(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTransport(SECRET)
    fake.fail_next(503, times=2)
    counter = CountingTransport(fake, target=3)
    client = OpShift(SECRET, transport=counter, max_retries=0)
    with client.heartbeat("w", interval=0.01) as heartbeat:
        assert counter.reached.wait(10)
    assert heartbeat.failures == 2
    assert heartbeat.pings_sent >= 1
    failures = [r for r in caplog.records if "failed (will retry next tick)" in r.getMessage()]
    assert len(failures) == 2
    assert "503" in failures[0].getMessage()


def test_thread_is_a_daemon() -> None:
    counter = CountingTransport(FakeTransport(SECRET), target=1)
    heartbeat = OpShift(SECRET, transport=counter).heartbeat("w", interval=3600).start()
    try:
        assert heartbeat._thread is not None
        assert heartbeat._thread.daemon
    finally:
        heartbeat.stop()


def test_process_exits_with_a_running_heartbeat(server: OpShiftServer) -> None:
    """A running heartbeat never keeps the interpreter alive at exit."""
    import subprocess

    code = (
        "import opshift\n"
        f"c = opshift.OpShift({SECRET!r}, base_url={server.url!r})\n"
        "c.heartbeat('payments-worker', interval=3600).start()\n"
        "print('exiting')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, text=True)
    assert done.returncode == 0
    assert done.stdout == "exiting\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, on purpose
def test_forked_child_does_not_inherit_a_running_heartbeat() -> None:
    counter = CountingTransport(FakeTransport(SECRET), target=1)
    heartbeat = OpShift(SECRET, transport=counter).heartbeat("w", interval=3600).start()
    assert counter.reached.wait(10)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report what it sees, then leave without running pytest's exit
        state = b"running" if heartbeat.running else b"stopped"
        stopped = heartbeat.stop(timeout=1)
        os.write(write, state + (b",stop-ok" if stopped else b",stop-hung"))
        os._exit(0)
    os.close(write)
    report = os.read(read, 100)
    os.close(read)
    os.waitpid(pid, 0)
    assert report == b"stopped,stop-ok"
    assert heartbeat.running  # the parent's heartbeat is untouched
    heartbeat.stop()


@pytest.mark.parametrize("interval", [0, -1, "60", True])
def test_bad_interval(interval: object) -> None:
    with pytest.raises(ConfigurationError, match="interval"):
        OpShift(SECRET).heartbeat("w", interval=interval)  # type: ignore[arg-type]


def test_no_warning_for_a_safe_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    OpShift(SECRET).heartbeat("w", interval=6)
    assert caplog.records == []
