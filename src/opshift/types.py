"""The wire's shapes: Literal types for its enums and TypedDicts for OpShift's JSON responses.

Responses are plain dicts with the wire's camelCase keys, typed here so editors complete
them and mypy catches typos.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypedDict

__all__ = [
    "AlertResponse",
    "AlertStatus",
    "Metadata",
    "MonitorInfo",
    "MonitorStatus",
    "PingResponse",
    "PingStatus",
    "Pinger",
    "Severity",
]

PingStatus = Literal["up", "down"]
"""What a ping reports: ``"up"`` (alive) or ``"down"`` (raise an incident now)."""

MonitorStatus = Literal["idle", "up", "down", "paused"]
"""A monitor's state after a ping."""

Severity = Literal["sev0", "sev1", "sev2", "sev3", "sev4"]
"""sev0 critical (pages everyone) ... sev4 informational."""

AlertStatus = Literal["created", "occurrence_added", "reopened", "filtered"]
"""What OpShift did with an alert."""

Metadata = dict[str, Any]
"""A JSON object: at most 100 KB serialised and 10 levels deep."""


class MonitorInfo(TypedDict):
    """The monitor a ping was recorded on, as it stands after that ping."""

    name: str
    status: MonitorStatus
    monitoringActive: bool


class PingResponse(TypedDict):
    """The 200 answer to a ping."""

    message: str
    monitor: MonitorInfo
    pingStatus: PingStatus


class _AlertResponseRequired(TypedDict):
    status: AlertStatus
    message: str


class AlertResponse(_AlertResponseRequired, total=False):
    """The 200 answer to an alert; ``alertId`` is absent and ``reason`` present when filtered."""

    alertId: str
    occurrenceCount: int
    reason: str


class Pinger(Protocol):
    """Anything with ``OpShift.ping``'s signature: all that ``monitor()`` and ``heartbeat()`` use.

    Jobs are typed against this, not the client, so a wrapper or a test double works too.
    """

    def ping(
        self,
        ping_token: str,
        *,
        status: PingStatus | None = ...,
        reason: str | None = ...,
        group_key: str | None = ...,
        metadata: Metadata | None = ...,
    ) -> Any: ...
