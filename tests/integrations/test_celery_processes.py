"""Celery across processes: a real `celery worker -P prefork` and a separate `celery beat`
on the filesystem broker, pinging through an Outbox file while OpShift is down, then up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from opshift.outbox._sqlite import read_summary
from opshift.testing import OpShiftServer

from ..helpers import ROOT, SECRET
from .rig import wait_for

celery = pytest.importorskip("celery")
NEW_CELERY = tuple(int(p) for p in celery.__version__.split(".")[:2]) >= (5, 7)
# Celery 5.6 (the newest on Python 3.9) with the filesystem broker sometimes loses the
# job it had just handed a pool child that is then killed (one run in five here): the
# SIGKILL and hard-limit entries run only on 5.7, so 3.9's run loses nothing.
LOSES_A_KILLED_CHILDS_JOB = "Celery 5.6 can lose another job when a pool child is killed"
ENTRIES = {"ok", "flaky", "broken", "order"} | ({"killed", "limited"} if NEW_CELERY else set())

APP = """
import os, signal, threading
from celery import Celery
from opshift import OpShift, Outbox
from opshift.integrations import celery as opshift_celery

HERE = os.path.dirname(os.path.abspath(__file__))

# kombu's filesystem transport creates a message file, then writes it: a reader that moves
# it in between reads an empty file and the worker dies ("Unrecoverable error:
# JSONDecodeError"; every run on Python 3.12 here). Written aside and renamed, a message
# appears whole. The partial file's name must not contain ".<queue>.msg": the reader takes
# every name that does (a CI run on 3.9 died so). Test harness only: the SDK has nothing
# to do with the broker.
from kombu.transport import filesystem as _filesystem


def _put_whole(self, queue, payload, **kwargs):
    name = "{}_{}.{}.msg".format(int(_filesystem.monotonic() * 1000), _filesystem.uuid.uuid4(), queue)
    final = os.path.join(self.data_folder_out, name)
    partial = os.path.join(self.data_folder_out, ".partial-" + _filesystem.uuid.uuid4().hex)
    with open(partial, "wb") as f:
        f.write(_filesystem.str_to_bytes(_filesystem.dumps(payload)))
    os.replace(partial, final)


_filesystem.Channel._put = _put_whole

app = Celery("beatapp", broker="filesystem://")
folder = os.path.join(HERE, "broker")
app.conf.broker_transport_options = {
    "data_folder_in": folder, "data_folder_out": folder, "polling_interval": 0.05,
}
app.conf.worker_lost_wait = 0.5
app.conf.worker_prefetch_multiplier = 1
app.conf.task_default_retry_delay = 0
app.conf.broker_connection_retry_on_startup = True
app.conf.beat_schedule = {
    name: {"task": f"beatapp.{name}", "schedule": 1.0}
    for name in os.environ["BEAT_ENTRIES"].split(",")
}
outbox = Outbox(OpShift(), os.path.join(HERE, "outbox.sqlite3"), backoff=0.2, backoff_max=0.5)
opshift_celery.instrument(app, outbox, monitors={"*": None, "ok": "ok", "flaky": "flaky",
    "broken": "broken", "killed": "killed", "order": "order", "limited": "limited"})


@app.task(name="beatapp.ok")
def ok():
    return "ok"


@app.task(name="beatapp.flaky", bind=True, max_retries=3)
def flaky(self):
    if self.request.retries < 2:
        raise self.retry(exc=OSError("flaky"), countdown=0)


@app.task(name="beatapp.broken", bind=True, max_retries=2)
def broken(self):
    raise self.retry(exc=OSError("broken for good"), countdown=0)


def first_run(name):  # True for the first run of name only: beat sends each more than once
    try:
        os.close(os.open(os.path.join(HERE, name + "-ran"), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


@app.task(name="beatapp.killed")
def killed():
    if first_run("killed"):
        os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="beatapp.order")
def order():
    if first_run("order"):
        raise RuntimeError("first run")


@app.task(name="beatapp.limited", time_limit=1)
def limited():
    if first_run("limited"):
        threading.Event().wait()
"""


@dataclass
class Lines:
    """A process's output, read on a thread of its own as it comes."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))


@dataclass
class Outcome:
    """What the local OpShift received once it came back, and what waited for it."""

    server: OpShiftServer
    waiting: dict[str, int]

    def pings(self, token: str) -> list[dict[str, Any]]:
        return [r.json or {} for r in self.server.requests if r.path == f"/api/ping/{token}"]


def _stop(lines: Lines) -> None:
    """SIGTERM (Celery's warm shutdown), bounded; then the output pipe is closed."""
    process = lines.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    lines.reader.join(10)
    if process.stdout is not None:
        process.stdout.close()


def _celery(args: list[str], folder: Path, env: dict[str, str]) -> Lines:
    command = [sys.executable, "-m", "celery", "-A", "beatapp", *args, "--loglevel", "INFO"]
    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    return Lines(process)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """One run of worker and beat with OpShift down; then OpShift comes up on its port."""
    folder = tmp_path_factory.mktemp("celery")
    (folder / "broker").mkdir()
    (folder / "beatapp.py").write_text(textwrap.dedent(APP), encoding="utf-8")
    with socket.socket() as probe:  # a port nobody listens on until the server starts
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OPSHIFT_")},
        "OPSHIFT_SECRET": SECRET,
        "OPSHIFT_BASE_URL": f"http://127.0.0.1:{port}",
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT / "src")]),
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
        "BEAT_ENTRIES": ",".join(sorted(ENTRIES)),
    }
    worker = _celery(["worker", "-P", "prefork", "-c", "2", "--without-heartbeat",
                      "--without-mingle", "--without-gossip"], folder, env)  # fmt: skip
    beat = None
    try:
        wait_for(lambda: worker.count("ready.") > 0, timeout=60)
        beat = _celery(["beat", "--schedule", str(folder / "beat-schedule")], folder, env)
        # Three runs of "order", so one message lost with a killed pool child (Celery
        # 5.6 can lose the job it had just handed that child) still leaves two.
        wait_for(lambda: beat.count("Sending due task order") >= 3, timeout=60)
        _stop(beat)
        outbox = str(folder / "outbox.sqlite3")
        expected = ENTRIES

        def waiting() -> dict[str, int]:
            found: dict[str, int] = {}
            for _, destination, count, _ in read_summary(outbox, time.time()):
                found[destination.rsplit("/", 1)[-1]] = count
            return found

        try:
            wait_for(lambda: expected <= set(waiting()) and waiting().get("order", 0) >= 2, 60)
        except AssertionError as exc:
            raise AssertionError(f"{waiting()}\n{''.join(worker.lines[-60:])}") from exc
        queued = waiting()
        with OpShiftServer(SECRET, auto_create=True, port=port) as server:
            try:
                wait_for(lambda: not waiting(), timeout=60)
            except AssertionError as exc:
                raise AssertionError(
                    f"left: {waiting()}; sent: {[r.path for r in server.requests][-20:]}\n"
                    + "".join(worker.lines[-60:])
                ) from exc
            yield Outcome(server, queued)
    finally:
        for lines in (beat, worker):
            if lines is not None:
                _stop(lines)


pytestmark = pytest.mark.timeout(180)


def test_beat_started_runs_ping_their_tokens(outcome: Outcome) -> None:
    """Runs that a separate beat process started reach their entries' tokens."""
    first = outcome.pings("ok")[0]
    assert first["status"] == "up" and first["metadata"]["task"] == "beatapp.ok"


@pytest.mark.skipif(not NEW_CELERY, reason=LOSES_A_KILLED_CHILDS_JOB)
def test_a_sigkilled_child_is_reported_down_by_the_parent(outcome: Outcome) -> None:
    """A pool child killed by SIGKILL: down from the worker's parent, naming the signal."""
    downs = [p for p in outcome.pings("killed") if p["status"] == "down"]
    assert [p["reason"] for p in downs] == ["worker lost: signal 9 (SIGKILL)"]
    assert downs[0]["metadata"]["task"] == "beatapp.killed"


def test_retries_count_once_on_the_final_ping(outcome: Outcome) -> None:
    """Fails twice then succeeds: up with attempts 3; exhausted: down with attempts 3."""
    flaky, broken = outcome.pings("flaky"), outcome.pings("broken")
    assert {p["status"] for p in flaky} == {"up"}
    assert flaky[0]["metadata"]["attempts"] == 3
    assert {p["status"] for p in broken} == {"down"}
    assert broken[0]["metadata"]["attempts"] == 3
    assert broken[0]["reason"] == "OSError: broken for good"


def test_outcomes_queued_while_opshift_was_down_all_arrive_in_order(outcome: Outcome) -> None:
    """OpShift down during the runs: all waited in the outbox, then arrived, in order."""
    assert outcome.waiting["order"] >= 2
    for token, count in outcome.waiting.items():
        assert len(outcome.pings(token)) >= count, token
    assert [p["status"] for p in outcome.pings("order")][:2] == ["down", "up"]
    assert all(r.signature_valid for r in outcome.server.requests)


@pytest.mark.skipif(
    not NEW_CELERY, reason="Celery sends task_failure for hard time limits from 5.7"
)
def test_a_hard_time_limit_is_reported_down_by_the_parent(outcome: Outcome) -> None:
    """A run killed at its hard time limit: down from the parent with the limit."""
    downs = [p for p in outcome.pings("limited") if p["status"] == "down"]
    assert [p["reason"] for p in downs] == ["hard time limit exceeded (1 s)"]
