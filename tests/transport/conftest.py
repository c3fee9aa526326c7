"""Fixtures of the wire tests: the transport under test, clients for it, a clean proxy env."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opshift import KeepAliveTransport, OpShift

from ..helpers import SECRET, TRANSPORTS, MakeClient


@pytest.fixture(params=["urllib", "keepalive"])
def transport_name(request: pytest.FixtureRequest) -> str:
    """The transport under test: every fault test runs on each."""
    return str(request.param)


@pytest.fixture
def make_client(transport_name: str) -> Iterator[MakeClient]:
    """Clients for the transport under test; their transports are closed after the test."""
    opened: list[object] = []

    def make(base_url: str, *, timeout: float = 30.0, max_retries: int = 2) -> OpShift:
        transport = TRANSPORTS[transport_name]()
        opened.append(transport)
        return OpShift(
            SECRET,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_backoff=0,
            transport=transport,
        )

    yield make
    for transport in opened:
        if isinstance(transport, KeepAliveTransport):
            transport.close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with no proxy settings; tests add the ones they need."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch
