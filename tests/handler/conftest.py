"""Fixtures of the AlertHandler tests: rigs on a fake OpShift, a live local one, root handlers."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from opshift import AlertHandler, OpShift, Outbox
from opshift.testing import FakeTransport, OpShiftServer

from ..helpers import SECRET, Clock, HandlerRig, MakeRig, quiet_logger


@pytest.fixture
def make(request: pytest.FixtureRequest) -> Iterator[MakeRig]:
    """Build rigs with handler options; every handler, logger and outbox is cleaned up."""
    made: list[HandlerRig] = []

    def build(**options: Any) -> HandlerRig:
        fake = FakeTransport(SECRET)
        outbox = Outbox(OpShift(SECRET, transport=fake), background=False)
        clock = Clock()
        options.setdefault("level", 1)
        handler = AlertHandler("app-errors", outbox=outbox, clock=clock, **options)
        rig = HandlerRig(handler, fake, clock, quiet_logger(f"app.{request.node.name}.{len(made)}"))
        rig.log.addHandler(handler)
        made.append(rig)
        return rig

    yield build
    for rig in made:
        rig.log.removeHandler(rig.handler)
        rig.handler.close()
        rig.handler.outbox.close(0)


@pytest.fixture
def live() -> Iterator[OpShiftServer]:
    """A local OpShift that creates unknown webhooks on first use."""
    with OpShiftServer(SECRET, auto_create=True) as server:
        yield server


@pytest.fixture
def root_handlers() -> Iterator[list[logging.Handler]]:
    """Handlers added to this list are attached to the root logger, and removed after."""
    added: list[logging.Handler] = []
    root = logging.getLogger()
    yield added
    for handler in added:
        root.removeHandler(handler)
        handler.close()
