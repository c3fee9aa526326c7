"""Shared fixtures: the local OpShift server, the fake transport, and a client for each."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Union

import pytest

from opshift import KeepAliveTransport, OpShift, UrllibTransport
from opshift.testing import FakeTransport, OpShiftServer

# A throwaway team secret for tests; the known-answer signatures below are for it.
SECRET = "bb2801ab17ca54c2510b88c35683e6571b90dcaf8a8bfcbd3f25b8c07fc0dd1c"
OTHER_SECRET = "0123456789abcdef" * 4

Backend = Union[OpShiftServer, FakeTransport]


@dataclass
class Env:
    """A client wired to a backend that answers like OpShift, plus that backend's controls."""

    client: OpShift
    backend: Backend
    kind: str
    opened: list[Any] = field(default_factory=list)

    def client_with(self, **options: Any) -> OpShift:
        """Another client on the same backend, e.g. with a different secret or timeout."""
        secret = options.pop("secret", SECRET)
        if isinstance(self.backend, OpShiftServer):
            transport = TRANSPORTS[self.kind]()
            self.opened.append(transport)
            return OpShift(secret, base_url=self.backend.url, transport=transport, **options)
        return OpShift(secret, transport=self.backend, **options)


@dataclass
class Certificate:
    """A throwaway self-signed certificate for 127.0.0.1."""

    cert: str
    key: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """Made with the openssl CLI, as a user would make a private CA's certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


def _setup(backend: Backend) -> None:
    backend.add_monitor("payments-worker", "Payments worker")
    backend.add_webhook("deploy-failures")


@pytest.fixture
def server() -> Iterator[OpShiftServer]:
    """A running local OpShift with one monitor and one webhook."""
    with OpShiftServer(SECRET) as srv:
        _setup(srv)
        yield srv


TRANSPORTS = {"urllib": UrllibTransport, "keepalive": KeepAliveTransport}


@pytest.fixture(params=["fake", "urllib", "keepalive"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    """The contract suite's backend: FakeTransport, or a real transport over loopback HTTP."""
    if request.param == "fake":
        fake = FakeTransport(SECRET, auto_create=False)
        _setup(fake)
        yield Env(OpShift(SECRET, transport=fake, retry_backoff=0), fake, "fake")
        return
    transport = TRANSPORTS[request.param]()
    with OpShiftServer(SECRET) as srv:
        _setup(srv)
        yield Env(
            OpShift(SECRET, base_url=srv.url, retry_backoff=0, transport=transport),
            srv,
            request.param,
        )
    if isinstance(transport, KeepAliveTransport):
        transport.close()
