"""What an outbox leaves behind, at exit or close, said where someone will see it.

The SDK's warnings go to the ``opshift`` logger. At exit that is often not enough: an
application whose only handler is an ``AlertHandler`` would see none of them, since that
handler drops the SDK's own records (so it cannot feed itself). So the loss of items kept
in memory, and the items left in a file for the next run, are logged when a handler
outside the SDK would show the record, and otherwise printed on stderr.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys

from .. import _log
from ._delivery import Delivery
from ._memory import MemoryStore

__all__ = ["left_behind", "say", "shown_elsewhere"]

WARNING = 30  # logging.WARNING, without importing logging for a constant
ERROR = 40  # logging.ERROR: items lost


def shown_elsewhere(level: int) -> bool:
    """True if a record of ``level`` on the ``opshift`` logger would be shown by someone.

    That is: the logger lets ``level`` through, and on its way up (while loggers
    propagate) it meets a handler whose level lets it through and that shows the SDK's
    records (every handler but an ``AlertHandler``, whose ``shows_sdk_records`` is False);
    or it meets no handler at all and ``logging.lastResort`` (stderr, WARNING and up)
    takes it, as ``logging`` does.
    """
    import logging

    log = _log.logger()
    if not log.isEnabledFor(level):
        return False
    found = False
    current: logging.Logger | None = log
    while current is not None:
        for handler in current.handlers:
            found = True
            if getattr(handler, "shows_sdk_records", True) and level >= handler.level:
                return True
        if not current.propagate:
            break
        current = current.parent
    last = logging.lastResort
    return not found and last is not None and level >= last.level


def say(message: str, level: int = WARNING) -> None:
    """Log ``message`` on the ``opshift`` logger if someone would see it; else print it
    on stderr (if there is one), prefixed ``opshift:``. Nothing at all if the application
    set the ``opshift`` logger itself (or ``logging.disable``) above ``level``, or, below
    ERROR, if its levels filter it: a root level of ERROR never silences a loss."""
    log = _log.logger()
    if log.manager.disable >= level or log.level > level:
        return  # the application turned the SDK's records of this level off: its call
    if level < ERROR and not log.isEnabledFor(level):
        return  # warnings filtered (a root level of ERROR): only a loss must get through
    if shown_elsewhere(level):
        log.log(level, "%s", message)
        return
    stream = sys.stderr
    if stream is None:  # pythonw, a daemon with its streams closed
        return
    with contextlib.suppress(OSError, ValueError):  # stderr closed during shutdown
        print(f"opshift: {message}", file=stream, flush=True)


def left_behind(delivery: Delivery, *, at_exit: bool) -> tuple[int, list[tuple[int, str]]]:
    """What the outbox still holds: (items in memory, which are lost, and the messages,
    with their levels, that say so (ERROR) and, at exit, what stays in its file for the
    next run (WARNING))."""
    messages: list[tuple[int, str]] = []
    in_memory = 0
    memory_destinations: set[str] = set()
    for store in delivery.stores():
        if isinstance(store, MemoryStore):
            in_memory += store.count()
            memory_destinations |= store.destinations()
    if in_memory:
        them = "it" if in_memory == 1 else "them"
        why = (
            f"OpShift did not take {them} before the process ended"
            if at_exit
            else f"the Outbox was closed before OpShift took {them}"
        )
        messages.append(
            (
                ERROR,
                f"{_items(in_memory)} lost (in memory), to {_names(memory_destinations)}: "
                f"{why}. Give the Outbox a path to keep them for the next process.",
            )
        )
    if at_exit and delivery.path is not None and delivery.store is not None:
        try:  # another live process's claims are its own to report
            ours = delivery.store.waiting_for_us(delivery.clock())
            in_file, file_destinations = sum(ours.values()), set(ours)
        except sqlite3.Error as exc:
            messages.append((WARNING, f"Could not count what is left in {delivery.path} ({exc})."))
        else:
            if in_file:
                messages.append(
                    (
                        WARNING,
                        f"{_items(in_file)} kept in {delivery.path} for the next run, to "
                        f"{_names(file_destinations)}.",
                    )
                )
    return in_memory, messages


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _names(destinations: set[str], shown: int = 3) -> str:
    names = sorted(destinations)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
