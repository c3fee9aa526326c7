"""When the core acts later: a ``Timer`` protocol and ``ThreadTimer``, one daemon thread.

The core never sleeps in a hook. It asks a timer to call it back (a held ``up`` released
once the spacing allows, a ``max_runtime`` check) and gets a handle to cancel. Tests pass
a timer they drive by hand; the default runs a single daemon thread per process, started
on first use and started anew in a forked child (a prefork worker's children).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import time
from typing import Callable, Protocol

__all__ = ["Cancel", "ThreadTimer", "Timer"]


class Cancel(Protocol):
    """A scheduled call that may still be cancelled."""

    def cancel(self) -> None:
        """Do not make the call (nothing happens if it was already made)."""


class Timer(Protocol):
    """Calls ``callback`` once, about ``delay`` seconds from now, off the caller's thread."""

    def schedule(self, delay: float, callback: Callable[[], None]) -> Cancel: ...


class _Entry:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ThreadTimer:
    """A heap of calls served by one daemon thread, on ``time.monotonic``.

    A callback runs on the timer's thread and must not raise (the core's never do; one
    that does is dropped and the thread goes on). The thread never keeps the process alive.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._order = itertools.count()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._ready = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Entry]] = []
        self._thread: threading.Thread | None = None

    def schedule(self, delay: float, callback: Callable[[], None]) -> Cancel:
        """Call ``callback`` in ``delay`` seconds on the timer thread; returns its handle."""
        if self._pid != os.getpid():  # a forked child: the parent's thread and calls stay there
            self._reset()
        entry = _Entry(callback)
        with self._ready:
            heapq.heappush(self._heap, (self.clock() + max(delay, 0.0), next(self._order), entry))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="opshift-integrations-timer", daemon=True
                )
                self._thread.start()
            self._ready.notify()
        return entry

    def _serve(self) -> None:
        while True:
            with self._ready:
                while not self._heap or self._heap[0][0] > self.clock():
                    wait = self._heap[0][0] - self.clock() if self._heap else None
                    self._ready.wait(wait)
                _, _, entry = heapq.heappop(self._heap)
            if not entry.cancelled:
                with contextlib.suppress(Exception):  # the core's callbacks log their own
                    entry.callback()
