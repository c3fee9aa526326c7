"""Every failure of an OpShift call, as one exception tree you can branch on.

    OpShiftError                 base: .status_code, .body, a message saying what to do
    ├── ConfigurationError       (also ValueError) bad secret, base_url or option; nothing sent
    ├── BadRequestError          400 (also ValueError) invalid input, caught before sending
    ├── AuthenticationError      401 missing or wrong X-Webhook-Signature
    ├── PermissionDeniedError    403 team subscription inactive or expired
    ├── NotFoundError            404 unknown ping token or webhook, or paused / disabled
    ├── RateLimitError           429 rate limit or monthly quota
    ├── ServerError              5xx OpShift (or a proxy in front of it) failed
    ├── ProxyAuthenticationError 407 your HTTP(S) proxy refused its credentials
    └── NetworkError             status_code 0: DNS, refused, reset, malformed response
        └── RequestTimeoutError  the call's timeout ran out

A redirect (3xx) or any other unexpected status raises the base class with that status.
Messages never contain the secret or a signature.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "NetworkError",
    "NotFoundError",
    "OpShiftError",
    "PermissionDeniedError",
    "ProxyAuthenticationError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
]


class OpShiftError(Exception):
    """A call to OpShift failed; ``status_code`` is the HTTP status, or 0 when none arrived.

    Attributes:
        status_code: The HTTP status, or 0 for network-level failures and configuration errors.
        body: The parsed JSON error body (``{"error": "..."}``) when there was one, else None.
        message: The human-readable explanation, also ``str(error)``.
    """

    def __init__(
        self, message: str, *, status_code: int = 0, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body


class ConfigurationError(OpShiftError, ValueError):
    """The client was configured wrongly (secret, base_url, timeout); nothing was sent."""


class BadRequestError(OpShiftError, ValueError):
    """400: a field is missing, has the wrong type or breaks a documented limit."""


class AuthenticationError(OpShiftError):
    """401: the X-Webhook-Signature header was missing or did not match the body."""


class PermissionDeniedError(OpShiftError):
    """403: the team's subscription is inactive or expired."""


class NotFoundError(OpShiftError):
    """404: unknown ping token or webhook, or the monitor is paused / the webhook disabled."""


class RateLimitError(OpShiftError):
    """429: the per-minute rate limit or the monthly quota was exceeded."""


class ServerError(OpShiftError):
    """5xx: OpShift, or a proxy in front of it, failed; worth retrying with backoff."""


class ProxyAuthenticationError(OpShiftError):
    """407: the HTTP(S) proxy between you and OpShift refused its credentials; never retried.

    Nothing reached OpShift. Check the user and password in HTTPS_PROXY / HTTP_PROXY.
    ``status_code`` is 407, or 401 where a proxy answered CONNECT so (tinyproxy does).
    """


class NetworkError(OpShiftError):
    """No usable HTTP response: DNS failure, connection refused or reset, malformed reply."""


class RequestTimeoutError(NetworkError):
    """The call's timeout ran out before a complete response arrived."""


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_CLASSES: dict[int, type[OpShiftError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    407: ProxyAuthenticationError,
    429: RateLimitError,
}

_ADVICE = {
    400: "Fix the field named above; OpShift rejected the request as sent.",
    401: (
        "Check OPSHIFT_SECRET is the team's current webhook secret (Settings > Webhook Secret) "
        "and that the body was sent exactly as signed, not re-serialised."
    ),
    403: "The team's OpShift subscription is inactive or expired; renew it to resume.",
    404: (
        "Check the ping token or webhook id in the OpShift dashboard; a paused monitor or a "
        "disabled webhook also answers 404."
    ),
    407: (
        "A proxy between you and OpShift asks for credentials; OpShift never answers 407. "
        "Give the proxy's user and password in its URL (HTTPS_PROXY / HTTP_PROXY), e.g. "
        "http://user:password@proxy.example:3128."
    ),
    429: (
        "Slow down: pings are limited to 10 per minute per token, and monthly quotas apply; "
        "retry after the minute or raise the quota."
    ),
}
_SERVER_ADVICE = "OpShift or a proxy in front of it failed; retry later with backoff."


def error_for_status(status: int, data: bytes, url: str | None = None) -> OpShiftError:
    """Build the exception for a non-2xx response: the right subclass, parsed body, advice.

    ``url`` is the URL that was requested: a 404 names it, so a wrong path in base_url
    (``/api/api/ping/...``) is visible.
    """
    body: dict[str, Any] | None = None
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        body = parsed
    detail = body.get("error") if body is not None else None
    if not isinstance(detail, str) or not detail:
        detail = describe_body(data)
    if 500 <= status <= 599:
        cls: type[OpShiftError] = ServerError
        advice = _SERVER_ADVICE
    else:
        cls = _CLASSES.get(status, OpShiftError)
        advice = _ADVICE.get(status, "This status is not part of the OpShift API; check base_url.")
        if status == 404 and url:
            advice = (
                f"POST {url}: no monitor or webhook with that id there, or base_url has an "
                "extra path. " + advice
            )
    reason = _REASONS.get(status, "HTTP error")
    return cls(f"{status} {reason}: {detail.rstrip('.')}. {advice}", status_code=status, body=body)


def describe_body(data: bytes) -> str:
    """Summarise a body that is not OpShift's JSON envelope (an HTML page from a proxy, say)."""
    if not data:
        return "empty response body"
    text = " ".join(data[:120].decode("utf-8", "replace").split())
    more = "..." if len(data) > 120 else ""
    return f"non-JSON response body ({len(data)} bytes: {text!r}{more})"


def redirect_error(status: int, location: str | None) -> OpShiftError:
    """Explain a 3xx: the SDK never follows it, since a redirected POST can become a GET."""
    where = f" to {location}" if location else ""
    return OpShiftError(
        f"{status} redirect{where} not followed: a redirected POST can silently become a GET "
        "and lose the ping's body. Set base_url to the final address "
        "(for OpShift itself: https://www.opshift.io).",
        status_code=status,
    )
