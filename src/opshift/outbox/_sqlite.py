"""``SQLiteStore``: items in a SQLite file shared by processes; ``read_summary`` lists them.

The file's format (schema, migrations, how it is opened) is ``_schema``'s. The claim is a
lease (``destinations.lease_until`` and ``owner``): a sender that dies leaves a lease that
ends when it expires, or at once when another process on the same host (and in the same
process namespace) sees that the owner's process is gone (see ``_lease``).
Bodies are stored unsigned; the secret and signatures never touch the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading

from . import _lease, _schema
from ._store import BATCH, Finish, Item, StoreBusy, Work

__all__ = ["ENQUEUE_WAIT", "SENDER_WAIT", "SQLiteStore", "read_summary"]

# Enqueue waits at most this long for the file (another process's write, this process's
# other enqueues) before the item is kept in memory instead: a request path never stalls.
ENQUEUE_WAIT = 0.25
SENDER_WAIT = 0.5  # the sender's patience with the file's write lock; it retries anyway


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
        self.owner = _lease.owner_id()
        self._closed = False
        self._inherited: list[sqlite3.Connection] = []  # a forked child's, closed on use
        self._conn: sqlite3.Connection | None = _schema.open_file(self.path, SENDER_WAIT)
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
            self._close_inherited()
            self._conn = _schema.connect(self.path, SENDER_WAIT)
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
                self._close_inherited()
                conn = self._add_conn = _schema.connect(self.path, ENQUEUE_WAIT)
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
        with self._lock, _schema.transaction(self._sender_conn()):
            for item in items:
                self._execute(
                    "INSERT INTO items (kind, destination, body, is_up, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (item.kind, item.destination, item.body, int(item.is_up), item.created),
                )

    def count(self) -> int:
        """How many items wait (every process's): one row, kept by the schema's triggers."""
        with self._lock:
            return int(self._execute("SELECT waiting FROM counts").fetchone()[0])

    def waiting_for_us(self, now: float) -> dict[str, int]:
        """Items per destination, but for destinations another live sender holds at ``now``
        (a dead owner's lease is ended first: its items are ours to send)."""
        with self._lock:
            self._free_dead_owners(now)
            rows = self._execute(
                "SELECT destination, count(*) FROM items WHERE destination NOT IN"
                " (SELECT destination FROM destinations WHERE lease_until > ? AND owner != ?)"
                " GROUP BY destination",
                (now, self.owner),
            ).fetchall()
        return {destination: int(count) for destination, count in rows}

    def refuses(self, limit: int) -> bool:
        """Full, and no up ping waits to make room (see ``Store.refuses``): two lookups.

        Read on the enqueue connection, and only if it is free at once: never behind the
        sender, which may hold its own connection for a lock wait. Unsure means False.
        """
        if not self._add_lock.acquire(blocking=False):
            return False
        try:
            conn = self._add_conn
            if self._closed or conn is None:
                return False
            row = conn.execute(
                "SELECT waiting >= ? AND NOT EXISTS (SELECT 1 FROM items WHERE is_up = 1)"
                " FROM counts",
                (limit,),
            ).fetchone()
        finally:
            self._add_lock.release()
        return bool(row[0])

    def destinations(self) -> set[str]:
        """The destinations that have waiting items (from any process)."""
        with self._lock:
            return {row[0] for row in self._execute("SELECT DISTINCT destination FROM items")}

    def expire(self, up_before: float, any_before: float, now: float) -> list[Item]:
        """Remove and return items too old to send, except those a sender is sending now.

        An item created after ``now`` (the clock stepped back) is dated ``now`` first, so
        its age never goes negative. Looking is a read through the age indexes; the write
        lock is taken only when there is something to change.
        """
        with self._lock:
            if not self._stale(up_before, any_before, now):
                return []  # the usual pass: nothing to change, no write lock taken
            with _schema.transaction(self._sender_conn()):
                self._execute("UPDATE items SET created = ? WHERE created > ?", (now, now))
                rows = self._execute(
                    f"SELECT {_COLUMNS} FROM items WHERE created < ? AND destination NOT IN"
                    f" ({_LEASED}) UNION SELECT {_COLUMNS} FROM items WHERE is_up = 1 AND"
                    f" created < ? AND destination NOT IN ({_LEASED}) ORDER BY id",
                    (any_before, now, up_before, now),
                ).fetchall()
                for start in range(0, len(rows), 500):  # stay under SQLite's variable limit
                    chunk = [row[0] for row in rows[start : start + 500]]
                    marks = ",".join("?" * len(chunk))
                    self._execute(f"DELETE FROM items WHERE id IN ({marks})", tuple(chunk))
        return [_item(row) for row in rows]

    def _stale(self, up_before: float, any_before: float, now: float) -> bool:
        """Whether any item may need expiring or re-dating: three index lookups."""
        row = self._execute(
            "SELECT (SELECT min(created) FROM items),"
            " (SELECT min(created) FROM items WHERE is_up = 1),"
            " (SELECT max(created) FROM items)"
        ).fetchone()
        oldest, oldest_up, newest = row
        if oldest is None:
            return False
        return (
            bool(oldest < any_before or (oldest_up is not None and oldest_up < up_before))
            or newest > now
        )

    def cap_backoff(self, latest: float, lease_latest: float) -> None:
        """End every backoff after ``latest``, and every lease after ``lease_latest``, then
        (a clock stepped back, here or in the process that stored them)."""
        with self._lock:
            query = "SELECT 1 FROM destinations WHERE next_attempt > ? OR lease_until > ? LIMIT 1"
            if self._execute(query, (latest, lease_latest)).fetchone() is None:
                return
            with _schema.transaction(self._sender_conn()):
                self._execute(
                    "UPDATE destinations SET next_attempt = ? WHERE next_attempt > ?",
                    (latest, latest),
                )
                self._execute(
                    "UPDATE destinations SET lease_until = ? WHERE lease_until > ?",
                    (lease_latest, lease_latest),
                )

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
            with _schema.transaction(self._sender_conn()):
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
        me = _lease.owner_parts(self.owner)
        if me is None:
            return
        for destination, owner in self._execute(
            "SELECT destination, owner FROM destinations WHERE lease_until > ? AND owner != ?",
            (now, self.owner),
        ).fetchall():
            them = _lease.owner_parts(str(owner))
            if them is None or them[:3] != me[:3] or _lease.process_alive(them[3]):
                continue
            with _schema.transaction(self._sender_conn()):
                self._execute(
                    "UPDATE destinations SET lease_until = 0 WHERE destination = ? AND owner = ?",
                    (destination, owner),
                )

    def finish(self, result: Finish) -> bool:
        """Delete delivered or dropped items, store the backoff, renew or release the lease.

        Returns False if the lease was no longer ours (it ran out and another sender took
        the destination): the caller must stop sending its items.
        """
        destination, done = result.destination, result.done
        lease_until = 0.0 if result.release else result.lease_until
        with self._lock, _schema.transaction(self._sender_conn()):
            for start in range(0, len(done), 500):  # stay under SQLite's variable limit
                chunk = done[start : start + 500]
                marks = ",".join("?" * len(chunk))
                self._execute(f"DELETE FROM items WHERE id IN ({marks})", chunk)
            ours = self._execute(
                "UPDATE destinations SET failures = ?, next_attempt = ?, lease_until = ?"
                " WHERE destination = ? AND owner = ?",
                (result.failures, result.next_attempt, lease_until, destination, self.owner),
            ).rowcount
            if result.release and result.failures == 0:
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

        The copies of the parent's connections are set aside here and closed at the
        child's first use of the file (``_close_inherited``), not in the fork hook: closing
        calls into SQLite, whose global mutex another thread may have held at fork().
        Kept open, they made the child's own connections believe they held the file's
        locks (SQLite tracks them per process, by file), so the child never took them: once
        the parent let go, another process's close deleted the WAL the child wrote to.
        Closing them cannot release the parent's locks: POSIX locks belong to the process
        that took them.
        """
        self._inherited.extend(c for c in (self._conn, self._add_conn) if c is not None)
        self._lock = threading.Lock()
        self._add_lock = threading.Lock()
        self.owner = _lease.owner_id()
        self._conn = self._add_conn = None

    def _close_inherited(self) -> None:
        """Close the parent's connections this child inherited, before opening its own."""
        while self._inherited:
            with contextlib.suppress(sqlite3.Error):
                self._inherited.pop().close()


_COLUMNS = "id, kind, destination, body, is_up, created"
_LEASED = "SELECT destination FROM destinations WHERE lease_until > ?"  # held by a sender


def _add(
    conn: sqlite3.Connection,
    kind: str,
    destination: str,
    body: bytes,
    is_up: bool,
    created: float,
    limit: int,
) -> tuple[int, Item | None]:
    with _schema.transaction(conn):
        dropped = None
        (waiting,) = conn.execute("SELECT waiting FROM counts").fetchone()
        if waiting >= limit:
            row = conn.execute(  # the oldest up ping not being sent right now, by its index
                f"SELECT {_COLUMNS} FROM items WHERE is_up = 1 AND destination NOT IN"
                f" ({_LEASED}) ORDER BY created, id LIMIT 1",
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
        conn = _schema.read_only(path, SENDER_WAIT)
    except sqlite3.Error as exc:
        raise _schema.unusable(path, exc) from exc
    try:
        _schema.check_kind(conn, path)
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            return []  # created but never written to
        rows = conn.execute(
            "SELECT kind, destination, count(*), min(created) FROM items"
            " GROUP BY kind, destination ORDER BY min(id)"
        ).fetchall()
    except sqlite3.Error as exc:
        raise _schema.unusable(path, exc) from exc
    finally:
        conn.close()
    return [(kind, dest, int(n), max(0.0, now - oldest)) for kind, dest, n, oldest in rows]


def _item(row: tuple[object, ...]) -> Item:
    id_, kind, destination, body, is_up, created = row
    return Item(int(id_), str(kind), str(destination), bytes(body), bool(is_up), float(created))  # type: ignore[call-overload, arg-type]
