"""Outbox: accept a ping or alert at once, keep it, and deliver it in the background.

    outbox = Outbox(OpShift(), path="/var/lib/app/opshift-outbox.sqlite3")
    outbox.alert("deploy-failures", title="Deploy failed", severity="sev1")  # returns at once

Items wait in memory (``path=None``) or in a SQLite file that survives crashes and
restarts and may be shared by many processes. One daemon thread per outbox delivers
them, FIFO per ping token or webhook, with backoff per destination, until OpShift takes
them. Delivery is at least once: an item may arrive twice if a sender dies between
OpShift's answer and recording it (an identical alert folds into the open one).
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import threading
import time
import weakref
from typing import Callable, TypedDict, Union

from . import _log, _validation
from ._outbox_store import Item, MemoryStore, SQLiteStore, Work
from .client import OpShift, _given
from .errors import ConfigurationError, OpShiftError
from .types import Metadata, PingStatus, Severity

__all__ = ["Outbox", "OutboxStats"]


class OutboxStats(TypedDict):
    """What one Outbox did since it was made."""

    delivered: int  # OpShift took it
    retried: int  # a delivery failed (network, 5xx, 429) and will be tried again
    dropped_rejected: int  # OpShift refused it for good (400, 401, 403, 404, ...)
    dropped_expired: int  # too old to send: an up ping after ping_ttl, others after max_age
    dropped_full: int  # no room: max_pending reached


_Store = Union[MemoryStore, SQLiteStore]
_STAT_NAMES = ("delivered", "retried", "dropped_rejected", "dropped_expired", "dropped_full")
_PROGRESS_EVERY = 100  # delivered items recorded (one commit) at a time
_IDLE_POLL = 5.0  # how often a file-backed sender looks for other processes' items
_live: weakref.WeakSet[Outbox] = weakref.WeakSet()
_abandoned: list[object] = []  # a forked child's copies of the parent's connections


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
        self.ping_ttl = _validation.check_number("ping_ttl", ping_ttl)
        self.max_age = _validation.check_number("max_age", max_age)
        self.exit_timeout = _validation.check_number("exit_timeout", exit_timeout, inclusive=True)
        self._backoff = _validation.check_number("backoff", backoff)
        self._backoff_max = _validation.check_number("backoff_max", backoff_max)
        self._background = bool(background)
        self._clock = clock
        self._random = random
        # One attempt per delivery: the outbox's own backoff replaces the client's retries.
        self._sender = client.with_options(max_retries=0)
        self._lease = max(60.0, 3 * client.timeout)
        self.path = os.fspath(path) if path is not None else None
        self._store: _Store | None = None
        if client.enabled:  # a disabled client's outbox validates and keeps nothing
            self._store = SQLiteStore(self.path) if self.path is not None else MemoryStore()
        self._spill: MemoryStore | None = None  # items the file had no room for
        self._stats = dict.fromkeys(_STAT_NAMES, 0)
        self._full_logged_at = float("-inf")
        self._full_unlogged = 0
        self._closed = False
        self._init_threading()
        _live.add(self)  # for the fork hook and the exit flush

    def _init_threading(self) -> None:
        self._pid = os.getpid()
        self._wakeup = threading.Event()  # set: the sender should look at the stores now
        self._passed = threading.Condition()  # notified after each of the sender's passes
        self._urgent = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._stats_lock = threading.Lock()

    # -- enqueue -------------------------------------------------------------------------

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
        """
        fields = _given(status=status, reason=reason, group_key=group_key, metadata=metadata)
        path, body = self.client._prepare("ping", ping_token, fields)
        return self._put("ping", path, body, is_up=status != "down")

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
        """
        fields = _given(
            title=title,
            description=description,
            severity=severity,
            metadata=metadata,
            group_key=group_key,
        )
        path, body = self.client._prepare("alert", webhook_url, fields)
        return self._put("alert", path, body, is_up=False)

    def _put(self, kind: str, path: str, body: bytes, *, is_up: bool) -> int:
        store = self._store
        if store is None:
            return 0
        if self._closed:
            raise OpShiftError(
                "This Outbox is closed; nothing was queued. Make a new Outbox, or queue "
                "before close() (or the end of its with block)."
            )
        if _NO_FORK_HOOK and os.getpid() != self._pid:
            self._after_fork()
        now = self._clock()
        try:
            item_id, dropped = store.add(kind, path, body, is_up, now, self.max_pending)
        except sqlite3.Error as exc:  # disk full, file gone read-only: keep it in memory
            item_id, dropped = self._spill_store(exc).add(
                kind, path, body, is_up, now, self.max_pending
            )
        if dropped is not None:
            self._dropped_full(dropped, new=item_id == 0)
        if not self._wakeup.is_set():  # while the sender is busy, enqueue takes no lock here
            self._wake()
        return item_id

    def _spill_store(self, exc: sqlite3.Error) -> MemoryStore:
        if self._spill is None:
            self._spill = MemoryStore()
            _log.logger().error(
                "Cannot write the outbox file %r (%s); keeping new items in memory until it "
                "can, where they are lost if the process dies. Free disk space or fix the "
                "file's permissions.",
                self.path,
                exc,
            )
        return self._spill

    def _dropped_full(self, item: Item, *, new: bool) -> None:
        self._count("dropped_full")
        self._full_unlogged += 1
        now = time.monotonic()
        if now - self._full_logged_at >= 60.0:  # at most one line a minute while full
            which = "the new" if new else "the oldest waiting up"
            _log.logger().warning(
                "Outbox full (max_pending=%d): dropped %s %s to %s (%d dropped since the last "
                "report). OpShift may be unreachable; see outbox.stats.",
                self.max_pending,
                which,
                item.kind,
                item.destination,
                self._full_unlogged,
            )
            self._full_logged_at = now
            self._full_unlogged = 0

    # -- state ---------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Items not yet delivered, dropped or expired (all processes' items, for a file)."""
        return sum(store.count() for store in self._stores())

    @property
    def stats(self) -> OutboxStats:
        """This outbox's counts: delivered, retried, dropped_rejected/_expired/_full."""
        with self._stats_lock:
            counts = self._stats
            return OutboxStats(
                delivered=counts["delivered"],
                retried=counts["retried"],
                dropped_rejected=counts["dropped_rejected"],
                dropped_expired=counts["dropped_expired"],
                dropped_full=counts["dropped_full"],
            )

    def _stores(self) -> list[_Store]:
        stores: list[_Store] = [] if self._store is None else [self._store]
        if self._spill is not None:
            stores.append(self._spill)
        return stores

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[name] += n

    # -- flush and close -----------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Deliver what is waiting, trying every destination now; wait at most ``timeout`` s.

        Returns:
            True when nothing is pending (for a file: no process's items are left).
        """
        deadline = time.monotonic() + _validation.check_number("timeout", timeout, inclusive=True)
        if self._store is None:
            return True
        if os.getpid() != self._pid:
            self._after_fork()
        return self._flush(deadline, start=not self._closed)

    def _flush(self, deadline: float, *, start: bool) -> bool:
        """Let the sender thread deliver (starting it if allowed), else deliver here."""
        running = self._thread is not None and self._thread.is_alive()
        if self._background and (running or (start and self._start())):
            return self._wait_for_sender(deadline)
        return self._deliver_inline(deadline)

    def _wait_for_sender(self, deadline: float) -> bool:
        self._urgent = True
        self._wakeup.set()
        while True:
            if self.pending == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._passed:
                # Woken after each of the sender's passes; re-check now and then regardless,
                # since other processes may deliver items from a shared file.
                self._passed.wait(min(remaining, 0.2))

    def _deliver_inline(self, deadline: float) -> bool:
        urgent = True
        while True:
            delay = self._deliver_due(urgent=urgent)
            urgent = False
            if self.pending == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wakeup.wait(min(remaining, delay if delay is not None else 0.2, 1.0))
            self._wakeup.clear()

    def close(self, timeout: float = 5.0) -> bool:
        """Flush for at most ``timeout`` s, then stop the sender. True if nothing was left.

        What is still waiting stays in the file (with a ``path``) for the next Outbox.
        Queuing after close raises ``OpShiftError``.
        """
        deadline = time.monotonic() + _validation.check_number("timeout", timeout, inclusive=True)
        if self._closed:
            return self.pending == 0 if self._store is not None else True
        self._closed = True  # from here on ping() and alert() raise: nothing slips in unsent
        flushed = self._flush(deadline, start=False) if self._store is not None else True
        self._stopping = True
        self._wakeup.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        if thread is None or not thread.is_alive():  # else it is mid-send: let it finish
            for store in self._stores():
                store.close()
        return flushed

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "memory" if self.path is None else repr(self.path)
        return f"Outbox({where}, max_pending={self.max_pending})"

    # -- the sender ----------------------------------------------------------------------

    def _start(self) -> bool:
        """Start the sender thread if it is not running; False if it cannot run now."""
        if self._thread is not None and self._thread.is_alive():
            return True
        thread = threading.Thread(target=self._run, name="opshift-outbox", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            return False
        self._thread = thread
        return True

    def _wake(self) -> None:
        if self._background and (self._thread is None or not self._thread.is_alive()):
            self._start()
        self._wakeup.set()

    def _run(self) -> None:
        while not self._stopping:
            # Cleared before looking at the stores: an item queued during the pass sets it
            # again, so the wait below returns at once instead of missing it.
            self._wakeup.clear()
            urgent, self._urgent = self._urgent, False
            try:
                delay = self._deliver_due(urgent=urgent)
            except Exception:  # a store or client bug must not end delivery for good
                _log.logger().exception("The outbox sender failed; trying again in 5 s.")
                delay = 5.0
            if self.path is not None:
                delay = _IDLE_POLL if delay is None else min(delay, _IDLE_POLL)
            with self._passed:
                self._passed.notify_all()  # flush() waiters re-check pending
            if not self._stopping:
                self._wakeup.wait(delay)

    def _deliver_due(self, *, urgent: bool = False) -> float | None:
        """Expire what is too old, deliver every destination that is due; return the
        seconds until the next one is due (None when nothing waits)."""
        due: list[float] = []
        for store in self._stores():
            self._expire(store)
            tried: set[str] = set()
            while not self._stopping:
                work = store.claim(self._clock(), self._lease, urgent=urgent, skip=frozenset(tried))
                if work is None:
                    break
                if not self._deliver(store, work):
                    tried.add(work.destination)
            next_due = store.next_due()
            if next_due is not None:
                due.append(next_due)
        return max(0.0, min(due) - self._clock()) if due else None

    def _deliver(self, store: _Store, work: Work) -> bool:
        """Send a claimed destination's items in order; False if it must back off."""
        failures = work.failures
        done: list[int] = []
        renewed = time.monotonic()
        for item in work.items:
            if self._stopping:
                break
            try:
                self._sender._send(item.destination, item.body)
            except Exception as error:
                if isinstance(error, OpShiftError) and _final(error):
                    done.append(item.id)
                    self._rejected(item, error)
                    continue
                failures += 1
                wait = self._jitter() * min(
                    self._backoff_max, self._backoff * 2.0 ** (failures - 1)
                )
                store.finish(work.destination, done, failures, self._clock() + wait, release=True)
                self._count("retried")
                self._failed(item, error, failures, wait)
                return False
            done.append(item.id)
            self._count("delivered")
            if failures:
                self._resumed(item, failures)
                failures = 0
            if len(done) >= _PROGRESS_EVERY or time.monotonic() - renewed > self._lease / 3:
                store.finish(
                    work.destination, done, 0, 0.0, release=False, lease=self._lease,
                    now=self._clock(),
                )  # fmt: skip
                done = []
                renewed = time.monotonic()
        store.finish(work.destination, done, failures, 0.0, release=True)
        return True

    def _jitter(self) -> float:
        if self._random is None:
            import random

            self._random = random.random
        return self._random()

    def _expire(self, store: _Store) -> None:
        now = self._clock()
        expired = store.expire(now - self.ping_ttl, now - self.max_age, now)
        if not expired:
            return
        self._count("dropped_expired", len(expired))
        ups = sum(item.is_up for item in expired)
        _log.logger().warning(
            "Dropped %d expired outbox item(s) unsent: %d up ping(s) older than %g s "
            "(a late up would claim liveness nobody saw) and %d alert(s) or down ping(s) "
            "older than %g s (first: %s).",
            len(expired),
            ups,
            self.ping_ttl,
            len(expired) - ups,
            self.max_age,
            expired[0].destination,
        )

    def _rejected(self, item: Item, error: OpShiftError) -> None:
        self._count("dropped_rejected")
        _log.logger().error(
            "OpShift rejected the queued %s to %s, so it was dropped: %s", item.kind,
            item.destination, error,
        )  # fmt: skip

    def _failed(self, item: Item, error: Exception, failures: int, wait: float) -> None:
        log = _log.logger()
        if failures == 1:  # once per streak; the rest at DEBUG
            log.warning(
                "Could not deliver a queued %s to %s (%s); %d item(s) wait in the outbox and "
                "will be retried with backoff.",
                item.kind,
                item.destination,
                error,
                self.pending,
            )
        elif _log.debug_enabled():
            log.debug(
                "Delivery to %s failed again (attempt %d, next in %.1f s): %s",
                item.destination,
                failures,
                wait,
                error,
            )

    def _resumed(self, item: Item, failures: int) -> None:
        _log.logger().info(
            "Delivery to %s resumed after %d failed attempt(s); %d item(s) were waiting.",
            item.destination,
            failures,
            self.pending + 1,
        )

    # -- process lifecycle ---------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child: a thread, locks and connection of its own; no parent items."""
        for store in self._stores():
            if isinstance(store, SQLiteStore):
                _abandoned.append(store._conn)  # never closed here: it is the parent's
            store.after_fork()
        self._init_threading()


def _final(error: OpShiftError) -> bool:
    """OpShift refused this item for good (400, 401, 403, 404, ...): retrying cannot help.

    Network errors, 5xx, 429, 408 and a proxy's 407 are retried; so are redirects, which
    mean a wrong base_url that a fix can still save the items from.
    """
    return 400 <= error.status_code <= 499 and error.status_code not in (407, 408, 429)


@atexit.register
def _flush_at_exit() -> None:
    """At interpreter exit, give each open outbox up to its exit_timeout to deliver."""
    for outbox in list(_live):
        if outbox._closed or outbox._store is None or os.getpid() != outbox._pid:
            continue  # a process without the fork hook leaves a parent's items alone
        try:
            if outbox.pending:
                outbox.flush(outbox.exit_timeout)
        except Exception:  # at exit, report and move on
            _log.logger().exception("Could not flush the outbox at exit.")


def _after_fork_in_child() -> None:
    for outbox in list(_live):
        outbox._after_fork()


_NO_FORK_HOOK = not hasattr(os, "register_at_fork")  # then enqueue checks the pid itself
if not _NO_FORK_HOOK:
    os.register_at_fork(after_in_child=_after_fork_in_child)
