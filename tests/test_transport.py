"""The fault matrix: a raw-socket server misbehaves, the client fails fast and clearly."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.error
from collections.abc import Sequence
from typing import Protocol

import pytest

import opshift
from opshift import (
    NetworkError,
    OpShift,
    OpShiftError,
    RequestTimeoutError,
    ServerError,
    UrllibTransport,
)
from opshift.testing import OpShiftServer
from opshift.transport import translate_exception

from . import faultserver as fs
from .helpers import SECRET, TRANSPORTS, Certificate

PING_OK = b'{"message": "Ping received", "monitor": {"name": "w", "status": "up", "monitoringActive": true}, "pingStatus": "up"}'
OK = fs.json_response(200, PING_OK)
# Generous margin over the call's timeout: proves "bounded", without timing flakiness.
SLACK = 3.0


class MakeClient(Protocol):
    def __call__(
        self, base_url: str, *, timeout: float = ..., max_retries: int = ...
    ) -> OpShift: ...


@pytest.fixture(params=["urllib", "keepalive"])
def make_client(request: pytest.FixtureRequest) -> MakeClient:
    """Clients for the transport under test: every fault test runs on each transport."""
    transports = TRANSPORTS

    def make(base_url: str, *, timeout: float = 30.0, max_retries: int = 2) -> OpShift:
        transport = transports[request.param]()
        return OpShift(
            SECRET,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_backoff=0,
            transport=transport,
        )

    return make


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


HTML_502 = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
HEAD_100 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(fs.drip(HEAD_100 + b"x" * 100, 0.05), id="drip-body"),
        pytest.param(fs.drip(b"HTTP/1.1 200 OK\r\n" * 20, 0.05), id="drip-status-and-headers"),
        pytest.param(fs.silent, id="never-answers"),
    ],
)
def test_slow_servers_are_bounded_by_the_whole_call_timeout(
    make_client: MakeClient, behaviour: fs.Behaviour
) -> None:
    """A server that drips or stalls cannot hold a call past its timeout."""
    error, elapsed, server = run(make_client, [behaviour], timeout=0.5, max_retries=2)
    assert isinstance(error, RequestTimeoutError)
    assert error.status_code == 0
    assert "timed out" in str(error)
    assert elapsed < 0.5 + SLACK
    assert len(server.requests) == 1  # no time left for a retry


@pytest.mark.parametrize(
    ("behaviour", "cls", "status", "text"),
    [
        pytest.param(fs.reset_after(HEAD_100 + b"x" * 10), NetworkError, 0, "closed", id="reset-mid-body"),
        pytest.param(fs.respond(HEAD_100 + b"x" * 10), NetworkError, 0, "truncated", id="cut-short"),
        pytest.param(fs.respond(b""), NetworkError, 0, "closed", id="closed-without-answer"),
        pytest.param(fs.respond(b"garbage\r\n\r\n"), NetworkError, 0, "malformed", id="not-http"),
        pytest.param(fs.endless, NetworkError, 0, "cap", id="endless-body"),
        pytest.param(
            fs.json_response(200, b'{"message": "Ping rec'), OpShiftError, 200, "not valid JSON",
            id="truncated-json",
        ),
        pytest.param(fs.json_response(200, b""), OpShiftError, 200, "empty body", id="empty-200"),
        pytest.param(
            fs.respond(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"
                % (len(HTML_502), HTML_502)
            ),
            ServerError, 502, "non-JSON", id="html-502",
        ),
        pytest.param(
            fs.respond(HEAD_100.replace(b"100", str(2 * 1024 * 1024).encode())),
            NetworkError, 0, "cap", id="declared-too-large",
        ),
    ],
)  # fmt: skip
def test_broken_responses_raise_clear_errors(
    make_client: MakeClient,
    behaviour: fs.Behaviour,
    cls: type[OpShiftError],
    status: int,
    text: str,
) -> None:
    """Each broken response is an OpShiftError with the right class, status and message."""
    error, elapsed, _ = run(make_client, [behaviour], timeout=5, max_retries=0)
    assert type(error) is cls, repr(error)
    assert error.status_code == status
    assert text in str(error)
    assert elapsed < 5 + SLACK


CHUNKED_OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (PING_OK[:30], PING_OK[30:]))
    + b"0\r\n\r\n"
)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(CHUNKED_OK, id="chunked"),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + PING_OK,
            id="http10-close-delimited",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
            % (len(PING_OK), PING_OK),
            id="interim-100",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(PING_OK), PING_OK),
            id="repeated-header",
        ),
    ],
)
def test_unusual_but_valid_responses(make_client: MakeClient, raw: bytes) -> None:
    """Valid HTTP/1.x framings all parse to the same answer on every transport."""
    with fs.FaultServer([fs.respond(raw)]) as server:
        result = make_client(server.url, max_retries=0).ping("w")
    assert result["message"] == "Ping received"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        pytest.param(CHUNKED_OK[:-20], "truncated", id="chunked-cut-short"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "malformed",
            id="bad-chunk-size",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "malformed", id="headers-cut-short"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
            "malformed",
            id="header-too-long",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 150 + b"\r\n", "malformed", id="too-many-headers"
        ),
    ],
)
def test_malformed_framing(make_client: MakeClient, raw: bytes, text: str) -> None:
    """Broken framing is a NetworkError saying the response was malformed or truncated."""
    error, _, _ = run(make_client, [fs.respond(raw)], timeout=5, max_retries=0)
    assert type(error) is NetworkError
    assert "malformed or truncated HTTP response" in str(error)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_never_followed(make_client: MakeClient, status: int) -> None:
    """A 3xx is an error naming the location; the POST is not re-sent anywhere."""
    behaviour = fs.respond(
        f"HTTP/1.1 {status} Moved\r\nLocation: https://elsewhere.example/api/ping/w\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    error, _, server = run(make_client, [behaviour, OK], max_retries=2)
    assert error.status_code == status
    assert "https://elsewhere.example/api/ping/w" in str(error)
    assert "not followed" in str(error)
    assert len(server.requests) == 1


def test_503_then_200_is_delivered_with_the_same_bytes(make_client: MakeClient) -> None:
    """A transient 503 is retried; the retry re-sends the same body and signature."""
    unavailable = fs.json_response(503, b'{"error": "Service unavailable"}', "Unavailable")
    with fs.FaultServer([unavailable, OK]) as server:
        result = make_client(server.url).ping("w", status="down", reason="r")
    assert result["pingStatus"] == "up"
    assert len(server.requests) == 2
    assert server.bodies() == [b'{"status":"down","reason":"r"}'] * 2
    signature = opshift.sign(b'{"status":"down","reason":"r"}', SECRET)
    assert server.signatures() == [signature, signature]


def test_500_three_times_fails_after_one_plus_max_retries(make_client: MakeClient) -> None:
    failing = fs.json_response(500, b'{"error": "Internal error"}', "Internal Server Error")
    error, _, server = run(make_client, [failing], max_retries=2)
    assert isinstance(error, ServerError)
    assert error.status_code == 500
    assert error.body == {"error": "Internal error"}
    assert len(server.requests) == 3


def test_reset_then_success_is_retried(make_client: MakeClient) -> None:
    """A network error is retried like a 5xx."""
    with fs.FaultServer([fs.reset_after(b""), OK]) as server:
        result = make_client(server.url).ping("w")
    assert result["message"] == "Ping received"
    assert len(server.requests) == 2


def test_4xx_is_never_retried(make_client: MakeClient) -> None:
    limited = fs.json_response(
        429, b'{"error": "Rate limit exceeded. Maximum 10 pings per minute."}'
    )
    error, _, server = run(make_client, [limited, OK], max_retries=5)
    assert error.status_code == 429
    assert len(server.requests) == 1


def test_retries_stop_at_the_deadline(make_client: MakeClient) -> None:
    """With a slow 503 and a short timeout, retries stop when no room is left."""
    slow_503 = fs.drip(b"HTTP/1.1 503 X\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 0.01)
    error, elapsed, server = run(make_client, [slow_503], timeout=1.0, max_retries=100)
    assert error.status_code in (0, 503)
    assert elapsed < 1.0 + SLACK
    assert len(server.requests) < 100


def test_https_with_an_untrusted_certificate_fails_verification(
    make_client: MakeClient, certificate: Certificate
) -> None:
    """TLS verification is on: a self-signed server is a NetworkError naming TLS."""
    with OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context()) as srv:
        client = make_client(srv.url, max_retries=0)
        with pytest.raises(NetworkError) as caught:
            client.ping("w")
    assert srv.url.startswith("https://")
    assert "TLS" in str(caught.value)
    assert "ssl_context" in str(caught.value)


def test_https_with_a_custom_ca_via_ssl_context(certificate: Certificate) -> None:
    """ssl_context trusts a private CA; the signed ping arrives over TLS."""
    with OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context()) as srv:
        transport = UrllibTransport(ssl_context=certificate.client_context())
        result = OpShift(SECRET, base_url=srv.url, transport=transport).ping("w", status="up")
    assert result["pingStatus"] == "up"
    assert srv.requests[0].signature_valid


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
def test_transport_returns_4xx_and_5xx_as_values(name: str) -> None:
    """The transport itself returns every status; the client decides what is an error."""
    body = b'{"error": "Ping token not found"}'
    with fs.FaultServer([fs.json_response(404, body, "Not Found")]) as server:
        status, data = TRANSPORTS[name]()(server.url + "/api/ping/x", b"", {}, 5.0)
    assert (status, data) == (404, body)


def _exceptions() -> list[object]:
    refused = ConnectionRefusedError(111, "Connection refused")
    return [
        pytest.param(socket.timeout("timed out"), RequestTimeoutError, "timed out", id="socket-timeout"),
        pytest.param(TimeoutError("timed out"), RequestTimeoutError, "timed out", id="timeout"),
        pytest.param(urllib.error.URLError(refused), NetworkError, "refused", id="urlerror-refused"),
        pytest.param(urllib.error.URLError(socket.timeout("t")), RequestTimeoutError, "timed out", id="urlerror-timeout"),
        pytest.param(socket.gaierror(-2, "Name or service not known"), NetworkError, "resolve", id="dns"),
        pytest.param(ConnectionResetError(104, "reset"), NetworkError, "closed", id="reset"),
        pytest.param(http.client.RemoteDisconnected("closed"), NetworkError, "closed", id="remote-disconnected"),
        pytest.param(http.client.IncompleteRead(b"ab", 10), NetworkError, "truncated", id="incomplete"),
        pytest.param(http.client.BadStatusLine("xx"), NetworkError, "malformed", id="bad-status"),
        pytest.param(ssl.SSLCertVerificationError("bad cert"), NetworkError, "TLS", id="ssl"),
        pytest.param(OSError(101, "Network is unreachable"), NetworkError, "network", id="oserror"),
        pytest.param(ValueError("bug"), OpShiftError, "transport raised ValueError", id="other"),
    ]  # fmt: skip


@pytest.mark.parametrize(("exc", "cls", "text"), _exceptions())
def test_translate_exception_maps_each_low_level_failure(
    exc: BaseException, cls: type[OpShiftError], text: str
) -> None:
    """Every low-level failure maps to the right class, status 0, in one place."""
    error = translate_exception(exc, "https://www.opshift.io/api/ping/w", 30.0)
    assert type(error) is cls
    assert error.status_code == 0
    assert text in str(error)
    assert "POST https://www.opshift.io/api/ping/w" in str(error)
