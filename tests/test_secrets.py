"""The secret and signatures never show up in reprs, errors, tracebacks or log records."""

from __future__ import annotations

import logging
import pickle
import traceback
from collections.abc import Mapping

import pytest

import opshift
from opshift import OpShift, OpShiftError
from opshift.testing import FakeTransport, OpShiftServer

from . import faultserver as fs
from .helpers import OTHER_SECRET, SECRET, refused_url


def _leaks(text: str, signatures: set[str]) -> list[str]:
    found = [s for s in signatures | {SECRET, OTHER_SECRET} if s in text]
    return found


def test_no_secret_or_signature_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Drive every failure path at DEBUG; format each error and record; find no credential."""
    caplog.set_level(logging.DEBUG, logger="opshift")
    errors: list[BaseException] = []
    signatures: set[str] = set()

    def attempt(client: OpShift, call: str = "ping") -> None:
        try:
            if call == "ping":
                client.ping("payments-worker", status="down", reason="x", metadata={"k": 1})
            else:
                client.alert("deploy-failures", title="t")
        except OpShiftError as exc:
            errors.append(exc)

    with OpShiftServer(SECRET) as srv:
        srv.add_monitor("payments-worker")
        srv.add_webhook("deploy-failures")
        ok = OpShift(SECRET, base_url=srv.url, retry_backoff=0)
        attempt(ok)  # success, logged at DEBUG
        attempt(OpShift(OTHER_SECRET, base_url=srv.url))  # 401
        attempt(ok, "alert")
        srv.fail_next(503, times=3)
        attempt(ok)  # retried 5xx, then ServerError
        srv.fail_next(502, b"<html>bad gateway</html>", content_type="text/html")
        attempt(OpShift(SECRET, base_url=srv.url, max_retries=0))
        srv.subscription_active = False
        attempt(ok)  # 403
        signatures |= {r.signature or "" for r in srv.requests}
    with fs.FaultServer([fs.silent]) as faults:
        attempt(OpShift(SECRET, base_url=faults.url, timeout=0.3))  # timeout
    attempt(OpShift(SECRET, base_url=refused_url(), max_retries=0))  # refused
    attempt(OpShift(SECRET, transport=FakeTransport(SECRET)), "alert")
    try:
        OpShift(SECRET + "\n")
    except OpShiftError as exc:
        errors.append(exc)

    def leaky_transport(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        raise RuntimeError(f"custom transport failed with headers {headers}")

    attempt(OpShift(SECRET, transport=leaky_transport))
    signatures.add(opshift.sign(b'{"status":"down","reason":"x","metadata":{"k":1}}', SECRET))

    assert len(errors) == 8
    assert any(r.levelno == logging.DEBUG for r in caplog.records)
    for error in errors:
        texts = [
            str(error),
            repr(error),
            "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        ]
        texts.append(repr(pickle.loads(pickle.dumps(error))))  # noqa: S301 - our own bytes
        for text in texts:
            assert _leaks(text, signatures) == [], text
    for record in caplog.records:
        assert _leaks(record.getMessage(), signatures) == [], record.getMessage()


def test_reprs_hide_the_secret() -> None:
    """No repr or str of a client, transport or request shows the secret or a signature."""
    fake = FakeTransport(SECRET)
    client = OpShift(SECRET, transport=fake)
    client.ping("w")
    for text in (
        repr(client),
        str(client),
        repr(vars(client)),
        repr(fake),
        repr(fake.requests),
        repr(fake.calls),
    ):
        assert SECRET not in text
        assert fake.requests[0].signature not in text  # type: ignore[operator]


def test_debug_log_records_method_path_status_attempt(caplog: pytest.LogCaptureFixture) -> None:
    """DEBUG logging records method, path, status and attempt, and the retry's wait."""
    caplog.set_level(logging.DEBUG, logger="opshift")
    fake = FakeTransport(SECRET)
    fake.fail_next(503)
    OpShift(SECRET, transport=fake, retry_backoff=0).ping("payments-worker")
    messages = [r.getMessage() for r in caplog.records if r.name == "opshift"]
    assert len(messages) == 2
    assert messages[0].startswith("POST /api/ping/payments-worker failed in ")
    assert "(attempt 1/3)" in messages[0]
    assert "retrying in 0.000 s" in messages[0]
    assert messages[1].startswith("POST /api/ping/payments-worker -> 200 in ")
    assert messages[1].endswith("(attempt 2/3)")


def test_nothing_is_logged_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    """A library must not chatter at INFO; failures reach the caller as exceptions."""
    caplog.set_level(logging.INFO, logger="opshift")
    fake = FakeTransport(SECRET)
    fake.fail_next(503, times=5)
    with pytest.raises(OpShiftError):
        OpShift(SECRET, transport=fake, retry_backoff=0).ping("w")
    assert caplog.records == []
