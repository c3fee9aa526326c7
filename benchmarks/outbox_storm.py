"""Outbox under a logging storm while OpShift is down, and the cost of a full queue.

Two measurements (a benchmark: run it, read the figures; nothing here is asserted):

- the storm: 8 threads log 10,000 ERROR records/s in all, each message distinct (so the
  handler's rate limit folds nothing), through an ``AlertHandler`` whose outbox (in memory,
  ``max_pending`` 10,000) cannot reach OpShift, so it fills within a second and then
  refuses. Reported: records/s achieved, and the logging call's p50 / p99 / max, next to
  the same storm through a stdlib handler that only formats and keeps each record (the
  baseline: what 8 threads and the GIL cost on this machine).
- enqueue when full vs with room, at ``max_pending`` 1,000 / 10,000 / 50,000, for the
  memory store and the SQLite file: microseconds per ``alert()`` call (medians of rounds).

    python benchmarks/outbox_storm.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import collections
import logging
import statistics
import tempfile
import threading
import time
from pathlib import Path

SECRET = "ab" * 32  # throwaway
DOWN = "http://127.0.0.1:9"  # discard port: refused at once
THREADS = 8
RATE = 10_000  # records per second, all threads together


class _Keep(logging.Handler):
    """The baseline: format each record and keep the last 10,000."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: collections.deque[str] = collections.deque(maxlen=10_000)

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append(self.format(record))


def storm(seconds: float, *, baseline: bool = False) -> dict[str, float]:
    """Log RATE distinct ERROR records/s from THREADS threads through an AlertHandler
    (or, with ``baseline``, the stdlib handler above)."""
    from opshift import AlertHandler, OpShift

    logging.getLogger("opshift").setLevel(logging.CRITICAL)  # the outage's warnings
    handler: logging.Handler = (
        _Keep() if baseline else AlertHandler("storm", client=OpShift(SECRET, base_url=DOWN))
    )
    log = logging.getLogger("bench.storm")
    log.propagate = False
    log.addHandler(handler)
    per_thread = RATE / THREADS
    durations: list[list[float]] = [[] for _ in range(THREADS)]
    start = time.perf_counter() + 0.1

    def run(index: int) -> None:
        took = durations[index]
        n = 0
        while True:
            due = start + n / per_thread
            now = time.perf_counter()
            if now - start >= seconds:
                return
            if due > now:
                time.sleep(due - now)
            began = time.perf_counter()
            log.error(f"storm {index}-{n}: payment failed")  # distinct: no rate limit folds it
            took.append(time.perf_counter() - began)
            n += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    calls = sorted(d for per in durations for d in per)
    log.removeHandler(handler)
    refused = 0
    if isinstance(handler, AlertHandler):
        refused = handler.outbox.stats["dropped_full"]
        handler.outbox.close(0)
    handler.close()
    return {
        "records_per_s": len(calls) / elapsed,
        "p50_ms": calls[len(calls) // 2] * 1e3,
        "p99_ms": calls[int(len(calls) * 0.99)] * 1e3,
        "max_ms": calls[-1] * 1e3,
        "dropped_full": refused,
    }


def enqueue_cost(
    max_pending: int, path: Path | None, rounds: int = 5, calls: int = 200
) -> tuple[float, float]:
    """Microseconds per alert() into a full outbox (no up ping to drop) and with room."""
    from opshift import OpShift, Outbox

    client = OpShift(SECRET, base_url=DOWN)
    full = Outbox(client, path, max_pending=max_pending, background=False, exit_timeout=0)
    for n in range(max_pending):
        full.alert(f"hook-{n % 10}", title=f"fill {n}")
    roomy_path = None if path is None else path.with_suffix(".roomy")
    roomy = Outbox(client, roomy_path, max_pending=10**9, background=False, exit_timeout=0)
    refused: list[float] = []
    taken: list[float] = []
    for _ in range(rounds):
        began = time.perf_counter()
        for n in range(calls):
            full.alert("hook-0", title=f"more {n}")
        refused.append((time.perf_counter() - began) / calls * 1e6)
        began = time.perf_counter()
        for n in range(calls):
            roomy.alert("hook-0", title=f"more {n}")
        taken.append((time.perf_counter() - began) / calls * 1e6)
    full.close(0)
    roomy.close(0)
    return statistics.median(refused), statistics.median(taken)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the storm lasts")
    args = parser.parse_args()
    print(f"storm: {THREADS} threads, {RATE:,} records/s asked, {args.seconds:g} s")
    # The AlertHandler first, in a fresh process: its first send happens in the storm.
    for name, baseline in (("AlertHandler, OpShift down", False), ("stdlib baseline", True)):
        figures = storm(args.seconds, baseline=baseline)
        print(
            f"  {name:<27} {figures['records_per_s']:,.0f} records/s; logging call p50 "
            f"{figures['p50_ms']:.3f} ms, p99 {figures['p99_ms']:.3f} ms, max "
            f"{figures['max_ms']:.1f} ms; {figures['dropped_full']:,.0f} refused as full"
        )
    folder = Path(tempfile.mkdtemp())
    print("enqueue (us per alert()): full, no up ping to drop | with room")
    for max_pending in (1_000, 10_000, 50_000):
        for name, path in (("memory", None), ("sqlite", folder / f"o{max_pending}.sqlite3")):
            full, room = enqueue_cost(max_pending, path)
            print(f"  {name:<6} max_pending={max_pending:>6,}: {full:8.1f} | {room:8.1f}")


if __name__ == "__main__":
    main()
