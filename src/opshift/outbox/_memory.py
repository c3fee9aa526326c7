"""``MemoryStore``: items in this process's memory, lost if the process dies."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict

from ._store import BATCH, Finish, Item, Work

__all__ = ["MemoryStore"]


class MemoryStore:
    """Items in this process's memory; lost if the process dies. Thread-safe.

    A claim lasts until ``finish`` releases it: no other sender shares this memory. Each
    destination's items, and apart its up pings, are kept in insertion order with O(1)
    removal, so a full store finds the up ping to drop, or refuses, without a scan.

    Args:
        first_id: The first id handed out (a spill store counts from far above the file's).
    """

    def __init__(self, first_id: int = 1) -> None:
        self._first_id = first_id
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, OrderedDict[int, Item]] = {}
        self._ups: dict[str, OrderedDict[int, Item]] = {}  # only destinations with up pings
        self._failures: dict[str, int] = {}
        self._next_attempt: dict[str, float] = {}
        self._claimed: set[str] = set()
        self._count = 0
        self._next_id = self._first_id

    def add(
        self, kind: str, destination: str, body: bytes, is_up: bool, created: float, limit: int
    ) -> tuple[int, Item | None]:
        """Store an item unless full; return (its id, the item dropped to make room, if any).

        When full, the oldest waiting ``up`` ping makes room; if there is none, the new
        item is not stored: its id is 0 and it is itself returned as the dropped one.
        Either way the cost does not grow with how many items wait.
        """
        with self._lock:
            dropped = None
            if self._count >= limit:
                dropped = self._pop_oldest_up()
                if dropped is None:
                    return 0, Item(0, kind, destination, body, is_up, created)
            item = Item(self._next_id, kind, destination, body, is_up, created)
            self._next_id += 1
            queue = self._queues.get(destination)
            if queue is None:
                queue = self._queues[destination] = OrderedDict()
            queue[item.id] = item
            if is_up:
                self._ups.setdefault(destination, OrderedDict())[item.id] = item
            self._count += 1
            return item.id, dropped

    def _pop_oldest_up(self) -> Item | None:
        """The oldest up ping of a destination no sender holds, removed; O(destinations)."""
        oldest: Item | None = None
        for destination, ups in self._ups.items():
            if destination in self._claimed:
                continue
            first = next(iter(ups.values()))
            if oldest is None or first.id < oldest.id:
                oldest = first
        if oldest is not None:
            self._remove(oldest.destination, oldest.id)
        return oldest

    def _remove(self, destination: str, item_id: int) -> Item | None:
        item = self._queues[destination].pop(item_id, None)
        if item is None:
            return None
        self._count -= 1
        if item.is_up:
            ups = self._ups[destination]
            del ups[item_id]
            if not ups:
                del self._ups[destination]
        return item

    def count(self) -> int:
        """How many items wait."""
        return self._count

    def waiting_for_us(self, now: float) -> dict[str, int]:
        """Every destination's items: no other process shares this memory."""
        with self._lock:
            return {d: len(q) for d, q in self._queues.items() if q}

    def refuses(self, limit: int) -> bool:
        """Full, and no up ping waits to make room (see ``Store.refuses``). A hint, read
        without the lock (as ``count`` is): taken in a storm, it would be one more lock
        every logging thread queues on, and the answer is as old once it is released."""
        return self._count >= limit and not self._ups

    def expire(self, up_before: float, any_before: float, now: float) -> list[Item]:
        """Remove and return items too old to send, except those a sender is sending now.

        An item created after ``now`` (the clock stepped back) is dated ``now`` first, so
        its age never goes negative. Items are queued oldest first, so only each queue's
        front (and its newest end, for re-dating) is looked at.
        """
        expired: list[Item] = []
        with self._lock:
            for destination, queue in self._queues.items():
                if destination in self._claimed:
                    continue
                self._redate(destination, queue, now)
                while queue:
                    first = next(iter(queue.values()))
                    if first.created >= any_before:
                        break
                    expired.append(first)
                    self._remove(destination, first.id)
                ups = self._ups.get(destination)
                while ups:
                    first = next(iter(ups.values()))
                    if first.created >= up_before:
                        break
                    expired.append(first)
                    self._remove(destination, first.id)
                    ups = self._ups.get(destination)
            self._forget_empty()
        return sorted(expired, key=lambda item: item.id)

    def _redate(self, destination: str, queue: OrderedDict[int, Item], now: float) -> None:
        future = list(itertools.takewhile(lambda i: i.created > now, reversed(queue.values())))
        ups = self._ups.get(destination)
        for item in future:
            queue[item.id] = Item(item.id, item.kind, destination, item.body, item.is_up, now)
            if ups is not None and item.id in ups:
                ups[item.id] = queue[item.id]

    def cap_backoff(self, latest: float, lease_latest: float) -> None:
        """End every backoff that would end after ``latest`` (a clock stepped back) then.

        A claim in memory has no end time (it lasts until finish), so no lease to cap.
        """
        with self._lock:
            for destination, due in self._next_attempt.items():
                if due > latest:
                    self._next_attempt[destination] = latest

    def claim(
        self, now: float, lease: float, *, urgent: bool = False, skip: frozenset[str] = frozenset()
    ) -> Work | None:
        """Claim the ready destination whose oldest item is oldest; None if none is ready.

        ``urgent`` ignores backoff (a flush tries everything now); ``skip`` leaves out
        destinations already tried in this pass.
        """
        with self._lock:
            best: tuple[int, str] | None = None
            for destination, queue in self._queues.items():
                if destination in self._claimed or destination in skip or not queue:
                    continue
                if not urgent and self._next_attempt.get(destination, 0.0) > now:
                    continue
                first = next(iter(queue))
                if best is None or first < best[0]:
                    best = (first, destination)
            if best is None:
                return None
            destination = best[1]
            self._claimed.add(destination)
            items = list(itertools.islice(self._queues[destination].values(), BATCH))
            return Work(destination, self._failures.get(destination, 0), items)

    def finish(self, result: Finish) -> bool:
        """Remove delivered or dropped items; store the backoff; release the claim if asked.

        Returns True (a claim in memory cannot be lost to another sender).
        """
        destination = result.destination
        with self._lock:
            if destination in self._queues:
                for item_id in result.done:
                    self._remove(destination, item_id)
            self._failures[destination] = result.failures
            self._next_attempt[destination] = result.next_attempt
            if result.release:
                self._claimed.discard(destination)
            self._forget_empty()
        return True

    def next_due(self) -> float | None:
        """The earliest time a destination with items may be tried (0 for now); None if empty."""
        with self._lock:
            due = [
                self._next_attempt.get(d, 0.0)
                for d, q in self._queues.items()
                if q and d not in self._claimed
            ]
        return min(due) if due else None

    def destinations(self) -> set[str]:
        """The destinations that have waiting items."""
        with self._lock:
            return {d for d, q in self._queues.items() if q}

    def unclaimed_items(self) -> list[Item]:
        """Every item no sender is sending, oldest first (to move them into the file)."""
        with self._lock:
            items = [
                item
                for destination, queue in self._queues.items()
                if destination not in self._claimed
                for item in queue.values()
            ]
        return sorted(items, key=lambda item: item.id)

    def discard(self, items: list[Item]) -> None:
        """Forget these items (they were moved elsewhere)."""
        by_destination: dict[str, list[int]] = {}
        for item in items:
            by_destination.setdefault(item.destination, []).append(item.id)
        for destination, ids in by_destination.items():
            self.finish(Finish(destination, tuple(ids), release=False))

    def _forget_empty(self) -> None:
        # An empty queue needs no backoff state either: its next item starts afresh.
        for destination in [d for d, q in self._queues.items() if not q]:
            if destination not in self._claimed:
                del self._queues[destination]
                self._next_attempt.pop(destination, None)
                self._failures.pop(destination, None)

    def locks(self) -> list[threading.Lock]:
        """The locks to hold across fork(), so the child inherits none of them held."""
        return [self._lock]

    def close(self) -> None:
        """Nothing to release."""

    def after_fork(self) -> None:
        """A forked child starts empty: the parent delivers what it had queued."""
        self._reset()
