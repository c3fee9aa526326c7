"""Fixtures of the outbox tests: a local OpShift, and where the outbox keeps its items."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opshift.testing import OpShiftServer

from ..helpers import SECRET


@pytest.fixture
def live() -> Iterator[OpShiftServer]:
    """A local OpShift that creates unknown monitors and webhooks on first use."""
    with OpShiftServer(SECRET, auto_create=True) as server:
        yield server


@pytest.fixture(params=["memory", "file"])
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> Path | None:
    """Where the outbox keeps items: memory (None) or a SQLite file; behaviour must match."""
    return tmp_path / "outbox.sqlite3" if request.param == "file" else None
