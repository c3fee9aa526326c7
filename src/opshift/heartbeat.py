"""A background thread that pings ``up`` every ``interval`` seconds until stopped.

    with client.heartbeat("queue-worker", interval=60):
        worker.run_forever()

Ping failures are logged and retried on the next tick, never raised into the app. The
thread is a daemon (it never keeps the process alive), and a forked child does not
inherit a running heartbeat: start a new one there if the child should ping.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

from .errors import ConfigurationError
from .types import Metadata

if TYPE_CHECKING:
    from .client import OpShift

__all__ = ["Heartbeat"]

# The server accepts 10 pings per minute per token: an interval under 6 s outruns it.
MIN_SAFE_INTERVAL = 6.0
_live: weakref.WeakSet[Heartbeat] = weakref.WeakSet()


class Heartbeat:
    """Ping ``up`` now and then every ``interval`` seconds on a daemon thread.

    Use it as a context manager, or call ``start()`` and ``stop()``. ``stop()`` returns
    promptly: it wakes the thread instead of waiting out the interval.
    """

    def __init__(
        self,
        client: OpShift,
        ping_token: str,
        *,
        interval: float = 60.0,
        metadata: Metadata | None = None,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ConfigurationError(
                f"interval must be a number of seconds > 0 (got {interval!r})."
            )
        self.client = client
        self.ping_token = ping_token
        self.interval = float(interval)
        self.metadata = metadata
        self.pings_sent = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.interval < MIN_SAFE_INTERVAL:
            from .client import _logger

            _logger().warning(
                "Heartbeat interval %.3g s for %r is under %g s: more than the 10 pings per "
                "minute OpShift accepts per token, so some will get 429.",
                self.interval,
                ping_token,
                MIN_SAFE_INTERVAL,
            )

    @property
    def running(self) -> bool:
        """True while the background thread is alive in this process."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Heartbeat:
        """Start the background thread (the first ping goes out at once); returns self."""
        if not self.running:
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, name=f"opshift-heartbeat-{self.ping_token}", daemon=True
            )
            _live.add(self)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop pinging; wait up to ``timeout`` s for an in-flight ping. True if it ended."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return not self.running

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        stop = self._stop
        next_tick = time.monotonic()
        while not stop.is_set():
            self._beat()
            next_tick += self.interval
            now = time.monotonic()
            if next_tick < now:  # a slow ping overran ticks: skip them, do not burst
                next_tick = now + self.interval
            if stop.wait(next_tick - now):
                return

    def _beat(self) -> None:
        try:
            self.client.ping(self.ping_token, status="up", metadata=self.metadata)
            self.pings_sent += 1
        except Exception as error:
            from .client import _logger

            self.failures += 1
            _logger().warning(
                "Heartbeat ping for %r failed (will retry next tick): %s", self.ping_token, error
            )

    def _forget_after_fork(self) -> None:
        # The thread did not survive fork(); its Event may hold a lock from the parent.
        self._thread = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Heartbeat(ping_token={self.ping_token!r}, interval={self.interval!r}, {state})"


def _after_fork_in_child() -> None:
    for heartbeat in list(_live):
        heartbeat._forget_after_fork()
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
