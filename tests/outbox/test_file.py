"""A file outbox: durable across kills and restarts, shared by processes, private, and kept
in order through a full disk or a locked file."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import stat
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import pytest

from opshift import (
    ConfigurationError,
    OpShift,
)
from opshift.outbox import Outbox, _schema
from opshift.outbox._schema import APPLICATION_ID, SCHEMA_VERSION
from opshift.outbox._sqlite import ENQUEUE_WAIT, SQLiteStore
from opshift.testing import FakeTransport, OpShiftServer

from ..helpers import (
    OTHER_SECRET,
    SECRET,
    Clock,
    bodies,
    delivery,
    one_pass,
    python,
    quiet_outbox,
    refused_url,
    sender_pass,
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_right_after_enqueue_loses_nothing(live: OpShiftServer, tmp_path: Path) -> None:
    """A process killed mid-delivery loses nothing: the next Outbox on the path sends at once."""
    path = tmp_path / "o.sqlite3"
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the child's send hangs here
        child = python(
            f"""
            import threading
            from opshift import OpShift, Outbox, UrllibTransport
            sending = threading.Event()
            inner = UrllibTransport()
            def transport(url, body, headers, timeout):  # tells when the send has begun
                sending.set()
                return inner(url, body, headers, timeout)
            client = OpShift(
                {SECRET!r}, base_url="http://127.0.0.1:{silent.getsockname()[1]}",
                transport=transport,
            )
            outbox = Outbox(client, {str(path)!r})
            item = outbox.alert("deploy-failures", title="Deploy failed")
            sending.wait(30)  # the sender claimed it and hangs on the silent server
            print(item, flush=True)
            threading.Event().wait(60)
            """
        )
        with child:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "1"
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        with closing(sqlite3.connect(path)) as conn:  # the dead child still holds a lease
            ((lease_until,),) = conn.execute("SELECT lease_until FROM destinations").fetchall()
        assert lease_until > time.time() + 30
        # no sender thread: it would deliver the item before pending is read
        outbox = Outbox(OpShift(SECRET, base_url=live.url), path, background=False)
        assert outbox.pending == 1
        assert outbox.flush(10) is True  # the dead owner's lease is freed at once
        outbox.close()
    assert bodies(live, "/api/alerts/trigger/deploy-failures") == [{"title": "Deploy failed"}]


def test_two_processes_draining_one_file_deliver_every_item(
    live: OpShiftServer, tmp_path: Path
) -> None:
    """1,000 items over 10 destinations, drained by two processes at once: all arrive once."""
    path = tmp_path / "o.sqlite3"
    outbox = quiet_outbox(OpShift(SECRET, base_url=refused_url()), path, clock=time.time)
    for n in range(1000):
        outbox.alert(f"hook-{n % 10}", title=f"item {n}")
    outbox.close(0)
    code = f"""
        from opshift import KeepAliveTransport, OpShift, Outbox
        client = OpShift({SECRET!r}, base_url={live.url!r}, transport=KeepAliveTransport())
        outbox = Outbox(client, {str(path)!r})
        print(outbox.flush(60), outbox.stats["delivered"])
        """
    children = [python(code) for _ in range(2)]
    outputs = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs
    delivered = [int(out.split()[1]) for out, _ in outputs]
    assert sum(delivered) == 1000
    titles = sorted(r.json["title"] for r in live.requests)
    assert titles == sorted(f"item {n}" for n in range(1000))  # each exactly once
    for hook in range(10):  # FIFO per destination, even with two senders
        sent = [b["title"] for b in bodies(live, f"/api/alerts/trigger/hook-{hook}")]
        assert sent == [f"item {n}" for n in range(hook, 1000, 10)]


def test_a_rotated_secret_signs_items_that_were_waiting(
    live: OpShiftServer, tmp_path: Path
) -> None:
    """Bodies are stored unsigned and signed at send time with the current client's secret."""
    path = tmp_path / "o.sqlite3"
    old = quiet_outbox(OpShift(OTHER_SECRET, base_url=refused_url()), path)
    old.alert("deploy-failures", title="queued under the old secret")
    old.close(0)
    new = Outbox(OpShift(SECRET, base_url=live.url), path)
    assert new.flush(10) is True
    new.close()
    assert live.requests[-1].signature_valid
    assert live.requests[-1].json == {"title": "queued under the old secret"}


def test_file_mode_is_0600_and_it_holds_no_secret_or_signature(
    live: OpShiftServer, tmp_path: Path
) -> None:
    """The spool and its -wal/-shm files are private, and no credential is ever written."""
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(OpShift(SECRET, base_url=live.url), path)
    for n in range(20):
        outbox.alert("deploy-failures", title=f"t{n}", metadata={"n": n})
    pending_now = sorted(p.name for p in tmp_path.iterdir())
    assert outbox.flush(10)
    signatures = {r.signature for r in live.requests}
    files = sorted(tmp_path.iterdir())
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
        data = file.read_bytes()
        assert SECRET.encode() not in data
        assert not [s for s in signatures if s and s.encode() in data]
    assert {p.name for p in files} >= {"o.sqlite3", "o.sqlite3-wal", "o.sqlite3-shm"}
    assert "o.sqlite3" in pending_now
    outbox.close()


def test_an_existing_loose_file_is_made_private(tmp_path: Path) -> None:
    """A file created 0644 by someone else's umask becomes 0600 when the outbox opens it."""
    path = tmp_path / "o.sqlite3"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    quiet_outbox(OpShift(SECRET), path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unwritable_path_is_a_configuration_error(tmp_path: Path) -> None:
    """A path whose directory is missing fails at construction, saying what to do."""
    with pytest.raises(ConfigurationError, match="Cannot create or write the outbox file"):
        Outbox(OpShift(SECRET), tmp_path / "missing" / "o.sqlite3")


@pytest.mark.parametrize("slash", ["", "/"], ids=["plain", "trailing-slash"])
def test_a_directory_is_refused_with_a_file_path_to_use(tmp_path: Path, slash: str) -> None:
    """A directory as the path says so and names a file in it (sqlite said "disk I/O error")."""
    with pytest.raises(ConfigurationError, match="is a directory") as caught:
        Outbox(OpShift(SECRET), str(tmp_path) + slash)
    assert str(tmp_path / "opshift-outbox.sqlite3") in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    """Pointing the outbox at some other file never damages it."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"not a database at all, just text" * 100)
    with pytest.raises(ConfigurationError, match="Cannot use"):
        Outbox(OpShift(SECRET), path)
    assert path.read_bytes().startswith(b"not a database")


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("CREATE TABLE users (id INTEGER)", id="other-tables"),
        pytest.param("PRAGMA user_version = 1", id="user-version-1"),
    ],
)
def test_someone_elses_sqlite_database_is_refused(tmp_path: Path, statement: str) -> None:
    """Another application's SQLite file is never turned into an outbox, whatever it holds."""
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(statement)
    with pytest.raises(ConfigurationError, match="not an opshift outbox"):
        Outbox(OpShift(SECRET), path)


def test_a_newer_schema_is_refused_and_an_empty_file_is_upgraded(tmp_path: Path) -> None:
    """user_version tracks the schema: a future one is refused, version 0 is brought up."""
    newer = tmp_path / "newer.sqlite3"
    with closing(sqlite3.connect(newer)) as conn:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigurationError, match="schema version 99, newer than"):
        Outbox(OpShift(SECRET), newer)
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    quiet_outbox(OpShift(SECRET), empty).close()
    with closing(sqlite3.connect(empty)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_full_disk_keeps_items_in_memory_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk keeps items in memory, in order, logged once, and delivers them."""
    connect = _schema.connect

    def full_disk(path: str, wait: float) -> sqlite3.Connection:
        conn = connect(path, wait)
        if wait == ENQUEUE_WAIT:  # the enqueue connection: no room beyond what the file has
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(_schema, "connect", full_disk)
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), tmp_path / "o.sqlite3")
    outbox.alert("h", title="t0")
    for n in range(1, 50):
        assert outbox.alert("h", title=f"t{n}", description="x" * 1000) > 0
    assert outbox.pending == 50
    assert one_pass(outbox) is True
    assert [r.json["title"] for r in fake.requests] == [f"t{n}" for n in range(50)]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "keeping new items in memory" in errors[0]
    assert "database or disk is full" in errors[0]


def test_a_locked_file_never_stalls_enqueue_and_order_survives(tmp_path: Path) -> None:
    """Another writer's lock costs enqueue at most ENQUEUE_WAIT; order survives the spill."""
    path = tmp_path / "o.sqlite3"
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), path)
    outbox.ping("payments-worker", status="down", reason="r0")
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another writer, holding on
        started = time.monotonic()
        outbox.ping("payments-worker", status="down", reason="r1")
        outbox.ping("payments-worker", status="up")
        elapsed = time.monotonic() - started
        assert outbox.pending == 3
        other.execute("ROLLBACK")
    assert elapsed < 2 * ENQUEUE_WAIT + 1.0  # not the 10 s a default busy timeout waits
    outbox.ping("payments-worker", status="up", reason="after")  # behind what waits in memory
    assert one_pass(outbox) is True
    assert [(r.json["status"], r.json.get("reason")) for r in fake.requests] == [
        ("down", "r0"),
        ("down", "r1"),
        ("up", None),
        ("up", "after"),
    ]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (0,)


def test_memory_items_go_out_while_the_file_stays_unwritable(tmp_path: Path) -> None:
    """Spilled items go out while the file is locked, unless older ones wait in the file."""
    path = tmp_path / "o.sqlite3"
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), path)
    outbox.alert("older-in-file", title="first")
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # the file stays locked for the whole pass
        outbox.alert("older-in-file", title="second")
        outbox.alert("only-in-memory", title="alone")
        one_pass(outbox)
        assert [r.json["title"] for r in fake.requests] == ["alone"]
        other.execute("ROLLBACK")
    assert one_pass(outbox) is True
    assert [r.json["title"] for r in fake.requests] == ["alone", "first", "second"]


def test_spilled_items_go_out_even_when_the_file_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the file unreadable as well as unwritable, what waits in memory is still sent."""
    path = tmp_path / "o.sqlite3"
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), path)
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        outbox.alert("h", title="kept in memory")
        other.execute("ROLLBACK")
    store = delivery(outbox).store
    assert isinstance(store, SQLiteStore)

    def broken(*args: object, **kwargs: object) -> object:
        raise sqlite3.DatabaseError("database disk image is malformed")

    for name in ("destinations", "absorb", "expire", "claim", "next_due"):
        monkeypatch.setattr(store, name, broken)
    delivery(outbox).deliver_due(urgent=True)
    assert [r.json for r in fake.requests] == [{"title": "kept in memory"}]


def test_expiry_leaves_items_another_sender_is_sending(tmp_path: Path) -> None:
    """Items of a destination leased by another sender are not expired under it."""
    path = tmp_path / "o.sqlite3"
    clock = Clock()
    holder = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path, clock=clock)
    other = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path, clock=clock)
    holder.ping("w")
    store = delivery(holder).store
    assert store is not None
    work = store.claim(clock(), 600.0)  # as a sender thread would, mid-delivery
    assert work is not None
    clock.advance(301)  # the up ping is stale now
    sender_pass(other)
    assert other.pending == 1  # still the sender's to finish
    assert other.stats["dropped_expired"] == 0
    clock.advance(300)  # the lease ran out: the stale ping is no one's
    sender_pass(other)
    assert other.pending == 0
    assert other.stats["dropped_expired"] == 1


def test_a_sender_that_loses_its_lease_mid_batch_stops(tmp_path: Path) -> None:
    """Renewing its lease before each send, a sender that finds it taken stops at once."""
    path = tmp_path / "o.sqlite3"
    sent: list[bytes] = []

    def steal_after_first(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        sent.append(body)
        with closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute(  # another sender, whose lease runs for ten minutes
                "UPDATE destinations SET owner = 'someone-else', lease_until = ?",
                (time.time() + 600,),
            )
        return 200, b'{"status": "created", "message": "Alert created"}'

    outbox = quiet_outbox(OpShift(SECRET, transport=steal_after_first), path, clock=time.time)
    for n in range(3):
        outbox.alert("h", title=f"t{n}")
    delivery(outbox).lease = 0.0  # renew before every send
    sender_pass(outbox)
    assert sent == [b'{"title":"t0"}']  # the other two are the new owner's
    assert outbox.pending == 2


def test_dead_owners_are_freed_only_in_the_same_process_namespace(tmp_path: Path) -> None:
    """A dead owner's lease is freed early only within this host, boot and pid namespace."""
    path = tmp_path / "o.sqlite3"
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path, clock=clock)
    outbox.alert("here", title="t")
    outbox.alert("elsewhere", title="t")
    store = delivery(outbox).store
    assert isinstance(store, SQLiteStore)
    host, boot, namespace, _, _ = store.owner.split(":")
    dead = 2**22 + 12345  # above the default pid_max: no such process
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for destination, owner in (
            ("/api/alerts/trigger/here", f"{host}:{boot}:{namespace}:{dead}:ab"),
            ("/api/alerts/trigger/elsewhere", f"{host}:{boot}:999999:{dead}:ab"),
        ):
            conn.execute(
                "INSERT INTO destinations (destination, lease_until, owner) VALUES (?, ?, ?)",
                (destination, clock() + 600, owner),
            )
    one_pass(outbox)
    assert outbox.pending == 1  # "here" was freed and sent; "elsewhere" waits for its lease
