"""KeepAliveTransport specifics: reuse, stale connections, re-send rules, pool, fork, proxies."""

from __future__ import annotations

import os
import threading

import pytest

from opshift import KeepAliveTransport, NetworkError, OpShift, UrllibTransport
from opshift.testing import OpShiftServer

from . import faultserver as fs
from .helpers import SECRET, Certificate, refused_url
from .proxyserver import ProxyServer

PING = b'{"message": "Ping received", "monitor": {"name": "w", "status": "up", "monitoringActive": true}, "pingStatus": "up"}'


def test_connection_is_reused(server: OpShiftServer) -> None:
    with KeepAliveTransport() as transport:
        client = OpShift(SECRET, base_url=server.url, transport=transport)
        for n in range(5):
            client.alert("deploy-failures", title=f"t{n}")
    assert server.connections == 1
    assert len(server.requests) == 5


def test_tls_connection_is_reused(certificate: Certificate) -> None:
    server = OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context())
    transport = KeepAliveTransport(ssl_context=certificate.client_context())
    with server as srv, transport:
        client = OpShift(SECRET, base_url=srv.url, transport=transport)
        for _ in range(3):
            client.alert("h", title="t")
    assert srv.connections == 1
    assert all(r.signature_valid for r in srv.requests)


def test_server_closing_an_idle_connection_is_transparent() -> None:
    """The server answers (keep-alive) then closes: the next call opens a new connection."""
    closes_after = fs.respond(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(PING), PING), keep_open=False
    )
    with fs.FaultServer([closes_after]) as server, KeepAliveTransport() as transport:
        client = OpShift(SECRET, base_url=server.url, transport=transport, max_retries=0)
        client.ping("w")
        client.ping("w")
    assert len(server.requests) == 2
    assert server.connections == 2


def test_reused_connection_dropped_before_answering_is_resent_once() -> None:
    """Nothing of the answer arrived, so re-sending on a fresh connection is safe."""

    def drop(conn: object, server: fs.FaultServer) -> bool:
        return False  # read the request, close without a byte

    behaviours = [fs.keep_alive_ok(PING), drop, fs.keep_alive_ok(PING)]
    with fs.FaultServer(behaviours) as server, KeepAliveTransport() as transport:
        client = OpShift(SECRET, base_url=server.url, transport=transport, max_retries=0)
        client.ping("w", status="down", reason="r")
        assert client.ping("w", status="down", reason="r")["pingStatus"] == "up"
    assert len(server.requests) == 3
    assert len(set(server.signatures())) == 1
    assert server.connections == 2


def test_partial_answer_is_never_resent() -> None:
    """Once a byte of the answer arrived, the server saw the request: raise, do not resend."""
    partial = fs.respond(b"HTTP/1.1 2")
    behaviours = [fs.keep_alive_ok(PING), partial, fs.keep_alive_ok(PING)]
    with fs.FaultServer(behaviours) as server, KeepAliveTransport() as transport:
        client = OpShift(SECRET, base_url=server.url, transport=transport, max_retries=0)
        client.ping("w")
        with pytest.raises(NetworkError):
            client.ping("w")
    assert len(server.requests) == 2


def test_fresh_connection_failure_is_not_resent() -> None:
    with fs.FaultServer([fs.respond(b"")]) as server, KeepAliveTransport() as transport:
        client = OpShift(SECRET, base_url=server.url, transport=transport, max_retries=0)
        with pytest.raises(NetworkError):
            client.ping("w")
    assert len(server.requests) == 1


def test_pool_is_capped_and_threads_own_their_connections(server: OpShiftServer) -> None:
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

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(server.requests) == 18
    assert all(r.signature_valid for r in server.requests)
    assert sum(len(idle) for idle in transport._idle.values()) <= 2
    transport.close()
    assert transport._idle == {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, on purpose
def test_forked_child_never_reuses_the_parents_socket(server: OpShiftServer) -> None:
    transport = KeepAliveTransport()
    client = OpShift(SECRET, base_url=server.url, transport=transport)
    client.ping("payments-worker")
    assert server.connections == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            client.ping("payments-worker")
            os.write(write, b"ok")
        finally:
            os._exit(0)
    os.close(write)
    report = os.read(read, 10)
    os.close(read)
    os.waitpid(pid, 0)
    assert report == b"ok"
    assert server.connections == 2  # the child opened its own
    client.ping("payments-worker")  # the parent's connection still works, untouched
    assert server.connections == 2
    transport.close()


@pytest.mark.parametrize("transport_class", [UrllibTransport, KeepAliveTransport])
def test_http_proxy_from_environment(
    monkeypatch: pytest.MonkeyPatch, server: OpShiftServer, transport_class: type
) -> None:
    with ProxyServer() as proxy:
        auth_url = proxy.url.replace("http://", "http://alice:s3cret@")
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, auth_url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, "")
        client = OpShift(SECRET, base_url=server.url, transport=transport_class())
        assert client.ping("payments-worker")["pingStatus"] == "up"
    line, auth = proxy.seen[0]
    assert line == f"POST {server.url}/api/ping/payments-worker HTTP/1.1"
    assert auth == "Basic YWxpY2U6czNjcmV0"
    assert server.requests[0].signature_valid


@pytest.mark.parametrize("transport_class", [UrllibTransport, KeepAliveTransport])
def test_https_proxy_tunnels_with_connect(
    monkeypatch: pytest.MonkeyPatch, certificate: Certificate, transport_class: type
) -> None:
    """HTTPS through a proxy uses a CONNECT tunnel; TLS is still verified end to end."""
    with (
        ProxyServer() as proxy,
        OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context()) as srv,
    ):
        for name in ("HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, "")
        transport = transport_class(ssl_context=certificate.client_context())
        client = OpShift(SECRET, base_url=srv.url, transport=transport)
        assert client.alert("h", title="through the tunnel")["status"] == "created"
    host_port = srv.url[len("https://") :]
    assert proxy.seen[0][0].startswith(f"CONNECT {host_port} HTTP/1.")
    assert srv.requests[0].signature_valid


@pytest.mark.parametrize("transport_class", [UrllibTransport, KeepAliveTransport])
def test_no_proxy_bypasses_the_proxy(
    monkeypatch: pytest.MonkeyPatch, server: OpShiftServer, transport_class: type
) -> None:
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, refused_url())  # would be refused
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1")
    client = OpShift(SECRET, base_url=server.url, transport=transport_class())
    assert client.ping("payments-worker")["pingStatus"] == "up"
