"""An id that is really a URL: the dashboard shows URLs, so users paste them. The SDK takes
the id out of a URL for the same endpoint and base_url, refuses anything else that looks
like a URL or path before sending, and the local server refuses one that gets through."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

import opshift
from opshift.testing import OpShiftServer

from .helpers import SECRET


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
