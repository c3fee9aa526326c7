"""Proxies from the environment, as urllib finds them: tunnels, plain forwarding, NO_PROXY,
and a proxy's refusal named as the proxy's, never retried, never showing its password.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping

import pytest

import opshift
from opshift import (
    AuthenticationError,
    ConfigurationError,
    KeepAliveTransport,
    NetworkError,
    OpShift,
    ProxyAuthenticationError,
    RequestTimeoutError,
    ServerError,
)
from opshift.testing import OpShiftServer
from opshift.transport._connection import HTTPConnection

from .. import faultserver as fs
from ..helpers import (
    SECRET,
    TRANSPORTS,
    Certificate,
    MakeClient,
    refused_url,
    run,
)
from ..proxyserver import ProxyServer


def test_proxy_url_without_a_port_goes_where_urllib_sends_it(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    """Both transports reach a portless proxy on the same port: the target scheme's."""
    tried: list[tuple[str, object]] = []

    def getaddrinfo(host: str, port: object, *args: object, **kwargs: object) -> list[object]:
        tried.append((host, port))
        raise socket.gaierror(socket.EAI_NONAME, "not looked up in tests")

    no_proxy_env.setattr(socket, "getaddrinfo", getaddrinfo)
    no_proxy_env.setenv("HTTPS_PROXY", "http://proxy.invalid")
    no_proxy_env.setenv("HTTP_PROXY", "http://proxy.invalid")
    for base_url in ("https://www.opshift.io", "http://ops.example"):
        for name in sorted(TRANSPORTS):
            client = OpShift(SECRET, base_url=base_url, transport=TRANSPORTS[name](), max_retries=0)
            with pytest.raises(NetworkError):
                client.ping("w")
    assert tried == [("proxy.invalid", 443)] * 2 + [("proxy.invalid", 80)] * 2


# -- 407: the proxy's credentials, named and never retried -----------------------------

PROXY_407 = (
    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
    b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n\r\n'
)


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_a_407_to_connect_is_one_proxy_authentication_error(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch, variable: str
) -> None:
    """A 407 to CONNECT names the proxy and its variable, never its password, once."""
    with ProxyServer(answer=PROXY_407) as proxy:
        no_proxy_env.setenv(variable, proxy.url.replace("://", "://alice:s3cret-pw@"))
        client = OpShift(SECRET, transport=TRANSPORTS[transport_name](), retry_backoff=0)
        with pytest.raises(ProxyAuthenticationError) as caught:
            client.ping("w")
    assert len(proxy.seen) == 1  # one CONNECT per call: a 407 is never retried
    assert proxy.seen[0][1] == "Basic YWxpY2U6czNjcmV0LXB3"
    error = caught.value
    assert error.status_code == 407
    assert proxy.url[len("http://") :] in str(error)
    assert f"({variable})" in str(error)
    assert "s3cret-pw" not in str(error)
    assert "alice" not in str(error)


def test_a_401_to_connect_is_a_proxy_authentication_error_too(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """tinyproxy answers CONNECT with 401, not 407: still the proxy's credentials, once."""
    unauthorized = (
        b"HTTP/1.0 401 Unauthorized\r\nServer: tinyproxy/1.11.1\r\n"
        b'WWW-Authenticate: Basic realm="Tinyproxy"\r\nConnection: close\r\n\r\n<html></html>'
    )
    with ProxyServer(answer=unauthorized) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url.replace("://", "://alice:wrong@"))
        client = OpShift(SECRET, transport=TRANSPORTS[transport_name](), retry_backoff=0)
        with pytest.raises(ProxyAuthenticationError) as caught:
            client.ping("w")
    assert len(proxy.seen) == 1
    assert caught.value.status_code == 401
    assert "HTTPS_PROXY" in str(caught.value)


TINYPROXY_401 = (
    b"HTTP/1.0 401 Unauthorized\r\nServer: tinyproxy/1.11.1\r\nContent-Type: text/html\r\n"
    b'WWW-Authenticate: Basic realm="Tinyproxy"\r\nConnection: close\r\n\r\n<html></html>'
)


@pytest.mark.parametrize(
    ("answer", "status", "variable"),
    [
        pytest.param(PROXY_407, 407, "HTTP_PROXY", id="407"),
        pytest.param(PROXY_407, 407, "http_proxy", id="407-lowercase-variable"),
        pytest.param(TINYPROXY_401, 401, "HTTP_PROXY", id="tinyproxy-html-401"),
    ],
)
def test_a_proxys_refusal_of_a_plain_http_request_is_about_its_credentials(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch, answer: bytes, status: int, variable: str
) -> None:
    """Through a proxy to an http:// base URL, its 407 (or HTML 401) names the proxy."""
    with ProxyServer(answer=answer) as proxy:
        no_proxy_env.setenv(variable, proxy.url.replace("://", "://alice:s3cret-pw@"))
        client = OpShift(
            SECRET, base_url="http://ops.example", transport=TRANSPORTS[transport_name]()
        )
        with pytest.raises(ProxyAuthenticationError) as caught:
            client.ping("w")
    assert len(proxy.seen) == 1
    assert caught.value.status_code == status
    assert proxy.url[len("http://") :] in str(caught.value)
    assert f"({variable})" in str(caught.value)
    assert "OPSHIFT_SECRET" not in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


def test_a_proxys_own_5xx_page_names_the_proxy_and_is_retried(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """A proxy's HTML 502 to a forwarded request names it and its variable, and is retried."""
    page = b"<html><body>upstream connect error</body></html>"
    answer = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
    with ProxyServer(answer=answer % len(page) + b"Connection: close\r\n\r\n" + page) as proxy:
        no_proxy_env.setenv("http_proxy", proxy.url.replace("://", "://alice:s3cret-pw@"))
        client = OpShift(
            SECRET,
            base_url="http://ops.example",
            transport=TRANSPORTS[transport_name](),
            max_retries=1,
            retry_backoff=0,
        )
        with pytest.raises(ServerError) as caught:
            client.ping("w")
    assert len(proxy.seen) == 2  # retried, as OpShift's own 502 would be
    text = str(caught.value)
    assert caught.value.status_code == 502
    assert f"through the proxy {proxy.url[len('http://') :]} (from http_proxy)" in text
    assert "upstream connect error" in text
    assert "s3cret-pw" not in text and "alice" not in text


def test_opshifts_own_401_through_a_proxy_is_about_the_secret(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """A JSON 401 that came through the proxy is OpShift's: check OPSHIFT_SECRET."""
    body = b'{"error": "Invalid webhook signature"}'
    answer = b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
    answer += b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    with ProxyServer(answer=answer) as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        client = OpShift(
            SECRET, base_url="http://ops.example", transport=TRANSPORTS[transport_name]()
        )
        with pytest.raises(AuthenticationError) as caught:
            client.ping("w")
    assert "OPSHIFT_SECRET" in str(caught.value)


def test_a_407_without_a_proxy_is_still_about_proxy_credentials(
    make_client: MakeClient, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """With no proxy configured, a 407 (from a proxy we cannot see) is not retried either."""
    error, _, server = run(make_client, [fs.respond(PROXY_407)], max_retries=2)
    assert type(error) is ProxyAuthenticationError
    assert error.status_code == 407
    assert "HTTPS_PROXY" in str(error)
    assert len(server.requests) == 1


# -- proxies from the environment ---------------------------------------------------------


def test_http_proxy_from_environment(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch, server: OpShiftServer
) -> None:
    """Plain http goes through HTTP_PROXY in absolute form, with its credentials."""
    with ProxyServer() as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://alice:s3cret@"))
        client = OpShift(SECRET, base_url=server.url, transport=TRANSPORTS[transport_name]())
        assert client.ping("payments-worker")["pingStatus"] == "up"
    line, auth = proxy.seen[0]
    assert line == f"POST {server.url}/api/ping/payments-worker HTTP/1.1"
    assert auth == "Basic YWxpY2U6czNjcmV0"
    assert server.requests[0].signature_valid


def test_a_proxy_set_after_an_outbox_is_built_is_still_used(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch, server: OpShiftServer
) -> None:
    """The proxy variables are read at the first send, not when an Outbox warms its transport."""
    client = OpShift(SECRET, base_url=server.url, transport=TRANSPORTS[transport_name]())
    outbox = opshift.Outbox(client, exit_timeout=0)  # a sender thread: it warms the transport
    with ProxyServer() as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)  # set later in the application's start
        outbox.alert("h", title="through the proxy")
        assert outbox.flush(10) is True
    outbox.close(0)
    assert proxy.seen[0][0] == f"POST {server.url}/api/alerts/trigger/h HTTP/1.1"


def test_https_proxy_tunnels_with_connect(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch, certificate: Certificate
) -> None:
    """HTTPS through a proxy uses a CONNECT tunnel; TLS is still verified end to end."""
    with (
        ProxyServer() as proxy,
        OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context()) as srv,
    ):
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://alice:s3cret@"))
        transport = TRANSPORTS[transport_name](ssl_context=certificate.client_context())
        client = OpShift(SECRET, base_url=srv.url, transport=transport)
        assert client.alert("h", title="through the tunnel")["status"] == "created"
        assert client.alert("h", title="and again")["status"] == "created"
    host_port = srv.url[len("https://") :]
    assert proxy.seen[0] == (f"CONNECT {host_port} HTTP/1.1", "Basic YWxpY2U6czNjcmV0")
    assert all(r.signature_valid for r in srv.requests)
    sent = {name.lower() for name in srv.requests[0].headers}
    assert "proxy-authorization" not in sent  # only the proxy sees it


def test_no_proxy_bypasses_the_proxy(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch, server: OpShiftServer
) -> None:
    """A host in NO_PROXY is reached directly, however HTTP_PROXY is set."""
    no_proxy_env.setenv("HTTP_PROXY", refused_url())  # would be refused
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    client = OpShift(SECRET, base_url=server.url, transport=TRANSPORTS[transport_name]())
    assert client.ping("payments-worker")["pingStatus"] == "up"


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
def test_a_malformed_proxy_url_never_shows_its_password(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib's own error quotes the whole proxy URL; ours names the variable only."""
    for variable in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, "http:/alice:S3CRET-PW@proxy.corp:3128")
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    client = OpShift(SECRET, base_url="http://opshift.example", transport=TRANSPORTS[name]())
    with pytest.raises(ConfigurationError) as caught:
        client.ping("w")
    assert "HTTP_PROXY" in str(caught.value)
    assert "S3CRET" not in str(caught.value)
    assert "S3CRET" not in repr(caught.value.__cause__)


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
def test_a_proxy_with_a_bad_port_is_a_configuration_error(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-numeric proxy port is a setting to fix, not a network fault to retry."""
    for variable in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, "http://proxy.corp:31x8")
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    transport: opshift.Transport = TRANSPORTS[name]()
    calls = 0

    def counting(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        nonlocal calls
        calls += 1
        return transport(url, body, headers, timeout)

    with pytest.raises(ConfigurationError, match="HTTP_PROXY"):
        OpShift(SECRET, base_url="http://opshift.example", transport=counting).ping("w")
    assert calls == 1  # never retried


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_failure_through_a_proxy_names_the_proxy_and_its_variable(
    transport_name: str, scheme: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """A refused proxy is named, with the variable that set it and never its password."""
    proxy = refused_url().replace("http://", "http://alice:S3CRET@")
    variable = f"{scheme.upper()}_PROXY"
    no_proxy_env.setenv(variable, proxy)
    client = OpShift(
        SECRET,
        base_url=f"{scheme}://opshift.invalid",  # never resolved: the proxy is asked first
        transport=TRANSPORTS[transport_name](),
        max_retries=0,
    )
    with pytest.raises(NetworkError) as caught:
        client.ping("w")
    text = str(caught.value)
    hostport = proxy.rsplit("@", 1)[1]
    assert f"through the proxy {hostport} (from {variable})" in text
    assert "Is the proxy running?" in text
    assert "Is OpShift reachable" not in text
    assert "S3CRET" not in text and "alice" not in text


def test_a_timeout_through_a_proxy_names_the_proxy(no_proxy_env: pytest.MonkeyPatch) -> None:
    """A proxy that never answers CONNECT: the timeout names the proxy it went through."""
    with ProxyServer(answer=b"HTTP/1.1 200 Connection established\r\n", drip=1.0) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        client = OpShift(
            SECRET, base_url="https://opshift.invalid", timeout=0.3, max_retries=0,
            transport=KeepAliveTransport(),
        )  # fmt: skip
        with pytest.raises(RequestTimeoutError) as caught:
            client.ping("w")
    assert f"through the proxy {proxy.url[len('http://') :]} (from HTTPS_PROXY)" in str(
        caught.value
    )


SMUGGLING_HOST = "a.example%3A443%20HTTP%2F1.1%0D%0AHost%3A%20a%0D%0A%0D%0AGET%20%2Fx%20HTTP%2F1.1"


def test_an_escaped_line_break_in_the_host_never_splits_a_connect(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """%0D%0A in a URL's host (urllib un-escapes it) is refused before the proxy sees a byte."""
    with fs.FaultServer([fs.respond(b"HTTP/1.1 200 Connection established\r\n\r\n")]) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        transport = TRANSPORTS[transport_name]()
        with pytest.raises(ConfigurationError, match="escaped space or control character"):
            transport(f"https://{SMUGGLING_HOST}/api/ping/x", b"{}", {"Host": "a"}, 3.0)
    assert proxy.connections == 0


def test_the_connect_request_itself_refuses_a_control_character() -> None:
    """However a tunnel host got there, a CONNECT line with CR or LF is never written."""
    with fs.FaultServer([fs.respond(b"HTTP/1.1 200 Connection established\r\n\r\n")]) as proxy:
        conn = HTTPConnection("127.0.0.1", proxy.port, deadline=time.monotonic() + 5)
        conn.set_tunnel("a.example\r\nX-Smuggled: 1", 443)
        try:
            with pytest.raises(ConfigurationError, match="CONNECT request"):
                conn.connect()
        finally:
            conn.close()
    assert proxy.requests == []


def test_a_base_url_with_an_escaped_control_character_is_refused() -> None:
    """base_url's host with %0D%0A fails at construction, not in the transport."""
    with pytest.raises(ConfigurationError, match="control characters"):
        OpShift(SECRET, base_url=f"https://{SMUGGLING_HOST}")


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "HTTP_PROXY"])
def test_a_password_with_an_unescaped_at_and_slash_is_refused_unseen(
    transport_name: str, variable: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """u:pw@piece/x@proxy: urllib would connect to a piece of the password; refused unseen."""
    no_proxy_env.setenv(variable, "http://userx:pw@hunter2/x@proxy.corp:3128")
    scheme = "https" if variable == "HTTPS_PROXY" else "http"
    transport = TRANSPORTS[transport_name]()
    with pytest.raises(ConfigurationError) as caught:
        transport(f"{scheme}://opshift.invalid/api/ping/w", b"", {}, 3.0)
    text = str(caught.value)
    assert variable in text and "%40" in text
    assert "hunter2" not in text and "userx" not in text
