"""Job functions the RQ tests enqueue: importable by name, as RQ workers need them."""

from __future__ import annotations

import os
import signal
from typing import Any

from rq import Retry, get_current_job


def add(a: int, b: int) -> int:
    """Return the sum."""
    return a + b


def fail() -> None:
    """Raise, every time."""
    raise KeyError("invoice 7")


def flaky(failures: int) -> str:
    """Fail the first ``failures`` attempts (counted in Redis), then succeed."""
    job = get_current_job()
    assert job is not None
    counted: Any = job.connection.incr(f"attempts:{job.id}")  # redis-py types it sync or async
    attempts = int(counted)
    if attempts <= failures:
        raise OSError(f"network down (attempt {attempts})")
    return "ok"


def asks_again(times: int, most: int) -> str | Retry:
    """Return ``Retry(max=most)`` the first ``times`` attempts (counted in Redis), then "ok"."""
    job = get_current_job()
    assert job is not None
    counted: Any = job.connection.incr(f"attempts:{job.id}")
    return Retry(max=most) if int(counted) <= times else "ok"


def kill_self() -> None:
    """Die as the OOM killer would have it: SIGKILL, no cleanup."""
    os.kill(os.getpid(), signal.SIGKILL)


def noop() -> None:
    """Nothing."""
