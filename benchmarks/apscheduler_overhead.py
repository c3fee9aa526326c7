"""APScheduler overhead: no-op jobs through a BackgroundScheduler, instrumented with an
Outbox vs not.

2,000 jobs each way, in interleaved rounds (instrumented, plain, instrumented, ...) of
200, so drift on a noisy machine hits both alike. Each round adds its jobs to the paused
scheduler (``date`` jobs due now), resumes it and ends when the last run's
``EVENT_JOB_EXECUTED`` has been seen; the figure is the median per-job time of each way,
their ratio (target: at most 1.10x) and the difference in microseconds. The Outbox keeps
its items in a SQLite file and delivers them to a local OpShift in the background, as in
production; every job maps to one token, so most ``up`` pings are coalesced (one per
7.5 s), as they would be.

    python benchmarks/apscheduler_overhead.py [--jobs 2000] [--rounds 10]
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

from apscheduler.events import EVENT_JOB_EXECUTED  # type: ignore[import-untyped]
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]

from opshift import OpShift, Outbox
from opshift.integrations import apscheduler as opshift_aps
from opshift.testing import OpShiftServer

SECRET = "ab" * 32  # throwaway


def noop() -> None:
    """The job: nothing, so what is measured is the scheduler and the listener."""


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs each way (default 2000)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds each way (default 10)")
    options = parser.parse_args()
    per_round: int = options.jobs // options.rounds

    scheduler = BackgroundScheduler(timezone="UTC")  # its default executor: 10 threads
    executed = threading.Semaphore(0)
    ids = itertools.count()

    def one_round() -> float:
        scheduler.pause()
        due = datetime.now(timezone.utc)
        for _ in range(per_round):
            scheduler.add_job(noop, "date", run_date=due, id=f"bench-{next(ids)}")
        started = time.perf_counter()
        scheduler.resume()
        for _ in range(per_round):
            executed.acquire()
        return (time.perf_counter() - started) / per_round

    def count(_: Any) -> None:
        executed.release()

    samples: dict[str, list[float]] = {"plain": [], "outbox": []}
    with tempfile.TemporaryDirectory() as folder, OpShiftServer(SECRET, auto_create=True) as srv:
        outbox = Outbox(OpShift(SECRET, base_url=srv.url), Path(folder) / "outbox.sqlite3")
        scheduler.start()
        handle = opshift_aps.instrument(scheduler, outbox, monitors={"bench-*": "bench"})
        scheduler.add_listener(count, EVENT_JOB_EXECUTED)  # after the instrumentation's
        one_round()  # warm-up: imports, threads, the SQLite file
        handle.uninstrument()
        for _ in range(options.rounds):
            scheduler.remove_listener(count)
            handle = opshift_aps.instrument(scheduler, outbox, monitors={"bench-*": "bench"})
            scheduler.add_listener(count, EVENT_JOB_EXECUTED)
            samples["outbox"].append(one_round())
            handle.uninstrument()
            samples["plain"].append(one_round())
        scheduler.shutdown()
        outbox.close()
        pings = len(srv.requests)
    plain = statistics.median(samples["plain"])
    instrumented = statistics.median(samples["outbox"])
    print(f"APScheduler {version('apscheduler')}, {options.jobs} jobs each way, "
          f"{options.rounds} interleaved rounds; {pings} pings reached OpShift")  # fmt: skip
    print(f"plain scheduler:     {plain * 1e6:8.1f} us/job (median of rounds)")
    print(f"instrumented+Outbox: {instrumented * 1e6:8.1f} us/job")
    print(f"ratio {instrumented / plain:.3f}x (target <= 1.10x), "
          f"added {(instrumented - plain) * 1e6:+.1f} us per job")  # fmt: skip


if __name__ == "__main__":
    main()
