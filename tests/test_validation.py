"""Bad input never reaches the wire: each case raises BadRequestError and sends nothing."""

from __future__ import annotations

import datetime
import decimal
import typing
from typing import Any, Callable

import pytest

from opshift import BadRequestError, ConfigurationError, OpShift, OpShiftError, _validation
from opshift.testing import FakeTransport, OpShiftServer
from opshift.types import PingStatus, Severity

from .helpers import SECRET


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


def _cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {"a": {}}
    value["a"]["back"] = value
    return value


Call = Callable[[OpShift], object]
CASES = [
    pytest.param(lambda c: c.ping(""), "ping_token must be a non-empty string", id="empty-token"),
    pytest.param(lambda c: c.ping("   "), "ping_token must be a non-empty string", id="blank-token"),
    pytest.param(lambda c: c.ping(None), "ping_token must be a non-empty string", id="none-token"),
    pytest.param(lambda c: c.ping(42), "ping_token must be a non-empty string", id="int-token"),
    pytest.param(lambda c: c.ping(["w"]), "ping_token must be a non-empty string", id="unhashable-token"),
    pytest.param(lambda c: c.alert("", title="t"), "webhook_url must be a non-empty string", id="empty-webhook"),
    pytest.param(lambda c: c.ping("w", status="sideways"), "status must be one of up, down (got 'sideways')", id="bad-status"),
    pytest.param(lambda c: c.ping("w", status="UP"), "status must be one of up, down", id="status-case"),
    pytest.param(lambda c: c.ping("w", reason="r" * 201), "reason must be at most 200 characters (got 201)", id="long-reason"),
    pytest.param(lambda c: c.ping("w", reason=5), "reason must be a string (got int)", id="int-reason"),
    pytest.param(lambda c: c.ping("w", group_key="g" * 201), "group_key must be at most 200 characters", id="long-ping-group-key"),
    pytest.param(lambda c: c.alert("h", title=""), "title is required", id="empty-title"),
    pytest.param(lambda c: c.alert("h", title="   "), "title is required", id="blank-title"),
    pytest.param(lambda c: c.alert("h", title=None), "title is required", id="none-title"),
    pytest.param(lambda c: c.alert("h", title="t" * 201), "title must be at most 200 characters (got 201)", id="long-title"),
    pytest.param(lambda c: c.alert("h", title="t", description="d" * 2001), "description must be at most 2000 characters (got 2001)", id="long-description"),
    pytest.param(lambda c: c.alert("h", title="t", severity="sev5"), "severity must be one of sev0, sev1, sev2, sev3, sev4 (got 'sev5')", id="bad-severity"),
    pytest.param(lambda c: c.alert("h", title="t", severity="critical"), "severity must be one of", id="named-severity"),
    pytest.param(lambda c: c.alert("h", title="t", group_key="g" * 201), "group_key must be at most 200 characters", id="long-alert-group-key"),
    pytest.param(lambda c: c.ping("w", metadata=[1, 2]), "metadata must be a JSON object (a dict), got list", id="metadata-list"),
    pytest.param(lambda c: c.ping("w", metadata="{}"), "metadata must be a JSON object (a dict), got str", id="metadata-str"),
    pytest.param(lambda c: c.alert("h", title="t", metadata={"blob": "x" * 102_400}), "metadata must be at most 102400 bytes as compact JSON (got 102411)", id="metadata-too-large"),
    pytest.param(lambda c: c.alert("h", title="t", metadata={"é": "é" * 51_196}), "metadata must be at most 102400 bytes", id="metadata-too-large-utf8"),
    pytest.param(lambda c: c.alert("h", title="t", metadata=_deep(11)), "metadata must nest at most 10 levels deep", id="metadata-too-deep"),
    pytest.param(lambda c: c.alert("h", title="t", metadata={"a": [[[[[[[[[[1]]]]]]]]]]}), "metadata must nest at most 10 levels deep", id="lists-too-deep"),
    pytest.param(lambda c: c.alert("h", title="t", metadata=_cyclic()), "circular reference at metadata.a.back", id="metadata-cycle"),
    pytest.param(lambda c: c.ping("w", metadata={"ratio": float("nan")}), "metadata.ratio is nan, which is not valid JSON", id="nan"),
    pytest.param(lambda c: c.ping("w", metadata={"x": [1, float("inf")]}), "metadata.x[1] is inf, which is not valid JSON", id="infinity"),
    pytest.param(lambda c: c.ping("w", metadata={"when": datetime.datetime(2026, 1, 1)}), "metadata.when is a datetime, which JSON cannot encode", id="datetime"),
    pytest.param(lambda c: c.ping("w", metadata={"a": {"amount": decimal.Decimal("1.5")}}), "metadata.a.amount is a Decimal", id="decimal-nested"),
    pytest.param(lambda c: c.ping("w", metadata={"tags": {1, 2}}), "metadata.tags is a set", id="set"),
    pytest.param(lambda c: c.ping("w", metadata={(1, 2): "x"}), "metadata has a key of type tuple", id="tuple-key"),
    pytest.param(lambda c: c.ping("w", metadata={1: "a"}), "metadata has a key of type int (1); JSON keys must be strings", id="int-key"),
    pytest.param(lambda c: c.alert("x", title="t", metadata={"a": {None: 1}}), "metadata.a has a key of type NoneType", id="nested-none-key"),
    pytest.param(lambda c: c.ping("w", metadata={"o": object()}), "metadata.o is an object, which JSON cannot encode", id="an-object"),
    pytest.param(lambda c: c.ping("w", reason="\ud800"), "lone surrogate", id="lone-surrogate"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "message"), CASES)
def test_bad_input_is_rejected_before_sending(call: Call, message: str) -> None:
    """BadRequestError, status 400, the server's error envelope, and no request sent."""
    fake = FakeTransport(SECRET)
    client = OpShift(SECRET, transport=fake)
    with pytest.raises(BadRequestError) as caught:
        call(client)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.status_code == 400
    assert error.body is not None
    assert message in error.body["error"]
    assert message in str(error)
    assert "nothing was sent" in str(error)
    assert fake.calls == []


def test_limits_are_inclusive() -> None:
    """Exactly at each limit is accepted and sent."""
    fake = FakeTransport(SECRET)
    client = OpShift(SECRET, transport=fake)
    client.ping("w", reason="r" * 200, group_key="g" * 200, metadata=_deep(10))
    client.alert(
        "h",
        title="t" * 200,
        description="d" * 2000,
        metadata={"blob": "x" * (102_400 - 11)},
        group_key="g" * 200,
    )
    assert [r.status for r in fake.requests] == [200, 200]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        pytest.param(b'{"status": "sideways"}', "status must be one of up, down", id="status"),
        pytest.param(
            b'{"reason": "' + b"r" * 201 + b'"}', "reason must be at most 200", id="reason"
        ),
        pytest.param(b'{"metadata": {"x": NaN}}', "Invalid JSON body", id="nan"),
        pytest.param(b"[1]", "Body must be a JSON object", id="array"),
        pytest.param(b"{", "Invalid JSON body", id="truncated"),
    ],
)
def test_server_answers_the_same_validation_errors(fields: bytes, error: str) -> None:
    """The local server rejects what the client would, with the same {"error": ...}."""
    import json
    import urllib.request

    import opshift

    with OpShiftServer(SECRET, auto_create=True) as srv:
        request = urllib.request.Request(
            srv.url + "/api/ping/w",
            data=fields,
            headers={
                "Content-Type": "application/json",
                "X-Webhook-Signature": opshift.sign(fields, SECRET),
            },
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 400
        assert error in json.loads(caught.value.read())["error"]


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        pytest.param(SECRET + "\n", "surrounding whitespace", id="trailing-newline"),
        pytest.param("  " + SECRET, "surrounding whitespace", id="leading-spaces"),
        pytest.param("abc", "must be the 64 hex characters", id="short"),
        pytest.param("z" * 64, "not all of them hex digits", id="not-hex"),
        pytest.param(SECRET + "00", "this one has 66 characters", id="long"),
        pytest.param(b"ab" * 32, "must be a str", id="bytes"),
        pytest.param(SECRET.upper(), "uppercase hex digits", id="uppercase"),
        pytest.param(f'"{SECRET}"', 'wrapped in quotes ("...")', id="double-quotes"),
        pytest.param(f"'{SECRET}' ", "66 characters instead of the secret's 64", id="quotes"),
    ],
)
def test_constructor_rejects_bad_secrets(secret: Any, message: str) -> None:
    """A malformed secret fails at construction, saying why, never echoing it."""
    with pytest.raises(ConfigurationError) as caught:
        OpShift(secret)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, OpShiftError)
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)


def test_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret anywhere is a ConfigurationError saying where to set it."""
    monkeypatch.delenv("OPSHIFT_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="set OPSHIFT_SECRET"):
        OpShift()


def test_secret_from_environment_with_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trailing newline in OPSHIFT_SECRET gets its own message naming the variable."""
    monkeypatch.setenv("OPSHIFT_SECRET", SECRET + "\n")
    with pytest.raises(ConfigurationError, match="in OPSHIFT_SECRET has surrounding whitespace"):
        OpShift()
    with pytest.raises(ConfigurationError) as caught:
        OpShift()
    assert "OPSHIFT_SECRET ends with a newline" in str(caught.value)
    assert "OpShift(secret=" not in str(caught.value)  # no Python advice for a variable


def test_a_quoted_secret_from_the_environment_says_where_to_drop_the_quotes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OPSHIFT_SECRET="..." from an env file no shell read: the quotes named, not a length."""
    monkeypatch.setenv("OPSHIFT_SECRET", f'"{SECRET}"')
    with pytest.raises(ConfigurationError) as caught:
        OpShift()
    message = str(caught.value)
    assert "in OPSHIFT_SECRET is wrapped in quotes" in message
    assert "remove them where OPSHIFT_SECRET is set" in message
    assert "OpShift(secret=" not in message and SECRET[:8] not in message


def test_an_uppercase_secret_is_refused_before_a_401(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key is the secret's text, so an uppercased one would only ever get 401: say so."""
    monkeypatch.setenv("OPSHIFT_SECRET", SECRET.upper())
    with pytest.raises(ConfigurationError, match="OPSHIFT_SECRET has uppercase hex digits"):
        OpShift()


def test_a_bad_base_url_from_the_environment_is_named_with_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OPSHIFT_BASE_URL=www.opshift.io is reported as that variable and value, not base_url."""
    monkeypatch.setenv("OPSHIFT_BASE_URL", "www.opshift.io")
    with pytest.raises(ConfigurationError) as caught:
        OpShift(SECRET)
    assert str(caught.value).startswith("OPSHIFT_BASE_URL=www.opshift.io is not an http(s) URL")


@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param("ftp://www.opshift.io", id="ftp"),
        pytest.param("www.opshift.io", id="no-scheme"),
        pytest.param("https://", id="no-host"),
        pytest.param("https://www.opshift.io:99999", id="bad-port"),
        pytest.param("https://www.opshift.io/?x=1", id="query"),
        pytest.param("https://www.opshift.io/#top", id="fragment"),
        pytest.param("https://www.opshift.io /", id="space"),
    ],
)
def test_constructor_rejects_bad_base_urls(base_url: str) -> None:
    """Each malformed base_url is refused at construction."""
    with pytest.raises(ConfigurationError, match="base_url"):
        OpShift(SECRET, base_url=base_url)


def test_base_url_credentials_are_rejected_without_echo() -> None:
    """Credentials in base_url are refused without echoing the password."""
    with pytest.raises(ConfigurationError) as caught:
        OpShift(SECRET, base_url="https://user:hunter2@opshift.example")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"timeout": 0}, "timeout must be a finite number > 0", id="zero-timeout"),
        pytest.param({"timeout": -1}, "timeout must be", id="negative-timeout"),
        pytest.param({"timeout": float("inf")}, "timeout must be", id="infinite-timeout"),
        pytest.param({"timeout": None}, "timeout must be", id="none-timeout"),
        pytest.param({"timeout": True}, "timeout must be", id="bool-timeout"),
        pytest.param({"max_retries": -1}, "max_retries must be an int >= 0", id="negative-retries"),
        pytest.param({"max_retries": 1.5}, "max_retries must be an int", id="float-retries"),
        pytest.param({"retry_backoff": -0.1}, "retry_backoff must be", id="negative-backoff"),
        pytest.param({"transport": "urllib"}, "transport must be callable", id="bad-transport"),
    ],
)
def test_constructor_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    """Bad timeouts, retry settings and transports are refused at construction."""
    with pytest.raises(ConfigurationError, match=message):
        OpShift(SECRET, **options)


@pytest.mark.parametrize(
    ("value", "options", "expected"),
    [
        pytest.param(1, {}, 1.0, id="int"),
        pytest.param(0.5, {}, 0.5, id="float"),
        pytest.param(0, {"inclusive": True}, 0.0, id="zero-inclusive"),
        pytest.param(86_400, {"maximum": 86_400}, 86_400.0, id="at-maximum"),
        pytest.param(0, {}, None, id="zero-exclusive"),
        pytest.param(-1, {"inclusive": True}, None, id="negative"),
        pytest.param(86_401, {"maximum": 86_400}, None, id="over-maximum"),
        pytest.param(float("nan"), {}, None, id="nan"),
        pytest.param(float("inf"), {}, None, id="inf"),
        pytest.param(True, {}, None, id="bool"),
        pytest.param("5", {}, None, id="string"),
        pytest.param(None, {}, None, id="none"),
    ],
)
def test_check_number(value: object, options: dict[str, Any], expected: float | None) -> None:
    """Settings are finite numbers in range; anything else is a ConfigurationError naming it."""
    if expected is None:
        with pytest.raises(ConfigurationError, match=r"^speed must be a finite number"):
            _validation.check_number("speed", value, **options)
    else:
        assert _validation.check_number("speed", value, **options) == expected


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0, True), (5, True), (-1, False), (True, False), (1.0, False), ("1", False)],
)
def test_check_int(value: object, ok: bool) -> None:
    """Counts are ints (not bools, not floats) at or above the minimum."""
    if ok:
        assert _validation.check_int("count", value) == value
    else:
        with pytest.raises(ConfigurationError, match=r"^count must be an int >= 0"):
            _validation.check_int("count", value)


def test_enum_choices_come_from_the_literal_types() -> None:
    """status and severity accept exactly the values of the PingStatus and Severity Literals."""
    assert _validation.choices_for("status") == typing.get_args(PingStatus)
    assert _validation.choices_for("severity") == typing.get_args(Severity)
