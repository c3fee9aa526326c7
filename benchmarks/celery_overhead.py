"""Celery overhead: no-op tasks through an in-process worker, instrumented with an Outbox vs not.

2,000 tasks each way, in interleaved rounds (instrumented, plain, instrumented, ...) of
200, so drift on a noisy machine hits both alike. Each round sends its tasks with
``.delay()`` and ends when the worker has run the last one; the figure is the median
per-task time of each way, their ratio (target: at most 1.10x) and the difference in
microseconds. The Outbox keeps its items in a SQLite file and delivers them to a local
OpShift in the background, as in production; every task is a monitored ``tasks="all"``
run on one token, so most ``up`` pings are coalesced (one per 7.5 s), as they would be.

    python benchmarks/celery_overhead.py [--tasks 2000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.worker import state

from opshift import OpShift, Outbox
from opshift.integrations import celery as opshift_celery
from opshift.testing import OpShiftServer

SECRET = "ab" * 32  # throwaway


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="tasks each way (default 2000)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds each way (default 10)")
    options = parser.parse_args()
    per_round: int = options.tasks // options.rounds

    app = Celery("bench", broker="memory://", set_as_current=False)
    app.conf.broker_transport_options = {"polling_interval": 0.001}
    app.conf.worker_hijack_root_logger = False
    app.conf.task_ignore_result = True
    done = threading.Semaphore(0)

    @app.task(name="bench.noop")
    def noop() -> None:
        done.release()

    @app.task(name="bench.wake", opshift_monitor=False)
    def wake() -> None:
        pass

    def one_round() -> float:
        started = time.perf_counter()
        for _ in range(per_round):
            noop.delay()
        for _ in range(per_round):
            done.acquire()
        return (time.perf_counter() - started) / per_round

    samples: dict[str, list[float]] = {"plain": [], "outbox": []}
    with tempfile.TemporaryDirectory() as folder, OpShiftServer(SECRET, auto_create=True) as srv:
        outbox = Outbox(OpShift(SECRET, base_url=srv.url), Path(folder) / "outbox.sqlite3")
        with start_worker(app, perform_ping_check=False, shutdown_timeout=10):
            one_round()  # warm-up: imports, connections, the SQLite file
            for _ in range(options.rounds):
                handle = opshift_celery.instrument(
                    app, outbox, monitors={"bench.noop": "bench"}, tasks="all"
                )
                samples["outbox"].append(one_round())
                handle.uninstrument()
                samples["plain"].append(one_round())
            setattr(state, "should_terminate", 0)  # noqa: B010 - the stubs type it None
            wake.delay()
            wake.delay()
        outbox.close()
        pings = len(srv.requests)
    plain = statistics.median(samples["plain"])
    instrumented = statistics.median(samples["outbox"])
    print(f"Celery {__import__('celery').__version__}, {options.tasks} tasks each way, "
          f"{options.rounds} interleaved rounds; {pings} pings reached OpShift")  # fmt: skip
    print(f"plain worker:        {plain * 1e6:8.1f} us/task (median of rounds)")
    print(f"instrumented+Outbox: {instrumented * 1e6:8.1f} us/task")
    print(f"ratio {instrumented / plain:.3f}x (target <= 1.10x), "
          f"added {(instrumented - plain) * 1e6:+.1f} us per task")  # fmt: skip


if __name__ == "__main__":
    main()
