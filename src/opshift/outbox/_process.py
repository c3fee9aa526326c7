"""The process hooks: a flush at interpreter exit, and fork() handled safely.

Every outbox's sender registers here (weakly: a dropped outbox whose sender has ended is
forgotten). At exit the open outboxes flush side by side, each for at most its
``exit_timeout`` from the moment the exit began: one budget for the whole exit. The hook
runs before ``logging.shutdown`` (it is registered again once ``logging`` is imported),
so an ``AlertHandler`` closing its own outbox there gets only what is left of that budget.
Then whatever is left is reported (``_report``). Across fork() every registered sender's
locks are held, so the child inherits none half-held; the child then gets threads, locks
and connections of its own.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref

from .. import _log
from ._sender import Sender

__all__ = ["exit_deadline", "register"]

_live: weakref.WeakSet[Sender] = weakref.WeakSet()
_held: list[threading.Lock] = []  # what the fork hook holds across fork()
_started: float | None = None  # when the exit flush began (monotonic)
_after_logging = False  # registered after logging's own atexit hook, so it runs before it
_fork_hooks = 0  # sets of fork hooks registered: only the last one acts
_forking = 0  # the set whose "before" hook ran, so only its "after" hooks act


def register(sender: Sender) -> None:
    """Flush this sender's outbox at exit and keep it usable across fork()."""
    global _after_logging, _fork_hooks
    _live.add(sender)
    if not _after_logging:
        # atexit runs hooks last-registered first: registered after logging's, the exit
        # flush runs before logging.shutdown() closes the handlers.
        atexit.unregister(_flush_at_exit)
        atexit.register(_flush_at_exit)
        _after_logging = "logging" in sys.modules
        # Fork hooks run first-registered first: registered after logging's, a child's
        # sender thread starts once logging's lock is the child's (a sender logging while
        # it is the parent's copy, held across fork() by logging, would wait forever). At
        # most two sets: one before logging is imported, one after; only the last acts.
        if hasattr(os, "register_at_fork") and (_fork_hooks == 0 or _after_logging):
            _fork_hooks += 1
            _register_fork_hooks(_fork_hooks)


def exit_deadline(exit_timeout: float) -> float | None:
    """Once the exit flush began, when an outbox's share of it ends (monotonic): the exit's
    start plus that outbox's ``exit_timeout``. None before the exit."""
    return None if _started is None else _started + exit_timeout


def _flush_at_exit() -> None:
    """At interpreter exit, flush the open outboxes side by side, each for at most its
    exit_timeout from now; then report what each leaves behind."""
    global _started
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


def _register_fork_hooks(number: int) -> None:
    """Register set ``number`` of fork hooks; they act only while it is the last set."""

    def before() -> None:
        global _forking
        if number == _fork_hooks:
            _forking = number
            _before_fork()

    def after_in_parent() -> None:
        global _forking
        if _forking == number:
            _forking = 0
            _after_fork_in_parent()

    def after_in_child() -> None:
        global _forking
        if _forking == number:
            _forking = 0
            _after_fork_in_child()

    os.register_at_fork(
        before=before, after_in_parent=after_in_parent, after_in_child=after_in_child
    )


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
