"""The seam between a sender and where items wait: the ``Store`` protocol and its values.

Two stores satisfy it, ``MemoryStore`` and ``SQLiteStore``; the delivery pass uses only
what is here. This module imports nothing of the outbox's: every other module may import it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = ["BATCH", "Finish", "Item", "Store", "StoreBusy", "Work"]

BATCH = 200  # items claimed at once from one destination


class StoreBusy(Exception):
    """The store could not take the item in time (another writer); keep it elsewhere."""


class Item(NamedTuple):
    """One waiting ping or alert."""

    id: int
    kind: str
    destination: str
    body: bytes
    is_up: bool
    created: float


class Work(NamedTuple):
    """A claimed destination: its backoff state and its oldest items (at most BATCH), in order."""

    destination: str
    failures: int
    items: list[Item]


@dataclass(frozen=True)
class Finish:
    """What a sender reports for the destination it claimed, for ``Store.finish``.

    Attributes:
        destination: The claimed destination.
        done: Ids of its items delivered or refused for good: they are removed.
        failures: Consecutive retryable failures so far (0 after a delivery).
        next_attempt: Backoff: the destination is not tried before this wall-clock time.
        release: True ends the claim; False keeps it (renews the lease until ``lease_until``).
        lease_until: When a kept claim's lease ends (wall-clock seconds).
    """

    destination: str
    done: tuple[int, ...] = ()
    failures: int = 0
    next_attempt: float = 0.0
    release: bool = True
    lease_until: float = 0.0


class Store(Protocol):
    """Where an outbox's items wait: FIFO per destination, one claimer per destination."""

    def add(
        self, kind: str, destination: str, body: bytes, is_up: bool, created: float, limit: int
    ) -> tuple[int, Item | None]:
        """Store an item unless full; return (its id, the item dropped to make room, if any).

        When ``limit`` items wait, the oldest waiting ``up`` ping of a destination no sender
        holds makes room; if there is none, the new item is not stored: its id is 0 and it is
        itself returned as the dropped one. Neither costs a scan of what waits.
        """

    def count(self) -> int:
        """How many items wait."""

    def waiting_for_us(self, now: float) -> dict[str, int]:
        """Items per destination that no other sender holds at ``now``: what this process
        could still deliver (at exit, what it waits for and reports as left)."""

    def refuses(self, limit: int) -> bool:
        """Whether an item that is not an ``up`` ping would be refused now: ``limit`` items
        wait and no up ping could make room. A hint for skipping work (no write lock)."""

    def expire(self, up_before: float, any_before: float, now: float) -> list[Item]:
        """Remove and return items too old to send, except those a sender holds at ``now``.

        First an item created after ``now`` (the clock stepped back) is dated ``now``, so
        no age goes negative. Costs O(log n) per item removed or re-dated, not a scan.
        """

    def cap_backoff(self, latest: float, lease_latest: float) -> None:
        """End every destination's backoff that would end after ``latest`` at ``latest``,
        and every lease that would end after ``lease_latest`` at ``lease_latest``.

        Both are wall-clock times, stored; after the clock stepped back they could lie
        hours ahead. The pass calls this with ``now + backoff_max`` and ``now + lease``.
        """

    def claim(
        self, now: float, lease: float, *, urgent: bool = False, skip: frozenset[str] = frozenset()
    ) -> Work | None:
        """Claim the ready destination whose oldest item is oldest; None if none is ready.

        ``urgent`` ignores backoff (a flush tries everything now); ``skip`` leaves out
        destinations already tried in this pass; ``lease`` is how long a claim in a shared
        store lasts unless renewed.
        """

    def finish(self, result: Finish) -> bool:
        """Remove done items, store the backoff, renew or release the claim.

        Returns False if the claim was no longer ours (another sender took the destination
        after the lease ran out): the caller must stop sending its items.
        """

    def next_due(self) -> float | None:
        """The earliest time a destination with items may be tried (0 for now); None if empty."""

    def destinations(self) -> set[str]:
        """The destinations that have waiting items."""

    def locks(self) -> list[threading.Lock]:
        """The locks to hold across fork(), so the child inherits none of them held."""

    def close(self) -> None:
        """Release what the store holds open."""

    def after_fork(self) -> None:
        """Make the store usable in a forked child."""
