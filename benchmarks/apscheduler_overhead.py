"""APScheduler overhead: no-op jobs through BackgroundSchedulers, one instrumented with
an Outbox for the whole run (as an application does at start-up), one plain.

A trial runs 2,000 jobs each way, in rounds of 200 that alternate between the schedulers
(each goes first, second, third and last in turn), so drift on a noisy machine hits all
alike. Two more schedulers set the scale: a second plain one measures that noise (its
ratio to the plain one), and the floor has a listener that does nothing, on the two events
a run brings (its submission and its end), which is what APScheduler's dispatch to a
listener costs before the listener does any work. A round adds
its jobs to the paused scheduler (``date`` jobs due now), resumes it and ends
when the last run's ``EVENT_JOB_EXECUTED`` has been seen; the adds are timed apart (the
instrumented scheduler looks up each new job id's token as it is added). The figures: the
median of all the pairs' ratios (target: at most 1.10x), the range of the trials' own
medians (on a 2-core machine one trial's figure moves by several percent from run to
run, hence 30 trials by default) and the median added microseconds per job.
The Outbox keeps its items in a SQLite file and delivers them to a local OpShift in the
background; every job maps to one token, so most ``up`` pings are coalesced (one per
7.5 s), as they would be.

Instrumenting once matters: a fresh instrumentation sends its first ``up`` at once, so an
earlier version of this benchmark, which instrumented anew for each round, timed a SQLite
commit and a rate-limited delivery per 200 jobs that an application pays every 7.5 s.

    python benchmarks/apscheduler_overhead.py [--jobs 2000] [--rounds 10] [--trials 30]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import threading
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from apscheduler.events import (  # type: ignore[import-untyped]
    EVENT_JOB_EXECUTED,
    EVENT_JOB_SUBMITTED,
)
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]

from opshift import OpShift, Outbox
from opshift.integrations import apscheduler as opshift_aps
from opshift.testing import OpShiftServer

SECRET = "ab" * 32  # throwaway


def noop() -> None:
    """The job: nothing, so what is measured is the scheduler and the listener."""


def listen(_: Any) -> None:
    """The floor's listener: called for each run's submission and end, does nothing."""


class _Scheduler:
    """A started, paused BackgroundScheduler (its default executor: 10 threads) that says
    when a round's last run has ended."""

    ids = itertools.count()

    def __init__(self) -> None:
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.ended = itertools.count(1)  # runs ended so far (next() is atomic)
        self.last = 0  # the round's last run: the count it ends at
        self.done = threading.Event()
        self.scheduler.start(paused=True)

    def count_runs(self) -> None:
        """Count each run's end (added after any instrumentation's listener); only the
        round's last wakes the benchmark's thread, so it adds no wake-up per run."""

        def count(_: Any) -> None:
            if next(self.ended) == self.last:
                self.done.set()

        self.scheduler.add_listener(count, EVENT_JOB_EXECUTED)

    def round(self, jobs: int) -> tuple[float, float]:
        """Add ``jobs`` jobs due now, run them; seconds per job to add and to run."""
        due = datetime.now(timezone.utc)
        self.done.clear()
        self.last += jobs
        started = time.perf_counter()
        for _ in range(jobs):
            self.scheduler.add_job(noop, "date", run_date=due, id=f"bench-{next(self.ids)}")
        added = time.perf_counter()
        self.scheduler.resume()
        if not self.done.wait(60):
            raise RuntimeError("the round's runs did not all end within 60 s")
        ran = time.perf_counter()
        self.scheduler.pause()
        return (added - started) / jobs, (ran - added) / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs each way a trial (2000)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds each way a trial (10)")
    parser.add_argument("--trials", type=int, default=30, help="trials (default 30)")
    options = parser.parse_args()
    per_round: int = options.jobs // options.rounds

    names = ("plain", "control", "floor", "outbox")
    adds: dict[str, list[float]] = {name: [] for name in names}
    runs: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as folder, OpShiftServer(SECRET, auto_create=True) as srv:
        outbox = Outbox(OpShift(SECRET, base_url=srv.url), Path(folder) / "outbox.sqlite3")
        ways = {name: _Scheduler() for name in names}
        handle = opshift_aps.instrument(
            ways["outbox"].scheduler, outbox, monitors={"bench-*": "bench"}
        )
        ways["floor"].scheduler.add_listener(listen, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED)
        for way in ways.values():
            way.count_runs()
            way.round(per_round)  # warm-up: imports, threads, the SQLite file, the first up
        for n in range(options.trials * options.rounds):
            order = names[n % 4 :] + names[: n % 4]  # each first, ..., last in turn
            for name in reversed(order) if n // 4 % 2 else order:
                add, run = ways[name].round(per_round)
                adds[name].append(add)
                runs[name].append(run)
        handle.uninstrument()
        for way in ways.values():
            way.scheduler.shutdown()
        outbox.close()
        pings = len(srv.requests)

    def ratios(name: str) -> list[float]:
        return [i / p for i, p in zip(runs[name], runs["plain"])]

    def trials(name: str) -> str:
        pairs, block = ratios(name), options.rounds  # a trial's rounds are consecutive
        each = [statistics.median(pairs[t : t + block]) for t in range(0, len(pairs), block)]
        return f"trials {min(each):.3f}x to {max(each):.3f}x"

    added = [i - p for i, p in zip(runs["outbox"], runs["plain"])]
    print(f"APScheduler {version('apscheduler')}: {options.trials} trials, {options.jobs} jobs "
          f"each way in {options.rounds} rounds; {pings} pings sent")  # fmt: skip
    for name, label in (
        ("plain", "plain"),
        ("control", "plain, again"),
        ("floor", "floor"),
        ("outbox", "instrumented"),
    ):
        print(f"{label + ':':14}{statistics.median(runs[name]) * 1e6:7.1f} us/job to run, "
              f"{statistics.median(adds[name]) * 1e6:6.1f} to add")  # fmt: skip
    print(f"control: ratio {statistics.median(ratios('control')):.3f}x ({trials('control')}): "
          "the noise, plain against plain")  # fmt: skip
    print(f"floor: ratio {statistics.median(ratios('floor')):.3f}x ({trials('floor')}): "
          "a listener that does nothing, on a run's submission and end")  # fmt: skip
    print(f"runs: ratio {statistics.median(ratios('outbox')):.3f}x ({trials('outbox')}; "
          f"target <= 1.10x), added {statistics.median(added) * 1e6:+.1f} us per job")  # fmt: skip


if __name__ == "__main__":
    main()
