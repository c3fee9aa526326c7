"""The outbox file itself: its schema and migrations, and opening it safely.

Every outbox file carries ``PRAGMA application_id`` ``APPLICATION_ID`` and its schema
version in ``PRAGMA user_version``; a file without them is an outbox only while it holds
no tables. A spool file outlives the code that wrote it, so each schema change is a new
step in ``MIGRATIONS``, applied in one transaction when the file is opened.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat

from ..errors import ConfigurationError

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "check_kind",
    "connect",
    "damaged",
    "open_file",
    "read_only",
    "transaction",
    "unusable",
]

# Bump when the schema changes, and add the step to MIGRATIONS: a spool file outlives
# the code that wrote it.
SCHEMA_VERSION = 2
# PRAGMA application_id of every outbox file ("OPSH"): no other SQLite file is mistaken
# for one, whatever its user_version.
APPLICATION_ID = 0x4F505348
MIGRATIONS = {
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
    # What a full queue and a pass look up costs O(log n), not a scan: how many items
    # wait (kept by triggers), the up pings oldest first, the items by age.
    2: (
        "CREATE TABLE IF NOT EXISTS counts (waiting INTEGER NOT NULL)",
        "INSERT INTO counts SELECT count(*) FROM items WHERE NOT EXISTS (SELECT 1 FROM counts)",
        "CREATE TRIGGER IF NOT EXISTS items_added AFTER INSERT ON items"
        " BEGIN UPDATE counts SET waiting = waiting + 1; END",
        "CREATE TRIGGER IF NOT EXISTS items_removed AFTER DELETE ON items"
        " BEGIN UPDATE counts SET waiting = waiting - 1; END",
        "CREATE INDEX IF NOT EXISTS items_by_age ON items (created)",
        "CREATE INDEX IF NOT EXISTS up_pings_by_age ON items (created) WHERE is_up = 1",
    ),
}


class transaction:
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


def open_file(path: str, wait: float) -> sqlite3.Connection:
    """Create the file 0600 if needed, check it is an outbox (or new), and only then switch
    it to WAL, bring its schema up to date and read it through once.

    A file that is refused is left exactly as it was: checking it only reads.

    Raises:
        ConfigurationError: the path cannot be created or written, is not an opshift
            outbox, was written by a newer opshift, or is damaged.
    """
    # A new file is created here, not by sqlite, so its mode is 0600 from the first byte;
    # sqlite gives the -wal and -shm files the same mode. An existing file is never opened
    # outside SQLite: closing any descriptor of it drops every POSIX lock this process
    # holds on it (an earlier Outbox's on the same path too), and another process's close
    # would then delete the WAL this one still writes to.
    if os.path.isdir(path):  # sqlite would only say "disk I/O error"
        raise ConfigurationError(
            f"Cannot use {path!r} as an outbox: it is a directory. Pass a file path in it, "
            f"e.g. {os.path.join(path, 'opshift-outbox.sqlite3')!r}."
        )
    if not _create(path):
        if not os.path.exists(path):  # a dangling symlink: create what it points to
            _create(os.path.realpath(path))
        elif not os.access(path, os.R_OK | os.W_OK):  # by path: no descriptor, no lock lost
            raise ConfigurationError(
                f"Cannot create or write the outbox file {path!r}: permission denied. Pass a "
                "path this process can write, e.g. under /var/lib/<app>/."
            )
    try:  # what the file is, read only: a refused file keeps every byte (and its WAL)
        probe = read_only(path, wait)
        try:
            check_kind(probe, path)
        finally:
            probe.close()
        conn = sqlite3.connect(path, timeout=wait, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise unusable(path, exc) from exc
    try:
        _make_private(path)
        try:
            _set_mode(conn)
            _migrate(conn, path)
        except sqlite3.Error as exc:
            raise unusable(path, exc) from exc
        _read_through(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _create(path: str) -> bool:
    """Create ``path`` 0600; False if something is already there (never opened)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    except FileExistsError:
        return False
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot create or write the outbox file {path!r}: {exc.strerror or exc}. "
            "Pass a path in a directory this process can write, e.g. under /var/lib/<app>/."
        ) from exc
    return True


def read_only(path: str, wait: float) -> sqlite3.Connection:
    """A connection that cannot change the file: it neither writes, nor checkpoints or
    deletes a WAL when it closes."""
    absolute = "/" + os.path.abspath(path).lstrip("/")  # "//x" would read as a URI authority
    escaped = absolute.replace("%", "%25").replace("?", "%3F").replace("#", "%23")
    return sqlite3.connect(f"file:{escaped}?mode=ro", uri=True, timeout=wait)


def _make_private(path: str) -> None:
    """Mode 0600 for an outbox file made looser by someone else, and its companions.

    By path, never through a descriptor of our own: see open_file.
    """
    euid = getattr(os, "geteuid", None)
    for name in (path, path + "-wal", path + "-shm"):  # loosened, or left by a looser run
        try:
            info = os.stat(name)
            ours = euid is None or info.st_uid == euid()
            if stat.S_IMODE(info.st_mode) & 0o077 and ours:
                os.chmod(name, 0o600)
        except OSError:
            pass  # absent, or not ours to change: the file still works


def _read_through(conn: sqlite3.Connection, path: str) -> None:
    """Read every page once (``PRAGMA quick_check``): a damaged file fails here, at
    construction, not later in the sender."""
    try:
        rows = conn.execute("PRAGMA quick_check(1)").fetchall()
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and "malformed" not in str(exc):
            raise unusable(path, exc) from exc  # locked, I/O: not damage
        raise damaged(path, exc) from exc
    if rows != [("ok",)]:
        problem = sqlite3.DatabaseError(str(rows[0][0]) if rows else "unreadable")
        raise damaged(path, problem) from problem


def connect(path: str, wait: float) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=NORMAL``, waiting ``wait`` s for locks.

    Only for a file ``open_file`` accepted: this switches it to WAL.
    """
    try:
        conn = sqlite3.connect(path, timeout=wait, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise unusable(path, exc) from exc
    try:
        _set_mode(conn)
    except sqlite3.Error as exc:
        conn.close()
        raise unusable(path, exc) from exc
    return conn


def _set_mode(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply every schema step between the file's user_version and ours, in one transaction.

    An up-to-date file takes no write lock: another process holding it (a long write)
    must not make this Outbox's construction fail.
    """
    if check_kind(conn, path) == SCHEMA_VERSION:
        return
    with transaction(conn):
        version = check_kind(conn, path)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def check_kind(conn: sqlite3.Connection, path: str) -> int:
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


def unusable(path: str, exc: sqlite3.Error) -> ConfigurationError:
    """The error for a file SQLite cannot use (not a database, locked, unreadable)."""
    if _is_damage(exc):
        return damaged(path, exc)
    return ConfigurationError(
        f"Cannot use {path!r} as an outbox: {exc}. It must be an opshift outbox (or a new "
        "file) on a local disk this process can write."
    )


def damaged(path: str, exc: sqlite3.Error) -> ConfigurationError:
    """The error for an outbox file whose pages are damaged (a disk fault, a bad copy)."""
    return ConfigurationError(
        f"The outbox file {path!r} is damaged ({exc}): nothing in it can be read reliably. "
        f"Move it aside (e.g. to {path + '.damaged'!r}) and start again: the outbox makes a "
        "new file at this path; items in the old one are not delivered."
    )


def _is_damage(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "malformed" in text or "corrupt" in text
