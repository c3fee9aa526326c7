"""The rest of the wire contract on both transports: the deadline bounds connecting,
CONNECT and TLS; redirects are never followed; retries follow the policy; settings are
checked; every low-level failure maps to one OpShiftError.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error

import pytest

import opshift
from opshift import (
    ConfigurationError,
    KeepAliveTransport,
    NetworkError,
    OpShift,
    OpShiftError,
    RequestTimeoutError,
    ServerError,
    UrllibTransport,
)
from opshift.testing import OpShiftServer
from opshift.transport import translate_exception

from .. import faultserver as fs
from ..helpers import (
    OK,
    PING_OK,
    SECRET,
    SLACK,
    TRANSPORTS,
    Certificate,
    MakeClient,
    run,
)
from ..proxyserver import ProxyServer

# -- the deadline bounds connecting, CONNECT and the TLS handshake ---------------------


def test_each_resolved_address_gets_only_the_time_left(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty addresses that never answer cannot stretch the call past its timeout."""
    with fs.blackhole() as address:
        if address is None:
            pytest.skip("this platform answers connects to a full backlog")
        answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", address)] * 20
        monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            make_client("http://ops.example", timeout=0.3, max_retries=0).ping("w")
        elapsed = time.monotonic() - started
    assert elapsed < 0.3 + SLACK  # create_connection would take 20 x 0.3 s


def test_a_dripping_connect_answer_is_bounded_by_the_timeout(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """A proxy that drips its CONNECT answer cannot stretch timeout=0.3."""
    established = b"HTTP/1.1 200 Connection established\r\nX-Pad: " + b"x" * 300 + b"\r\n\r\n"
    with ProxyServer(answer=established, drip=0.02) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        transport = TRANSPORTS[transport_name]()
        client = OpShift(SECRET, transport=transport, timeout=0.3, max_retries=0)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            client.ping("w")
        elapsed = time.monotonic() - started
    assert elapsed < 0.3 + SLACK  # 330 bytes at 20 ms each: 6.6 s per socket operation


def test_a_dripping_tls_handshake_is_bounded_by_the_timeout(
    transport_name: str, certificate: Certificate
) -> None:
    """A server that drips its TLS handshake cannot stretch timeout=0.3."""
    server = OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context())
    with server as srv, fs.DripRelay(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])), 0.02) as relay:
        transport = TRANSPORTS[transport_name](ssl_context=certificate.client_context())
        url = f"https://127.0.0.1:{relay.port}"
        client = OpShift(SECRET, base_url=url, transport=transport, timeout=0.3, max_retries=0)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            client.ping("w")
        elapsed = time.monotonic() - started
    assert elapsed < 0.3 + SLACK


# -- the rest of the contract --------------------------------------------------------------


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
    """A persistent 500 is tried 1 + max_retries times, then raised with its body."""
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
    """A 429 is raised at once, however many retries are allowed."""
    limited = fs.json_response(
        429, b'{"error": "Rate limit exceeded. Maximum 10 pings per minute."}'
    )
    error, _, server = run(make_client, [limited, OK], max_retries=5)
    assert error.status_code == 429
    assert len(server.requests) == 1


def test_retries_stop_at_the_deadline(make_client: MakeClient) -> None:
    """With a slow 503 and a short timeout, retries stop when no room is left."""
    slow_503 = fs.drip(b"HTTP/1.1 503 X\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 0.002)
    error, elapsed, server = run(make_client, [slow_503], timeout=0.3, max_retries=100)
    assert error.status_code in (0, 503)
    assert elapsed < 0.3 + SLACK
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


def test_https_with_a_custom_ca_via_ssl_context(
    transport_name: str, certificate: Certificate
) -> None:
    """ssl_context trusts a private CA; the signed ping arrives over TLS."""
    with OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context()) as srv:
        transport = TRANSPORTS[transport_name](ssl_context=certificate.client_context())
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


# -- construction, settings and the exception mapping ---------------------------------------


def test_transports_share_one_default_tls_context_built_on_first_https_call(
    certificate: Certificate,
) -> None:
    """The system's CAs load once per process, on the first https call, for all transports."""
    probe = (
        "import json, ssl, sys\n"
        "import opshift\n"
        "from opshift.testing import OpShiftServer\n"
        "built = []\n"
        "real = ssl.create_default_context\n"
        "def counting(*args, **kwargs):\n"
        "    built.append(real(*args, **kwargs))\n"
        "    return built[-1]\n"
        "ssl.create_default_context = counting\n"
        "keepalive = opshift.KeepAliveTransport()\n"
        "transports = [opshift.UrllibTransport(), keepalive, opshift.UrllibTransport()]\n"
        "before = len(built)\n"
        "server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
        f"server_context.load_cert_chain({certificate.cert!r}, {certificate.key!r})\n"
        "failures = []\n"
        "with OpShiftServer('ab' * 32, auto_create=True, ssl_context=server_context) as srv:\n"
        "    for transport in transports * 2:\n"
        "        try:\n"
        "            transport(srv.url + '/api/ping/w', b'', {}, 5.0)\n"
        "        except opshift.NetworkError as exc:\n"
        "            failures.append('TLS' in str(exc))\n"
        "keepalive.close()\n"
        "print(json.dumps([before, len(built), failures]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    before, after, failures = json.loads(out.stdout)
    assert before == 0  # nothing loaded before the first https call
    assert failures == [True] * 6  # the system's CAs do not trust the test certificate
    assert after == 1


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"max_idle_connections": -1}, id="negative-pool"),
        pytest.param({"max_idle_connections": True}, id="bool-pool"),
        pytest.param({"max_idle_connections": 2.5}, id="float-pool"),
        pytest.param({"max_idle_seconds": 0}, id="zero-idle"),
        pytest.param({"max_idle_seconds": float("nan")}, id="nan-idle"),
        pytest.param({"max_idle_seconds": float("inf")}, id="inf-idle"),
        pytest.param({"max_idle_seconds": "30"}, id="str-idle"),
        pytest.param({"ssl_context": "/etc/ssl/cert.pem"}, id="path-as-context"),
    ],
)
def test_transport_settings_are_checked(options: dict[str, object]) -> None:
    """A bad transport setting is a ConfigurationError naming it, at construction."""
    with pytest.raises(ConfigurationError) as caught:
        KeepAliveTransport(**options)  # type: ignore[arg-type]
    assert next(iter(options)) in str(caught.value)
    if "ssl_context" in options:
        with pytest.raises(ConfigurationError):
            UrllibTransport(**options)  # type: ignore[arg-type]


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


def test_a_malformed_header_line_never_hides_the_framing(make_client: MakeClient) -> None:
    """A malformed header line, which would hide Content-Length, is refused."""
    answer = b"HTTP/1.1 200 OK\r\nX-Bad : 1\r\nContent-Length: %d\r\n\r\n%s" % (
        len(PING_OK),
        PING_OK,
    )
    error, elapsed, _ = run(make_client, [fs.respond(answer)], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "malformed header line" in str(error)
    assert elapsed < 5


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"Transfer-Encoding": "chunked"}, id="transfer-encoding"),
        pytest.param({"Connection": "close"}, id="connection"),
        pytest.param({"Content-Length": "99"}, id="wrong-content-length"),
    ],
)
def test_a_callers_framing_headers_never_reach_the_wire(name: str, header: dict[str, str]) -> None:
    """A caller's Transfer-Encoding, Connection or wrong Content-Length is refused."""
    transport: opshift.Transport = TRANSPORTS[name]()
    with (
        fs.FaultServer([OK]) as server,
        pytest.raises(ConfigurationError, match="contradict how the transport frames"),
    ):
        transport(server.url + "/api/ping/w", b"{}", header, 5.0)
    assert server.requests == []
