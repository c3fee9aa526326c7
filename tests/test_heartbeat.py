"""client.heartbeat(): starts at once, ticks on an injected clock, stops promptly, fork-safe."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping

import pytest

from opshift import BadRequestError, ConfigurationError, Heartbeat, OpShift, UrllibTransport
from opshift.testing import FakeTransport, OpShiftServer

from .helpers import SECRET, in_forked_child


class FakeTime:
    """A clock that only moves when told, and a wait that records and returns at once.

    ``wait`` stops the heartbeat (returns True) after ``ticks`` waits, so a test runs a
    fixed number of ticks without a real interval ever passing.
    """

    def __init__(self, ticks: int) -> None:
        self.now = 1000.0
        self.ticks = ticks
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return len(self.waits) >= self.ticks


class SlowTransport:
    """Wraps a transport; each call advances the fake clock by ``cost`` seconds."""

    def __init__(self, inner: FakeTransport, time: FakeTime, cost: float) -> None:
        self.inner = inner
        self.time = time
        self.cost = cost

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        self.time.now += self.cost
        return self.inner(url, body, headers, timeout)


class SignallingTransport:
    """A FakeTransport that sets ``pinged`` once a ping went through."""

    def __init__(self) -> None:
        self.fake = FakeTransport(SECRET)
        self.pinged = threading.Event()

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        try:
            return self.fake(url, body, headers, timeout)
        finally:
            self.pinged.set()


def thread_of(heartbeat: Heartbeat) -> threading.Thread | None:
    """The heartbeat's thread, as a user sees it: the live thread named after its token."""
    name = f"opshift-heartbeat-{heartbeat.ping_token}"
    found = [t for t in threading.enumerate() if t.name == name]
    assert len(found) <= 1, found
    return found[0] if found else None


def run_to_end(heartbeat: Heartbeat) -> Heartbeat:
    """Start the heartbeat and wait for its thread to end on its own (the fake wait ends it)."""
    heartbeat.start()
    thread = thread_of(heartbeat)
    if thread is not None:  # None: it already ended
        thread.join(10)
    assert not heartbeat.running
    return heartbeat


def test_heartbeat_pings_at_once_without_start(server: OpShiftServer) -> None:
    """client.heartbeat() starts pinging by itself; stop() right after has still pinged."""
    client = OpShift(SECRET, base_url=server.url)
    heartbeat = client.heartbeat("payments-worker", interval=3600, metadata={"worker": "a"})
    assert heartbeat.stop() is True
    assert heartbeat.pings_sent == 1
    assert [r.json for r in server.requests] == [{"status": "up", "metadata": {"worker": "a"}}]
    assert server.requests[0].signature_valid


def test_with_block_stops_it_and_start_on_a_running_heartbeat_does_nothing(
    server: OpShiftServer,
) -> None:
    """`with` keeps the one running thread; start() again returns it unchanged."""
    client = OpShift(SECRET, base_url=server.url)
    with client.heartbeat("payments-worker", interval=3600) as heartbeat:
        thread = thread_of(heartbeat)
        assert thread is not None
        assert heartbeat.start() is heartbeat
        assert thread_of(heartbeat) is thread
        running_inside = heartbeat.running
    assert running_inside
    assert not heartbeat.running
    assert len(server.requests) == 1


def test_ticks_every_interval_on_the_injected_clock() -> None:
    """Pings go out at once and then once per interval; no real time passes."""
    fake = FakeTransport(SECRET)
    time = FakeTime(ticks=3)
    heartbeat = Heartbeat(
        OpShift(SECRET, transport=fake), "w", interval=60, clock=time.clock, wait=time.wait
    )
    run_to_end(heartbeat)
    assert time.waits == [60.0, 60.0, 60.0]
    assert heartbeat.pings_sent == 3
    assert len(fake.requests) == 3


def test_slow_pings_skip_missed_ticks_instead_of_bursting() -> None:
    """A ping that takes longer than the interval does not cause a catch-up burst."""
    fake = FakeTransport(SECRET)
    time = FakeTime(ticks=3)
    client = OpShift(SECRET, transport=SlowTransport(fake, time, cost=150.0))
    heartbeat = Heartbeat(client, "w", interval=60, clock=time.clock, wait=time.wait)
    run_to_end(heartbeat)
    assert time.waits == [60.0, 60.0, 60.0]  # a full interval after each slow ping, never 0
    assert heartbeat.pings_sent == 3


def test_a_quick_ping_keeps_the_schedule() -> None:
    """The wait is the interval minus the time the ping took."""
    fake = FakeTransport(SECRET)
    time = FakeTime(ticks=2)
    client = OpShift(SECRET, transport=SlowTransport(fake, time, cost=15.0))
    heartbeat = Heartbeat(client, "w", interval=60, clock=time.clock, wait=time.wait)
    run_to_end(heartbeat)
    assert time.waits == [45.0, 45.0]


def test_failures_are_logged_and_retried_next_tick(caplog: pytest.LogCaptureFixture) -> None:
    """A failed ping is counted and logged at WARNING; the next tick tries again."""
    fake = FakeTransport(SECRET)
    fake.fail_next(503, times=2)
    time = FakeTime(ticks=3)
    client = OpShift(SECRET, transport=fake, max_retries=0)
    heartbeat = run_to_end(Heartbeat(client, "w", interval=60, clock=time.clock, wait=time.wait))
    assert (heartbeat.failures, heartbeat.pings_sent) == (2, 1)
    failures = [r for r in caplog.records if "failed (will retry next tick)" in r.getMessage()]
    assert len(failures) == 2
    assert "503" in failures[0].getMessage()


def test_stop_does_not_wait_out_a_long_interval() -> None:
    """stop() wakes the thread waiting out an hour-long interval at once."""
    transport = SignallingTransport()
    pinged = transport.pinged
    heartbeat = OpShift(SECRET, transport=transport).heartbeat("w", interval=3600)
    assert pinged.wait(10)
    assert heartbeat.stop(timeout=10) is True  # an hour-long wait would fail this


def test_thread_is_a_daemon() -> None:
    """The heartbeat thread never keeps the interpreter alive."""
    heartbeat = OpShift(SECRET, transport=FakeTransport(SECRET)).heartbeat("w", interval=3600)
    try:
        thread = thread_of(heartbeat)
        assert thread is not None
        assert thread.daemon
    finally:
        heartbeat.stop()


def test_process_exits_with_a_running_heartbeat(server: OpShiftServer) -> None:
    """A process with a running heartbeat exits normally at its end."""
    code = (
        "import opshift\n"
        f"c = opshift.OpShift({SECRET!r}, base_url={server.url!r})\n"
        "c.heartbeat('payments-worker', interval=3600)\n"
        "print('exiting')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, text=True)
    assert done.returncode == 0
    assert done.stdout == "exiting\n"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, on purpose
def test_forked_child_does_not_inherit_a_running_heartbeat() -> None:
    """After fork() the child's copy is stopped; the parent's keeps running."""
    transport = SignallingTransport()
    pinged = transport.pinged
    heartbeat = OpShift(SECRET, transport=transport).heartbeat("w", interval=3600)
    assert pinged.wait(10)

    def child() -> bytes:  # report what the child sees
        state = b"running" if heartbeat.running else b"stopped"
        stopped = heartbeat.stop(timeout=1)
        return state + (b",stop-ok" if stopped else b",stop-hung")

    assert in_forked_child(child) == b"stopped,stop-ok"
    assert heartbeat.running  # the parent's heartbeat is untouched
    heartbeat.stop()


@pytest.mark.parametrize(
    "interval",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param("60", id="string"),
        pytest.param(True, id="bool"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="inf"),
        pytest.param(86_400.5, id="over-a-day"),
    ],
)
def test_bad_interval_is_refused_before_any_thread(interval: object) -> None:
    """NaN would spin, inf would overflow the timer, and zero or a string make no sense."""
    fake = FakeTransport(SECRET)
    with pytest.raises(ConfigurationError, match="interval must be a finite number"):
        OpShift(SECRET, transport=fake).heartbeat("w", interval=interval)  # type: ignore[arg-type]
    assert fake.requests == []


def test_a_day_is_the_longest_interval() -> None:
    """interval=86400 is accepted."""
    heartbeat = Heartbeat(OpShift(SECRET, transport=FakeTransport(SECRET)), "w", interval=86_400)
    assert heartbeat.interval == 86_400.0


def test_bad_metadata_or_token_fails_at_creation() -> None:
    """Metadata a ping would reject fails now, not on every tick in the background."""
    client = OpShift(SECRET, transport=FakeTransport(SECRET))
    with pytest.raises(BadRequestError, match=r"metadata\.when is a datetime"):
        import datetime

        client.heartbeat("w", metadata={"when": datetime.datetime(2026, 1, 1)})
    with pytest.raises(BadRequestError, match="ping_token"):
        client.heartbeat("")


def test_warns_once_for_an_interval_under_six_seconds(caplog: pytest.LogCaptureFixture) -> None:
    """An interval that outruns the 10-pings-a-minute limit is warned about once."""
    heartbeat = Heartbeat(OpShift(SECRET, transport=FakeTransport(SECRET)), "w", interval=1)
    assert sum("under 6 s" in r.getMessage() for r in caplog.records) == 1
    assert not heartbeat.running  # constructing a Heartbeat directly does not start it


def test_no_warning_for_a_safe_interval(caplog: pytest.LogCaptureFixture) -> None:
    """Six seconds and more log nothing."""
    caplog.set_level(logging.DEBUG)
    Heartbeat(OpShift(SECRET, transport=FakeTransport(SECRET)), "w", interval=6)
    assert caplog.records == []


def test_heartbeat_ticks_over_real_http(server: OpShiftServer) -> None:
    """Over loopback HTTP with the real transport, each tick's ping is signed and answered."""
    time = FakeTime(ticks=2)
    client = OpShift(SECRET, base_url=server.url, transport=UrllibTransport())
    run_to_end(Heartbeat(client, "payments-worker", interval=60, clock=time.clock, wait=time.wait))
    assert [r.status for r in server.requests] == [200, 200]
    assert all(r.signature_valid for r in server.requests)


def test_repr_names_the_token_interval_and_state() -> None:
    """A heartbeat's repr says which token, how often, and whether it runs."""
    heartbeat = Heartbeat(OpShift(SECRET, transport=FakeTransport(SECRET)), "w", interval=60)
    assert repr(heartbeat) == "Heartbeat(ping_token='w', interval=60.0, stopped)"
