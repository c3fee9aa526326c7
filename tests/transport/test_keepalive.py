"""KeepAliveTransport specifics: reuse, stale connections, re-send rules, pool, fork."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from opshift import ConfigurationError, KeepAliveTransport, NetworkError, OpShift, UrllibTransport
from opshift.testing import OpShiftServer
from opshift.transport._connection import HTTPConnection
from opshift.transport._keepalive import idle_connections

from .. import faultserver as fs
from ..helpers import PING_OK, SECRET, Certificate, fan_out, in_forked_child


def ping_twice(behaviours: list[fs.Behaviour], max_idle_seconds: float = 0.0) -> fs.FaultServer:
    """Ping a FaultServer twice through one KeepAliveTransport; both pings must succeed."""
    if max_idle_seconds:
        transport = KeepAliveTransport(max_idle_seconds=max_idle_seconds)
    else:
        transport = KeepAliveTransport()
    with fs.FaultServer(behaviours) as server, transport:
        client = OpShift(SECRET, base_url=server.url, transport=transport, max_retries=0)
        client.ping("w")
        client.ping("w")
    return server


def test_connection_is_reused(server: OpShiftServer) -> None:
    """Five calls to one server travel over one connection."""
    with KeepAliveTransport() as transport:
        client = OpShift(SECRET, base_url=server.url, transport=transport)
        for n in range(5):
            client.alert("deploy-failures", title=f"t{n}")
    assert server.connections == 1
    assert len(server.requests) == 5


def test_tls_connection_is_reused(certificate: Certificate) -> None:
    """Over HTTPS too: one handshake, three calls."""
    server = OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context())
    transport = KeepAliveTransport(ssl_context=certificate.client_context())
    with server as srv, transport:
        client = OpShift(SECRET, base_url=srv.url, transport=transport)
        for _ in range(3):
            client.alert("h", title="t")
    assert srv.connections == 1
    assert all(r.signature_valid for r in srv.requests)


def test_server_closing_an_idle_connection_is_transparent() -> None:
    """A connection the server closed while idle is replaced at checkout, with no error."""
    closes_later = fs.respond(fs.answer(PING_OK), keep_open=False)
    with fs.FaultServer([closes_later]) as server, KeepAliveTransport() as transport:
        client = OpShift(SECRET, base_url=server.url, transport=transport, max_retries=0)
        client.ping("w")
        assert server.wait_closed(1)  # the close reached us before the next call, as it does
        client.ping("w")
    assert len(server.requests) == 2
    assert server.connections == 2


def test_a_request_written_to_a_dying_connection_is_never_resent_by_the_transport() -> None:
    """A written request is never re-sent by the transport; the retry policy decides."""

    def drop(conn: object, server: fs.FaultServer) -> bool:
        return False  # read the request, close without a byte of answer

    behaviours = [fs.keep_alive_ok(PING_OK), drop, fs.keep_alive_ok(PING_OK)]
    with fs.FaultServer(behaviours) as server, KeepAliveTransport() as transport:
        once = OpShift(SECRET, base_url=server.url, transport=transport, max_retries=0)
        once.ping("w", status="down", reason="r")
        with pytest.raises(NetworkError, match="closed by the server"):
            once.ping("w", status="down", reason="r")
        assert len(server.requests) == 2  # no duplicate of the dropped request
        retried = once.with_options(max_retries=1, retry_backoff=0)
        assert retried.ping("w", status="down", reason="r")["pingStatus"] == "up"
    assert len(server.requests) == 3


def test_the_one_resend_opens_a_brand_new_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails on a pooled connection is re-sent on a new one, never a pooled one."""
    both_open = threading.Barrier(2)

    def answer_twice_at_once(conn: socket.socket, server: fs.FaultServer) -> bool:
        if len(server.requests) <= 2:
            both_open.wait(5)  # two calls in flight at once leave two pooled connections
        conn.sendall(fs.answer(PING_OK))
        return True

    real_post = HTTPConnection.post

    def post(self: HTTPConnection, target: str, headers: Any, body: bytes) -> None:
        if self.idle_until:  # a pooled connection: as if the server closed it just now
            raise BrokenPipeError(32, "Broken pipe")
        real_post(self, target, headers, body)

    with (
        fs.FaultServer([answer_twice_at_once]) as server,
        KeepAliveTransport() as transport,
    ):
        client = OpShift(SECRET, base_url=server.url, transport=transport, max_retries=0)
        fan_out(client.ping, [("w",)] * 2)
        assert len(idle_connections(transport)) == 2
        monkeypatch.setattr(HTTPConnection, "post", post)
        assert client.ping("w")["pingStatus"] == "up"
    assert len(server.requests) == 3  # two calls, then the re-send; the failed write sent nothing
    assert server.connections == 3  # the re-send's connection is new


def test_partial_answer_is_never_resent() -> None:
    """Once a byte of the answer arrived, the server saw the request: raise, do not resend."""
    partial = fs.respond(b"HTTP/1.1 2")
    behaviours = [fs.keep_alive_ok(PING_OK), partial, fs.keep_alive_ok(PING_OK)]
    with fs.FaultServer(behaviours) as server, KeepAliveTransport() as transport:
        client = OpShift(SECRET, base_url=server.url, transport=transport, max_retries=0)
        client.ping("w")
        with pytest.raises(NetworkError):
            client.ping("w")
    assert len(server.requests) == 2


def test_fresh_connection_failure_is_not_resent() -> None:
    """A new connection that fails is not re-sent by the transport: the policy decides."""
    with fs.FaultServer([fs.respond(b"")]) as server, KeepAliveTransport() as transport:
        client = OpShift(SECRET, base_url=server.url, transport=transport, max_retries=0)
        with pytest.raises(NetworkError):
            client.ping("w")
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "head",
    [
        pytest.param("Connection: close\r\n", id="close"),
        pytest.param("Connection: Keep-Alive, CLOSE\r\n", id="close-in-a-list-any-case"),
    ],
)
def test_a_connection_the_server_will_close_is_not_reused(head: str) -> None:
    """``Connection: close`` in any case or list position ends the connection."""
    server = ping_twice([fs.respond(fs.answer(PING_OK, head), keep_open=True)])
    assert server.connections == 2


def test_http10_answers_are_not_reused() -> None:
    """An HTTP/1.0 answer, even with Connection: keep-alive, is not trusted to be framed for reuse."""
    raw = fs.answer(PING_OK, "Connection: keep-alive\r\n").replace(b"HTTP/1.1", b"HTTP/1.0")
    server = ping_twice([fs.respond(raw, keep_open=True)])
    assert server.connections == 2


def test_last_chunk_then_eof_is_an_answer_but_not_reused() -> None:
    """``0\\r\\n`` then EOF answered the call; the closed connection is not pooled ."""
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n" % (
        len(PING_OK),
        PING_OK,
    )
    server = ping_twice([fs.respond(raw, keep_open=False)])
    assert len(server.requests) == 2
    assert server.connections == 2


def test_idle_connections_older_than_max_idle_seconds_are_not_reused() -> None:
    """A connection idle longer than max_idle_seconds is closed, not reused ."""
    kept = ping_twice([fs.keep_alive_ok(PING_OK)])
    assert kept.connections == 1
    expired = ping_twice([fs.keep_alive_ok(PING_OK)], max_idle_seconds=1e-9)
    assert expired.connections == 2
    assert len(expired.requests) == 2


@pytest.fixture
def high_descriptors() -> Iterator[None]:
    """Hold enough descriptors that the next sockets get numbers above 1024."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1100 + 64
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held: list[int] = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_stale_checks_work_for_descriptors_above_1024(high_descriptors: None) -> None:
    """A busy process (fd > 1024) still reuses its connections: poll, not select ."""
    server = ping_twice([fs.keep_alive_ok(PING_OK)])
    assert server.connections == 1


def test_pool_is_capped_and_threads_own_their_connections(server: OpShiftServer) -> None:
    """Six threads share one transport; at most max_idle_connections stay idle."""
    transport = KeepAliveTransport(max_idle_connections=2)
    client = OpShift(SECRET, base_url=server.url, transport=transport)
    for n in range(6):
        server.add_monitor(f"worker-{n}")
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait(10)
            for _ in range(3):
                client.ping(f"worker-{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    fan_out(work, [(n,) for n in range(6)])
    assert errors == []
    assert len(server.requests) == 18
    assert all(r.signature_valid for r in server.requests)
    assert len(idle_connections(transport)) <= 2
    transport.close()
    assert idle_connections(transport) == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, on purpose
def test_forked_child_never_reuses_the_parents_socket(server: OpShiftServer) -> None:
    """A forked child opens its own connection; the parent's stays open and reusable."""
    transport = KeepAliveTransport()
    client = OpShift(SECRET, base_url=server.url, transport=transport)
    client.ping("payments-worker")
    assert server.connections == 1

    def child() -> bytes:
        client.ping("payments-worker")
        return b"ok"

    assert in_forked_child(child) == b"ok"
    assert server.connections == 2  # the child opened its own
    client.ping("payments-worker")  # the parent's connection still works, untouched
    assert server.connections == 2
    transport.close()


def test_repr_shows_the_settings() -> None:
    """repr names both pool settings."""
    assert repr(KeepAliveTransport(max_idle_connections=3, max_idle_seconds=5)) == (
        "KeepAliveTransport(max_idle_connections=3, max_idle_seconds=5)"
    )


def test_a_stale_answer_buffered_inside_tls_is_never_read_by_the_next_call(
    certificate: Certificate,
) -> None:
    """Bytes left decrypted inside OpenSSL keep the connection out of the pool."""
    context = certificate.server_context()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    port = listener.getsockname()[1]
    opened: list[socket.socket] = []
    stop = threading.Event()

    def answer(message: str, size: int = 0) -> bytes:
        body = json.dumps({"message": message, "pad": "x" * size}).encode()
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    pad = 24576 - len(answer("first"))  # the first answer ends mid-way through a TLS record
    first = answer("first", pad)

    def serve() -> None:
        served = 0
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            raw.settimeout(5)
            opened.append(raw)
            with contextlib.suppress(OSError), context.wrap_socket(raw, server_side=True) as tls:
                while True:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if not data:
                        break
                    served += 1
                    tls.sendall(first + answer("STALE") if served == 1 else answer("second"))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{port}/api/ping/w"
    try:
        with KeepAliveTransport(ssl_context=certificate.client_context()) as transport:
            one = json.loads(transport(url, b"", {}, 5)[1])["message"]
            two = json.loads(transport(url, b"", {}, 5)[1])["message"]
    finally:
        stop.set()
        for raw in opened:
            raw.close()
        thread.join(5)
        listener.close()
    assert (one, two) == ("first", "second")
    assert len(opened) == 2


def test_a_204_announcing_a_body_is_not_reused() -> None:
    """A 204 with a Content-Length may still send that body, late: never pooled."""
    no_content = fs.respond(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", keep_open=True)
    with fs.FaultServer([no_content]) as server, KeepAliveTransport() as transport:
        assert transport(server.url + "/api/ping/w", b"", {}, 5)[0] == 204
        assert idle_connections(transport) == []


def test_connection_close_in_a_second_field_is_honoured() -> None:
    """`Connection: close` counts even in a repeated Connection field (stdlib reads one)."""
    answer = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(PING_OK), PING_OK)
    )
    with (
        fs.FaultServer([fs.respond(answer, keep_open=True)]) as server,
        KeepAliveTransport() as transport,
    ):
        assert transport(server.url + "/api/ping/w", b"", {}, 5)[0] == 200
        assert idle_connections(transport) == []


@pytest.mark.parametrize(("timeout", "kept"), [("1", False), ("5", True)])
def test_the_servers_keep_alive_timeout_is_honoured(timeout: str, kept: bool) -> None:
    """Reuse stops a second before the server's own `Keep-Alive: timeout=N`."""
    answer = (
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=%s, max=100\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (timeout.encode(), len(PING_OK), PING_OK)
    )
    with (
        fs.FaultServer([fs.respond(answer, keep_open=True)]) as server,
        KeepAliveTransport() as transport,
    ):
        transport(server.url + "/api/ping/w", b"", {}, 5)
        idle = idle_connections(transport)
        assert bool(idle) is kept
        if kept:
            left = idle[0].idle_until - time.monotonic()
            assert 3.0 < left <= 4.0


@pytest.mark.parametrize("url", ["ftp://opshift.example/api/ping/w", "http://opshift.example:0x/p"])
def test_a_url_that_is_not_http_is_a_configuration_error(url: str) -> None:
    """The transport refuses what it cannot send to, naming the URL, before connecting."""
    with pytest.raises(ConfigurationError, match="is not an http"):
        KeepAliveTransport()(url, b"", {}, 5.0)


def test_a_socks_proxy_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A socks:// proxy cannot carry plain HTTP here: a ConfigurationError, not a hang."""
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "socks5://proxy.corp:1080")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="socks5:// URL"):
        KeepAliveTransport()("http://opshift.example/api/ping/w", b"", {}, 5.0)


def test_idle_connections_past_their_time_are_closed_not_reused() -> None:
    """A pooled connection whose idle time is up is closed when next looked at, not reused."""
    with fs.FaultServer([fs.keep_alive_ok(PING_OK)]) as server:
        transport = KeepAliveTransport(max_idle_seconds=30)
        url = server.url + "/api/ping/w"
        transport(url, b"", {}, 5.0)
        (old,) = idle_connections(transport)
        old.idle_until = time.monotonic() - 1  # its time is up
        transport(url, b"", {}, 5.0)
        assert old.sock is None  # expired: closed instead of reused
        assert server.connections == 2
        assert idle_connections(transport) != [old]
        transport.close()


def test_the_transport_package_names_both_transports() -> None:
    """`from opshift.transport import KeepAliveTransport` works; unknown names do not."""
    import opshift.transport

    assert opshift.transport.KeepAliveTransport is KeepAliveTransport
    assert opshift.transport.UrllibTransport is UrllibTransport
    with pytest.raises(AttributeError, match="NoSuchTransport"):
        opshift.transport.NoSuchTransport  # type: ignore[attr-defined]  # noqa: B018
