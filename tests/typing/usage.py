"""Intended usage, checked by `mypy --strict` and never run (pytest collects test_*.py only).

If a public signature or return type regresses, mypy fails here first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from typing_extensions import assert_type

import opshift
from opshift import (
    AlertHandler,
    AlertResponse,
    AsyncOpShift,
    KeepAliveTransport,
    MonitorStatus,
    OpShift,
    OpShiftError,
    Outbox,
    PingResponse,
    PingStatus,
)


def sync_usage() -> None:
    client = OpShift(secret="0" * 64, base_url="http://127.0.0.1:1", timeout=5, max_retries=0)
    ping = client.ping("payments-worker", status="down", reason="r", metadata={"n": 1})
    assert_type(ping, PingResponse)
    assert_type(ping["pingStatus"], PingStatus)
    assert_type(ping["monitor"]["status"], MonitorStatus)
    alert = client.alert("deploy-failures", title="t", severity="sev1", group_key="g")
    assert_type(alert, AlertResponse)
    assert_type(alert.get("alertId"), "str | None")
    client.ping("w", status="sideways")  # type: ignore[arg-type]  # Literal catches typos
    client.alert("h", title="t", severity="critical")  # type: ignore[arg-type]
    client.alert("h")  # type: ignore[call-arg]  # title is required


def errors() -> None:
    try:
        OpShift().ping("w")
    except OpShiftError as error:
        assert_type(error.status_code, int)
        if error.body is not None:
            print(error.body["error"])


def custom_transport(
    url: str, body: bytes, headers: Mapping[str, str], timeout: float
) -> tuple[int, bytes]:
    return 200, b"{}"


def transports() -> None:
    OpShift(transport=custom_transport)
    OpShift(transport=opshift.UrllibTransport())
    with KeepAliveTransport() as transport:
        OpShift(transport=transport)


def monitoring(client: OpShift) -> None:
    @client.monitor("job")
    def job(n: int) -> str:
        return str(n)

    assert_type(job(1), str)  # the decorator keeps the signature
    with client.monitor("job"), client.heartbeat("worker", interval=60):
        pass


async def async_usage() -> None:
    client = AsyncOpShift()
    assert_type(await client.ping("w"), PingResponse)
    assert_type(await client.alert("h", title="t"), AlertResponse)
    async with client.monitor("job"):
        pass


def logging_handler(client: OpShift) -> None:
    handler = AlertHandler("app-errors", client=client, level="WARNING", min_interval=30)
    logging.getLogger().addHandler(handler)
    assert_type(handler.outbox, Outbox)
    assert_type(handler.client, OpShift)
    AlertHandler("app-errors", severity="sev1")
    AlertHandler("app-errors", severity={"ERROR": "sev1", logging.CRITICAL: "sev0"})
    AlertHandler("app-errors", outbox=Outbox(client, path="outbox.sqlite3"))
    AlertHandler("app-errors", severity="critical")  # type: ignore[arg-type]
