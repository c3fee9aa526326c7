"""The client contract, run against FakeTransport and UrllibTransport over loopback HTTP."""

from __future__ import annotations

import asyncio
import pickle
import sys
from collections.abc import Mapping

import pytest

import opshift
import opshift.transport
from opshift import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NetworkError,
    NotFoundError,
    OpShift,
    OpShiftError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from opshift.testing import OpShiftServer

from .helpers import (
    ALERT_EXAMPLE,
    OTHER_SECRET,
    PING_EXAMPLE,
    SECRET,
    Env,
    fan_out,
    refused_url,
)


def test_ping_sends_the_docs_example_byte_exact(env: Env) -> None:
    """The docs' ping body goes over the wire byte for byte, with its openssl signature."""
    result = env.client.ping(
        "payments-worker", status="up", metadata={"batch": 1247, "durationMs": 832}
    )
    sent = env.backend.requests[-1]
    assert sent.method == "POST"
    assert sent.path == "/api/ping/payments-worker"
    assert sent.body == PING_EXAMPLE
    assert sent.signature == "0e975f72954be934fea48ba6e70580beb7dfab295b1fc0d9f818314ab019c1c9"
    assert sent.signature_valid
    assert result == {
        "message": "First ping received \u2014 monitoring started",
        "monitor": {"name": "Payments worker", "status": "up", "monitoringActive": True},
        "pingStatus": "up",
    }


def test_ping_with_no_fields_sends_a_signed_empty_body(env: Env) -> None:
    """A bare ping has an empty body signed as the HMAC of the empty string."""
    env.client.ping("payments-worker")
    sent = env.backend.requests[-1]
    assert sent.body == b""
    assert sent.signature == "294a3c92fda7d1b6abc158feebc6d72c23a606c62e82af75f4799f15432e2592"
    assert sent.signature_valid


def test_alert_sends_the_docs_example_byte_exact(env: Env) -> None:
    """The docs' alert body goes over the wire byte for byte, with its openssl signature."""
    env.backend.add_webhook("deploy-failures")
    result = env.client.alert(
        "deploy-failures",
        title="Deploy failed: api-gateway",
        description="Migration step exited with code 137",
        severity="sev1",
        metadata={"commit": "a1b2c3", "environment": "production"},
        group_key="deploy:api-gateway",
    )
    sent = env.backend.requests[-1]
    assert sent.path == "/api/alerts/trigger/deploy-failures"
    assert sent.body == ALERT_EXAMPLE
    assert sent.signature == "c047deaa58f9d6a4bb7a6fac8ac082b8fe3e7287716bd68437cfb44db3a8cd98"
    assert result["status"] == "created"
    assert result["occurrenceCount"] == 1
    assert result["message"] == "Alert created"
    assert len(result["alertId"]) == 24


def test_only_given_fields_are_sent(env: Env) -> None:
    """No nulls: omitted options are absent from the body, not null."""
    env.client.ping("payments-worker", reason="nightly")
    env.client.alert("deploy-failures", title="t")
    assert env.backend.requests[0].body == b'{"reason":"nightly"}'
    assert env.backend.requests[1].body == b'{"title":"t"}'


def test_headers(env: Env) -> None:
    """Content-Type is JSON and the User-Agent names the SDK and Python versions."""
    env.client.ping("payments-worker", status="up")
    headers = {k.lower(): v for k, v in env.backend.requests[-1].headers.items()}
    assert headers["content-type"] == "application/json"
    python = "{}.{}.{}".format(*sys.version_info[:3])
    assert headers["user-agent"] == f"opshift-python/{opshift.__version__} (python {python})"


def test_non_ascii_text_is_sent_as_utf8(env: Env) -> None:
    """Non-ASCII text goes on the wire as UTF-8, not \\u escapes, and signs correctly."""
    env.client.alert("deploy-failures", title="Déploiement échoué \u2014 api")
    assert env.backend.requests[-1].body == '{"title":"Déploiement échoué \u2014 api"}'.encode()
    assert env.backend.requests[-1].signature_valid


def test_ping_messages_follow_the_monitor_lifecycle(env: Env) -> None:
    """First ping starts monitoring; later pings are received; after a resume it restarts."""
    first = env.client.ping("payments-worker")
    second = env.client.ping("payments-worker", status="down", reason="stripe-timeout")
    env.backend.pause("payments-worker")
    with pytest.raises(NotFoundError) as paused:
        env.client.ping("payments-worker")
    env.backend.resume("payments-worker")
    third = env.client.ping("payments-worker")
    assert first["message"] == "First ping received \u2014 monitoring started"
    assert second["message"] == "Ping received"
    assert second["monitor"]["status"] == "down"
    assert second["pingStatus"] == "down"
    assert paused.value.status_code == 404
    assert paused.value.body == {"error": "Monitor is paused"}
    assert third["message"] == "Ping received \u2014 monitoring restarted"
    assert third["monitor"] == {"name": "Payments worker", "status": "up", "monitoringActive": True}


def test_alert_outcomes(env: Env) -> None:
    """created, then occurrence_added for the same group key, then reopened after resolve."""
    created = env.client.alert("deploy-failures", title="Deploy failed", group_key="deploy:api")
    again = env.client.alert("deploy-failures", title="Deploy failed", group_key="deploy:api")
    env.backend.resolve_alert(created["alertId"])
    reopened = env.client.alert("deploy-failures", title="Deploy failed", group_key="deploy:api")
    assert created["status"] == "created"
    assert again == {
        "alertId": created["alertId"],
        "status": "occurrence_added",
        "message": "Occurrence added to open alert",
        "occurrenceCount": 2,
    }
    assert reopened["status"] == "reopened"
    assert reopened["message"] == "Alert reopened"
    assert reopened["occurrenceCount"] == 3


def test_alert_filtered(env: Env) -> None:
    """A filter rule drops the alert: 200 with status filtered, a reason and no alertId."""
    env.backend.add_webhook(
        "staging-noise",
        filters=[
            lambda a: (
                "environment is staging" if a.get("metadata", {}).get("env") == "staging" else None
            )
        ],
    )
    result = env.client.alert("staging-noise", title="Disk 91%", metadata={"env": "staging"})
    assert result["status"] == "filtered"
    assert result["reason"] == "environment is staging"
    assert "alertId" not in result


@pytest.mark.parametrize(
    ("status", "error", "cls"),
    [
        pytest.param(400, "title must be at most 200 characters", BadRequestError, id="400"),
        pytest.param(
            403, "Team subscription is inactive or expired", PermissionDeniedError, id="403"
        ),
        pytest.param(429, "Monthly heartbeat quota exceeded", RateLimitError, id="429-quota"),
        pytest.param(500, "Internal server error", ServerError, id="500"),
        pytest.param(503, "Service unavailable", ServerError, id="503"),
        pytest.param(418, "I'm a teapot", OpShiftError, id="418-unexpected"),
    ],
)
def test_error_statuses_raise_with_status_and_body(
    env: Env, status: int, error: str, cls: type[OpShiftError]
) -> None:
    """Each documented error status surfaces as its OpShiftError subclass with the JSON body."""
    client = env.client_with(max_retries=0)
    env.backend.fail_next(status, {"error": error})
    with pytest.raises(cls) as caught:
        client.ping("payments-worker")
    assert type(caught.value) is cls
    assert caught.value.status_code == status
    assert caught.value.body == {"error": error}
    assert str(status) in str(caught.value)
    assert error in str(caught.value)


def test_html_502_from_a_proxy(env: Env) -> None:
    """A non-JSON error body gives body None and a message quoting what came back."""
    client = env.client_with(max_retries=0)
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    env.backend.fail_next(502, page, content_type="text/html")
    with pytest.raises(ServerError) as caught:
        client.ping("payments-worker")
    assert caught.value.status_code == 502
    assert caught.value.body is None
    assert "502 Bad Gateway" in str(caught.value)
    assert "non-JSON" in str(caught.value)
    assert "retry" in str(caught.value)


def test_missing_signature_is_401(env: Env) -> None:
    """A request without X-Webhook-Signature gets OpShift's 401 "Missing webhook signature"."""

    def strip_signature(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        kept = {k: v for k, v in headers.items() if k != "X-Webhook-Signature"}
        return env.client.transport(url, body, kept, timeout)

    client = OpShift(SECRET, base_url=env.client.base_url, transport=strip_signature)
    with pytest.raises(AuthenticationError) as caught:
        client.ping("payments-worker")
    assert caught.value.status_code == 401
    assert caught.value.body == {"error": "Missing webhook signature"}


def test_wrong_secret_is_401(env: Env) -> None:
    """A wrong secret gets 401 with advice naming OPSHIFT_SECRET."""
    client = env.client_with(secret=OTHER_SECRET)
    with pytest.raises(AuthenticationError) as caught:
        client.alert("deploy-failures", title="x")
    assert caught.value.body == {"error": "Invalid webhook signature"}
    assert "OPSHIFT_SECRET" in str(caught.value)
    assert "re-serialised" in str(caught.value)


def test_previous_secret_accepted_during_rotation() -> None:
    """During rotation the server accepts the previous secret too."""
    with OpShiftServer(SECRET, previous_secret=OTHER_SECRET, auto_create=True) as srv:
        OpShift(OTHER_SECRET, base_url=srv.url).ping("w")
        OpShift(SECRET, base_url=srv.url).ping("w")
        with pytest.raises(AuthenticationError):
            OpShift("f" * 64, base_url=srv.url).ping("w")
    assert [r.signature_valid for r in srv.requests] == [True, True, False]


def test_inactive_subscription_is_403(env: Env) -> None:
    """An inactive subscription is a PermissionDeniedError saying so."""
    env.backend.subscription_active = False
    with pytest.raises(PermissionDeniedError) as caught:
        env.client.ping("payments-worker")
    assert caught.value.body == {"error": "Team subscription is inactive or expired"}
    assert "subscription" in str(caught.value)


def test_unknown_token_and_webhook_are_404(env: Env) -> None:
    """Unknown tokens and webhooks are NotFoundError with OpShift's text and dashboard advice."""
    with pytest.raises(NotFoundError) as ping:
        env.client.ping("no-such-monitor")
    with pytest.raises(NotFoundError) as alert:
        env.client.alert("no-such-webhook", title="x")
    assert ping.value.body == {"error": "Ping token not found"}
    assert alert.value.body == {"error": "Webhook not found"}
    assert "dashboard" in str(ping.value)


def test_eleventh_ping_in_a_minute_is_429(env: Env) -> None:
    """The server allows 10 pings per minute per token; the 11th gets 429."""
    for _ in range(10):
        env.client.ping("payments-worker")
    with pytest.raises(RateLimitError) as caught:
        env.client.ping("payments-worker")
    assert caught.value.status_code == 429
    assert caught.value.body == {"error": "Rate limit exceeded. Maximum 10 pings per minute."}
    assert len(env.backend.requests) == 11  # never retried


def test_path_segments_are_percent_encoded(env: Env) -> None:
    """Tokens with spaces, dots, % or non-ASCII stay one path segment, percent-encoded."""
    # Tokens with /, ? or # are refused before sending: see tests/test_ids.py.
    tokens = ["with space", "..", "caf\u00e9", "100%"]
    for token in tokens:
        env.backend.add_monitor(token)
        env.client.ping(token)
    paths = [r.path for r in env.backend.requests]
    assert paths == [
        "/api/ping/with%20space",
        "/api/ping/%2E%2E",
        "/api/ping/caf%C3%A9",
        "/api/ping/100%25",
    ]
    assert all(env.backend.monitors[t].pings for t in tokens)


def test_same_id_for_a_monitor_and_a_webhook(env: Env) -> None:
    """Paths are computed once per id, separately for pings and alerts."""
    env.backend.add_monitor("shared-id")
    env.backend.add_webhook("shared-id")
    for _ in range(2):
        env.client.ping("shared-id")
        env.client.alert("shared-id", title="t")
    assert [r.path for r in env.backend.requests] == [
        "/api/ping/shared-id",
        "/api/alerts/trigger/shared-id",
    ] * 2


def test_custom_transport_gets_url_body_headers_timeout() -> None:
    """A custom transport receives (url, body, headers, timeout) and its answer is honoured."""
    seen: list[tuple[str, bytes, dict[str, str], float]] = []

    def transport(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        seen.append((url, body, dict(headers), timeout))
        return 200, b'{"status": "filtered", "message": "m", "reason": "quiet hours"}'

    client = OpShift(
        SECRET, base_url="https://opshift.example.com/", timeout=7.5, transport=transport
    )
    result = client.alert("hook", title="T")
    assert result == {"status": "filtered", "message": "m", "reason": "quiet hours"}
    url, body, headers, timeout = seen[0]
    assert url == "https://opshift.example.com/api/alerts/trigger/hook"
    assert body == b'{"title":"T"}'
    assert headers["X-Webhook-Signature"] == opshift.sign(body, SECRET)
    assert 7.0 < timeout <= 7.5


def test_custom_transport_status_is_honoured() -> None:
    """A custom transport's status and body become the matching error."""

    def transport(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        return 404, b'{"error": "Webhook is disabled"}'

    with pytest.raises(NotFoundError) as caught:
        OpShift(SECRET, transport=transport).alert("hook", title="T")
    assert caught.value.body == {"error": "Webhook is disabled"}


def test_custom_transport_exception_is_wrapped_with_cause() -> None:
    """Anything a custom transport raises becomes OpShiftError(status_code=0), cause kept."""
    boom = RuntimeError("transport bug")

    def transport(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        raise boom

    with pytest.raises(OpShiftError) as caught:
        OpShift(SECRET, transport=transport).ping("x")
    assert caught.value.status_code == 0
    assert caught.value.__cause__ is boom
    assert "RuntimeError: transport bug" in str(caught.value)


def test_custom_transport_oserror_is_a_network_error() -> None:
    """An OSError from a custom transport is a NetworkError with the cause chained."""

    def transport(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        raise ConnectionResetError("peer reset")

    with pytest.raises(NetworkError) as caught:
        OpShift(SECRET, transport=transport, max_retries=0).ping("x")
    assert caught.value.status_code == 0
    assert isinstance(caught.value.__cause__, ConnectionResetError)


def test_custom_transport_returning_garbage() -> None:
    """A custom transport that returns the wrong shape is an error telling you to fix it."""

    def transport(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        return "200 OK"  # type: ignore[return-value]

    with pytest.raises(OpShiftError, match="not \\(status_code, body_bytes\\)"):
        OpShift(SECRET, transport=transport).ping("x")


@pytest.mark.parametrize(
    ("status", "data", "expected"),
    [
        pytest.param(200, b"", "empty body", id="empty-200"),
        pytest.param(200, b'{"message": "Ping rec', "not valid JSON", id="truncated-json"),
        pytest.param(200, b"<html>hello</html>", "not valid JSON", id="html-200"),
        pytest.param(200, b"[1, 2]", "not an object", id="json-list"),
        pytest.param(301, b"", "redirect", id="301"),
    ],
)
def test_unusable_success_bodies(status: int, data: bytes, expected: str) -> None:
    """A 2xx that is not OpShift's JSON object raises with the status, never returns junk."""

    def transport(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        return status, data

    with pytest.raises(OpShiftError) as caught:
        OpShift(SECRET, transport=transport).ping("x")
    assert caught.value.status_code == status
    assert caught.value.body is None
    assert expected in str(caught.value)


def test_connection_refused_is_status_0() -> None:
    """A refused connection is a NetworkError with status 0 and no body."""
    client = OpShift(SECRET, base_url=refused_url(), max_retries=0)
    with pytest.raises(NetworkError) as caught:
        client.ping("payments-worker")
    assert caught.value.status_code == 0
    assert caught.value.body is None
    assert "refused" in str(caught.value)


def test_one_client_shared_by_threads(server: OpShiftServer) -> None:
    """Eight threads share one client; every ping arrives signed and answered."""
    client = OpShift(SECRET, base_url=server.url)
    for n in range(8):
        server.add_monitor(f"worker-{n}")
    results: list[str] = []
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(5):
                results.append(client.ping(f"worker-{n}", status="up")["pingStatus"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    fan_out(work, [(n,) for n in range(8)])
    assert errors == []
    assert results == ["up"] * 40
    assert len(server.requests) == 40
    assert all(r.signature_valid for r in server.requests)


def test_called_through_asyncio_to_thread(server: OpShiftServer) -> None:
    """Async apps call the sync client via asyncio.to_thread, concurrently."""
    client = OpShift(SECRET, base_url=server.url)

    async def main() -> list[str]:
        pings = [asyncio.to_thread(client.ping, "payments-worker") for _ in range(3)]
        alerts = [
            asyncio.to_thread(client.alert, "deploy-failures", title=f"t{n}") for n in range(3)
        ]
        done = await asyncio.gather(*pings, *alerts)
        return [r.get("status") or r.get("pingStatus") or "" for r in done]  # type: ignore[misc]

    assert asyncio.run(main()) == ["up"] * 3 + ["created"] * 3


def test_repr_shows_settings_never_the_secret(env: Env) -> None:
    """The client's repr shows its settings and never the secret."""
    text = repr(env.client)
    assert text.startswith("OpShift(base_url=")
    assert "timeout=30.0" in text
    assert SECRET not in text
    assert SECRET not in repr(vars(env.client))


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, server: OpShiftServer) -> None:
    """OPSHIFT_SECRET and OPSHIFT_BASE_URL are read when the arguments are omitted."""
    monkeypatch.setenv("OPSHIFT_SECRET", SECRET)
    monkeypatch.setenv("OPSHIFT_BASE_URL", server.url + "/")
    client = OpShift()
    assert client.base_url == server.url
    assert client.ping("payments-worker")["pingStatus"] == "up"
    assert server.requests[-1].signature_valid


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no base_url and no OPSHIFT_BASE_URL, calls go to https://www.opshift.io."""
    monkeypatch.delenv("OPSHIFT_BASE_URL", raising=False)
    assert OpShift(SECRET).base_url == "https://www.opshift.io"
    assert OpShift(secret=SECRET).base_url == "https://www.opshift.io"


def test_base_url_with_path_prefix() -> None:
    """A self-hosted OpShift behind a path prefix keeps the prefix."""
    urls: list[str] = []

    def transport(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        urls.append(url)
        return (
            200,
            b'{"status": "created", "message": "Alert created", "alertId": "a", '
            b'"occurrenceCount": 1}',
        )

    OpShift(SECRET, base_url="http://ops.internal:8080/opshift/", transport=transport).alert(
        "h", title="t"
    )
    assert urls == ["http://ops.internal:8080/opshift/api/alerts/trigger/h"]


def test_errors_are_picklable(env: Env) -> None:
    """Errors cross process boundaries (multiprocessing, Celery) intact."""
    with pytest.raises(NotFoundError) as caught:
        env.client.ping("nope")
    copy = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 - our own bytes
    assert type(copy) is NotFoundError
    assert (copy.status_code, copy.body, str(copy)) == (404, caught.value.body, str(caught.value))


def test_with_options_changes_only_the_copy(server: OpShiftServer) -> None:
    """with_options shares secret and transport, changes the settings; the original is untouched."""
    from opshift import KeepAliveTransport, RetryPolicy

    transport = KeepAliveTransport()
    client = OpShift(SECRET, base_url=server.url, transport=transport)
    quick = client.with_options(timeout=5, max_retries=0)
    assert quick is not client
    assert (quick.timeout, quick.max_retries) == (5.0, 0)
    assert (client.timeout, client.max_retries) == (30.0, 2)
    assert quick.transport is client.transport is transport  # no new transport, no I/O
    assert quick.ping("payments-worker")["pingStatus"] == "up"
    assert server.requests[-1].signature_valid  # the shared secret signed it
    policy = RetryPolicy(max_retries=7)
    assert client.with_options(retry_policy=policy).retry_policy is policy
    assert client.with_options(retry_backoff=2.0).retry_policy.backoff == 2.0
    quick.close()
    assert client.ping("payments-worker")["pingStatus"] == "up"  # the transport still works
    transport.close()


def test_closing_a_copy_leaves_the_default_transport_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the client that made the default transport closes it."""
    closed: list[str] = []

    class Closable:
        def __call__(
            self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
        ) -> tuple[int, bytes]:
            raise AssertionError("not called")

        def close(self) -> None:
            closed.append("closed")

    # Stands in for the default transport the client makes (and so owns).
    monkeypatch.setattr(opshift.transport, "UrllibTransport", Closable)
    client = OpShift(SECRET)
    client.with_options(timeout=1).close()
    assert closed == []
    client.close()
    assert closed == ["closed"]


@pytest.mark.parametrize(
    ("options", "text"),
    [
        pytest.param({"timeout": 0}, "timeout must be a finite number > 0", id="timeout-0"),
        pytest.param({"timeout": float("nan")}, "timeout must be a finite number", id="nan"),
        pytest.param({"max_retries": -1}, "max_retries must be an int >= 0", id="retries"),
        pytest.param({"retry_backoff": -1.0}, "retry_backoff must be", id="backoff"),
        pytest.param({"retry_policy": "fast"}, "retry_policy must be a RetryPolicy", id="policy"),
    ],
)
def test_with_options_checks_what_it_changes(options: dict[str, object], text: str) -> None:
    """with_options applies the constructor's checks to the settings it changes."""
    with pytest.raises(ConfigurationError, match=text):
        OpShift(SECRET).with_options(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["http://host/a\x00b", "http://host/a\tb", "http://ho\x7fst"])
def test_base_url_with_control_characters_is_refused(bad: str) -> None:
    """NUL, tabs and DEL in base_url never reach a request line."""
    with pytest.raises(ConfigurationError, match="control characters"):
        OpShift(SECRET, base_url=bad)
