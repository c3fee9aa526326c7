"""Shared fixtures: the local OpShift server, the fake transport, and a client for each."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from opshift import KeepAliveTransport, OpShift
from opshift.testing import FakeTransport, OpShiftServer

from .helpers import SECRET, TRANSPORTS, Backend, Certificate, Env, InProcess


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


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> InProcess:
    """The CLI, run in-process with the environment restored after the test."""
    return InProcess(monkeypatch)


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """A framework that configures logging (Celery's worker sets the root level to ERROR)
    must not silence later tests' log assertions: the root level and handlers come back."""
    import logging

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    for handler in root.handlers[:]:
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)  # pytest's own capture handlers are pytest's to remove
