"""The process hooks: a flush at interpreter exit, and fork() handled safely.

Every outbox's sender registers here (weakly: a dropped outbox whose sender has ended is
forgotten). At exit each open outbox flushes for at most its ``exit_timeout``. Across
fork() every registered sender's locks are held, so the child inherits none half-held;
the child then gets threads, locks and connections of its own.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref

from .. import _log
from ._sender import Sender

__all__ = ["register"]

_live: weakref.WeakSet[Sender] = weakref.WeakSet()
_held: list[threading.Lock] = []  # what the fork hook holds across fork()


def register(sender: Sender) -> None:
    """Flush this sender's outbox at exit and keep it usable across fork()."""
    _live.add(sender)


@atexit.register
def _flush_at_exit() -> None:
    """At interpreter exit, give each open outbox up to its exit_timeout to deliver."""
    for sender in list(_live):
        try:
            sender.flush_at_exit()
        except Exception:  # at exit, report and move on
            _log.logger().exception("Could not flush the outbox at exit.")


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


if hasattr(os, "register_at_fork"):  # every platform with fork() has it
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
