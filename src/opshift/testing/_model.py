"""An in-memory OpShift: monitors, webhooks, alerts, limits and errors, as API.md describes.

``Model.handle`` turns one request into one response. The HTTP server and FakeTransport
both call it, so the local server and the fake answer alike.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from urllib.parse import unquote

from .. import _validation
from .._signing import verify

FilterRule = Callable[[dict[str, Any]], Optional[str]]
"""Given the alert's fields, return a reason to drop it, or None to keep it."""

RATE_LIMIT_PER_MINUTE = 10
REOPEN_WINDOW_SECONDS = 30 * 60.0

MSG_FIRST = "First ping received \u2014 monitoring started"
MSG_RESTARTED = "Ping received \u2014 monitoring restarted"
MSG_PING = "Ping received"


@dataclass
class Monitor:
    """A heartbeat monitor: its state and the pings it stored."""

    token: str
    name: str
    status: str = "idle"
    monitoring_active: bool = False
    restarted: bool = False
    pings: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[str] = field(default_factory=list)


@dataclass
class Webhook:
    """An alert webhook: default severity, on/off, per-minute cap, filter rules."""

    webhook_id: str
    default_severity: str = "sev2"
    enabled: bool = True
    rate_limit_per_minute: int | None = None
    filters: list[FilterRule] = field(default_factory=list)


@dataclass
class Alert:
    """An alert with its occurrences; resolve it with ``resolve_alert``."""

    alert_id: str
    webhook_id: str
    group_key: str
    title: str
    severity: str
    description: str | None = None
    metadata: dict[str, Any] | None = None
    occurrence_count: int = 1
    resolved_at: float | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it, with the answer it gave."""

    method: str
    path: str
    headers: Mapping[str, str] = field(repr=False)  # holds the signature: kept out of repr
    body: bytes = b""
    signature_valid: bool = False
    status: int = 0
    response: bytes = b""

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is empty or not JSON."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    @property
    def signature(self) -> str | None:
        """The X-Webhook-Signature header as received."""
        return _header(self.headers, "X-Webhook-Signature")


Response = tuple[int, bytes, str]


class Model:
    """The state of one OpShift team and the rules that answer requests."""

    def __init__(
        self,
        secret: str,
        *,
        previous_secret: str | None = None,
        auto_create: bool = False,
        clock: Callable[[], float] = time.monotonic,
        on_request: Callable[[RecordedRequest], object] | None = None,
        keep_requests: bool = True,
    ) -> None:
        self.secret = secret
        self.on_request = on_request
        self.keep_requests = keep_requests
        self.previous_secret = previous_secret
        self.auto_create = auto_create
        self.clock = clock
        self.subscription_active = True
        self.heartbeat_quota: int | None = None
        self.alert_quota: int | None = None
        self.monitors: dict[str, Monitor] = {}
        self.webhooks: dict[str, Webhook] = {}
        self.alerts: list[Alert] = []
        self.requests: list[RecordedRequest] = []
        self._canned: list[Response] = []
        self._windows: dict[str, tuple[float, int]] = {}
        self._pings_this_month = 0
        self._alerts_this_month = 0
        self._lock = threading.Lock()

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """Answer one request and record it."""
        with self._lock:
            signature = _header(headers, "X-Webhook-Signature")
            valid = signature is not None and (
                verify(body, signature, self.secret)
                or (
                    self.previous_secret is not None
                    and verify(body, signature, self.previous_secret)
                )
            )
            if self._canned:
                status, data, ctype = self._canned.pop(0)
            else:
                status, payload = self._route(method, path, headers, body, signature, valid)
                data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
                ctype = "application/json"
            recorded = RecordedRequest(method, path, dict(headers), body, valid, status, data)
            if self.keep_requests:
                self.requests.append(recorded)
            if self.on_request is not None:
                self.on_request(recorded)  # under the lock: one at a time, in order
            return status, data, ctype

    def refused(self, method: str, path: str, status: int, error: str) -> Response:
        """Record a request the HTTP layer answered itself, unread (a malformed request
        line, a bad or too large Content-Length), as ``handle`` records one; its answer."""
        data = json.dumps({"error": error}).encode("utf-8")
        with self._lock:
            recorded = RecordedRequest(method, path, {}, b"", False, status, data)
            if self.keep_requests:
                self.requests.append(recorded)
            if self.on_request is not None:
                self.on_request(recorded)
        return status, data, "application/json"

    def fail_next(
        self,
        status: int = 503,
        body: bytes | dict[str, Any] | None = None,
        *,
        times: int = 1,
        content_type: str = "application/json",
    ) -> None:
        """Answer the next ``times`` requests with this status and body instead of normally."""
        if body is None:
            body = {"error": "Service temporarily unavailable"}
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        with self._lock:
            self._canned.extend([(status, data, content_type)] * times)

    def _route(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        signature: str | None,
        valid: bool,
    ) -> tuple[int, dict[str, Any]]:
        route = path.split("?", 1)[0]
        for prefix, kind, methods in (
            ("/api/ping/", "ping", ("GET", "POST")),
            ("/api/alerts/trigger/", "alert", ("POST",)),
        ):
            if (
                route.startswith(prefix)
                and "/" not in route[len(prefix) :]
                and route[len(prefix) :]
            ):
                if method not in methods:
                    return 405, {"error": "Method not allowed"}
                key = unquote(route[len(prefix) :])
                return self._endpoint(kind, key, headers, body, signature, valid)
        return 404, {"error": "Not found"}

    def _endpoint(
        self,
        kind: str,
        key: str,
        headers: Mapping[str, str],
        body: bytes,
        signature: str | None,
        valid: bool,
    ) -> tuple[int, dict[str, Any]]:
        if any(mark in key for mark in ("/", "://", "?", "#")):
            # A URL passed where the id belongs (percent-encoded by an older SDK, or by
            # hand): OpShift has no such monitor or webhook, and auto-create must not
            # make one, or the user's test would pass while production gets 404.
            what = "Ping token" if kind == "ping" else "Webhook"
            return 404, {
                "error": f"{what} not found: {key[:80]!r} looks like a URL or path; "
                "pass the id alone (the last part of the URL)"
            }
        if kind == "ping" and key not in self.monitors and self.auto_create:
            self.add_monitor(key)
        if kind == "alert" and key not in self.webhooks and self.auto_create:
            self.add_webhook(key)
        if kind == "ping" and key not in self.monitors:
            return 404, {"error": "Ping token not found"}
        if kind == "alert" and key not in self.webhooks:
            return 404, {"error": "Webhook not found"}
        if signature is None:
            return 401, {"error": "Missing webhook signature"}
        if not valid:
            return 401, {"error": "Invalid webhook signature"}
        if not self.subscription_active:
            return 403, {"error": "Team subscription is inactive or expired"}
        if kind == "ping" and self.monitors[key].status == "paused":
            return 404, {"error": "Monitor is paused"}
        if kind == "alert" and not self.webhooks[key].enabled:
            return 404, {"error": "Webhook is disabled"}
        limit = (
            RATE_LIMIT_PER_MINUTE if kind == "ping" else self.webhooks[key].rate_limit_per_minute
        )
        if limit is not None and not self._take(f"{kind}:{key}", limit):
            noun = "pings" if kind == "ping" else "alerts"
            return 429, {"error": f"Rate limit exceeded. Maximum {limit} {noun} per minute."}
        fields, problem = _decode(body, headers)
        if problem is None and kind == "ping":
            extras = {k: fields.pop(k) for k in list(fields) if k not in _PING_FIELDS}
            if extras:
                base = fields.get("metadata")
                fields["metadata"] = {**(base if isinstance(base, dict) else {}), **extras}
        if problem is None:
            problem = _validation.problem(kind, fields)
        if problem is not None:
            return 400, {"error": problem}
        if kind == "ping":
            return self._ping(self.monitors[key], fields)
        return self._alert(self.webhooks[key], fields)

    def _take(self, bucket: str, limit: int) -> bool:
        """Count a request in its fixed one-minute window; False once over the limit."""
        now = self.clock()
        start, count = self._windows.get(bucket, (now, 0))
        if now - start >= 60.0:
            start, count = now, 0
        self._windows[bucket] = (start, count + 1)
        return count < limit

    def _ping(self, monitor: Monitor, fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.heartbeat_quota is not None and self._pings_this_month >= self.heartbeat_quota:
            return 429, {"error": "Monthly heartbeat quota exceeded"}
        self._pings_this_month += 1
        status = fields.get("status", "up")
        reason = fields.get("reason")
        if status == "down" and (
            monitor.status != "down"
            or (monitor.pings and monitor.pings[-1].get("reason") != reason)
        ):
            monitor.incidents.append(reason or "down")
        if not monitor.monitoring_active and not monitor.restarted:
            message = MSG_FIRST
        elif monitor.restarted:
            message = MSG_RESTARTED
        else:
            message = MSG_PING
        monitor.monitoring_active = True
        monitor.restarted = False
        monitor.status = status
        stored = {"status": status}
        for key in ("reason", "metadata"):
            if key in fields:
                stored[key] = fields[key]
        monitor.pings.append(stored)
        return 200, {
            "message": message,
            "monitor": {
                "name": monitor.name,
                "status": monitor.status,
                "monitoringActive": monitor.monitoring_active,
            },
            "pingStatus": status,
        }

    def _alert(self, webhook: Webhook, fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.alert_quota is not None and self._alerts_this_month >= self.alert_quota:
            return 429, {"error": "Monthly alert quota exceeded"}
        self._alerts_this_month += 1
        for rule in webhook.filters:
            reason = rule(fields)
            if reason is not None:
                return 200, {"status": "filtered", "message": "Alert filtered", "reason": reason}
        group_key = fields.get("group_key") or f"{webhook.webhook_id}:{fields['title']}"
        now = self.clock()
        for alert in reversed(self.alerts):
            if alert.webhook_id != webhook.webhook_id or alert.group_key != group_key:
                continue
            if alert.resolved_at is None:
                alert.occurrence_count += 1
                return 200, _alert_answer(
                    alert, "occurrence_added", "Occurrence added to open alert"
                )
            if now - alert.resolved_at <= REOPEN_WINDOW_SECONDS:
                alert.resolved_at = None
                alert.occurrence_count += 1
                return 200, _alert_answer(alert, "reopened", "Alert reopened")
            break
        alert = Alert(
            alert_id=f"65f3a2{len(self.alerts) + 1:018x}",
            webhook_id=webhook.webhook_id,
            group_key=group_key,
            title=fields["title"],
            severity=fields.get("severity", webhook.default_severity),
            description=fields.get("description"),
            metadata=fields.get("metadata"),
        )
        self.alerts.append(alert)
        return 200, _alert_answer(alert, "created", "Alert created")

    def add_monitor(self, token: str, name: str | None = None, *, paused: bool = False) -> Monitor:
        """Register a monitor under a ping token; its name defaults to the token."""
        monitor = Monitor(token=token, name=name or token)
        if paused:
            monitor.status = "paused"
        self.monitors[token] = monitor
        return monitor

    def add_webhook(
        self,
        webhook_id: str,
        *,
        default_severity: str = "sev2",
        enabled: bool = True,
        rate_limit_per_minute: int | None = None,
        filters: list[FilterRule] | None = None,
    ) -> Webhook:
        """Register an alert webhook; ``filters`` return a reason to drop an alert."""
        webhook = Webhook(
            webhook_id, default_severity, enabled, rate_limit_per_minute, list(filters or [])
        )
        self.webhooks[webhook_id] = webhook
        return webhook

    def pause(self, token: str) -> None:
        """Pause a monitor, as in the dashboard: its pings get 404 until resumed."""
        with self._lock:
            monitor = self.monitors[token]
            monitor.status = "paused"
            monitor.monitoring_active = False

    def resume(self, token: str) -> None:
        """Resume a paused monitor; its next ping says monitoring restarted."""
        with self._lock:
            monitor = self.monitors[token]
            monitor.status = "idle"
            monitor.restarted = True

    def resolve_alert(self, alert_id: str) -> None:
        """Resolve an open alert; a matching alert within the reopen window reopens it."""
        with self._lock:
            for alert in self.alerts:
                if alert.alert_id == alert_id:
                    alert.resolved_at = self.clock()
                    return
        raise KeyError(alert_id)


_PING_FIELDS = frozenset({"status", "reason", "group_key", "metadata"})


def _alert_answer(alert: Alert, status: str, message: str) -> dict[str, Any]:
    return {
        "alertId": alert.alert_id,
        "status": status,
        "message": message,
        "occurrenceCount": alert.occurrence_count,
    }


def _decode(body: bytes, headers: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """Parse the JSON object body; an empty body is ``{}``."""
    if not body:
        return {}, None
    ctype = (_header(headers, "Content-Type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return {}, "Content-Type must be application/json"
    try:
        parsed = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:
        return {}, "Invalid JSON body"
    if not isinstance(parsed, dict):
        return {}, "Body must be a JSON object"
    return parsed, None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None
