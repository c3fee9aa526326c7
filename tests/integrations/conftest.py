"""Fixtures for the integrations tests: a Celery app, a recording pinger, a manual clock and
timer, and a real redis-server for RQ."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ..helpers import Clock
from .rig import ManualTimer, RecordingPinger, memory_app, redis_server

if TYPE_CHECKING:
    from celery import Celery


@pytest.fixture
def app(request: pytest.FixtureRequest) -> Iterator[Celery]:
    """A Celery app of its own on the memory broker; its instrumentation removed after."""
    pytest.importorskip("celery")
    from opshift.integrations import celery as opshift_celery

    made = memory_app(request.node.name[:40])
    yield made
    handle = opshift_celery.instrumentation(made)
    if handle is not None:
        handle.uninstrument()


@pytest.fixture
def pinger() -> RecordingPinger:
    """Takes pings and alerts at once, in order."""
    return RecordingPinger()


@pytest.fixture
def clock() -> Clock:
    """Seconds that move only when told."""
    return Clock()


@pytest.fixture
def timer(clock: Clock) -> ManualTimer:
    """A timer that calls back only when the test says so."""
    return ManualTimer(clock)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real redis-server for the session (skips when it is not installed)."""
    pytest.importorskip("rq")
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url
