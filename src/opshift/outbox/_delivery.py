"""One outbox's delivery: its stores, settings and counts, and one pass over what is due.

A pass expires what is too old, moves items kept in memory back into the file, then
claims one destination at a time, sends its items in order, backs off on a failure,
counts and logs. The sender thread (``_sender``) runs passes; so does a flush without one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Callable

from .. import _log
from .._retry import backoff_wait
from ..client import OpShift, caller
from ..errors import OpShiftError
from ._memory import MemoryStore
from ._sqlite import SENDER_WAIT, SQLiteStore
from ._store import Finish, Item, Store, Work

__all__ = [
    "IDLE_POLL",
    "LEASE_CAP",
    "PROGRESS_EVERY",
    "PROGRESS_SECONDS",
    "RECORD_PATIENCE",
    "STAT_NAMES",
    "Counts",
    "Delivery",
]

STAT_NAMES = ("delivered", "retried", "dropped_rejected", "dropped_expired", "dropped_full")
PROGRESS_EVERY = 100  # delivered items are recorded (one commit) at least this often...
PROGRESS_SECONDS = 1.0  # ...and at least this often (seconds) while sends are slow
RECORD_PATIENCE = 2.0  # how long a pass keeps trying to write a batch's result
# A lease ending later than this from now was stamped by a clock that ran fast: cut to
# this. Not to this process's own lease, which another process's, with a longer client
# timeout, may rightly exceed (a live sender renews every third of its lease).
LEASE_CAP = 3600.0
IDLE_POLL = 5.0  # how often a file-backed sender looks for other processes' items


class Counts:
    """What one outbox did since it was made (the names in STAT_NAMES); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(STAT_NAMES, 0)

    def add(self, name: str, n: int = 1) -> int:
        """Count ``n`` more of ``name``; its count now."""
        with self._lock:
            total = self._counts[name] = self._counts[name] + n
            return total

    def snapshot(self) -> dict[str, int]:
        """Every count, read at one moment."""
        with self._lock:
            return dict(self._counts)

    def after_fork(self) -> None:
        """In a forked child: a lock of its own (the parent's may have been held)."""
        self._lock = threading.Lock()


class Delivery:
    """An outbox's stores, delivery settings and counts; ``deliver_due`` is one pass.

    Args:
        client: Sends each item once (``caller(client).send_once``), unsigned bodies signed
            at send time.
        store: Where items wait; None for a disabled client's outbox (nothing is kept).
        path: The file's path, for log lines; None in memory.
        ping_ttl, max_age, backoff, backoff_max, clock, random: as ``Outbox`` takes them.

    Attributes:
        spill: Items the file could not take, in order, until it takes writes again.
        lease: How long a claim on a destination lasts unless renewed, in seconds.
        stopping: Set by close(): a pass sends nothing more and the sender ends.
        unrecorded: Batch results the file would not take in time (locked, full): each
            pass writes them first, which releases their destinations' leases.
    """

    def __init__(
        self,
        client: OpShift,
        store: Store | None,
        *,
        path: str | None,
        ping_ttl: float,
        max_age: float,
        backoff: float,
        backoff_max: float,
        clock: Callable[[], float],
        random: Callable[[], float] | None,
    ) -> None:
        self.client = client
        self.store = store
        self.spill: MemoryStore | None = None
        self.path = path
        self.ping_ttl = ping_ttl
        self.max_age = max_age
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.clock = clock
        self.random = random
        self.lease = max(60.0, 3 * client.timeout)
        self.stopping = False
        self.counts = Counts()
        self.unrecorded: list[tuple[Store, Finish]] = []
        self._store_error_logged_at = float("-inf")

    def stores(self) -> list[Store]:
        """The stores that may hold items: the main one, then the spill."""
        stores: list[Store] = [] if self.store is None else [self.store]
        if self.spill is not None:
            stores.append(self.spill)
        return stores

    def count_pending(self) -> int:
        """Items waiting in every store, or -1 while the file cannot be read (so a flush
        keeps trying)."""
        try:
            return sum(store.count() for store in self.stores())
        except sqlite3.Error:
            return -1

    def count_ours(self) -> int:
        """Items this process could still send: those no other live sender holds (what an
        exit waits for and reports); -1 while the file cannot be read."""
        try:
            return sum(sum(store.waiting_for_us(self.clock()).values()) for store in self.stores())
        except sqlite3.Error:
            return -1

    def locks(self) -> list[threading.Lock]:
        """The stores' locks, to hold across fork()."""
        return [lock for store in self.stores() for lock in store.locks()]

    def after_fork(self) -> None:
        """In a forked child: the stores' own after_fork, fresh counts' lock, not stopping."""
        for store in self.stores():
            store.after_fork()
        self.counts.after_fork()
        self.stopping = False
        self.unrecorded = []  # the parent's claims, not the child's

    def store_failed(self, exc: Exception) -> None:
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

    def deliver_due(self, *, urgent: bool = False, deadline: float | None = None) -> float | None:
        """Expire what is too old, deliver every destination that is due (until ``deadline``,
        a monotonic time, if given); return the seconds until the next one is due (None
        when nothing waits). ``urgent`` ignores backoff, as a flush does."""
        due: list[float] = []
        self._write_unrecorded()
        file = self.store if isinstance(self.store, SQLiteStore) else None
        if file is not None and self.spill is not None and self.spill.count():
            self._move_spill_into(file, self.spill)
        for store in self.stores():
            try:
                now = self.clock()
                store.cap_backoff(now + self.backoff_max, now + max(self.lease, LEASE_CAP))
                self._expire(store)
                # A destination whose result waits in memory stays ours, whatever its lease
                # in the file says: claiming it again would send its items twice.
                tried = {result.destination for held, result in self.unrecorded if held is store}
                if store is self.spill and file is not None and store.count():
                    tried |= _waiting_in(file)
                while not self.stopping and (deadline is None or time.monotonic() < deadline):
                    work = store.claim(
                        self.clock(), self.lease, urgent=urgent, skip=frozenset(tried)
                    )
                    if work is None:
                        break
                    if not self._deliver(store, work, deadline):
                        tried.add(work.destination)
                next_due = store.next_due()
            except sqlite3.Error as exc:  # the file is busy or broken: the spill still goes
                self.store_failed(exc)
                next_due = self.clock() + IDLE_POLL
            if next_due is not None:
                due.append(next_due)
        if self.unrecorded:  # try again soon: their destinations wait on it
            due.append(self.clock() + SENDER_WAIT)
        return max(0.0, min(due) - self.clock()) if due else None

    def _write_unrecorded(self) -> None:
        """Write the results an earlier pass could not, ending their claims."""
        for entry in list(self.unrecorded):
            store, result = entry
            try:
                store.finish(result)
            except sqlite3.Error as exc:
                self.store_failed(exc)
                return  # still unwritable: keep them, in order
            self.unrecorded.remove(entry)

    def _record(self, store: Store, result: Finish, deadline: float | None) -> bool | None:
        """``store.finish(result)``, tried again for up to RECORD_PATIENCE seconds (within
        ``deadline``) while the file will not take it; its answer, or None if it never did.

        A released claim whose result could not be written is kept in ``unrecorded``: the
        next pass writes it first, so its items are not sent again and the destination does
        not wait out its lease.
        """
        give_up = time.monotonic() + RECORD_PATIENCE
        if deadline is not None:
            give_up = min(give_up, deadline)
        while True:
            try:
                return store.finish(result)
            except sqlite3.Error as exc:  # each try waits SENDER_WAIT for a lock
                if time.monotonic() >= give_up or self.stopping:
                    self.store_failed(exc)
                    if result.release:
                        self.unrecorded.append((store, result))
                    return None
                if "locked" not in str(exc) and "busy" not in str(exc):
                    time.sleep(0.05)  # disk full, I/O: no lock wait paced this try

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

    def _deliver(self, store: Store, work: Work, deadline: float | None) -> bool:
        """Send a claimed destination's items in order; False if it must back off.

        The claim is always released (or handed back with its backoff), whatever happens.
        What is delivered is recorded every PROGRESS_EVERY items and PROGRESS_SECONDS, so a
        sender killed mid-batch leaves little to send again.
        """
        failures = work.failures
        next_attempt = 0.0
        done: list[int] = []
        rejected: list[tuple[Item, OpShiftError]] = []
        renewed = recorded = time.monotonic()
        backing_off = False
        try:
            for item in work.items:
                now = time.monotonic()
                if self.stopping or (deadline is not None and now >= deadline):
                    break
                if now - renewed > self.lease / 3:  # keep the lease while the batch lasts
                    kept = self._record(store, self._renewal(work, done, failures), deadline)
                    if not kept:  # lost to another sender, or the file would not take it
                        return True
                    done = []
                    renewed = recorded = now
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
                    wait = backoff_wait(failures, self.backoff, self.backoff_max, self._jitter())
                    next_attempt = self.clock() + wait
                    backing_off = True
                    self.counts.add("retried")
                    self._failed(item, error, failures, wait)
                    return False
                done.append(item.id)
                self.counts.add("delivered")
                if failures:
                    self._resumed(item, failures)
                    failures = 0
                now = time.monotonic()
                if len(done) >= PROGRESS_EVERY or now - recorded >= PROGRESS_SECONDS:
                    if not self._record(store, self._renewal(work, done, 0), deadline):
                        return True
                    done = []
                    renewed = recorded = time.monotonic()
            return True
        finally:
            self._rejected(rejected)
            ending = Finish(
                work.destination,
                tuple(done),
                failures,
                next_attempt if backing_off else 0.0,
                release=True,
            )
            self._record(store, ending, deadline)

    def _renewal(self, work: Work, done: list[int], failures: int) -> Finish:
        """Record what is done so far and keep the claim for another lease."""
        return Finish(
            work.destination,
            tuple(done),
            failures,
            release=False,
            lease_until=self.clock() + self.lease,
        )

    def _send_timeout(self, deadline: float | None) -> float:
        """One attempt's timeout: the client's, cut to what is left of a flush's deadline."""
        timeout = self.client.timeout
        if deadline is not None:
            timeout = min(timeout, max(deadline - time.monotonic(), 0.001))
        return timeout

    def _jitter(self) -> float:
        if self.random is None:
            import random  # on the first failure only: most outboxes never back off

            self.random = random.random
        return self.random()

    def _expire(self, store: Store) -> None:
        now = self.clock()
        expired = store.expire(now - self.ping_ttl, now - self.max_age, now)
        if not expired:
            return
        self.counts.add("dropped_expired", len(expired))
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
        self.counts.add("dropped_rejected", len(rejected))
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
                max(self.count_pending(), 0),
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
            max(self.count_pending(), 0) + 1,
        )


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
