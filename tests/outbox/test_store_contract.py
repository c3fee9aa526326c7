"""The Store contract: MemoryStore and SQLiteStore, driven directly through the Store protocol,
keep items FIFO per destination, give each destination one claimer, back off, expire and stay
bounded alike; then what only a file shared by processes does."""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Callable

import pytest

from opshift.outbox import _schema
from opshift.outbox._memory import MemoryStore
from opshift.outbox._sqlite import SQLiteStore
from opshift.outbox._store import BATCH, Finish, Item, Store

if TYPE_CHECKING:
    from _typeshed import TraceFunction

NOW = 1_800_000_000.0
LEASE = 600.0
MakeStore = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Makes the store under test; for SQLite, each call opens the same file anew (another
    process's view of it). Every store made is closed after the test."""
    made: list[Store] = []

    def make() -> Store:
        store: Store = (
            MemoryStore() if request.param == "memory" else SQLiteStore(str(tmp_path / "o.db"))
        )
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    """One store of the kind under test."""
    return make_store()


def add(store: Store, destination: str, *, up: bool = False, at: float = NOW) -> int:
    """Queue one item to ``destination``; return its id (0 if it was dropped)."""
    item_id, _ = store.add("ping" if up else "alert", destination, b"{}", up, at, 1000)
    return item_id


def ids(items: list[Item]) -> list[int]:
    """The ids of these items, in the order given."""
    return [item.id for item in items]


def test_add_hands_out_increasing_ids_and_counts_what_waits(store: Store) -> None:
    """Each item gets a larger id than the one before; count and destinations say what waits."""
    assert store.count() == 0
    assert store.destinations() == set()
    first, second, third = add(store, "/a"), add(store, "/b"), add(store, "/a")
    assert 0 < first < second < third
    assert store.count() == 3
    assert store.destinations() == {"/a", "/b"}


def test_a_claim_takes_the_oldest_destination_with_its_items_in_order(store: Store) -> None:
    """The destination whose oldest item is oldest is claimed, its items oldest first."""
    b1 = add(store, "/b")
    a1 = add(store, "/a")
    b2 = add(store, "/b")
    work = store.claim(NOW, LEASE)
    assert work is not None
    assert (work.destination, work.failures, ids(work.items)) == ("/b", 0, [b1, b2])
    other = store.claim(NOW, LEASE)
    assert other is not None
    assert (other.destination, ids(other.items)) == ("/a", [a1])
    assert store.claim(NOW, LEASE) is None  # nothing else is ready


def test_a_claim_holds_at_most_one_batch(store: Store) -> None:
    """A claim carries the oldest BATCH items of its destination; the rest wait their turn."""
    queued = [add(store, "/a") for _ in range(BATCH + 5)]
    work = store.claim(NOW, LEASE)
    assert work is not None
    assert ids(work.items) == queued[:BATCH]
    assert store.finish(Finish("/a", tuple(queued[:BATCH])))
    again = store.claim(NOW, LEASE)
    assert again is not None
    assert ids(again.items) == queued[BATCH:]


def test_a_claimed_destination_has_one_claimer_until_released(store: Store) -> None:
    """While claimed, a destination is not claimed again, even urgently; release frees it."""
    add(store, "/a")
    work = store.claim(NOW, LEASE)
    assert work is not None
    assert store.claim(NOW, LEASE, urgent=True) is None
    assert store.finish(Finish("/a"))  # released, nothing done: the item waits
    again = store.claim(NOW, LEASE)
    assert again is not None
    assert ids(again.items) == ids(work.items)


def test_finish_removes_done_items_and_keeps_the_rest_in_order(store: Store) -> None:
    """Done items are removed; the others stay, in order, for the next claim."""
    queued = [add(store, "/a") for _ in range(3)]
    assert store.claim(NOW, LEASE) is not None
    assert store.finish(Finish("/a", (queued[0],)))
    assert store.count() == 2
    work = store.claim(NOW, LEASE)
    assert work is not None
    assert ids(work.items) == queued[1:]
    assert store.finish(Finish("/a", tuple(queued[1:])))
    assert store.count() == 0
    assert store.destinations() == set()
    assert store.next_due() is None


def test_a_kept_claim_records_progress_and_stays_claimed(store: Store) -> None:
    """finish without release removes what is done and keeps the destination claimed."""
    queued = [add(store, "/a") for _ in range(2)]
    assert store.claim(NOW, LEASE) is not None
    kept = Finish("/a", (queued[0],), release=False, lease_until=NOW + LEASE)
    assert store.finish(kept) is True
    assert store.count() == 1
    assert store.claim(NOW + 1, LEASE) is None  # still ours


def test_backoff_holds_a_destination_until_its_next_attempt(store: Store) -> None:
    """A failed destination waits until next_attempt, unless urgent; its failures are kept."""
    add(store, "/a")
    assert store.claim(NOW, LEASE) is not None
    assert store.finish(Finish("/a", failures=2, next_attempt=NOW + 10))
    assert store.claim(NOW + 9, LEASE) is None
    assert store.next_due() == NOW + 10
    urgent = store.claim(NOW + 9, LEASE, urgent=True)
    assert urgent is not None and urgent.failures == 2
    assert store.finish(Finish("/a", failures=3, next_attempt=NOW + 30))
    due = store.claim(NOW + 30, LEASE)
    assert due is not None and due.failures == 3


def test_a_delivery_resets_the_backoff(store: Store) -> None:
    """After a success (failures 0, no next attempt) the destination is ready at once."""
    first, second = add(store, "/a"), add(store, "/a")
    assert store.claim(NOW, LEASE) is not None
    assert store.finish(Finish("/a", failures=1, next_attempt=NOW + 100))
    assert store.claim(NOW, LEASE, urgent=True) is not None
    assert store.finish(Finish("/a", (first,)))
    work = store.claim(NOW, LEASE)
    assert work is not None
    assert (work.failures, ids(work.items)) == (0, [second])


def test_skip_leaves_out_destinations_already_tried(store: Store) -> None:
    """``skip`` passes over the named destinations, oldest or not."""
    add(store, "/a")
    b = add(store, "/b")
    work = store.claim(NOW, LEASE, skip=frozenset({"/a"}))
    assert work is not None
    assert (work.destination, ids(work.items)) == ("/b", [b])
    assert store.claim(NOW, LEASE, skip=frozenset({"/a"})) is None


def test_next_due_is_now_for_a_ready_destination_and_none_when_empty(store: Store) -> None:
    """next_due is None with nothing waiting and at most now with a ready destination."""
    assert store.next_due() is None
    add(store, "/a")
    due = store.next_due()
    assert due is not None and due <= NOW


def test_expire_drops_stale_up_pings_and_everything_past_max_age(store: Store) -> None:
    """An up ping before up_before and any item before any_before go; the rest stay."""
    old_up = add(store, "/w", up=True, at=NOW - 400)
    old_down = add(store, "/w", at=NOW - 400)
    ancient = add(store, "/h", at=NOW - 90_000)
    fresh_up = add(store, "/w", up=True, at=NOW - 10)
    expired = store.expire(NOW - 300, NOW - 86_400, NOW)
    assert sorted(ids(expired)) == sorted([old_up, ancient])
    assert store.count() == 2
    work = store.claim(NOW, LEASE)
    assert work is not None
    assert ids(work.items) == [old_down, fresh_up]


def test_expire_leaves_a_claimed_destination_alone(store: Store) -> None:
    """Items a sender holds are not expired under it; once released they are."""
    stale = add(store, "/w", up=True, at=NOW - 400)
    assert store.claim(NOW, LEASE) is not None
    assert store.expire(NOW - 300, NOW - 86_400, NOW + 1) == []
    assert store.finish(Finish("/w"))
    assert ids(store.expire(NOW - 300, NOW - 86_400, NOW + 1)) == [stale]
    assert store.count() == 0


def test_a_full_store_drops_the_oldest_up_ping_then_the_new_item(store: Store) -> None:
    """At the limit the oldest up ping makes room; with none, the new item is refused (id 0)."""
    up1 = store.add("ping", "/w", b"1", True, NOW, 3)[0]
    store.add("alert", "/h", b"a1", False, NOW, 3)
    up2 = store.add("ping", "/w", b"2", True, NOW, 3)[0]
    new_id, dropped = store.add("alert", "/h", b"a2", False, NOW, 3)
    assert new_id > up2 and dropped is not None and dropped.id == up1
    new_id, dropped = store.add("alert", "/h", b"a3", False, NOW, 3)
    assert new_id > 0 and dropped is not None and dropped.id == up2
    new_id, dropped = store.add("alert", "/h", b"a4", False, NOW, 3)
    assert new_id == 0
    assert dropped is not None and (dropped.id, dropped.body) == (0, b"a4")
    assert store.count() == 3


def test_a_store_says_it_refuses_only_when_full_with_no_up_ping(store: Store) -> None:
    """refuses(): False with room or with an up ping to make room; True when full of alerts."""
    store.add("alert", "/h", b"a1", False, NOW, 2)
    assert store.refuses(2) is False
    up = store.add("ping", "/w", b"1", True, NOW, 2)[0]
    assert store.refuses(2) is False
    store.finish(Finish("/w", (up,), release=False))
    store.add("alert", "/h", b"a2", False, NOW, 2)
    assert store.refuses(2) is True
    assert store.refuses(3) is False


def test_a_full_store_never_drops_a_claimed_destinations_up_ping(store: Store) -> None:
    """The up ping that makes room is one no sender holds."""
    held = store.add("ping", "/held", b"1", True, NOW, 3)[0]
    free = store.add("ping", "/free", b"2", True, NOW, 3)[0]
    store.add("alert", "/h", b"a1", False, NOW, 3)
    work = store.claim(NOW, LEASE)
    assert work is not None and ids(work.items) == [held]
    _, dropped = store.add("alert", "/h", b"a2", False, NOW + 1, 3)
    assert dropped is not None and dropped.id == free


def test_stores_name_their_fork_locks_and_close_calmly(store: Store) -> None:
    """locks() lists the store's locks, none held; close() releases what is open."""
    add(store, "/a")
    locks = store.locks()
    assert locks
    assert all(isinstance(lock, type(threading.Lock())) and not lock.locked() for lock in locks)
    store.close()


# What only a file does: it is shared by processes, each claim a lease with an owner.


def test_after_fork_a_memory_store_is_empty_and_a_file_is_shared(
    make_store: MakeStore,
) -> None:
    """A forked child's memory store starts empty; its file store still sees every item."""
    store = make_store()
    add(store, "/a")
    store.after_fork()
    assert store.count() == (1 if isinstance(store, SQLiteStore) else 0)
    add(store, "/b")
    assert store.count() == (2 if isinstance(store, SQLiteStore) else 1)


@pytest.fixture
def file_path(tmp_path: Path) -> str:
    """Where two SQLite stores, as two processes would, share one outbox file."""
    return str(tmp_path / "shared.db")


def test_two_file_stores_never_hold_one_destination_at_once(file_path: str) -> None:
    """A lease held by one process keeps another away until it ends."""
    first, second = SQLiteStore(file_path), SQLiteStore(file_path)
    add(first, "/a")
    assert first.claim(NOW, 60.0) is not None
    assert second.claim(NOW + 59, 60.0, urgent=True) is None
    assert second.next_due() == NOW + 60  # due again when the lease ends
    assert second.claim(NOW + 60, 60.0) is not None
    first.close()
    second.close()


def test_a_lease_lost_to_another_sender_stops_the_batch(file_path: str) -> None:
    """A sender whose lease was taken over stops sending that destination's items."""
    first, second = SQLiteStore(file_path), SQLiteStore(file_path)
    add(first, "/h")
    work = first.claim(NOW, 60.0)
    assert work is not None
    now = NOW + 61  # the lease ran out...
    assert second.claim(now, 60.0) is not None  # ...and another sender took it
    renewal = Finish(work.destination, release=False, lease_until=now + 60.0)
    assert first.finish(renewal) is False
    first.close()
    second.close()


# A full store refuses an item at a cost that does not grow with what waits.


@pytest.fixture
def sqlite_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts SQLite VM steps run on enqueue connections opened from now on."""
    counter = [0]
    connect = _schema.connect

    def tick() -> int:
        counter[0] += 1
        return 0

    def metered_connect(path: str, wait: float) -> sqlite3.Connection:
        conn = connect(path, wait)
        conn.set_progress_handler(tick, 1)
        return conn

    monkeypatch.setattr(_schema, "connect", metered_connect)
    return counter


def _refusal_work(store: Store, waiting: int, sqlite_steps: list[int]) -> int:
    """Fill the store up to ``waiting`` alerts (no up ping anywhere), then count the work of
    refusing one more: lines of the SDK's Python run plus SQLite VM steps (not a time)."""
    while store.count() < waiting:
        store.add("alert", f"/d{store.count() % 5}", b"{}", False, NOW, waiting)
    lines = 0

    def tracer(frame: FrameType, event: str, arg: object) -> TraceFunction:
        nonlocal lines
        if event == "line" and "opshift" in frame.f_code.co_filename:
            lines += 1
        return tracer

    before = sqlite_steps[0]
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        item_id, dropped = store.add("alert", "/new", b"{}", False, NOW, waiting)
    finally:
        sys.settrace(previous)
    assert item_id == 0 and dropped is not None
    return lines + sqlite_steps[0] - before


def test_refusing_an_item_when_full_costs_the_same_however_much_waits(
    store: Store, sqlite_steps: list[int]
) -> None:
    """Full with no up ping to drop: refusing costs as much at 2,000 waiting as at 200."""
    add(store, "/held", up=True)
    assert store.claim(NOW, LEASE) is not None  # its up ping is a sender's: not droppable
    small = _refusal_work(store, 200, sqlite_steps)
    large = _refusal_work(store, 2000, sqlite_steps)
    assert large <= small + 50, (small, large)
