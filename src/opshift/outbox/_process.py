"""The process hooks: a flush at interpreter exit, and fork() handled safely.

Every outbox's sender registers here (weakly: a dropped outbox whose sender has ended is
forgotten). At exit, what the integrations still hold is queued first
(``before_exit_flush``); then the open outboxes flush side by side, each for at most its
``exit_timeout`` from the moment the exit began: one budget for the whole exit. The hook
runs before ``logging.shutdown`` (it is registered after logging's), so an
``AlertHandler`` closing its own outbox there gets only what is left of that budget.
Then whatever is left is reported (``_report``). Across fork() every registered sender's
locks are held, so the child inherits none half-held; the child then gets threads, locks
and connections of its own.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from typing import Callable

from .. import _log
from ._sender import Sender

__all__ = ["before_exit_flush", "exit_deadline", "register"]

_live: weakref.WeakSet[Sender] = weakref.WeakSet()
_first: list[Callable[[], None]] = []  # run at exit before the flush: they may still enqueue
_held: list[threading.Lock] = []  # what the fork hook holds across fork()
_started: float | None = None  # when the exit flush began (monotonic)
_hooked = False  # the exit and fork hooks are registered (once)
_hooking = threading.Lock()  # two first outboxes at once: the hooks still registered once


def register(sender: Sender) -> None:
    """Flush this sender's outbox at exit and keep it usable across fork()."""
    _live.add(sender)
    _hook()


def before_exit_flush(callback: Callable[[], None]) -> None:
    """Run ``callback`` at exit before the outboxes flush, whichever was set up first: what
    it queues (the integrations' held ups) still goes out with the flush."""
    _first.append(callback)
    _hook()


def _hook() -> None:
    """Register the exit and fork hooks, once, after logging's own (imported here for that).

    atexit runs the last-registered hook first, so the exit flush runs before
    ``logging.shutdown()`` closes the handlers. Fork hooks run first-registered first in the
    child, so a child's sender thread starts once logging's locks are the child's (one
    logging while they were still the parent's copies, held across fork() by logging,
    would wait forever).
    """
    global _hooked
    with _hooking:
        if _hooked:
            return
        _hooked = True
        import logging  # noqa: F401 - for its hooks' place before ours

        atexit.register(_flush_at_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(
                before=_before_fork,
                after_in_parent=_after_fork_in_parent,
                after_in_child=_after_fork_in_child,
            )


def exit_deadline(exit_timeout: float) -> float | None:
    """Once the exit flush began, when an outbox's share of it ends (monotonic): the exit's
    start plus that outbox's ``exit_timeout``. None before the exit."""
    return None if _started is None else _started + exit_timeout


def _flush_at_exit() -> None:
    """At interpreter exit, flush the open outboxes side by side, each for at most its
    exit_timeout from now; then report what each leaves behind."""
    global _started
    for callback in _first:
        try:
            callback()
        except BaseException:  # even Ctrl-C in a hung send: the outboxes still flush
            _log.logger().exception("An exit callback failed before the outboxes' flush.")
    _started = started = time.monotonic()
    senders = [sender for sender in list(_live) if sender.takes_exit_flush()]
    for sender in senders:
        sender.kick()  # every background sender starts now, not after the one before it
    for sender in senders:
        try:
            sender.flush_at_exit(started + sender.exit_timeout)
        except Exception:  # at exit, report and move on
            _log.logger().exception("Could not flush the outbox at exit.")
    for sender in senders:
        try:
            sender.report_left(at_exit=True)
        except Exception:
            _log.logger().exception("Could not report what the outbox left at exit.")


def _before_fork() -> None:
    # No thread may be inside an outbox's SQLite call at fork(): the child would inherit
    # its half-held locks. Take every outbox's locks, in one order, until the fork is done.
    for sender in list(_live):
        for lock in sender.locks():
            lock.acquire()
            _held.append(lock)


def _after_fork_in_parent() -> None:
    while _held:
        _held.pop().release()


def _after_fork_in_child() -> None:
    _held.clear()  # the child's copies are replaced below, never released
    for sender in list(_live):
        sender.after_fork()
