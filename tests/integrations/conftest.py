"""Fixtures for the integrations tests: Celery is needed for all but the core's tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from ..helpers import Clock
from .rig import ManualTimer, RecordingPinger, memory_app

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
