"""Outbox: enqueue at once, keep through outages, crashes and restarts, deliver until taken."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import opshift
from opshift import (
    BadRequestError,
    ConfigurationError,
    KeepAliveTransport,
    OpShift,
    OpShiftError,
    UrllibTransport,
)
from opshift._outbox_store import APPLICATION_ID, ENQUEUE_WAIT, SQLiteStore
from opshift.outbox import Outbox
from opshift.testing import FakeTransport, OpShiftServer

from .helpers import OTHER_SECRET, SECRET, one_pass, refused_url

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """Wall-clock seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def live() -> Iterator[OpShiftServer]:
    """A local OpShift that creates unknown monitors and webhooks on first use."""
    with OpShiftServer(SECRET, auto_create=True) as server:
        yield server


@pytest.fixture(params=["memory", "file"])
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    """Where the outbox keeps items: memory (None) or a SQLite file; behaviour must match."""
    return tmp_path / "outbox.sqlite3" if request.param == "file" else None


def quiet_outbox(client: OpShift, path: Any = None, **options: Any) -> Outbox:
    """An outbox with no sender thread and a fake clock: delivery only by flush()."""
    options.setdefault("clock", Clock())
    options.setdefault("random", lambda: 1.0)
    return Outbox(client, path, background=False, **options)


def bodies(server: OpShiftServer, path: str) -> list[Any]:
    """The JSON bodies the server received on one path, in arrival order."""
    return [r.json for r in server.requests if r.path == path]


# -- enqueue --------------------------------------------------------------------------


def test_enqueue_returns_an_id_and_the_sender_delivers(live: OpShiftServer) -> None:
    """ping and alert return ids at once; the background sender delivers them, signed."""
    with Outbox(OpShift(SECRET, base_url=live.url)) as outbox:
        first = outbox.alert("deploy-failures", title="Deploy failed", severity="sev1")
        second = outbox.ping("payments-worker", status="down", reason="disk full")
        assert isinstance(first, int)
        assert 0 < first < second
        assert outbox.flush(10) is True
        assert outbox.pending == 0
        assert outbox.stats == {
            "delivered": 2,
            "retried": 0,
            "dropped_rejected": 0,
            "dropped_expired": 0,
            "dropped_full": 0,
        }
    assert {r.path for r in live.requests} == {
        "/api/alerts/trigger/deploy-failures",
        "/api/ping/payments-worker",
    }
    assert all(r.signature_valid for r in live.requests)
    assert live.monitors["payments-worker"].status == "down"


def test_bad_input_raises_and_queues_nothing() -> None:
    """Validation happens at enqueue: BadRequestError, and nothing waits afterwards."""
    outbox = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)))
    with pytest.raises(BadRequestError, match="title is required"):
        outbox.alert("deploy-failures", title="")
    with pytest.raises(BadRequestError, match="metadata"):
        outbox.ping("w", metadata={"when": object()})
    with pytest.raises(BadRequestError, match="ping_token"):
        outbox.ping("")
    assert outbox.pending == 0


def test_enqueue_never_waits_on_a_server_that_never_answers() -> None:
    """With OpShift hanging, ping/alert still return at once; the sender does the waiting."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        outbox = Outbox(OpShift(SECRET, base_url=url, timeout=30), exit_timeout=0)
        started = time.monotonic()
        for n in range(20):
            outbox.alert("deploy-failures", title=f"t{n}")
        elapsed = time.monotonic() - started
        assert outbox.pending == 20
        outbox.close(0)
    assert elapsed < 5  # the server would hold a single send for 30 s


def test_the_file_is_committed_before_enqueue_returns(tmp_path: Path) -> None:
    """Another connection sees the item as soon as alert() returns: nothing to lose."""
    path = tmp_path / "outbox.sqlite3"
    outbox = quiet_outbox(OpShift(SECRET, base_url=refused_url()), path)
    outbox.alert("deploy-failures", title="Deploy failed")
    with closing(sqlite3.connect(path)) as other:
        assert other.execute("SELECT kind, destination, body FROM items").fetchall() == [
            ("alert", "/api/alerts/trigger/deploy-failures", b'{"title":"Deploy failed"}')
        ]


def test_closed_outbox_refuses_new_items() -> None:
    """Queuing after close() is a clear error, not a silent drop."""
    outbox = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)))
    outbox.close()
    with pytest.raises(OpShiftError, match="closed"):
        outbox.alert("h", title="t")


# -- outage and recovery ----------------------------------------------------------------


def test_outage_then_recovery_delivers_everything_in_order(
    caplog: pytest.LogCaptureFixture, spool: Path | None
) -> None:
    """OpShift down: items wait and are retried; back up: all arrive, FIFO per destination."""
    caplog.set_level(logging.INFO, logger="opshift")
    with OpShiftServer(SECRET, auto_create=True) as server:
        port = int(server.url.rsplit(":", 1)[1])
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, base_url=f"http://127.0.0.1:{port}"), spool, clock=clock)
    for n in range(4):
        outbox.alert("deploy-failures", title=f"deploy {n}")
        outbox.ping("payments-worker", status="down", reason=f"r{n}")
    assert one_pass(outbox) is False  # refused: both destinations fail and back off
    assert outbox.stats["retried"] == 2
    assert outbox.pending == 8
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "connection refused" in warnings[0]
    with OpShiftServer(SECRET, auto_create=True, port=port) as server:
        clock.advance(120)
        assert outbox.flush(10) is True
    assert bodies(server, "/api/alerts/trigger/deploy-failures") == [
        {"title": f"deploy {n}"} for n in range(4)
    ]
    assert [b["reason"] for b in bodies(server, "/api/ping/payments-worker")] == [
        f"r{n}" for n in range(4)
    ]
    assert outbox.stats["delivered"] == 8
    resumed = [r.getMessage() for r in caplog.records if "resumed" in r.getMessage()]
    assert len(resumed) == 2
    assert "item(s) were waiting" in resumed[0]


def test_outage_with_the_background_sender(tmp_path: Path) -> None:
    """The sender thread retries on its own with backoff until the server is back."""
    with OpShiftServer(SECRET, auto_create=True) as server:
        port = int(server.url.rsplit(":", 1)[1])
    client = OpShift(SECRET, base_url=f"http://127.0.0.1:{port}")
    outbox = Outbox(client, tmp_path / "o.sqlite3", backoff=0.01, backoff_max=0.05)
    for n in range(5):
        outbox.alert("deploy-failures", title=f"deploy {n}")
    with OpShiftServer(SECRET, auto_create=True, port=port) as server:
        assert outbox.flush(10) is True
    outbox.close()
    assert [b["title"] for b in bodies(server, "/api/alerts/trigger/deploy-failures")] == [
        f"deploy {n}" for n in range(5)
    ]


def test_a_429_on_one_token_does_not_delay_another(live: OpShiftServer, spool: Path | None) -> None:
    """Token A hits the 10-a-minute limit and backs off; token B goes out in the same pass."""
    outbox = quiet_outbox(OpShift(SECRET, base_url=live.url), spool)
    for n in range(12):
        outbox.ping("busy-token", metadata={"n": n})
    outbox.ping("quiet-token", status="down", reason="disk full")
    assert one_pass(outbox) is False
    assert [b["metadata"]["n"] for b in bodies(live, "/api/ping/busy-token")] == list(range(11))
    assert [r.status for r in live.requests if r.path == "/api/ping/busy-token"][-1] == 429
    assert bodies(live, "/api/ping/quiet-token") == [{"status": "down", "reason": "disk full"}]
    assert outbox.pending == 2  # busy-token's 11th and 12th wait for the next minute
    assert outbox.stats["retried"] == 1


def test_backoff_per_destination_doubles_with_jitter_up_to_the_cap(spool: Path | None) -> None:
    """After each failure the next attempt waits backoff * 2**n (times jitter), capped."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(
        OpShift(SECRET, transport=fake), spool, clock=clock, backoff=1.0, backoff_max=4.0
    )
    outbox.alert("h", title="t")
    fake.fail_next(503, times=4)
    attempts: list[float] = []
    start = clock.now
    for _ in range(30):  # half-second steps of the fake clock, one sender pass each
        before = len(fake.requests)
        outbox._deliver_due()
        if len(fake.requests) > before:
            attempts.append(clock.now - start)
        clock.advance(0.5)
    # Fails at 0, then waits 1, 2, 4, 4 (capped) seconds; the fifth attempt succeeds.
    assert attempts == [0.0, 1.0, 3.0, 7.0, 11.0]
    assert outbox.pending == 0
    assert outbox.stats == {
        "delivered": 1,
        "retried": 4,
        "dropped_rejected": 0,
        "dropped_expired": 0,
        "dropped_full": 0,
    }


def test_flush_tries_now_even_during_backoff(spool: Path | None) -> None:
    """flush() ignores backoff for its first attempt: OpShift may be back already."""
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool, backoff=30.0)
    outbox.alert("h", title="t")
    fake.fail_next(503)
    assert one_pass(outbox) is False
    assert one_pass(outbox) is True  # 30 s of backoff left, tried anyway
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        pytest.param(400, "title must be at most 200 characters", id="400"),
        pytest.param(401, "Invalid webhook signature", id="401"),
        pytest.param(403, "Team subscription is inactive or expired", id="403"),
        pytest.param(404, "Webhook not found", id="404"),
    ],
)
def test_final_errors_are_dropped_logged_and_counted(
    caplog: pytest.LogCaptureFixture, status: int, error: str, spool: Path | None
) -> None:
    """400/401/403/404 are final: dropped, counted, logged once at ERROR with OpShift's text."""
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool)
    outbox.alert("h", title="first")
    outbox.alert("h", title="second")
    fake.fail_next(status, {"error": error})
    assert one_pass(outbox) is True
    assert outbox.stats["dropped_rejected"] == 1
    assert outbox.stats["delivered"] == 1  # the next item of the same destination went on
    assert [r.json for r in fake.requests] == [{"title": "first"}, {"title": "second"}]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert str(status) in errors[0].getMessage()
    assert error in errors[0].getMessage()
    assert "/api/alerts/trigger/h" in errors[0].getMessage()


@pytest.mark.parametrize("status", [408, 429, 500, 501, 502, 503, 504, 301])
def test_retryable_statuses_keep_the_item(status: int, spool: Path | None) -> None:
    """Network errors, 5xx, 429, 408 and redirects (a base_url to fix) keep the item."""
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool)
    outbox.alert("h", title="t")
    fake.fail_next(status, {"error": "x"})
    assert one_pass(outbox) is False
    assert outbox.pending == 1
    assert outbox.stats["retried"] == 1
    assert one_pass(outbox) is True


def test_a_network_error_keeps_the_item(spool: Path | None) -> None:
    """A transport failure is retried later, never dropped."""
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool)
    outbox.ping("w", status="down")
    fake.raise_next(ConnectionResetError("reset"))
    assert one_pass(outbox) is False
    assert one_pass(outbox) is True
    assert outbox.stats["retried"] == 1


# -- expiry -----------------------------------------------------------------------------


def test_up_pings_expire_after_ping_ttl(
    caplog: pytest.LogCaptureFixture, spool: Path | None
) -> None:
    """An up ping older than ping_ttl is dropped unsent; alerts and down pings stay."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool, clock=clock)
    outbox.ping("w")  # up by default
    outbox.ping("w", status="up")
    outbox.ping("w", status="down", reason="r")
    outbox.alert("h", title="t")
    clock.advance(300.5)
    assert one_pass(outbox) is True
    assert [r.json for r in fake.requests] == [{"status": "down", "reason": "r"}, {"title": "t"}]
    assert outbox.stats["dropped_expired"] == 2
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "2 up ping(s) older than 300 s" in warning.getMessage()


def test_everything_expires_after_max_age(spool: Path | None) -> None:
    """Alerts and down pings older than max_age are dropped unsent."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool, clock=clock, max_age=3600)
    outbox.alert("h", title="old")
    outbox.ping("w", status="down")
    clock.advance(1800)
    outbox.alert("h", title="newer")
    clock.advance(1800.5)
    assert one_pass(outbox) is True
    assert [r.json for r in fake.requests] == [{"title": "newer"}]
    assert outbox.stats["dropped_expired"] == 2


def test_items_expire_while_their_destination_backs_off(spool: Path | None) -> None:
    """A destination in backoff still loses its stale up pings."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool, clock=clock, backoff=1000.0)
    outbox.ping("w")
    fake.fail_next(503)
    assert one_pass(outbox) is False
    clock.advance(301)
    outbox._deliver_due()  # a sender pass: the backoff is not over, the ping is stale
    assert outbox.pending == 0
    assert outbox.stats["dropped_expired"] == 1


# -- bounded ----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["memory", "file"])
def test_full_outbox_drops_the_oldest_up_ping_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    """When full, the oldest waiting up ping makes room; with none left, the new item goes."""
    path = tmp_path / "o.sqlite3" if where == "file" else None
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), path, max_pending=3)
    outbox.ping("w", metadata={"n": 1})
    outbox.alert("h", title="a1")
    outbox.ping("w", metadata={"n": 2})
    assert outbox.alert("h", title="a2") > 0  # drops up ping n=1
    assert outbox.alert("h", title="a3") > 0  # drops up ping n=2
    assert outbox.alert("h", title="a4") == 0  # no up ping left: the new alert is dropped
    assert outbox.pending == 3
    assert outbox.stats["dropped_full"] == 3
    assert one_pass(outbox) is True
    assert [r.json for r in fake.requests] == [{"title": "a1"}, {"title": "a2"}, {"title": "a3"}]
    warnings = [r.getMessage() for r in caplog.records if "Outbox full" in r.getMessage()]
    assert len(warnings) == 1  # at most one line a minute
    assert "max_pending=3" in warnings[0]


# -- durability and processes -----------------------------------------------------------


def _python(code: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_right_after_enqueue_loses_nothing(live: OpShiftServer, tmp_path: Path) -> None:
    """A process killed mid-delivery loses nothing: the next Outbox on the path sends at once."""
    path = tmp_path / "o.sqlite3"
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the child's send hangs here
        child = _python(
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
        outbox = Outbox(OpShift(SECRET, base_url=live.url), path)
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
    children = [_python(code) for _ in range(2)]
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


def test_exit_flush_delivers_and_is_bounded(live: OpShiftServer) -> None:
    """At interpreter exit the outbox flushes; a hung OpShift costs at most exit_timeout."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        hung = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code = """
            import time
            from opshift import OpShift, Outbox
            outbox = Outbox(OpShift({secret!r}, base_url={url!r}, timeout=30), exit_timeout=0.5)
            outbox.alert("deploy-failures", title="sent at exit")
            started = time.monotonic()
            import atexit
            atexit.register(lambda: print(round(time.monotonic() - started, 1), flush=True))
            """
        hung_child = _python(code.format(secret=SECRET, url=hung))
        out, err = hung_child.communicate(timeout=60)
    assert hung_child.returncode == 0, err
    assert float(out.strip()) < 10  # bounded by exit_timeout, far from the 30 s send timeout
    ok_child = _python(code.format(secret=SECRET, url=live.url))
    out, err = ok_child.communicate(timeout=60)
    assert ok_child.returncode == 0, err
    assert bodies(live, "/api/alerts/trigger/deploy-failures") == [{"title": "sent at exit"}]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, on purpose
def test_forked_child_gets_its_own_outbox_and_no_parent_items(live: OpShiftServer) -> None:
    """After fork() the child's in-memory outbox is empty and delivers its own items."""
    outbox = quiet_outbox(OpShift(SECRET, base_url=live.url), clock=time.time)
    outbox.alert("parent-hook", title="the parent's")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            empty = outbox.pending == 0
            outbox.alert("child-hook", title="the child's")
            sent = outbox.flush(10)
            os.write(write, f"{empty},{sent}".encode())
        finally:
            os._exit(0)
    os.close(write)
    report = os.read(read, 100)
    os.close(read)
    os.waitpid(pid, 0)
    assert report == b"True,True"
    assert outbox.pending == 1
    assert outbox.flush(10)
    assert [r.path for r in live.requests] == [
        "/api/alerts/trigger/child-hook",
        "/api/alerts/trigger/parent-hook",
    ]


# -- files and failures -----------------------------------------------------------------


def test_unwritable_path_is_a_configuration_error(tmp_path: Path) -> None:
    """A path whose directory is missing fails at construction, saying what to do."""
    with pytest.raises(ConfigurationError, match="Cannot create or write the outbox file"):
        Outbox(OpShift(SECRET), tmp_path / "missing" / "o.sqlite3")


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
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_full_disk_keeps_items_in_memory_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk keeps items in memory, in order, logged once, and delivers them."""
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), tmp_path / "o.sqlite3")
    outbox.alert("h", title="t0")  # opens the enqueue connection, which the disk then fills
    store = outbox._store
    assert isinstance(store, SQLiteStore) and store._add_conn is not None
    (pages,) = store._add_conn.execute("PRAGMA page_count").fetchone()
    store._add_conn.execute(f"PRAGMA max_page_count = {pages}")
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


def test_disabled_client_keeps_nothing_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With OpShift disabled the outbox validates, returns 0 and creates no file or thread."""
    monkeypatch.setenv("OPSHIFT_DISABLED", "1")
    outbox = Outbox(OpShift(), tmp_path / "o.sqlite3")
    assert outbox.alert("h", title="t") == 0
    with pytest.raises(BadRequestError):
        outbox.alert("h", title="")
    assert outbox.pending == 0
    assert one_pass(outbox) is True
    assert outbox._thread is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_pending", 0),
        ("ping_ttl", 0),
        ("max_age", float("inf")),
        ("exit_timeout", -1),
        ("backoff", float("nan")),
    ],
)
def test_bad_settings_are_configuration_errors(option: str, value: object) -> None:
    """Each setting is checked at construction with the setting's name in the message."""
    with pytest.raises(ConfigurationError, match=option):
        Outbox(OpShift(SECRET), **{option: value})  # type: ignore[arg-type]


def test_an_outbox_needs_an_opshift_client() -> None:
    """Anything but an OpShift client is refused at construction."""
    with pytest.raises(ConfigurationError, match="needs an OpShift client"):
        Outbox(FakeTransport(SECRET))  # type: ignore[arg-type]


def test_outbox_is_exported_and_its_repr_says_where(tmp_path: Path) -> None:
    """`from opshift import Outbox` works; the repr names memory or the file, no secret."""
    assert opshift.Outbox is Outbox
    assert repr(Outbox(OpShift(SECRET), background=False)) == ("Outbox(memory, max_pending=10000)")
    path = tmp_path / "o.sqlite3"
    assert repr(quiet_outbox(OpShift(SECRET), path)) == f"Outbox({str(path)!r}, max_pending=10000)"


def test_drains_through_keepalive(live: OpShiftServer) -> None:
    """A burst queued in memory goes out over one kept-alive connection."""
    with KeepAliveTransport() as transport:
        outbox = Outbox(OpShift(SECRET, base_url=live.url, transport=transport))
        for n in range(50):
            outbox.alert("deploy-failures", title=f"t{n}")
        assert outbox.close(10) is True
    assert live.connections == 1
    assert len(live.requests) == 50


def test_expiry_leaves_items_another_sender_is_sending(tmp_path: Path) -> None:
    """Items of a destination leased by another sender are not expired under it."""
    path = tmp_path / "o.sqlite3"
    clock = Clock()
    sender = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path, clock=clock)
    other = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path, clock=clock)
    sender.ping("w")
    assert sender._store is not None
    work = sender._store.claim(clock(), 600.0)  # as a sender thread would, mid-delivery
    assert work is not None
    clock.advance(301)  # the up ping is stale now
    other._deliver_due()
    assert other.pending == 1  # still the sender's to finish
    assert other.stats["dropped_expired"] == 0
    clock.advance(300)  # the lease ran out: the stale ping is no one's
    other._deliver_due()
    assert other.pending == 0
    assert other.stats["dropped_expired"] == 1


def test_exit_flush_delivers_a_file_outbox(live: OpShiftServer, tmp_path: Path) -> None:
    """A cron job that queues to a file and exits has its items delivered by the exit flush."""
    code = f"""
        from opshift import OpShift, Outbox
        outbox = Outbox(OpShift({SECRET!r}, base_url={live.url!r}), {str(tmp_path / "o.db")!r})
        for n in range(3):
            outbox.alert("deploy-failures", title=f"t{{n}}")
        """
    child = _python(code)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert "Could not flush" not in err
    assert [b["title"] for b in bodies(live, "/api/alerts/trigger/deploy-failures")] == [
        "t0",
        "t1",
        "t2",
    ]


def test_flush_close_and_exit_keep_their_deadlines_without_a_sender_thread() -> None:
    """Inline flush, close(0) and the exit flush keep their deadlines while OpShift hangs."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        outbox = Outbox(OpShift(SECRET, base_url=url, timeout=30), background=False)
        for n in range(4):
            outbox.alert(f"hook-{n}", title="t")
        started = time.monotonic()
        assert outbox.flush(0.5) is False
        flushed_in = time.monotonic() - started
        started = time.monotonic()
        assert outbox.close(0) is False
        closed_in = time.monotonic() - started
        code = f"""
            import time
            from opshift import OpShift, Outbox
            outbox = Outbox(OpShift({SECRET!r}, base_url={url!r}, timeout=30),
                            background=False, exit_timeout=0.5)
            for n in range(4):
                outbox.alert(f"hook-{{n}}", title="t")
            """
        child = _python(code)
        started = time.monotonic()
        child.communicate(timeout=60)
        exited_in = time.monotonic() - started
    assert flushed_in < 5  # one hung send bounded by what was left, not 4 x 30 s
    assert closed_in < 1
    assert exited_in < 10
    assert outbox.stats["retried"] <= 1  # a send cut short by the deadline is one retry


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, on purpose
def test_forked_child_uses_the_file_with_connections_of_its_own(
    live: OpShiftServer, tmp_path: Path
) -> None:
    """After fork() a file outbox works in both processes, each with its own connections."""
    path = tmp_path / "o.sqlite3"
    outbox = quiet_outbox(OpShift(SECRET, base_url=live.url), path, clock=time.time)
    outbox.alert("parent-hook", title="the parent's")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            seen = outbox.pending
            outbox.alert("child-hook", title="the child's")
            sent = outbox.flush(10)
            os.write(write, f"{seen},{sent}".encode())
        finally:
            os._exit(0)
    os.close(write)
    report = os.read(read, 100)
    os.close(read)
    os.waitpid(pid, 0)
    assert report == b"1,True"  # the child delivered both: one file, shared
    assert outbox.pending == 0
    assert sorted(r.path for r in live.requests) == [
        "/api/alerts/trigger/child-hook",
        "/api/alerts/trigger/parent-hook",
    ]
    outbox.alert("parent-hook", title="again")
    assert outbox.flush(10)


def test_backoff_survives_thousands_of_failures(spool: Path | None) -> None:
    """Backoff stays capped (no overflow) after thousands of failures, then delivers."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool, clock=clock, max_age=10**9)
    outbox.alert("h", title="t")
    fake.fail_next(503, times=1100)
    for _ in range(1100):
        one_pass(outbox)
        clock.advance(61)
    assert outbox.stats["retried"] == 1100
    assert one_pass(outbox) is True
    assert outbox.stats["delivered"] == 1


def test_jitter_scales_the_backoff(spool: Path | None) -> None:
    """Full jitter: the wait is the random factor times the exponential backoff."""
    fake = FakeTransport(SECRET)
    clock = Clock()
    outbox = quiet_outbox(
        OpShift(SECRET, transport=fake), spool, clock=clock, backoff=8.0, random=lambda: 0.25
    )
    outbox.alert("h", title="t")
    fake.fail_next(503)
    one_pass(outbox)
    clock.advance(1.9)
    outbox._deliver_due()
    assert len(fake.requests) == 1  # 0.25 x 8 s = 2 s: not yet
    clock.advance(0.1)
    outbox._deliver_due()
    assert len(fake.requests) == 2


def test_an_html_4xx_from_a_proxy_is_retried_not_dropped(spool: Path | None) -> None:
    """Only OpShift's own JSON error makes a 4xx final; a firewall's HTML 403 keeps the item."""
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool)
    outbox.alert("h", title="t")
    fake.fail_next(
        403, b"<html>Access denied by the corporate proxy</html>", content_type="text/html"
    )
    assert one_pass(outbox) is False
    assert outbox.stats["dropped_rejected"] == 0
    assert outbox.stats["retried"] == 1
    assert one_pass(outbox) is True


def test_rejections_are_logged_once_per_batch(
    spool: Path | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A deleted webhook with many queued alerts logs one ERROR line, with the count."""
    outbox = quiet_outbox(
        OpShift(SECRET, transport=FakeTransport(SECRET, auto_create=False)), spool
    )
    for n in range(5):
        outbox.alert("deleted-hook", title=f"t{n}")
    assert one_pass(outbox) is True
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "(and 4 more to it)" in errors[0]
    assert "404" in errors[0]
    assert outbox.stats["dropped_rejected"] == 5


def test_a_lease_lost_to_another_sender_stops_the_batch(tmp_path: Path) -> None:
    """A sender whose lease was taken over stops sending that destination's items."""
    path = tmp_path / "o.sqlite3"
    clock = Clock()
    first = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path, clock=clock)
    second = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path, clock=clock)
    first.alert("h", title="t")
    assert isinstance(first._store, SQLiteStore) and isinstance(second._store, SQLiteStore)
    work = first._store.claim(clock(), 60.0)
    assert work is not None
    clock.advance(61)  # the lease ran out...
    assert second._store.claim(clock(), 60.0) is not None  # ...and another sender took it
    assert (
        first._store.finish(work.destination, [], 0, 0.0, release=False, lease=60.0, now=clock())
        is False
    )


def test_dead_owners_are_freed_only_in_the_same_process_namespace(tmp_path: Path) -> None:
    """A dead owner's lease is freed early only within this host, boot and pid namespace."""
    path = tmp_path / "o.sqlite3"
    clock = Clock()
    outbox = quiet_outbox(OpShift(SECRET, transport=FakeTransport(SECRET)), path, clock=clock)
    outbox.alert("here", title="t")
    outbox.alert("elsewhere", title="t")
    store = outbox._store
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


def test_close_twice_and_use_after_close_are_calm(tmp_path: Path) -> None:
    """A second close() repeats the first's answer; pending and flush() after it are calm."""
    outbox = quiet_outbox(OpShift(SECRET, base_url=refused_url()), tmp_path / "o.sqlite3")
    outbox.alert("h", title="t")
    with outbox:
        assert outbox.close(0) is False
    assert outbox.close() is False
    assert outbox.pending == 1
    assert outbox.flush(1) is False


def test_an_idle_sender_ends_so_a_dropped_outbox_can_be_collected(
    live: OpShiftServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing left to send the thread ends after a while; queuing again restarts it."""
    import gc
    import weakref

    import opshift.outbox

    monkeypatch.setattr(opshift.outbox, "_IDLE_EXIT", 0.0)
    outbox = Outbox(OpShift(SECRET, base_url=live.url))
    outbox.alert("h", title="first")
    first = outbox._thread
    assert first is not None
    assert outbox.flush(10)
    first.join(10)
    assert not first.is_alive()
    outbox.alert("h", title="second")  # a new sender starts for it
    second = outbox._thread
    assert second is not None and second is not first
    assert outbox.flush(10)
    assert [b["title"] for b in bodies(live, "/api/alerts/trigger/h")] == ["first", "second"]
    second.join(10)
    assert outbox._thread is None
    ref = weakref.ref(outbox)
    del outbox
    gc.collect()
    assert ref() is None


def test_the_sender_delivers_without_a_flush(live: OpShiftServer) -> None:
    """Queuing wakes the background sender by itself: the alert arrives with no flush()."""
    arrived = threading.Event()
    inner = UrllibTransport()

    def transport(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        answer = inner(url, body, headers, timeout)
        arrived.set()
        return answer

    outbox = Outbox(OpShift(SECRET, base_url=live.url, transport=transport))
    outbox.alert("h", title="unprompted")
    assert arrived.wait(10)
    outbox.close()
    assert bodies(live, "/api/alerts/trigger/h") == [{"title": "unprompted"}]


def test_an_existing_loose_file_is_made_private(tmp_path: Path) -> None:
    """A file created 0644 by someone else's umask becomes 0600 when the outbox opens it."""
    path = tmp_path / "o.sqlite3"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    quiet_outbox(OpShift(SECRET), path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_sender_survives_a_failing_pass_and_says_so_once(
    live: OpShiftServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error in a sender pass is logged (once) and delivery goes on."""
    outbox = Outbox(OpShift(SECRET, base_url=live.url))
    real = outbox._deliver_due
    calls = 0

    def flaky(**kwargs: Any) -> float | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in a store")
        return real(**kwargs)

    monkeypatch.setattr(outbox, "_deliver_due", flaky)
    monkeypatch.setattr(opshift.outbox, "_IDLE_POLL", 0.01)
    outbox.alert("h", title="t")
    with outbox._passed:  # the failing pass waits 5 s; wake it rather than wait
        pass
    outbox._wakeup.set()
    assert outbox.flush(10)
    outbox.close()
    errors = [r for r in caplog.records if "could not use its queue" in r.getMessage()]
    assert len(errors) == 1
    assert errors[0].exc_info is not None  # a bug: with its traceback
    assert bodies(live, "/api/alerts/trigger/h") == [{"title": "t"}]


def test_when_no_thread_can_start_flush_delivers_in_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At interpreter shutdown no thread can start: the outbox delivers in the caller."""
    fake = FakeTransport(SECRET)
    outbox = Outbox(OpShift(SECRET, transport=fake))

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    assert outbox.alert("h", title="t") > 0  # queued, even with no sender
    assert outbox.flush(10)
    assert [r.json for r in fake.requests] == [{"title": "t"}]


def test_repeated_failures_log_at_debug_only(
    spool: Path | None, caplog: pytest.LogCaptureFixture
) -> None:
    """The first failure of a streak is a WARNING; the next ones are DEBUG lines."""
    caplog.set_level(logging.DEBUG, logger="opshift")
    fake = FakeTransport(SECRET)
    outbox = quiet_outbox(OpShift(SECRET, transport=fake), spool)
    outbox.alert("h", title="t")
    fake.fail_next(503, times=3)
    for _ in range(3):
        one_pass(outbox)
    mine = ("Could not deliver a queued", "Delivery to /api/alerts/trigger/h failed again")
    levels = [r.levelno for r in caplog.records if r.getMessage().startswith(mine)]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]


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
    outbox._lease = 0.0  # renew before every send
    outbox._deliver_due()
    assert sent == [b'{"title":"t0"}']  # the other two are the new owner's
    assert outbox.pending == 2


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
    store = outbox._store
    assert isinstance(store, SQLiteStore)

    def broken(*args: object, **kwargs: object) -> object:
        raise sqlite3.DatabaseError("database disk image is malformed")

    for name in ("destinations", "absorb", "expire", "claim", "next_due"):
        monkeypatch.setattr(store, name, broken)
    outbox._deliver_due(urgent=True)
    assert [r.json for r in fake.requests] == [{"title": "kept in memory"}]
