"""pytest fixtures for code that talks to OpShift: ``opshift_server`` and ``opshift_client``.

Installed with opshift through the ``pytest11`` entry point, so tests use them with no
conftest; ``pytest -p no:opshift`` turns the plugin off. This is the only module of the
SDK that imports pytest, and only pytest imports it: never list it in ``pytest_plugins``
or ``-p`` as well, since pytest refuses to register one module under two names.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported by the fixtures: loading the plugin costs every pytest run
    from opshift import OpShift
    from opshift.testing import OpShiftServer

__all__ = ["opshift_client", "opshift_server"]

_LOOPBACK = "127.0.0.1"


@pytest.fixture
def opshift_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpShiftServer]:
    """A local OpShift on 127.0.0.1 that code under test reaches through ``OpShift()``.

    The server runs for one test, creates unknown ping tokens and webhooks on first use,
    and checks every signature against a throwaway secret. For the test, the environment
    says where it is: ``OPSHIFT_SECRET`` and ``OPSHIFT_BASE_URL`` are set,
    ``OPSHIFT_DISABLED`` is unset (so the code really sends, even where CI disables
    OpShift) and 127.0.0.1 is added to ``NO_PROXY``; all are restored afterwards.

    Assert on what arrived: ``opshift_server.requests`` (method, path, json,
    signature_valid, status), ``.monitors`` and ``.alerts``. The controls of
    ``opshift.testing.OpShiftServer`` work too, e.g. ``opshift_server.fail_next(503)``.
    """
    from opshift.testing import OpShiftServer

    secret = secrets.token_hex(32)
    with OpShiftServer(secret, auto_create=True) as server:
        monkeypatch.setenv("OPSHIFT_SECRET", secret)
        monkeypatch.setenv("OPSHIFT_BASE_URL", server.url)
        monkeypatch.delenv("OPSHIFT_DISABLED", raising=False)
        for name in ("NO_PROXY", "no_proxy"):  # urllib reads either; a CI proxy must not interfere
            current = os.environ.get(name, "")
            if _LOOPBACK not in current.split(","):
                monkeypatch.setenv(name, f"{current},{_LOOPBACK}" if current else _LOOPBACK)
        yield server


@pytest.fixture
def opshift_client(opshift_server: OpShiftServer) -> Iterator[OpShift]:
    """An ``OpShift`` client pointed at ``opshift_server`` with its secret; closed after the test.

    It has the SDK's default settings, as in production, and sends over loopback HTTP.
    To see a failure at once instead of after the retries, use
    ``opshift_client.with_options(max_retries=0)`` with ``opshift_server.fail_next(503)``.
    """
    from opshift import OpShift

    secret = opshift_server.model.secret
    with OpShift(secret, base_url=opshift_server.url, enabled=True) as client:
        yield client
