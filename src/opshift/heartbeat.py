"""A background thread that pings ``up`` now and every ``interval`` seconds until stopped.

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
from typing import Callable

from . import _log, _validation
from .types import Metadata, Pinger

__all__ = ["MAX_INTERVAL", "MIN_SAFE_INTERVAL", "Heartbeat"]

# The server accepts 10 pings per minute per token: an interval under 6 s outruns it.
MIN_SAFE_INTERVAL = 6.0
# A monitor expects pings at least daily; a longer interval is almost surely a unit mistake.
MAX_INTERVAL = 86_400.0
_live: weakref.WeakSet[Heartbeat] = weakref.WeakSet()


class Heartbeat:
    """Ping ``up`` at once and then every ``interval`` seconds on a daemon thread.

    ``client.heartbeat(...)`` returns one already started; ``with`` stops it when the
    block ends, and ``start()`` on a running heartbeat does nothing. ``stop()`` returns
    promptly: it wakes the thread instead of waiting out the interval. A disabled client
    (``enabled=False``) starts no thread.

    Args:
        client: Anything with ``OpShift.ping``'s signature.
        interval: Seconds between pings, more than 0 and at most a day.
        metadata: Sent with every ping; checked now with the rules of a send.
        clock: Monotonic seconds (``time.monotonic``); tests pass a fake one.
        wait: ``wait(seconds) -> True to stop``; defaults to waiting on ``stop()``'s event.
            Tests pass one that returns at once, so no test waits out an interval.

    Raises:
        ConfigurationError: ``interval`` is not a finite number in (0, 86400].
        BadRequestError: ``ping_token`` or ``metadata`` breaks a documented limit.
    """

    def __init__(
        self,
        client: Pinger,
        ping_token: str,
        *,
        interval: float = 60.0,
        metadata: Metadata | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.interval = _validation.check_number("interval", interval, maximum=MAX_INTERVAL)
        problem = _validation.path_problem("ping_token", ping_token)
        if problem is not None:
            raise _validation.bad_request(problem)
        if metadata is not None:
            _validation.encode("ping", {"status": "up", "metadata": metadata})  # fail now
        self.client = client
        self.ping_token = ping_token
        self.metadata = metadata
        self.pings_sent = 0
        self.failures = 0
        self._clock = clock
        self._wait = wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.interval < MIN_SAFE_INTERVAL:
            _log.logger().warning(
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
        """Start the thread, which pings at once; do nothing if it runs. Returns self."""
        if self.running:
            return self
        if not getattr(self.client, "enabled", True):
            _log.logger().debug(
                "Heartbeat for %r not started: OpShift is disabled.", self.ping_token
            )
            return self
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
        wait = self._wait or stop.wait
        next_tick = self._clock()
        self._beat()  # the first ping goes out even if stop() came first: start() promised it
        while not stop.is_set():
            next_tick += self.interval
            now = self._clock()
            if next_tick < now:  # a slow ping overran ticks: skip them, do not burst
                next_tick = now + self.interval
            if wait(next_tick - now) or stop.is_set():
                return
            self._beat()

    def _beat(self) -> None:
        try:
            self.client.ping(self.ping_token, status="up", metadata=self.metadata)
            self.pings_sent += 1
        except Exception as error:
            self.failures += 1
            _log.logger().warning(
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
