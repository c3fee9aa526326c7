"""The ``Outbox`` class: validate and queue at once; its state, flush and close.

Delivery itself is ``_delivery``'s (one pass) and ``_sender``'s (the thread); the process
hooks are ``_process``'s. ``sender(outbox)`` is the seam those modules' tests use.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import weakref
from typing import Callable, TypedDict

from .. import _log, _validation
from .._call import ALERT, PING, fields_given
from ..client import OpShift, caller
from ..errors import ConfigurationError, OpShiftError
from ..types import Metadata, PingStatus, Severity
from . import _delivery, _process, _schema
from ._memory import MemoryStore
from ._sender import Sender
from ._sqlite import SQLiteStore
from ._store import Store, StoreBusy

__all__ = ["SPILL_FIRST_ID", "Outbox", "OutboxStats", "sender"]

SPILL_FIRST_ID = 10**12  # ids of items kept in memory while the file could not take them


class OutboxStats(TypedDict):
    """What one Outbox did since it was made."""

    delivered: int  # OpShift took it
    retried: int  # a delivery failed (network, 5xx, 429) and will be tried again
    dropped_rejected: int  # OpShift refused it for good (400, 401, 403, 404, ...)
    dropped_expired: int  # too old to send: an up ping after ping_ttl, others after max_age
    dropped_full: int  # no room: max_pending reached


class Outbox:
    """Queue pings and alerts without waiting on the network; deliver them until OpShift takes them.

    ``ping()`` and ``alert()`` take exactly the client's arguments, validate at once (bad
    input raises ``BadRequestError`` and nothing is queued) and return an id without
    touching the network. They never raise for an outage or a full queue.

    Args:
        client: The ``OpShift`` client to send with; bodies are signed at send time with
            its secret, so a rotated secret works for items already waiting.
        path: A SQLite file to keep items in (created with mode 0600), committed before
            ``ping``/``alert`` returns; ``None`` keeps them in memory only.
        max_pending: At most this many waiting items. When full, the oldest waiting ``up``
            ping is dropped to make room; if there is none, the new item is dropped.
        ping_ttl: An ``up`` ping older than this many seconds is dropped unsent: a late
            "up" would claim liveness nobody saw.
        max_age: Alerts and ``down`` pings older than this many seconds are dropped.
        exit_timeout: At interpreter exit, flush for at most this many seconds; the rest
            stays in the file for next time.
        backoff: The first wait after a failed delivery to a destination, in seconds; it
            doubles per failure, times a random factor, up to ``backoff_max``.
        backoff_max: The longest wait between attempts to one destination.
        background: ``False`` starts no thread: items are delivered only by ``flush()``
            (and at exit), in the calling thread.
        clock: Wall-clock seconds (``time.time``), for expiry and backoff; tests pass a
            fake one. Files shared by processes need a clock they agree on.
        random: Uniform numbers in [0, 1) for the backoff jitter (``random.random``).

    Raises:
        ConfigurationError: a setting is invalid, or ``path`` cannot be created, written
            or read as an outbox.
    """

    def __init__(
        self,
        client: OpShift,
        path: str | os.PathLike[str] | None = None,
        *,
        max_pending: int = 10_000,
        ping_ttl: float = 300.0,
        max_age: float = 86_400.0,
        exit_timeout: float = 2.0,
        backoff: float = 1.0,
        backoff_max: float = 60.0,
        background: bool = True,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(client, OpShift):
            raise ConfigurationError(
                f"Outbox needs an OpShift client, not {type(client).__name__}."
            )
        self.client = client
        self.max_pending = _validation.check_int("max_pending", max_pending, minimum=1)
        ping_ttl = _validation.check_number("ping_ttl", ping_ttl)
        max_age = _validation.check_number("max_age", max_age)
        exit_timeout = _validation.check_number("exit_timeout", exit_timeout, inclusive=True)
        backoff = _validation.check_number("backoff", backoff)
        backoff_max = _validation.check_number("backoff_max", backoff_max)
        self.path = os.fspath(path) if path is not None else None
        store: Store | None = None
        if client.enabled:  # a disabled client's outbox validates and keeps nothing
            store = SQLiteStore(self.path) if self.path is not None else MemoryStore()
        self._delivery = _delivery.Delivery(
            client,
            store,
            path=self.path,
            ping_ttl=ping_ttl,
            max_age=max_age,
            backoff=backoff,
            backoff_max=backoff_max,
            clock=clock,
            random=random,
        )
        self._sender = Sender(
            self._delivery, background=bool(background), exit_timeout=exit_timeout
        )
        self._full_logged_at = float("-inf")
        self._full_reported = 0  # the dropped_full count the last report went up to
        self._refusing = False  # the last item was refused: the outbox is full of alerts
        self._pending_at_close = 0
        _process.register(self._sender)  # for the fork hook and the exit flush
        if self._sender.background and store is not None:
            _warm(client)
            # Now, not on the first item: that item may come in a logging storm, its
            # caller waiting for the new thread to get going (benchmarks/outbox_storm.py).
            # It also delivers what an earlier process left in the file.
            if isinstance(store, SQLiteStore):
                _waiting(store)  # read through now: a broken file is a ConfigurationError
            self._sender.start()
            finalizer = weakref.finalize(self, self._sender.release)
            finalizer.atexit = False  # type: ignore[misc]  # documented; typeshed's slots omit it

    # The settings the sender uses, read from it (one source of truth; set at construction).

    @property
    def ping_ttl(self) -> float:
        """Seconds after which a waiting ``up`` ping is dropped unsent."""
        return self._delivery.ping_ttl

    @property
    def max_age(self) -> float:
        """Seconds after which a waiting alert or ``down`` ping is dropped unsent."""
        return self._delivery.max_age

    @property
    def exit_timeout(self) -> float:
        """Seconds the exit flush may take at interpreter exit."""
        return self._sender.exit_timeout

    def ping(
        self,
        ping_token: str,
        *,
        status: PingStatus | None = None,
        reason: str | None = None,
        group_key: str | None = None,
        metadata: Metadata | None = None,
    ) -> int:
        """Queue a heartbeat; see ``OpShift.ping`` for the arguments.

        Returns:
            The item's id (a positive int), or 0 if it was not kept: the outbox is
            disabled, or full with no ``up`` ping to make room (logged and counted).

        Raises:
            BadRequestError: a field breaks a documented limit; nothing is queued.
            OpShiftError: the outbox is closed.
        """
        fields = fields_given(status=status, reason=reason, group_key=group_key, metadata=metadata)
        path, body = caller(self.client).prepare(PING, ping_token, fields)
        return self._put(PING.name, path, body, is_up=status != "down")

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
        """Queue an alert; see ``OpShift.alert`` for the arguments.

        Returns:
            The item's id (a positive int), or 0 if it was not kept (see ``ping``).

        Raises:
            BadRequestError: a field breaks a documented limit; nothing is queued.
            OpShiftError: the outbox is closed.
        """
        fields = fields_given(
            title=title,
            description=description,
            severity=severity,
            metadata=metadata,
            group_key=group_key,
        )
        path, body = caller(self.client).prepare(ALERT, webhook_url, fields)
        return self._put(ALERT.name, path, body, is_up=False)

    def _put(self, kind: str, path: str, body: bytes, *, is_up: bool) -> int:
        delivery, sender = self._delivery, self._sender
        store = delivery.store
        if store is None:
            return 0
        with sender.lock:
            if sender.closed:
                raise OpShiftError(
                    "This Outbox is closed; nothing was queued. Make a new Outbox, or queue "
                    "before close() (or the end of its with block)."
                )
            now = delivery.clock()
            spill = delivery.spill
            if spill is not None and spill.count():  # keep FIFO: after what waits in memory
                item_id, dropped = spill.add(kind, path, body, is_up, now, self.max_pending)
            else:
                try:
                    item_id, dropped = store.add(kind, path, body, is_up, now, self.max_pending)
                except (StoreBusy, sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
                    # Busy, disk full, read-only: keep it in memory until the file can take it.
                    item_id, dropped = self._spill_store(exc).add(
                        kind, path, body, is_up, now, self.max_pending
                    )
            if sender.background and sender.thread is None:
                sender.start()
        self._refusing = item_id == 0
        if dropped is not None:
            self._dropped_full(dropped.kind, dropped.destination, new=item_id == 0)
        sender.wake()
        return item_id

    def _refuses_alerts(self) -> bool:
        """Whether the last item was refused and an alert would be now: full, no up ping
        to make room, nothing spilled. A hint, counting nothing (``_refused_alert`` counts)."""
        delivery = self._delivery
        store, spill = delivery.store, delivery.spill
        if not self._refusing or store is None or self._sender.closed:
            return False  # closed: alert() says so
        if spill is not None and spill.count():
            return False
        try:
            return store.refuses(self.max_pending)
        except sqlite3.Error:
            return False  # the file's trouble: alert() says what it is

    def _refused_alert(self, webhook_url: str) -> None:
        """Count (and log, once a minute) an alert refused as ``alert`` would."""
        self._dropped_full(ALERT.name, lambda: caller(self.client).path(ALERT, webhook_url))

    def _spill_store(self, exc: Exception) -> MemoryStore:
        spill = self._delivery.spill
        if spill is None:
            spill = self._delivery.spill = MemoryStore(first_id=SPILL_FIRST_ID)
        if not spill.count():  # a new streak
            _log.logger().error(
                "Cannot write the outbox file %r (%s); keeping new items in memory, in order, "
                "until it can (they are lost if the process dies first). Free disk space or "
                "fix the file's permissions if this goes on.",
                self.path,
                exc,
            )
        return spill

    def _dropped_full(
        self, kind: str, destination: str | Callable[[], str], *, new: bool = True
    ) -> None:
        """Count an item dropped as full; say so at most once a minute while full. Many
        threads refuse at once in a storm: between reports this takes only the counts'
        lock (``destination`` may be a callable, made only for a report)."""
        total = self._delivery.counts.add("dropped_full")
        now = time.monotonic()
        if now - self._full_logged_at < 60.0:
            return
        with self._sender.lock:
            if now - self._full_logged_at < 60.0:
                return  # another thread's report
            self._full_logged_at = now
            dropped = total - self._full_reported
            self._full_reported = total
        _log.logger().warning(
            "Outbox full (max_pending=%d): dropped %s %s to %s (%d dropped since the last "
            "report). OpShift may be unreachable; see outbox.stats.",
            self.max_pending,
            "the new" if new else "the oldest waiting up",
            kind,
            destination if isinstance(destination, str) else destination(),
            dropped,
        )

    @property
    def pending(self) -> int:
        """Items not yet delivered, dropped or expired (all processes' items, for a file).

        After ``close()``: what was left when it closed.
        """
        if self._sender.closed:
            return self._pending_at_close
        try:
            return sum(store.count() for store in self._delivery.stores())
        except sqlite3.Error as exc:
            raise OpShiftError(
                f"Cannot read the outbox file {self.path!r}: {exc}. Check the disk and the "
                "file's permissions."
            ) from exc

    @property
    def stats(self) -> OutboxStats:
        """This outbox's counts: delivered, retried, dropped_rejected/_expired/_full."""
        counts = self._delivery.counts.snapshot()
        return OutboxStats(
            delivered=counts["delivered"],
            retried=counts["retried"],
            dropped_rejected=counts["dropped_rejected"],
            dropped_expired=counts["dropped_expired"],
            dropped_full=counts["dropped_full"],
        )

    def flush(self, timeout: float = 10.0) -> bool:
        """Deliver what is waiting, trying every destination now; wait at most ``timeout`` s.

        Returns:
            True when nothing is pending (for a file: no process's items are left).
        """
        deadline = time.monotonic() + _validation.check_number("timeout", timeout, inclusive=True)
        if self._delivery.store is None:
            return True
        if self._sender.closed:
            return self._pending_at_close == 0
        return self._sender.flush(deadline, start=True)

    def close(self, timeout: float = 5.0) -> bool:
        """Flush for at most ``timeout`` s, then stop the sender. True if nothing was left.

        What is still waiting stays in the file (with a ``path``) for the next Outbox; in
        memory it is lost, and said so (on stderr if no handler outside the SDK would show
        it). At interpreter exit, ``timeout`` is cut to what is left of the exit's budget.
        Closing again returns the first close's answer; queuing after close raises
        ``OpShiftError``.
        """
        deadline = time.monotonic() + _validation.check_number("timeout", timeout, inclusive=True)
        ending = _process.exit_deadline(self._sender.exit_timeout)
        if ending is not None:  # closing at exit (logging.shutdown): within its exit budget
            deadline = min(deadline, ending)
        delivery, sender = self._delivery, self._sender
        with sender.lock:
            if sender.closed:
                return self._pending_at_close == 0
            sender.closed = True  # from here on ping() and alert() raise: nothing slips in
        if delivery.store is None:
            return True
        thread = sender.stop(deadline, ours=ending is not None)
        left = delivery.count_pending()
        self._pending_at_close = max(left, 0)
        sender.report_left(at_exit=False)
        if thread is None or not thread.is_alive():  # else it is mid-send: let it finish
            for store in delivery.stores():
                store.close()
        return left == 0

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "memory" if self.path is None else repr(self.path)
        return f"Outbox({where}, max_pending={self.max_pending})"


def _waiting(store: SQLiteStore) -> int:
    """How many items wait in a file just opened; any SQLite failure is a configuration one."""
    try:
        return store.count()
    except sqlite3.Error as exc:
        store.close()
        raise _schema.unusable(store.path, exc) from exc


def sender(outbox: Outbox) -> Sender:
    """The outbox's sender (its thread, and its ``delivery``: stores and the pass), for
    the outbox's own modules and their tests; applications use the Outbox's methods."""
    return outbox._sender


def refuses_alerts(outbox: Outbox) -> bool:
    """Whether ``outbox`` is full of alerts, so a new one would be refused: an AlertHandler
    skips building an alert that cannot be kept, which in an outage's logging storm is
    most of a logging call's cost. A hint that counts nothing: see ``refused_alert``."""
    return outbox._refuses_alerts()


def refused_alert(outbox: Outbox, webhook_url: str) -> None:
    """Count an alert for ``webhook_url`` that was not built because ``outbox`` refuses
    alerts, and log it (once a minute), as ``alert()`` does for one it refuses."""
    outbox._refused_alert(webhook_url)


def close_budget(outbox: Outbox) -> float:
    """What closing ``outbox`` may take now: its ``exit_timeout``, or at interpreter exit
    what is left of its share of the exit's one budget (an AlertHandler waits within it)."""
    ending = _process.exit_deadline(outbox.exit_timeout)
    if ending is None:
        return outbox.exit_timeout
    return max(0.0, ending - time.monotonic())


def _warm(client: OpShift) -> None:
    """Load what the SDK's transports import on their first call now, while the
    application starts: a first send in the middle of a logging storm would otherwise
    hold the GIL for the imports and stall every logging thread (benchmarks/outbox_storm.py)."""
    from ..transport import KeepAliveTransport, UrllibTransport

    transport = client.transport
    if isinstance(transport, (UrllibTransport, KeepAliveTransport)):
        with contextlib.suppress(OpShiftError):  # a bad proxy variable: the first send says
            transport.warm()
