"""Faults a production host produces: a foreign or damaged file, a clock stepped back, a
result that cannot be written when OpShift's answer arrives, a sender killed mid-batch."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import pytest

from opshift import ConfigurationError, OpShift
from opshift.cli import main
from opshift.outbox import Outbox, _delivery, _lease
from opshift.outbox._sqlite import SQLiteStore
from opshift.testing import FakeTransport

from ..helpers import (
    SECRET,
    START,
    Clock,
    delivery,
    one_pass,
    quiet_outbox,
    refused_url,
    sender_pass,
)

ALERT_OK = (200, b'{"status": "created", "message": "Alert created"}')


def _foreign_database(path: Path) -> bytes:
    """Another application's SQLite file (rollback journal, a table of its own); its bytes."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE users (email TEXT)")
        conn.execute("INSERT INTO users VALUES ('a@example.com')")
        conn.commit()
    return path.read_bytes()


def test_a_refused_database_is_left_byte_for_byte_unchanged(tmp_path: Path) -> None:
    """Another app's database is refused before anything in it changes: not even WAL mode."""
    path = tmp_path / "app.db"
    before = _foreign_database(path)
    assert before[18:20] == b"\x01\x01"  # rollback journal, as its owner made it
    with pytest.raises(ConfigurationError, match="not an opshift outbox"):
        Outbox(OpShift(SECRET), path)
    assert path.read_bytes()[18:20] == b"\x01\x01"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no -wal, no -shm


def test_a_refused_database_in_wal_mode_keeps_its_wal(tmp_path: Path) -> None:
    """Another app's WAL-mode database is refused with its database and WAL bytes unchanged."""
    path = tmp_path / "app.db"
    code = (
        "import os, sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('PRAGMA journal_mode = WAL')\n"
        "conn.execute('CREATE TABLE users (email TEXT)')\n"
        "conn.execute(\"INSERT INTO users VALUES ('a@example.com')\")\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)
    wal = Path(f"{path}-wal")
    before = (path.read_bytes(), wal.read_bytes())
    with pytest.raises(ConfigurationError, match="not an opshift outbox"):
        Outbox(OpShift(SECRET), path)
    assert wal.exists() and (path.read_bytes(), wal.read_bytes()) == before


def test_opshift_outbox_flush_on_a_foreign_database_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`opshift outbox X --flush` on a mistyped path exits 2 and leaves the file as it was."""
    monkeypatch.setenv("OPSHIFT_SECRET", SECRET)
    path = tmp_path / "app.db"
    before = _foreign_database(path)
    args = ["outbox", str(path), "--flush", "--base-url", refused_url()]
    assert main(args) == 2
    assert "not an opshift outbox" in capsys.readouterr().err
    assert main(["outbox", str(path)]) == 2
    assert path.read_bytes() == before


def _damaged_outbox(path: Path) -> None:
    """300 alerts in an outbox file, then its second page overwritten."""
    outbox = quiet_outbox(OpShift(SECRET, base_url=refused_url()), path)
    for n in range(300):
        outbox.alert("deploy-failures", title=f"deploy {n}", description="x" * 40)
    outbox.close(0)
    with open(path, "r+b") as file:
        file.seek(4096)
        file.write(b"\xa5" * 4096)


@pytest.mark.parametrize("background", [True, False])
def test_a_damaged_file_is_a_configuration_error_naming_it(
    tmp_path: Path, background: bool
) -> None:
    """A corrupt page fails construction with a ConfigurationError: the path, and what to do."""
    path = tmp_path / "spool.db"
    _damaged_outbox(path)
    with pytest.raises(ConfigurationError) as caught:
        Outbox(OpShift(SECRET, base_url=refused_url()), path, background=background)
    message = str(caught.value)
    assert repr(str(path)) in message
    assert "Move it aside" in message
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_the_cli_reports_a_damaged_file_as_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`opshift outbox` (listing and --flush) exits 2 naming the damaged file, no traceback."""
    monkeypatch.setenv("OPSHIFT_SECRET", SECRET)
    path = tmp_path / "spool.db"
    _damaged_outbox(path)
    assert main(["outbox", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Move it aside" in err
    args = ["outbox", str(path), "--flush", "--timeout", "1", "--base-url", refused_url()]
    assert main(args) == 2
    assert "Move it aside" in capsys.readouterr().err


def test_an_outbox_is_built_while_another_connection_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    """An up-to-date file is opened without the write lock another writer holds."""
    path = tmp_path / "o.sqlite3"
    quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path).close(0)
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        outbox = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path)
        other.execute("ROLLBACK")
    outbox.close(0)


def test_a_clock_stepped_back_never_stretches_the_backoff(spool: Path | None) -> None:
    """After the clock steps back 3 h, a failed destination waits at most backoff_max."""
    fake = FakeTransport(SECRET)
    clock = Clock(START)
    outbox = quiet_outbox(
        OpShift(SECRET, transport=fake), spool, clock=clock, backoff=0.2, backoff_max=1.0
    )
    outbox.alert("h", title="t")
    fake.respond(503)
    sender_pass(outbox)  # one failure: next attempt 0.2 s later, by the old clock
    assert outbox.stats["retried"] == 1
    clock.advance(-3 * 3600)  # NTP, a VM resume, a manual fix
    due = sender_pass(outbox)
    assert due is not None and due <= 1.0
    clock.advance(1.0)
    sender_pass(outbox)
    assert outbox.pending == 0
    assert [r.json for r in fake.requests] == [{"title": "t"}, {"title": "t"}]


def test_a_stored_backoff_from_a_fast_clock_does_not_stall_the_next_process(
    tmp_path: Path,
) -> None:
    """A backoff persisted by a process whose clock ran 3 h fast costs the next at most backoff_max."""
    path = tmp_path / "o.sqlite3"
    fast = Clock(START + 3 * 3600)
    first = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path, clock=fast)
    first.alert("h", title="t")
    fake = FakeTransport(SECRET)
    fake.respond(503)
    first.close(0)
    second = quiet_outbox(
        OpShift(SECRET, transport=fake), path, clock=Clock(START), backoff_max=1.0
    )
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(
            "INSERT INTO destinations (destination, failures, next_attempt) VALUES (?, 1, ?)",
            ("/api/alerts/trigger/h", fast() + 60),
        )
    due = sender_pass(second)
    assert due is not None and due <= 1.0


def _claimed_by_another_sender(
    path: Path, at: float, lease: float
) -> tuple[Outbox, FakeTransport, Clock, SQLiteStore]:
    """An outbox (clock at START) with one alert whose destination another sender, which
    never finishes, claimed at ``at`` for ``lease`` seconds."""
    fake = FakeTransport(SECRET)
    clock = Clock(START)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), path, clock=clock)
    outbox.alert("h", title="t")
    other = SQLiteStore(str(path))
    assert other.claim(at, lease) is not None
    return outbox, fake, clock, other


def test_a_lease_stamped_by_a_fast_clock_ends_within_the_lease_cap(tmp_path: Path) -> None:
    """A claim stamped by a clock 3 h fast holds its destination at most LEASE_CAP from now."""
    outbox, fake, clock, other = _claimed_by_another_sender(
        tmp_path / "o.sqlite3", START + 3 * 3600, 90.0
    )
    sender_pass(outbox)
    assert fake.requests == []  # its lease is still on
    clock.advance(_delivery.LEASE_CAP + 1)
    sender_pass(outbox)
    assert [r.json for r in fake.requests] == [{"title": "t"}]
    other.close()


def test_a_longer_lease_of_a_live_sender_is_not_cut_to_this_ones(tmp_path: Path) -> None:
    """A live sender's 300 s lease (timeout 100) is not cut to this process's 90 s one."""
    outbox, fake, clock, other = _claimed_by_another_sender(tmp_path / "o.sqlite3", START, 300.0)
    for _ in range(2):  # 182 s in all: still inside the other's 300 s
        clock.advance(delivery(outbox).lease + 1)
        sender_pass(outbox)
    assert fake.requests == []
    other.close()


def test_symlinked_and_double_slash_paths_work(tmp_path: Path) -> None:
    """A symlink to a file not made yet, and a path written //tmp/..., both make an outbox."""
    link = tmp_path / "outbox.db"
    link.symlink_to(tmp_path / "data.db")
    client = OpShift(SECRET, transport=FakeTransport(SECRET))
    quiet_outbox(client, link).close(0)
    assert (tmp_path / "data.db").stat().st_mode & 0o777 == 0o600
    quiet_outbox(client, "/" + str(tmp_path / "other.db")).close(0)


def test_an_items_age_never_goes_negative_after_a_clock_step(spool: Path | None) -> None:
    """An item queued before the clock stepped back ages from the step, not 3 h later."""
    fake = FakeTransport(SECRET)
    fake.fail_next(503, times=100)  # down throughout: the ping stays until it expires
    clock = Clock(START)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool, clock=clock, ping_ttl=300.0)
    outbox.ping("payments-worker")
    clock.advance(-3 * 3600)
    sender_pass(outbox)  # the sender sees the step: the ping is 0 s old, not -3 h
    clock.advance(299)
    sender_pass(outbox)
    assert outbox.stats["dropped_expired"] == 0
    clock.advance(2)
    sender_pass(outbox)
    assert outbox.stats["dropped_expired"] == 1
    assert outbox.pending == 0


class _LockOnAnswer:
    """A transport that, as OpShift's answer to the first item arrives, has another
    connection take the file's write lock (BEGIN EXCLUSIVE), as another process may."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent: list[str] = []
        self.other: sqlite3.Connection | None = None

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        self.sent.append(body.decode())
        if self.other is None:
            self.other = sqlite3.connect(self.path, isolation_level=None)
            self.other.execute("BEGIN EXCLUSIVE")
        return ALERT_OK

    def unlock(self) -> None:
        assert self.other is not None
        self.other.execute("ROLLBACK")
        self.other.close()


def test_a_result_written_late_is_retried_within_the_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file locked as the answer arrives: the pass writes the result once it can, sent once."""
    path = tmp_path / "o.sqlite3"
    transport = _LockOnAnswer(path)
    outbox = quiet_outbox(OpShift(SECRET, transport=transport), path)
    outbox.alert("h", title="a0")
    store = delivery(outbox).store
    assert isinstance(store, SQLiteStore)
    finish = store.finish

    def unlock_after_first_failure(result: object) -> bool:
        try:
            return finish(result)  # type: ignore[arg-type]
        except sqlite3.OperationalError:
            transport.unlock()  # the other writer commits while the sender waits
            raise

    monkeypatch.setattr(store, "finish", unlock_after_first_failure)
    assert one_pass(outbox) is True
    assert transport.sent == ['{"title":"a0"}']
    assert outbox.stats["delivered"] == 1


def test_a_result_that_cannot_be_written_frees_the_destination_for_the_next_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Locked past the pass's patience: no 60 s lease stall, no second send, counted once."""
    monkeypatch.setattr(_delivery, "RECORD_PATIENCE", 0.0)
    path = tmp_path / "o.sqlite3"
    transport = _LockOnAnswer(path)
    outbox = quiet_outbox(OpShift(SECRET, transport=transport), path)
    outbox.alert("h", title="a0")
    sender_pass(outbox)  # a0 delivered, but its result could not be written
    transport.unlock()
    outbox.alert("h", title="a1")
    sender_pass(outbox)  # the same clock time: no lease to wait out
    assert transport.sent == ['{"title":"a0"}', '{"title":"a1"}']
    assert outbox.pending == 0
    assert outbox.stats["delivered"] == 2


def test_a_destination_whose_result_waits_is_not_sent_again_after_its_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result unwritable past its lease: the destination is not claimed or sent again."""
    monkeypatch.setattr(_delivery, "RECORD_PATIENCE", 0.0)
    clock = Clock(START)
    transport = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=transport), tmp_path / "o.db", clock=clock)
    outbox.alert("h", title="a0")
    store = delivery(outbox).store
    assert isinstance(store, SQLiteStore)
    finish, writable = store.finish, [False]

    def finish_when_writable(result: object) -> bool:
        if not writable[0]:
            raise sqlite3.OperationalError("database is locked")
        return finish(result)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "finish", finish_when_writable)
    sender_pass(outbox)  # a0 delivered; its result waits in memory
    clock.advance(delivery(outbox).lease + 1)  # the claim in the file has run out
    sender_pass(outbox)
    assert len(transport.requests) == 1
    writable[0] = True
    sender_pass(outbox)
    assert (len(transport.requests), outbox.pending, outbox.stats["delivered"]) == (1, 0, 1)


def test_progress_is_recorded_at_least_every_progress_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With slow sends, delivered items leave the file as time passes, not only every 100."""
    monkeypatch.setattr(_delivery, "PROGRESS_SECONDS", 0.0)  # every send is "slow"
    path = tmp_path / "o.sqlite3"
    seen: list[int] = []

    def count_then_take(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        with closing(sqlite3.connect(path)) as conn:  # what a crash now would leave
            seen.append(conn.execute("SELECT count(*) FROM items").fetchone()[0])
        return ALERT_OK

    outbox = quiet_outbox(OpShift(SECRET, transport=count_then_take), path)
    for n in range(3):
        outbox.alert("h", title=f"t{n}")
    assert one_pass(outbox) is True
    assert seen == [3, 2, 1]


def _count_in_another_process(path: Path) -> int:
    """Open the file in a new process, count its items and close it, as any reader would."""
    code = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "print(conn.execute('SELECT count(*) FROM items').fetchone()[0])\n"
        "conn.close()\n"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    return int(out)


def test_items_stay_visible_after_another_process_closes_the_file(tmp_path: Path) -> None:
    """Another process opening and closing the file never makes later items vanish."""
    path = tmp_path / "spool.db"
    outbox = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path)
    outbox.alert("w", title="first")
    assert _count_in_another_process(path) == 1
    outbox.alert("w", title="second")
    assert _count_in_another_process(path) == 2
    outbox.close(0)


def test_a_second_outbox_on_the_path_keeps_the_first_ones_items_visible(tmp_path: Path) -> None:
    """A second outbox on the same file never drops the first's locks: nothing vanishes."""
    path = tmp_path / "spool.db"
    client = OpShift(SECRET, transport=FakeTransport(SECRET))
    first = quiet_outbox(client, path)
    first.alert("w", title="one")
    second = quiet_outbox(client, path)
    assert _count_in_another_process(path) == 1
    first.alert("w", title="two")
    assert _count_in_another_process(path) == 2
    second.close(0)
    first.close(0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # other tests' senders may run
def test_a_forked_child_keeps_its_items_visible_once_the_parent_lets_go(tmp_path: Path) -> None:
    """A forked child's items stay visible to all once the parent closes its outbox."""
    path = tmp_path / "spool.db"
    outbox = quiet_outbox(OpShift(SECRET, transport=lambda *call: (503, b"{}")), path)
    outbox.alert("w", title="one")
    to_parent, from_child = os.pipe()
    to_child, from_parent = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; coverage is not measured across fork
        try:
            outbox.alert("w", title="two")
            os.write(from_child, b"queued")
            os.read(to_child, 6)  # the parent closed its outbox
            _count_in_another_process(path)  # another process opens and closes the file
            outbox.alert("w", title="three")
            report = str(_count_in_another_process(path)).encode()
        except BaseException as exc:
            report = f"error: {exc!r}".encode()
        os.write(from_child, report)
        os._exit(0)
    assert os.read(to_parent, 6) == b"queued"
    outbox.close(0)
    os.write(from_parent, b"closed")
    report = os.read(to_parent, 200)
    os.waitpid(pid, 0)
    for fd in (to_parent, from_child, to_child, from_parent):
        os.close(fd)
    assert report == b"3"


def test_a_dead_owners_lease_does_not_hide_its_items_at_exit(tmp_path: Path) -> None:
    """What an exit waits for includes a destination whose lease holder is provably dead."""
    path = tmp_path / "o.sqlite3"
    clock = Clock(START)
    outbox = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path, clock=clock)
    outbox.ping("nightly", status="down")
    store = delivery(outbox).store
    assert isinstance(store, SQLiteStore)
    host, boot, namespace, _, _ = store.owner.split(":")
    dead = f"{host}:{boot}:{namespace}:{2**22 + 12345}:ab"  # above pid_max: no such process
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(
            "INSERT INTO destinations (destination, lease_until, owner) VALUES (?, ?, ?)",
            ("/api/ping/nightly", START + 90, dead),
        )
    assert store.waiting_for_us(START) == {"/api/ping/nightly": 1}
    outbox.close(0)


def test_an_existing_file_this_process_cannot_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outbox file this process may not write is a ConfigurationError, not a memory spill."""
    path = tmp_path / "o.sqlite3"
    quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path).close(0)
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)  # as a user without rights
    with pytest.raises(ConfigurationError, match="Cannot create or write the outbox file"):
        Outbox(OpShift(SECRET), path)


def test_a_symlink_into_a_missing_folder_is_a_configuration_error(tmp_path: Path) -> None:
    """A symlink whose target's folder does not exist says it cannot create the file."""
    link = tmp_path / "outbox.db"
    link.symlink_to(tmp_path / "missing" / "data.db")
    with pytest.raises(ConfigurationError, match="Cannot create or write the outbox file"):
        Outbox(OpShift(SECRET), link)


def test_lease_owners_that_cannot_be_checked_are_taken_as_alive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No /proc (boot id, pid namespace) or no right to signal: owners are never called dead."""

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", denied)
    assert _lease.process_alive(1) is True
    monkeypatch.setattr("builtins.open", denied)
    monkeypatch.setattr(os, "stat", denied)
    assert _lease.owner_parts(_lease.owner_id()) is None  # no boot id: nothing to compare
