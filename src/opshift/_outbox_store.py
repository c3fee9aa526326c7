"""Where an Outbox keeps waiting items: in memory, or in a SQLite file shared by processes.

Both stores keep items FIFO per destination (a ping token's or webhook's path) and
per-destination backoff. A destination is claimed as a whole by one sender at a time, so
its items go out in order. In the SQLite store the claim is a lease: a sender that dies
leaves a lease that ends when it expires, or at once when another process on the same
host (and in the same process namespace) sees that the owner's process is gone.
Bodies are stored unsigned; the secret and signatures never touch the store.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import sqlite3
import stat
import threading
from collections import deque
from typing import NamedTuple

from .errors import ConfigurationError

__all__ = ["Item", "MemoryStore", "SQLiteStore", "StoreBusy", "Work", "read_summary"]

# Bump when the schema changes, and add the step to _MIGRATIONS: a spool file outlives
# the code that wrote it.
SCHEMA_VERSION = 1
# PRAGMA application_id of every outbox file ("OPSH"): no other SQLite file is mistaken
# for one, whatever its user_version.
APPLICATION_ID = 0x4F505348
_MIGRATIONS = {
    1: (
        "CREATE TABLE IF NOT EXISTS items ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"  # FIFO order; never reused
        " kind TEXT NOT NULL,"  # 'ping' or 'alert'
        " destination TEXT NOT NULL,"  # the request path, e.g. /api/ping/payments-worker
        " body BLOB NOT NULL,"  # the unsigned JSON body, exactly as it will be sent
        " is_up INTEGER NOT NULL,"  # 1 for an 'up' ping: expires after ping_ttl, dropped first
        " created REAL NOT NULL)",  # wall-clock seconds, comparable across processes
        "CREATE TABLE IF NOT EXISTS destinations ("
        " destination TEXT PRIMARY KEY,"
        " failures INTEGER NOT NULL DEFAULT 0,"  # consecutive retryable failures
        " next_attempt REAL NOT NULL DEFAULT 0,"  # backoff: nothing is sent before this
        " lease_until REAL NOT NULL DEFAULT 0,"  # claimed by `owner` until then
        " owner TEXT NOT NULL DEFAULT '')",
    ),
}
BATCH = 200  # items claimed at once from one destination
# Enqueue waits at most this long for the file (another process's write, this process's
# other enqueues) before the item is kept in memory instead: a request path never stalls.
ENQUEUE_WAIT = 0.25
_SENDER_WAIT = 0.5  # the sender's patience with the file's write lock; it retries anyway


class StoreBusy(Exception):
    """The file could not be written within ENQUEUE_WAIT; keep the item elsewhere."""


class Item(NamedTuple):
    """One waiting ping or alert."""

    id: int
    kind: str
    destination: str
    body: bytes
    is_up: bool
    created: float


class Work(NamedTuple):
    """A claimed destination: its backoff state and its oldest items, in order."""

    destination: str
    failures: int
    items: list[Item]


class MemoryStore:
    """Items in this process's memory; lost if the process dies. Thread-safe.

    Args:
        first_id: The first id handed out (a spill store counts from far above the file's).
    """

    def __init__(self, first_id: int = 1) -> None:
        self._first_id = first_id
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Item]] = {}
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
                queue = self._queues[destination] = deque()
            queue.append(item)
            self._count += 1
            return item.id, dropped

    def _pop_oldest_up(self) -> Item | None:
        oldest: Item | None = None
        for destination, queue in self._queues.items():
            if destination in self._claimed:
                continue
            for item in queue:
                if item.is_up and (oldest is None or item.id < oldest.id):
                    oldest = item
                    break  # the first up ping of a queue is its oldest
        if oldest is not None:
            self._queues[oldest.destination].remove(oldest)
            self._count -= 1
        return oldest

    def count(self) -> int:
        return self._count

    def expire(self, up_before: float, any_before: float, now: float) -> list[Item]:
        """Remove and return items too old to send, except those a sender is sending now."""
        expired: list[Item] = []
        with self._lock:
            for destination, queue in self._queues.items():
                if destination in self._claimed:
                    continue
                kept = deque(i for i in queue if not _expired(i, up_before, any_before))
                if len(kept) != len(queue):
                    expired.extend(i for i in queue if _expired(i, up_before, any_before))
                    self._queues[destination] = kept
            self._count -= len(expired)
            self._forget_empty()
        return expired

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
                if best is None or queue[0].id < best[0]:
                    best = (queue[0].id, destination)
            if best is None:
                return None
            destination = best[1]
            self._claimed.add(destination)
            items = list(itertools.islice(self._queues[destination], BATCH))
            return Work(destination, self._failures.get(destination, 0), items)

    def finish(
        self,
        destination: str,
        done: list[int],
        failures: int,
        next_attempt: float,
        *,
        release: bool,
        lease: float = 0.0,
        now: float = 0.0,
    ) -> bool:
        """Remove delivered or dropped items; store the backoff; release the claim if asked.

        Returns True (a claim in memory cannot be lost to another sender).
        """
        with self._lock:
            queue = self._queues.get(destination)
            if queue is not None and done:
                gone = set(done)
                kept = deque(i for i in queue if i.id not in gone)
                self._count -= len(queue) - len(kept)
                self._queues[destination] = kept
            self._failures[destination] = failures
            self._next_attempt[destination] = next_attempt
            if release:
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
                for item in queue
            ]
        return sorted(items, key=lambda item: item.id)

    def discard(self, items: list[Item]) -> None:
        """Forget these items (they were moved elsewhere)."""
        by_destination: dict[str, list[int]] = {}
        for item in items:
            by_destination.setdefault(item.destination, []).append(item.id)
        for destination, ids in by_destination.items():
            self.finish(destination, ids, 0, 0.0, release=False)

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


class SQLiteStore:
    """Items in a SQLite file (WAL), committed before ``add`` returns; safe across processes.

    Two connections per process, each behind its own lock: one for enqueuing, which never
    waits more than ENQUEUE_WAIT for the file, and one for the sender and everything else.
    Other processes use their own. ``synchronous=NORMAL``: a commit survives the process
    being killed; an OS crash or power cut can lose the last few commits.
    """

    def __init__(self, path: str) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()  # the sender's connection
        self._add_lock = threading.Lock()  # the enqueue connection
        self.owner = _owner_id()
        self._closed = False
        self._conn: sqlite3.Connection | None = _open(self.path, _SENDER_WAIT)
        self._add_conn: sqlite3.Connection | None = None

    def __del__(self) -> None:
        # Dropped without close(), the store still closes its file, quietly, when
        # collected (not at exit: the outbox's exit flush holds it until then).
        with contextlib.suppress(Exception):  # a finaliser must not raise
            self.close()

    def _sender_conn(self) -> sqlite3.Connection:
        if self._closed:
            raise sqlite3.ProgrammingError("the outbox file was closed")
        if self._conn is None:  # after fork(): this process's own connection
            self._conn = _connect(self.path, _SENDER_WAIT)
        return self._conn

    def _execute(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        return self._sender_conn().execute(sql, args)

    def add(
        self, kind: str, destination: str, body: bytes, is_up: bool, created: float, limit: int
    ) -> tuple[int, Item | None]:
        """Store an item unless full, committed before returning; see MemoryStore.add.

        Raises:
            StoreBusy: the file stayed locked for ENQUEUE_WAIT (another writer).
            sqlite3.Error: the file cannot be written (disk full, read-only, gone).
        """
        if not self._add_lock.acquire(timeout=ENQUEUE_WAIT):
            raise StoreBusy("another thread of this process held the outbox file too long")
        try:
            if self._closed:
                raise sqlite3.ProgrammingError("the outbox file was closed")
            conn = self._add_conn
            if conn is None:
                conn = self._add_conn = _connect(self.path, ENQUEUE_WAIT)
            try:
                return _add(conn, kind, destination, body, is_up, created, limit)
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise StoreBusy(str(exc)) from exc
                raise
        finally:
            self._add_lock.release()

    def absorb(self, items: list[Item]) -> None:
        """Append items kept elsewhere (in memory while the file was busy), in one commit."""
        with self._lock, _transaction(self._sender_conn()):
            for item in items:
                self._execute(
                    "INSERT INTO items (kind, destination, body, is_up, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (item.kind, item.destination, item.body, int(item.is_up), item.created),
                )

    def count(self) -> int:
        with self._lock:
            return int(self._execute("SELECT count(*) FROM items").fetchone()[0])

    def destinations(self) -> set[str]:
        """The destinations that have waiting items (from any process)."""
        with self._lock:
            return {row[0] for row in self._execute("SELECT DISTINCT destination FROM items")}

    def expire(self, up_before: float, any_before: float, now: float) -> list[Item]:
        """Remove and return items too old to send, except those a sender is sending now."""
        with self._lock:
            if self._execute("SELECT 1 FROM items LIMIT 1").fetchone() is None:
                return []  # an idle file: no write lock taken
            with _transaction(self._sender_conn()):
                rows = self._execute(
                    f"SELECT {_COLUMNS} FROM items"
                    " WHERE (created < ? OR (is_up = 1 AND created < ?)) AND destination NOT IN"
                    " (SELECT destination FROM destinations WHERE lease_until > ?)",
                    (any_before, up_before, now),
                ).fetchall()
                for start in range(0, len(rows), 500):  # stay under SQLite's variable limit
                    chunk = [row[0] for row in rows[start : start + 500]]
                    marks = ",".join("?" * len(chunk))
                    self._execute(f"DELETE FROM items WHERE id IN ({marks})", tuple(chunk))
        return [_item(row) for row in rows]

    def claim(
        self, now: float, lease: float, *, urgent: bool = False, skip: frozenset[str] = frozenset()
    ) -> Work | None:
        """Lease the ready destination whose oldest item is oldest; None if none is ready.

        ``urgent`` ignores backoff (a flush tries everything now); ``skip`` leaves out
        destinations already tried in this pass.
        """
        marks = ",".join("?" * len(skip))
        query = (
            "SELECT i.destination, coalesce(d.failures, 0) FROM items AS i"
            " LEFT JOIN destinations AS d ON d.destination = i.destination"
            " WHERE i.id IN (SELECT min(id) FROM items GROUP BY destination)"
            " AND (? OR coalesce(d.next_attempt, 0) <= ?) AND coalesce(d.lease_until, 0) <= ?"
            f" AND i.destination NOT IN ({marks})"
            " ORDER BY i.id LIMIT 1"
        )
        args = (urgent, now, now, *sorted(skip))
        with self._lock:
            self._free_dead_owners(now)
            if self._execute(query, args).fetchone() is None:
                return None  # nothing ready: no write lock taken
            with _transaction(self._sender_conn()):
                row = self._execute(query, args).fetchone()
                if row is None:
                    return None
                destination, failures = row
                self._execute(
                    "INSERT OR IGNORE INTO destinations (destination) VALUES (?)", (destination,)
                )
                self._execute(
                    "UPDATE destinations SET lease_until = ?, owner = ? WHERE destination = ?",
                    (now + lease, self.owner, destination),
                )
                rows = self._execute(
                    f"SELECT {_COLUMNS} FROM items WHERE destination = ? ORDER BY id LIMIT {BATCH}",
                    (destination,),
                ).fetchall()
        return Work(destination, int(failures), [_item(r) for r in rows])

    def _free_dead_owners(self, now: float) -> None:
        """End the leases of senders whose process is gone (kill -9, OOM).

        Only for owners that provably share this host, boot and process namespace: a pid
        from another container means nothing here.
        """
        me = _owner_parts(self.owner)
        if me is None:
            return
        for destination, owner in self._execute(
            "SELECT destination, owner FROM destinations WHERE lease_until > ? AND owner != ?",
            (now, self.owner),
        ).fetchall():
            them = _owner_parts(str(owner))
            if them is None or them[:3] != me[:3] or _process_alive(them[3]):
                continue
            with _transaction(self._sender_conn()):
                self._execute(
                    "UPDATE destinations SET lease_until = 0 WHERE destination = ? AND owner = ?",
                    (destination, owner),
                )

    def finish(
        self,
        destination: str,
        done: list[int],
        failures: int,
        next_attempt: float,
        *,
        release: bool,
        lease: float = 0.0,
        now: float = 0.0,
    ) -> bool:
        """Delete delivered or dropped items, store the backoff, renew or release the lease.

        Returns False if the lease was no longer ours (it ran out and another sender took
        the destination): the caller must stop sending its items.
        """
        with self._lock, _transaction(self._sender_conn()):
            for start in range(0, len(done), 500):  # stay under SQLite's variable limit
                chunk = done[start : start + 500]
                marks = ",".join("?" * len(chunk))
                self._execute(f"DELETE FROM items WHERE id IN ({marks})", tuple(chunk))
            ours = self._execute(
                "UPDATE destinations SET failures = ?, next_attempt = ?, lease_until = ?"
                " WHERE destination = ? AND owner = ?",
                (failures, next_attempt, 0.0 if release else now + lease, destination, self.owner),
            ).rowcount
            if release and failures == 0:
                self._execute(
                    "DELETE FROM destinations WHERE destination = ? AND NOT EXISTS"
                    " (SELECT 1 FROM items WHERE destination = ?)",
                    (destination, destination),
                )
        return ours > 0

    def next_due(self) -> float | None:
        """The earliest time a destination with items may be tried (0 for now); None if empty.

        A destination leased by another sender counts as due when its lease ends.
        """
        with self._lock:
            row = self._execute(
                "SELECT min(max(coalesce(d.next_attempt, 0), coalesce(d.lease_until, 0)))"
                " FROM (SELECT DISTINCT destination FROM items) AS i"
                " LEFT JOIN destinations AS d ON d.destination = i.destination"
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def locks(self) -> list[threading.Lock]:
        """The locks to hold across fork(), so the child inherits no SQLite call half done."""
        return [self._add_lock, self._lock]

    def close(self) -> None:
        with self._add_lock, self._lock:
            self._closed = True
            for conn in (self._conn, self._add_conn):
                if conn is not None:
                    conn.close()
            self._conn = self._add_conn = None

    def after_fork(self) -> None:
        """In a forked child: new locks and owner id; connections of its own, opened on use.

        The parent's connection objects are left open and unused: closing them here could
        disturb the parent's locks on the file.
        """
        _abandoned.extend(c for c in (self._conn, self._add_conn) if c is not None)
        self._lock = threading.Lock()
        self._add_lock = threading.Lock()
        self.owner = _owner_id()
        self._conn = self._add_conn = None


_abandoned: list[sqlite3.Connection] = []  # a forked child's copies of its parent's
_COLUMNS = "id, kind, destination, body, is_up, created"


def _add(
    conn: sqlite3.Connection,
    kind: str,
    destination: str,
    body: bytes,
    is_up: bool,
    created: float,
    limit: int,
) -> tuple[int, Item | None]:
    with _transaction(conn):
        dropped = None
        # max(id) - min(id) + 1 bounds the count from above and costs two index lookups;
        # the exact count runs only when the file may be full.
        low, high = conn.execute(  # two subqueries: each is one index lookup
            "SELECT (SELECT min(id) FROM items), (SELECT max(id) FROM items)"
        ).fetchone()
        if low is not None and high - low + 1 >= limit:
            (count,) = conn.execute("SELECT count(*) FROM items").fetchone()
            if count >= limit:
                row = conn.execute(  # the oldest up ping not being sent right now
                    f"SELECT {_COLUMNS} FROM items WHERE is_up = 1 AND destination NOT IN"
                    " (SELECT destination FROM destinations WHERE lease_until > ?)"
                    " ORDER BY id LIMIT 1",
                    (created,),
                ).fetchone()
                if row is None:
                    return 0, Item(0, kind, destination, body, is_up, created)
                dropped = _item(row)
                conn.execute("DELETE FROM items WHERE id = ?", (dropped.id,))
        cursor = conn.execute(
            "INSERT INTO items (kind, destination, body, is_up, created) VALUES (?, ?, ?, ?, ?)",
            (kind, destination, body, int(is_up), created),
        )
        return int(cursor.lastrowid or 0), dropped


def read_summary(path: str, now: float) -> list[tuple[str, str, int, float]]:
    """(kind, destination, count, oldest age in seconds) per kind and destination.

    Opens the file read-only: listing never writes, migrates or creates anything.

    Raises:
        ConfigurationError: the file is not an opshift outbox, or cannot be read.
    """
    try:
        uri = "file:" + os.path.abspath(path).replace("?", "%3F").replace("#", "%23")
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=_SENDER_WAIT)
    except sqlite3.Error as exc:
        raise _unusable(path, exc) from exc
    try:
        _check_kind(conn, path)
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            return []  # created but never written to
        rows = conn.execute(
            "SELECT kind, destination, count(*), min(created) FROM items"
            " GROUP BY kind, destination ORDER BY min(id)"
        ).fetchall()
    except sqlite3.Error as exc:
        raise _unusable(path, exc) from exc
    finally:
        conn.close()
    return [(kind, dest, int(n), max(0.0, now - oldest)) for kind, dest, n, oldest in rows]


def _item(row: tuple[object, ...]) -> Item:
    id_, kind, destination, body, is_up, created = row
    return Item(int(id_), str(kind), str(destination), bytes(body), bool(is_up), float(created))  # type: ignore[call-overload, arg-type]


def _expired(item: Item, up_before: float, any_before: float) -> bool:
    return item.created < any_before or (item.is_up and item.created < up_before)


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): one writer at a time."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:  # SQLite may have ended it already (disk full)
            with contextlib.suppress(sqlite3.Error):  # the first error is the one to report
                self.conn.execute("ROLLBACK")


def _open(path: str, wait: float) -> sqlite3.Connection:
    """Create the file 0600 if needed, open it in WAL mode and bring its schema up to date.

    Raises:
        ConfigurationError: the path cannot be created or written, is not an opshift
            outbox, or was written by a newer opshift.
    """
    try:
        # Created here, not by sqlite, so its mode is 0600 from the first byte; sqlite
        # gives the -wal and -shm files the same mode.
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            info = os.fstat(fd)
            owner = getattr(os, "geteuid", lambda: info.st_uid)()
            if info.st_mode & 0o077 and info.st_uid == owner:  # made looser by someone else
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot create or write the outbox file {path!r}: {exc.strerror or exc}. "
            "Pass a path in a directory this process can write, e.g. under /var/lib/<app>/."
        ) from exc
    for companion in (path + "-wal", path + "-shm"):  # left by an earlier, looser run
        try:
            if stat.S_IMODE(os.stat(companion).st_mode) & 0o077:
                os.chmod(companion, 0o600)
        except OSError:
            pass
    conn = _connect(path, wait)
    try:
        _migrate(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise _unusable(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _connect(path: str, wait: float) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=NORMAL``, waiting ``wait`` s for locks."""
    try:
        conn = sqlite3.connect(path, timeout=wait, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise _unusable(path, exc) from exc
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        conn.close()
        raise _unusable(path, exc) from exc
    return conn


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply every schema step between the file's user_version and ours, in one transaction."""
    with _transaction(conn):
        version = _check_kind(conn, path)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _check_kind(conn: sqlite3.Connection, path: str) -> int:
    """Return the file's schema version, or raise unless it is an outbox (or a new file)."""
    (application_id,) = conn.execute("PRAGMA application_id").fetchone()
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if application_id == 0 and version == 0:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        if tables:  # someone else's database: never add our tables to it
            raise ConfigurationError(
                f"{path!r} is a SQLite database, but not an opshift outbox (it has tables such "
                f"as {tables[0][0]!r}); give the Outbox a path of its own."
            )
        return 0
    if application_id != APPLICATION_ID:
        raise ConfigurationError(
            f"{path!r} is a SQLite database, but not an opshift outbox (application_id "
            f"{application_id}); give the Outbox a path of its own."
        )
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"The outbox file {path!r} has schema version {version}, newer than this "
            f"opshift understands ({SCHEMA_VERSION}); upgrade opshift or use another path."
        )
    return int(version)


def _unusable(path: str, exc: sqlite3.Error) -> ConfigurationError:
    return ConfigurationError(
        f"Cannot use {path!r} as an outbox: {exc}. It must be an opshift outbox (or a new "
        "file) on a local disk this process can write."
    )


def _owner_id() -> str:
    """Who holds a lease: host, boot, process namespace, process id and a random part."""
    return ":".join(
        (socket.gethostname(), _boot_id(), _pid_namespace(), str(os.getpid()), os.urandom(4).hex())
    )


def _owner_parts(owner: str) -> tuple[str, str, str, int] | None:
    """(host, boot, pid namespace, pid) of a lease owner; None if its process cannot be
    checked from here (an owner id from another platform or an older format)."""
    parts = owner.rsplit(":", 4)
    if len(parts) != 5 or not parts[1] or not parts[2] or not parts[3].isdigit():
        return None
    return parts[0], parts[1], parts[2], int(parts[3])


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip()
    except OSError:
        return ""  # unknown: dead-owner detection stays off, leases simply expire


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def _process_alive(pid: int) -> bool:
    """False only when this host surely has no such process; when unsure, True."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True
