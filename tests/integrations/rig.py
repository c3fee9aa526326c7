"""The integrations tests' shared code: a timer driven by hand, a pinger that records, an
in-process Celery worker on the memory broker that starts and stops fast, and a real
redis-server for RQ."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    from celery import Celery

    from opshift.types import Metadata, PingStatus, Severity

    from ..helpers import Clock


class _Call:
    def __init__(self, due: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualTimer:
    """A ``Timer`` on a test's ``Clock``: nothing runs until ``run_due()`` is called."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[_Call] = []

    def schedule(self, delay: float, callback: Callable[[], None]) -> _Call:
        call = _Call(self.clock() + delay, callback)
        self.calls.append(call)
        return call

    @property
    def pending(self) -> list[_Call]:
        """Calls not yet made nor cancelled."""
        return [c for c in self.calls if not c.cancelled]

    def run_due(self) -> int:
        """Make every call due by the clock now; returns how many ran."""
        due = [c for c in self.pending if c.due <= self.clock()]
        for call in due:
            self.calls.remove(call)
            call.callback()
        return len(due)


@dataclass
class Sent:
    """One ping or alert a ``RecordingPinger`` took."""

    kind: str
    target: str
    fields: dict[str, Any]


@dataclass
class RecordingPinger:
    """Takes pings and alerts as an Outbox would (at once), and keeps them in order."""

    sent: list[Sent] = field(default_factory=list)
    fail_with: Exception | None = None

    def ping(
        self,
        ping_token: str,
        *,
        status: PingStatus | None = None,
        reason: str | None = None,
        group_key: str | None = None,
        metadata: Metadata | None = None,
    ) -> int:
        if self.fail_with is not None:
            raise self.fail_with
        fields = {"status": status, "reason": reason, "metadata": metadata}
        self.sent.append(Sent("ping", ping_token, {k: v for k, v in fields.items() if v}))
        return len(self.sent)

    def alert(
        self,
        webhook_url: str,
        *,
        title: str,
        description: str | None = None,
        severity: Severity | None = None,
        metadata: Metadata | None = None,
        group_key: str | None = None,
    ) -> int:
        fields = {
            "title": title,
            "description": description,
            "severity": severity,
            "metadata": metadata,
            "group_key": group_key,
        }
        self.sent.append(Sent("alert", webhook_url, {k: v for k, v in fields.items() if v}))
        return len(self.sent)

    def pings(self, token: str) -> list[dict[str, Any]]:
        """The fields of the pings sent to ``token``, in order."""
        return [s.fields for s in self.sent if s.kind == "ping" and s.target == token]


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {condition}")
        time.sleep(0.005)  # a poll interval, not a wait for the thing itself


def memory_app(name: str) -> Celery:
    """A Celery app on the memory broker, polling every 10 ms, results kept in memory."""
    from celery import Celery

    app = Celery(name, broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.broker_transport_options = {"polling_interval": 0.01}
    app.conf.worker_hijack_root_logger = False
    app.conf.task_default_retry_delay = 0

    @app.task(name="rig.wake", opshift_monitor=False, shared=False)
    def wake() -> None:
        """Wakes the worker's loop so it sees the shutdown flag at once."""

    return app


@contextmanager
def worker(app: Celery, **options: Any) -> Iterator[None]:
    """An in-process solo worker; it stops at once instead of after its 2 s poll."""
    from celery.contrib.testing.worker import start_worker
    from celery.worker import state

    with start_worker(app, perform_ping_check=False, shutdown_timeout=10, **options):
        yield
        # Stop now, not after the loop's 2 s poll: it checks the flag, then polls once more
        # even when the check raises, so two messages end both waits.
        setattr(state, "should_terminate", 0)  # noqa: B010 - the stubs type it None
        app.send_task("rig.wake")
        app.send_task("rig.wake")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A real ``redis-server`` on a free port in ``folder``, no persistence; its URL.

    Skips the test when the binary is missing (``apt-get install redis-server``).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
    log = (folder / "redis.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        from redis import Redis

        client = Redis.from_url(url)
        wait_for(lambda: process.poll() is not None or _answers(client), timeout=10)
        if process.poll() is not None:
            raise AssertionError(f"redis-server exited: {(folder / 'redis.log').read_text()}")
        client.close()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _answers(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False
