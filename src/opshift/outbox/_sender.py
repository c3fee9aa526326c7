"""The sender: one daemon thread per outbox that runs delivery passes, and its lifecycle.

It is started with the outbox and woken by each new item. With nothing to do for
``IDLE_EXIT`` seconds it stops looking at the stores and waits for the next item; it ends
when the outbox is closed, or once the outbox is dropped and nothing waits. It is not
left to the first item to start: that item may come in an outage's logging storm, and
its caller (a logging thread) would wait, in the middle of the storm, for a new thread
to get going. Without it (``background=False``, or no thread can start
at interpreter shutdown) a flush runs the passes in the calling thread.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from . import _delivery, _report

__all__ = ["IDLE_EXIT", "PARKED_CHECK", "Sender"]

IDLE_EXIT = 30.0  # a sender with nothing to do for this long waits for the next item
# A waiting sender checks this often whether its outbox was dropped (then it ends).
PARKED_CHECK = 30.0
# Woken by a new item while nothing was due (every destination backing off, as in an
# outage), the sender lets items gather this long before it looks again: a storm of
# enqueues then costs a pass per GATHER seconds, not a pass per item.
GATHER = 0.05


class Sender:
    """Run an outbox's delivery passes in a thread of their own, and flush or stop them.

    Args:
        delivery: The outbox's stores and the pass to run.
        background: False starts no thread: passes run only in a flush, in the caller.
        exit_timeout: How long the exit flush may take, in seconds.

    Attributes:
        lock: Held while queuing, closing, and starting or ending the thread, so an item is
            never queued to an outbox that has closed or whose sender is just ending.
        closed: Set under ``lock`` by close(); nothing is queued after it.
        held: True while the outbox lives; once it is dropped (``release``) an idle sender
            ends instead of waiting for items.
        thread: The running sender thread, or None.
    """

    def __init__(
        self, delivery: _delivery.Delivery, *, background: bool, exit_timeout: float
    ) -> None:
        self.delivery = delivery
        self.background = background
        self.exit_timeout = exit_timeout
        self.closed = False
        self.held = True
        self.lost_reported = 0  # items in memory already reported lost (so said once)
        self._init_threading()

    def _init_threading(self) -> None:
        self.lock = threading.Lock()
        self._wakeup = threading.Event()  # set: the sender should look at the stores now
        self._hurry = threading.Event()  # set: a flush or close waits; gather no longer
        self._passed = threading.Condition()  # notified after each of the sender's passes
        self._urgent = False
        self.thread: threading.Thread | None = None

    def wake(self) -> None:
        """Make the sender look at the stores now (an item was queued)."""
        if not self._wakeup.is_set():  # while the sender is busy, this takes no lock
            self._wakeup.set()

    def release(self) -> None:
        """The outbox was dropped: end once idle, woken now (a parked thread would linger
        for ``PARKED_CHECK``). Not from the sender's own thread: a finalizer run by the
        garbage collector there may be inside this very event's lock."""
        self.held = False
        if threading.current_thread() is not self.thread:
            self._wakeup.set()

    def start(self) -> bool:
        """Start the sender thread if it is not running; False if it cannot run now."""
        thread = self.thread
        if thread is not None and thread.is_alive():
            return True
        thread = threading.Thread(target=self._run, name="opshift-outbox", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            return False
        self.thread = thread
        return True

    def flush(self, deadline: float, *, start: bool, ours: bool = False) -> bool:
        """Deliver what waits until ``deadline`` (monotonic), trying every destination now.

        The sender thread does it if it runs (or, with ``start``, can be started); else the
        passes run here. True when nothing is pending; with ``ours`` (at exit), nothing
        this process could send: another live process's claims are its own to finish.
        """
        pending = self.delivery.count_ours if ours else self.delivery.count_pending
        running = self.thread is not None and self.thread.is_alive()
        if self.background and (running or (start and self.start())):
            return self._wait_for_sender(deadline, pending)
        return self._deliver_inline(deadline, pending)

    def stop(self, deadline: float, *, ours: bool = False) -> threading.Thread | None:
        """Flush until ``deadline`` without starting a thread (see ``flush`` for ``ours``),
        then end the sender.

        Returns:
            The sender thread, joined until ``deadline`` (it may still be mid-send), or None.
        """
        self.flush(deadline, start=False, ours=ours)
        self.delivery.stopping = True
        self._hurry.set()
        self._wakeup.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        return thread

    def _wait_for_sender(self, deadline: float, pending: Callable[[], int]) -> bool:
        self._urgent = True
        self._hurry.set()
        self._wakeup.set()
        while True:
            if pending() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._passed:
                # Woken after each of the sender's passes; re-check now and then regardless,
                # since other processes may deliver items from a shared file.
                self._passed.wait(min(remaining, 0.2))

    def _deliver_inline(self, deadline: float, pending: Callable[[], int]) -> bool:
        urgent = True
        while True:
            delay = self.delivery.deliver_due(urgent=urgent, deadline=deadline)
            urgent = False
            if pending() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wakeup.wait(min(remaining, delay if delay is not None else 0.2, 1.0))
            self._wakeup.clear()

    def _run(self) -> None:
        delivery = self.delivery
        idle_since = time.monotonic()
        while not delivery.stopping:
            # Cleared before looking at the stores: an item queued during the pass sets it
            # again, so the wait below returns at once instead of missing it.
            self._wakeup.clear()
            urgent, self._urgent = self._urgent, False
            try:
                delay = delivery.deliver_due(urgent=urgent)
            except Exception as exc:  # a store or client bug must not end delivery for good
                delivery.store_failed(exc)
                delay = 5.0
            with self._passed:
                self._passed.notify_all()  # flush() waiters re-check pending
            if delay is not None:
                idle_since = time.monotonic()
            elif not self.held or time.monotonic() - idle_since >= IDLE_EXIT:
                with self.lock:  # queuing starts a new sender under this same lock
                    idle = (
                        not self._wakeup.is_set()
                        and not delivery.stopping  # a close whose wake-up the clear took
                        and delivery.count_pending() == 0
                    )
                    if idle and not self.held:
                        self.thread = None  # the outbox was dropped: so its sender can go too
                        return
                if idle:
                    self._park()
                    idle_since = time.monotonic()
                    continue
            if delivery.path is not None:
                poll = _delivery.IDLE_POLL
                delay = poll if delay is None else min(delay, poll)
            if not delivery.stopping:
                woken = self._wakeup.wait(delay if delay is not None else IDLE_EXIT)
                if woken and delay and not self._urgent:  # an item while nothing was due
                    self._hurry.wait(GATHER)
                self._hurry.clear()

    def _park(self) -> None:
        """Wait for the next item (or close) without looking at the stores, while the
        outbox lives."""
        while not self._wakeup.wait(PARKED_CHECK) and self.held:
            if self.delivery.stopping:
                return

    def takes_exit_flush(self) -> bool:
        """Whether the exit flush is this sender's to do: open, and not disabled."""
        return not self.closed and self.delivery.store is not None

    def kick(self) -> None:
        """Start a background sender now, trying every destination (the exit flush)."""
        if self.background and self.delivery.count_pending():
            self._urgent = True
            self._hurry.set()
            if self.start():
                self._wakeup.set()

    def flush_at_exit(self, deadline: float) -> None:
        """At interpreter exit: flush until ``deadline`` (the exit's budget)."""
        if self.delivery.count_ours():
            self.flush(deadline, start=True, ours=True)

    def report_left(self, *, at_exit: bool) -> None:
        """Say what is left: items lost in memory, and at exit those kept in the file.

        Items in memory already reported lost are not reported again (the exit flush and
        an AlertHandler's close at logging.shutdown both see them).
        """
        in_memory, messages = _report.left_behind(self.delivery, at_exit=at_exit)
        if in_memory and in_memory == self.lost_reported:
            messages = messages[1:]
        self.lost_reported = in_memory
        for level, message in messages:
            _report.say(message, level)

    def locks(self) -> list[threading.Lock]:
        """Every lock a fork() must not split: the lifecycle lock, then the stores'."""
        return [self.lock, *self.delivery.locks()]

    def after_fork(self) -> None:
        """In a forked child: a thread, locks and connections of its own; no parent items.

        The child's thread starts now (threading's own fork hook has run), as the parent's
        started with the outbox: not left to the child's first item (see the module's doc).
        """
        self.delivery.after_fork()
        self._init_threading()
        if self.background and self.held and not self.closed and self.delivery.store is not None:
            self.start()
