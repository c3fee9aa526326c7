"""An id that is really a URL: the dashboard shows URLs, so users paste them. The SDK takes
the id out of a URL for the same endpoint and base_url, refuses anything else that looks
like a URL or path before sending, and the local server refuses one that gets through."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Callable

import pytest

import opshift
from opshift import BadRequestError, ConfigurationError, OpShift, Outbox
from opshift.testing import FakeTransport, OpShiftServer

from .helpers import PING_OK, SECRET, Env


@pytest.mark.parametrize(
    ("path", "what"),
    [
        pytest.param("/api/ping/https%3A%2F%2Fwww.opshift.io%2Fapi%2Fping%2Fw", "Ping token", id="ping"),
        pytest.param("/api/alerts/trigger/a%2Fb", "Webhook", id="alert-slash"),
        pytest.param("/api/alerts/trigger/deploy%3Fx%3D1", "Webhook", id="alert-query"),
        pytest.param("/api/alerts/trigger/deploy%23top", "Webhook", id="alert-fragment"),
    ],
)  # fmt: skip
def test_the_local_server_refuses_an_id_that_is_a_url_even_with_auto_create(
    path: str, what: str
) -> None:
    """A URL-shaped id gets 404 naming the mistake; auto-create makes no monitor of it."""
    body = b'{"title":"t"}' if "alerts" in path else b""
    with OpShiftServer(SECRET, auto_create=True) as server:
        request = urllib.request.Request(
            server.url + path,
            data=body,
            method="POST",
            headers={"X-Webhook-Signature": opshift.sign(body, SECRET)},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 404
        error = json.loads(caught.value.read())["error"]
        assert error.startswith(f"{what} not found")
        assert "pass the id alone" in error
        assert server.monitors == {} and server.model.webhooks == {}


@pytest.mark.parametrize("kind", ["ping", "alert"])
def test_a_url_for_the_endpoint_on_base_url_sends_to_its_id(env: Env, kind: str) -> None:
    """The dashboard's full URL works as the id: the request goes to the id's own path."""
    base = env.client.base_url
    if kind == "ping":
        env.client.ping(f"{base}/api/ping/payments-worker")
        expected = "/api/ping/payments-worker"
    else:
        env.client.alert(f"{base}/api/alerts/trigger/deploy-failures", title="t")
        expected = "/api/alerts/trigger/deploy-failures"
    assert [r.path for r in env.backend.requests] == [expected]


def test_a_url_on_a_self_hosted_prefix_is_understood() -> None:
    """base_url with a path prefix: the URL must carry the prefix, and its id is used."""
    sent: list[str] = []

    def transport(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        sent.append(url)
        return 200, PING_OK

    client = OpShift(SECRET, base_url="https://ops.example/opshift", transport=transport)
    client.ping("https://ops.example/opshift/api/ping/nightly%20job")
    assert sent == ["https://ops.example/opshift/api/ping/nightly%20job"]
    with pytest.raises(ConfigurationError, match="not under this client's base_url"):
        client.ping("https://ops.example/api/ping/nightly")
    assert len(sent) == 1


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://www.opshift.io/api/alerts/trigger/deploy-failures", id="other-host"),
        pytest.param("http://127.0.0.1:1/api/alerts/trigger/deploy-failures", id="other-port"),
    ],
)
def test_a_url_for_another_server_is_a_configuration_error_naming_both(url: str) -> None:
    """The URL's server is not base_url's: ConfigurationError naming both, nothing sent."""
    fake = FakeTransport(SECRET, auto_create=True)
    client = OpShift(SECRET, base_url="http://127.0.0.1:8000", transport=fake)
    with pytest.raises(ConfigurationError) as caught:
        client.alert(url, title="t")
    assert url in str(caught.value) and "http://127.0.0.1:8000" in str(caught.value)
    assert fake.requests == []


@pytest.mark.parametrize(
    ("call", "text"),
    [
        pytest.param(lambda c: c.ping("a/b"), "ping_token must be the id alone", id="slash"),
        pytest.param(lambda c: c.ping("x?y=1"), "ping_token must be the id alone", id="query"),
        pytest.param(lambda c: c.alert("frag#ment", title="t"), "webhook_url must be the id alone", id="fragment"),
        pytest.param(lambda c: c.alert(f"{c.base_url}/api/ping/w", title="t"), "is not a URL for this endpoint", id="ping-url-for-alert"),
        pytest.param(lambda c: c.ping(f"{c.base_url}/api/ping/w?x=1"), "with no query or fragment", id="url-with-query"),
        pytest.param(lambda c: c.ping(f"{c.base_url}/api/ping/"), "must end with the id", id="url-without-id"),
        pytest.param(lambda c: c.ping("ftp://host/api/ping/w"), "must be the id alone", id="ftp"),
    ],
)  # fmt: skip
def test_anything_else_that_looks_like_a_url_is_refused_before_sending(
    call: Callable[[OpShift], object], text: str
) -> None:
    """A path, query or foreign URL as the id: BadRequestError with the expected form."""
    fake = FakeTransport(SECRET, auto_create=True)
    client = OpShift(SECRET, transport=fake)
    with pytest.raises(BadRequestError, match=text) as caught:
        call(client)
    assert "https://www.opshift.io/api/" in str(caught.value)  # the expected form
    assert fake.requests == []


def test_the_outbox_takes_the_url_too() -> None:
    """The outbox goes through the same check: a URL's id is queued and sent."""
    fake = FakeTransport(SECRET, auto_create=True)
    client = OpShift(SECRET, transport=fake)
    with Outbox(client, background=False) as outbox:
        outbox.ping(f"{client.base_url}/api/ping/nightly")
        with pytest.raises(BadRequestError):
            outbox.alert("a/b", title="t")
        assert outbox.flush(5)
    assert [r.path for r in fake.requests] == ["/api/ping/nightly"]


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        pytest.param("https://www.opshift.io/api/ping/pay\tments", BadRequestError, "space or control character", id="tab"),
        pytest.param("https://www.opshift.io/api/ping/pay\r\nments", BadRequestError, "space or control character", id="crlf"),
        pytest.param("https://www.opshift.io/api/ping/%FF", BadRequestError, "not UTF-8", id="bad-escape"),
        pytest.param("https://other.example/prefix/api/ping/x", ConfigurationError, "not under this client's base_url", id="other-server-with-prefix"),
        pytest.param("https://user:pw@www.opshift.io/api/ping/x", BadRequestError, "must not contain a user or password", id="credentials"),
        pytest.param("https://www.opshift.io/api/ping/a%2Fb", BadRequestError, "which is not an id", id="escaped-slash"),
        pytest.param("https://www.opshift.io/api/ping/a%3Fb", BadRequestError, "which is not an id", id="escaped-query"),
        pytest.param("https://www.opshift.io/api/ping/a%23b", BadRequestError, "which is not an id", id="escaped-fragment"),
        pytest.param("https://www.opshift.io/api/ping/a%0Ab", BadRequestError, "which is not an id", id="escaped-newline"),
    ],
)  # fmt: skip
def test_a_url_that_would_change_or_leak_is_refused(
    value: str, error: type[Exception], text: str
) -> None:
    """A URL whose id would change unseen, or that carries credentials, is refused unsent."""
    fake = FakeTransport(SECRET, auto_create=True)
    with pytest.raises(error, match=text) as caught:
        OpShift(SECRET, transport=fake).ping(value)
    assert "pw" not in str(caught.value)
    assert fake.requests == []
