"""Constants and small helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Union

import pytest

from opshift import (
    AlertHandler,
    KeepAliveTransport,
    NetworkError,
    OpShift,
    OpShiftError,
    Outbox,
    UrllibTransport,
)
from opshift.cli import main
from opshift.outbox._delivery import Delivery
from opshift.outbox._outbox import sender  # the outbox's own seam to its sender
from opshift.testing import FakeTransport, OpShiftServer

from . import faultserver as fs

# A throwaway team secret for tests; the known-answer signatures in the tests are for it.
SECRET = "bb2801ab17ca54c2510b88c35683e6571b90dcaf8a8bfcbd3f25b8c07fc0dd1c"
OTHER_SECRET = "0123456789abcdef" * 4

# The docs' example bodies, byte-exact.
PING_EXAMPLE = b'{"status":"up","metadata":{"batch":1247,"durationMs":832}}'
ALERT_EXAMPLE = (
    b'{"title":"Deploy failed: api-gateway","description":"Migration step exited with code 137",'
    b'"severity":"sev1","metadata":{"commit":"a1b2c3","environment":"production"},'
    b'"group_key":"deploy:api-gateway"}'
)

# OpShift's 200 answer to a ping, as raw JSON bytes.
PING_OK = (
    b'{"message": "Ping received", "monitor": {"name": "w", "status": "up", '
    b'"monitoringActive": true}, "pingStatus": "up"}'
)


ROOT = Path(__file__).resolve().parent.parent


def user_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` as a user's shell has it: pytest free to load the plugins that are installed."""
    drop = ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")
    return {name: value for name, value in env.items() if name not in drop}


class Clock:
    """Seconds that move only when told: inject as a clock (``Outbox(clock=)``, a handler's
    or heartbeat's) so a test steps time instead of sleeping."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock by ``seconds`` (negative steps it back, as NTP may)."""
        self.now += seconds


def in_forked_child(work: Callable[[], bytes]) -> bytes:
    """Run ``work`` in a forked child and return the bytes it reported to the parent.

    The child leaves with ``os._exit`` (no pytest teardown, no atexit hooks, as a worker
    process dies); an exception in it is reported as ``b"error: ..."``.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; coverage is not measured across fork
        try:
            report = work()
        except BaseException as exc:
            report = f"error: {type(exc).__name__}: {exc}".encode()
        try:
            os.write(write, report)
        finally:
            os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks)


def fan_out(target: Callable[..., object], calls: Sequence[tuple[Any, ...]]) -> None:
    """Run ``target(*args)`` for each ``args`` in ``calls`` on a thread each, all at once;
    return when every thread has ended."""
    threads = [threading.Thread(target=target, args=args) for args in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def one_pass(outbox: Outbox) -> bool:
    """One urgent pass of the outbox's sender, in this thread: every due destination is tried
    once, backoff ignored, as flush() begins. True if nothing is left afterwards.

    flush(timeout) never sends past its deadline, so flush(0) sends nothing; tests that
    step delivery one pass at a time (with a fake clock) use this instead.
    """
    sender(outbox).delivery.deliver_due(urgent=True)
    return outbox.pending == 0


def refused_url() -> str:
    """An http:// base URL on 127.0.0.1 whose port this process bound and closed: refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Certificate:
    """A throwaway self-signed certificate for 127.0.0.1."""

    cert: str
    key: str

    def server_context(self) -> ssl.SSLContext:
        """A server-side context serving this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client-side context that trusts only this certificate."""
        return ssl.create_default_context(cafile=self.cert)


Backend = Union[OpShiftServer, FakeTransport]
TRANSPORTS = {"urllib": UrllibTransport, "keepalive": KeepAliveTransport}


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


# -- the wire tests' shared code: a raw-socket server misbehaves on cue ----------------------

OK = fs.json_response(200, PING_OK)
# Generous margin over the call's timeout: proves "bounded", without timing flakiness.
SLACK = 3.0
HTML_502 = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
HEAD_100 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"


class MakeClient(Protocol):
    """Makes a client on the transport under test (the ``make_client`` fixture)."""

    def __call__(
        self, base_url: str, *, timeout: float = ..., max_retries: int = ...
    ) -> OpShift: ...


def run(
    make_client: MakeClient,
    behaviours: Sequence[fs.Behaviour],
    timeout: float = 30.0,
    max_retries: int = 2,
) -> tuple[OpShiftError, float, fs.FaultServer]:
    """Ping a FaultServer; return the error raised, the elapsed seconds and the server."""
    with fs.FaultServer(behaviours) as server:
        client = make_client(server.url, timeout=timeout, max_retries=max_retries)
        started = time.monotonic()
        with pytest.raises(OpShiftError) as caught:
            client.ping("w", status="down", reason="fault")
        elapsed = time.monotonic() - started
    return caught.value, elapsed, server


def malformed(raw: bytes) -> NetworkError:
    """The error a ping gets when the server answers ``raw``; asserts it is a malformed one."""
    with fs.FaultServer([fs.respond(raw)]) as server:
        client = OpShift(SECRET, base_url=server.url, max_retries=0)
        with pytest.raises(OpShiftError) as caught:
            client.ping("w")
    assert type(caught.value) is NetworkError, repr(caught.value)
    assert "malformed or truncated HTTP response" in str(caught.value)
    return caught.value


def chunked(*parts: bytes, size: bytes = b"%x") -> bytes:
    """A chunked body of these parts, each size written with ``size``, then the last chunk."""
    sizes = [size % len(part) if b"%" in size else size for part in parts]
    return b"".join(s + b"\r\n" + p + b"\r\n" for s, p in zip(sizes, parts)) + b"0\r\n\r\n"


CHUNKED_OK = CHUNKED + b"\r\n" + chunked(PING_OK[:30], PING_OK[30:])


# -- the AlertHandler tests' rig -----------------------------------------------------------


@dataclass
class HandlerRig:
    """A handler on its own logger, queuing on an outbox that a FakeTransport drains."""

    handler: AlertHandler
    fake: FakeTransport
    clock: Clock
    log: logging.Logger

    def sent(self) -> list[Any]:
        """Deliver what is queued; return the JSON bodies OpShift received so far."""
        assert self.handler.outbox.flush(5) is True
        return [r.json for r in self.fake.requests]


MakeRig = Callable[..., HandlerRig]


def quiet_logger(name: str) -> logging.Logger:
    """A logger of its own that takes every level and passes nothing to its parents."""
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(1)
    return log


def app_alerts(server: OpShiftServer) -> list[Any]:
    """The alert bodies the local OpShift received on the app-errors webhook."""
    return [r.json for r in server.requests if r.path == "/api/alerts/trigger/app-errors"]


# -- the outbox tests' helpers ---------------------------------------------------------------

# Where a quiet outbox's fake clock starts: the real time when the tests began, so items
# it queues to a file are not yet expired for a later outbox on the real clock (a fixed
# date would expire them once the calendar passed it).
START = float(int(time.time()))


def quiet_outbox(client: OpShift, path: Any = None, **options: Any) -> Outbox:
    """An outbox with no sender thread and a fake clock: delivery only by flush()."""
    options.setdefault("clock", Clock(START))
    options.setdefault("random", lambda: 1.0)
    return Outbox(client, path, background=False, **options)


def delivery(outbox: Outbox) -> Delivery:
    """The outbox's stores, settings and delivery pass (the seam the sender uses)."""
    return sender(outbox).delivery


def sender_pass(outbox: Outbox) -> float | None:
    """One pass of the sender, in this thread, backoff respected (unlike one_pass)."""
    return delivery(outbox).deliver_due()


def bodies(server: OpShiftServer, path: str) -> list[Any]:
    """The JSON bodies the server received on one path, in arrival order."""
    return [r.json for r in server.requests if r.path == path]


def python(code: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Run ``code`` (dedented) in a new Python process that imports this checkout's SDK."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


# -- the CLI tests' runners ------------------------------------------------------------------


def opshift(
    *args: str, env: dict[str, str] | None = None, script: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the CLI (``python -m opshift``, or the installed ``opshift`` script)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPSHIFT_")}
    full_env.update(env or {})
    command = (
        [str(Path(sys.executable).parent / "opshift")]
        if script
        else [sys.executable, "-m", "opshift"]
    )
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=full_env, timeout=60
    )


@dataclass
class Done:
    """What a CLI run left behind, as subprocess.CompletedProcess has it."""

    returncode: int
    stdout: str
    stderr: str


class InProcess:
    """Run ``opshift.cli.main`` in this process with its own environment and captured output.

    Much faster than a subprocess; the few tests of the installed script, of
    ``python -m opshift`` and of ``opshift run`` (signals, inherited output) still spawn.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Done:
        for name in [n for n in os.environ if n.startswith("OPSHIFT_")]:
            self.monkeypatch.delenv(name)
        for name, value in (env or {}).items():
            self.monkeypatch.setenv(name, value)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: usage errors and --help
                code = exc.code if isinstance(exc.code, int) else 0
        return Done(code, out.getvalue(), err.getvalue())


def server_env(server: OpShiftServer) -> dict[str, str]:
    """The environment that points the CLI at ``server`` with the test secret."""
    return {"OPSHIFT_SECRET": SECRET, "OPSHIFT_BASE_URL": server.url}


def last_body(server: OpShiftServer) -> dict[str, Any]:
    """The last request's JSON body, checked to be validly signed."""
    body = server.requests[-1].json
    assert isinstance(body, dict)
    assert server.requests[-1].signature_valid
    return body
