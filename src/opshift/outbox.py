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
from ._call import ALERT, PING, fields_given
from ._outbox_store import Item, MemoryStore, SQLiteStore, StoreBusy, Work
from ._retry import backoff_wait
from .client import OpShift, caller
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
_IDLE_EXIT = 30.0  # a sender with nothing to do for this long ends; the next item restarts it
_SPILL_FIRST_ID = 10**12  # ids of items kept in memory while the file could not take them
_live: weakref.WeakSet[Outbox] = weakref.WeakSet()


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
        self._lease = max(60.0, 3 * client.timeout)
        self.path = os.fspath(path) if path is not None else None
        self._store: _Store | None = None
        if client.enabled:  # a disabled client's outbox validates and keeps nothing
            self._store = SQLiteStore(self.path) if self.path is not None else MemoryStore()
        self._spill: MemoryStore | None = None  # items the file could not take, in order
        self._stats = dict.fromkeys(_STAT_NAMES, 0)
        self._full_logged_at = float("-inf")
        self._full_unlogged = 0
        self._store_error_logged_at = float("-inf")
        self._closed = False
        self._pending_at_close = 0
        self._init_threading()
        _live.add(self)  # for the fork hook and the exit flush
        if self._background and isinstance(self._store, SQLiteStore) and self._store.count():
            self._start()  # items left by an earlier process: deliver them now

    def _init_threading(self) -> None:
        self._pid = os.getpid()
        self._lifecycle = threading.Lock()  # queuing vs close(), and the sender's start/end
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
        store = self._store
        if store is None:
            return 0
        with self._lifecycle:
            if self._closed:
                raise OpShiftError(
                    "This Outbox is closed; nothing was queued. Make a new Outbox, or queue "
                    "before close() (or the end of its with block)."
                )
            now = self._clock()
            spill = self._spill
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
            if self._background and self._thread is None:
                self._start()
        if dropped is not None:
            self._dropped_full(dropped, new=item_id == 0)
        if not self._wakeup.is_set():  # while the sender is busy, enqueue takes no lock here
            self._wakeup.set()
        return item_id

    def _spill_store(self, exc: Exception) -> MemoryStore:
        if self._spill is None:
            self._spill = MemoryStore(first_id=_SPILL_FIRST_ID)
        if not self._spill.count():  # a new streak
            _log.logger().error(
                "Cannot write the outbox file %r (%s); keeping new items in memory, in order, "
                "until it can (they are lost if the process dies first). Free disk space or "
                "fix the file's permissions if this goes on.",
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
        """Items not yet delivered, dropped or expired (all processes' items, for a file).

        After ``close()``: what was left when it closed.
        """
        if self._closed:
            return self._pending_at_close
        try:
            return sum(store.count() for store in self._stores())
        except sqlite3.Error as exc:
            raise OpShiftError(
                f"Cannot read the outbox file {self.path!r}: {exc}. Check the disk and the "
                "file's permissions."
            ) from exc

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
        if self._closed:
            return self._pending_at_close == 0
        return self._flush(deadline, start=True)

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
            if self._count_pending() == 0:
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
            delay = self._deliver_due(urgent=urgent, deadline=deadline)
            urgent = False
            if self._count_pending() == 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wakeup.wait(min(remaining, delay if delay is not None else 0.2, 1.0))
            self._wakeup.clear()

    def _count_pending(self) -> int:
        """pending, or -1 while the file cannot be read (so a flush keeps trying)."""
        try:
            return sum(store.count() for store in self._stores())
        except sqlite3.Error:
            return -1

    def close(self, timeout: float = 5.0) -> bool:
        """Flush for at most ``timeout`` s, then stop the sender. True if nothing was left.

        What is still waiting stays in the file (with a ``path``) for the next Outbox; in
        memory it is lost, and logged. Closing again returns the first close's answer;
        queuing after close raises ``OpShiftError``.
        """
        deadline = time.monotonic() + _validation.check_number("timeout", timeout, inclusive=True)
        with self._lifecycle:
            if self._closed:
                return self._pending_at_close == 0
            self._closed = True  # from here on ping() and alert() raise: nothing slips in
        if self._store is None:
            return True
        self._flush(deadline, start=False)
        self._stopping = True
        self._wakeup.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        left = self._count_pending()
        self._pending_at_close = max(left, 0)
        in_memory = sum(s.count() for s in self._stores() if isinstance(s, MemoryStore))
        if in_memory:
            _log.logger().warning(
                "Outbox closed with %d item(s) undelivered in memory; they are lost. Give the "
                "outbox a path to keep them for the next process.",
                in_memory,
            )
        if thread is None or not thread.is_alive():  # else it is mid-send: let it finish
            for store in self._stores():
                store.close()
        return left == 0

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
        thread = self._thread
        if thread is not None and thread.is_alive():
            return True
        thread = threading.Thread(target=self._run, name="opshift-outbox", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            return False
        self._thread = thread
        return True

    def _run(self) -> None:
        idle_since = time.monotonic()
        while not self._stopping:
            # Cleared before looking at the stores: an item queued during the pass sets it
            # again, so the wait below returns at once instead of missing it.
            self._wakeup.clear()
            urgent, self._urgent = self._urgent, False
            try:
                delay = self._deliver_due(urgent=urgent)
            except Exception as exc:  # a store or client bug must not end delivery for good
                self._store_failed(exc)
                delay = 5.0
            with self._passed:
                self._passed.notify_all()  # flush() waiters re-check pending
            if delay is not None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= _IDLE_EXIT:
                with self._lifecycle:  # queuing starts a new sender under this same lock
                    if not self._wakeup.is_set() and self._count_pending() == 0:
                        self._thread = None  # so the outbox can be collected if dropped
                        return
            if self.path is not None:
                delay = _IDLE_POLL if delay is None else min(delay, _IDLE_POLL)
            if not self._stopping:
                self._wakeup.wait(delay if delay is not None else _IDLE_EXIT)

    def _store_failed(self, exc: Exception) -> None:
        """Log a sender fault: with its traceback at first, then at most once a minute."""
        now = time.monotonic()
        if now - self._store_error_logged_at < 60.0:
            return
        self._store_error_logged_at = now
        _log.logger().error(
            "The outbox could not use %s (%s: %s); it keeps the items and tries again every "
            "few seconds.",
            "its file " + repr(self.path) if self.path else "its queue",
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, sqlite3.Error),
        )

    def _deliver_due(self, *, urgent: bool = False, deadline: float | None = None) -> float | None:
        """Expire what is too old, deliver every destination that is due (until ``deadline``,
        a monotonic time, if given); return the seconds until the next one is due (None
        when nothing waits)."""
        due: list[float] = []
        file = self._store if isinstance(self._store, SQLiteStore) else None
        if file is not None and self._spill is not None and self._spill.count():
            self._move_spill_into(file, self._spill)
        for store in self._stores():
            try:
                self._expire(store)
                tried: set[str] = set()
                if store is self._spill and file is not None and store.count():
                    tried = _waiting_in(file)
                while not self._stopping and (deadline is None or time.monotonic() < deadline):
                    work = store.claim(
                        self._clock(), self._lease, urgent=urgent, skip=frozenset(tried)
                    )
                    if work is None:
                        break
                    if not self._deliver(store, work, deadline):
                        tried.add(work.destination)
                next_due = store.next_due()
            except sqlite3.Error as exc:  # the file is busy or broken: the spill still goes
                self._store_failed(exc)
                next_due = self._clock() + _IDLE_POLL
            if next_due is not None:
                due.append(next_due)
        return max(0.0, min(due) - self._clock()) if due else None

    def _move_spill_into(self, file: SQLiteStore, spill: MemoryStore) -> None:
        """Move what waited in memory into the file, in order, once the file takes writes."""
        items = spill.unclaimed_items()
        try:
            file.absorb(items)
        except sqlite3.Error:
            return  # still busy or full: the items stay in memory, in order
        spill.discard(items)
        _log.logger().info(
            "The outbox file %r takes writes again: %d item(s) kept in memory moved into it.",
            self.path,
            len(items),
        )

    def _deliver(self, store: _Store, work: Work, deadline: float | None) -> bool:
        """Send a claimed destination's items in order; False if it must back off.

        The claim is always released (or handed back with its backoff), whatever happens.
        """
        failures = work.failures
        next_attempt = 0.0
        done: list[int] = []
        rejected: list[tuple[Item, OpShiftError]] = []
        renewed = time.monotonic()
        backing_off = False
        try:
            for item in work.items:
                now = time.monotonic()
                if self._stopping or (deadline is not None and now >= deadline):
                    break
                if now - renewed > self._lease / 3:  # keep the lease while the batch lasts
                    kept = store.finish(
                        work.destination, done, failures, 0.0, release=False,
                        lease=self._lease, now=self._clock(),
                    )  # fmt: skip
                    done = []
                    renewed = now
                    if not kept:  # the lease ran out and another sender took over
                        return True
                try:
                    caller(self.client).send_once(
                        item.destination, item.body, self._send_timeout(deadline)
                    )
                except Exception as error:
                    if isinstance(error, OpShiftError) and _final(error):
                        done.append(item.id)
                        rejected.append((item, error))
                        continue
                    failures += 1
                    wait = backoff_wait(failures, self._backoff, self._backoff_max, self._jitter())
                    next_attempt = self._clock() + wait
                    backing_off = True
                    self._count("retried")
                    self._failed(item, error, failures, wait)
                    return False
                done.append(item.id)
                self._count("delivered")
                if failures:
                    self._resumed(item, failures)
                    failures = 0
                if len(done) >= _PROGRESS_EVERY:
                    if not store.finish(
                        work.destination, done, 0, 0.0, release=False, lease=self._lease,
                        now=self._clock(),
                    ):  # fmt: skip
                        return True
                    done = []
                    renewed = time.monotonic()
            return True
        finally:
            self._rejected(rejected)
            try:
                store.finish(
                    work.destination, done, failures, next_attempt if backing_off else 0.0,
                    release=True,
                )  # fmt: skip
            except sqlite3.Error as exc:  # the lease runs out by itself; items are re-sent
                self._store_failed(exc)

    def _send_timeout(self, deadline: float | None) -> float:
        """One attempt's timeout: the client's, cut to what is left of a flush's deadline."""
        timeout = self.client.timeout
        if deadline is not None:
            timeout = min(timeout, max(deadline - time.monotonic(), 0.001))
        return timeout

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

    def _rejected(self, rejected: list[tuple[Item, OpShiftError]]) -> None:
        """Count refused items and log them: one line per batch, not per item."""
        if not rejected:
            return
        self._count("dropped_rejected", len(rejected))
        item, error = rejected[0]
        more = f" (and {len(rejected) - 1} more to it)" if len(rejected) > 1 else ""
        _log.logger().error(
            "OpShift rejected the queued %s to %s%s, so it was dropped: %s",
            item.kind,
            item.destination,
            more,
            error,
        )

    def _failed(self, item: Item, error: Exception, failures: int, wait: float) -> None:
        log = _log.logger()
        if failures == 1:  # once per streak; the rest at DEBUG
            log.warning(
                "Could not deliver a queued %s to %s (%s); %d item(s) wait in the outbox and "
                "will be retried with backoff.",
                item.kind,
                item.destination,
                error,
                max(self._count_pending(), 0),
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
            max(self._count_pending(), 0) + 1,
        )

    # -- process lifecycle ---------------------------------------------------------------

    def _locks(self) -> list[threading.Lock]:
        locks = [self._lifecycle]
        for store in self._stores():
            locks.extend(store.locks())
        return locks

    def _after_fork(self) -> None:
        """In a forked child: a thread, locks and connections of its own; no parent items."""
        for store in self._stores():
            store.after_fork()
        self._init_threading()


def _waiting_in(file: SQLiteStore) -> set[str]:
    """Destinations whose older items wait in the file, so their spilled items wait too
    (FIFO). A file that cannot even be read holds nothing back: delivery beats order."""
    try:
        return file.destinations()
    except sqlite3.Error:
        return set()


def _final(error: OpShiftError) -> bool:
    """OpShift refused this item for good (400, 401, 403, 404, ...): retrying cannot help.

    Only OpShift's own answer counts: its JSON ``{"error": ...}``. An HTML 403 from a proxy
    or firewall in between, network errors, 5xx, 429, 408, a proxy's 407 and redirects
    (a wrong base_url, which a fix can still save the items from) are all retried.
    """
    body = error.body
    from_opshift = isinstance(body, dict) and isinstance(body.get("error"), str)
    return (
        from_opshift
        and 400 <= error.status_code <= 499
        and error.status_code not in (407, 408, 429)
    )


@atexit.register
def _flush_at_exit() -> None:
    """At interpreter exit, give each open outbox up to its exit_timeout to deliver."""
    for outbox in list(_live):
        if outbox._closed or outbox._store is None:
            continue
        try:
            if outbox._count_pending():
                outbox._flush(time.monotonic() + outbox.exit_timeout, start=True)
        except Exception:  # at exit, report and move on
            _log.logger().exception("Could not flush the outbox at exit.")


_held: list[threading.Lock] = []  # what the fork hook holds across fork()


def _before_fork() -> None:
    # No thread may be inside an outbox's SQLite call at fork(): the child would inherit
    # its half-held locks. Take every outbox's locks, in one order, until the fork is done.
    for outbox in list(_live):
        for lock in outbox._locks():
            lock.acquire()
            _held.append(lock)


def _after_fork_in_parent() -> None:
    while _held:
        _held.pop().release()


def _after_fork_in_child() -> None:
    _held.clear()  # the child's copies are replaced below, never released
    for outbox in list(_live):
        outbox._after_fork()


if hasattr(os, "register_at_fork"):  # every platform with fork() has it
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
