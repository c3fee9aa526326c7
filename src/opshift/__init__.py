"""OpShift's Python SDK: signed heartbeat pings and webhook alerts, standard library only.

    from opshift import OpShift
    opshift = OpShift(secret=os.environ["OPSHIFT_SECRET"])
    opshift.ping("payments-worker", status="down", reason="stripe-timeout")
    opshift.alert("deploy-failures", title="Deploy failed", severity="sev1")

``import opshift`` loads only what a call needs (json, hmac); transports, types, the
async facade and job monitoring are imported on first use, so CLIs, cron jobs and
serverless cold starts stay fast.
"""

from ._retry import RetryPolicy
from ._signing import sign, verify
from ._version import __version__
from .client import OpShift
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NetworkError,
    NotFoundError,
    OpShiftError,
    PermissionDeniedError,
    ProxyAuthenticationError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from .async_client import AsyncOpShift
    from .handler import AlertHandler
    from .heartbeat import Heartbeat
    from .monitor import JobMonitor
    from .outbox import Outbox, OutboxStats
    from .transport import KeepAliveTransport, Transport, UrllibTransport
    from .types import (
        AlertResponse,
        AlertStatus,
        Metadata,
        MonitorInfo,
        MonitorStatus,
        Pinger,
        PingResponse,
        PingStatus,
        Severity,
    )
del TYPE_CHECKING

__all__ = [
    "AlertHandler",
    "AlertResponse",
    "AlertStatus",
    "AsyncOpShift",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "Heartbeat",
    "JobMonitor",
    "KeepAliveTransport",
    "Metadata",
    "MonitorInfo",
    "MonitorStatus",
    "NetworkError",
    "NotFoundError",
    "OpShift",
    "OpShiftError",
    "Outbox",
    "OutboxStats",
    "PermissionDeniedError",
    "PingResponse",
    "PingStatus",
    "Pinger",
    "ProxyAuthenticationError",
    "RateLimitError",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerError",
    "Severity",
    "Transport",
    "UrllibTransport",
    "__version__",
    "sign",
    "verify",
]

# Public names whose modules are imported on first use: name -> module.
_LAZY = {
    "AlertHandler": "handler",
    "AsyncOpShift": "async_client",
    "Heartbeat": "heartbeat",
    "JobMonitor": "monitor",
    "Outbox": "outbox",
    "OutboxStats": "outbox",
    "KeepAliveTransport": "transport",
    "Transport": "transport",
    "UrllibTransport": "transport",
    "AlertResponse": "types",
    "AlertStatus": "types",
    "Metadata": "types",
    "MonitorInfo": "types",
    "MonitorStatus": "types",
    "PingResponse": "types",
    "PingStatus": "types",
    "Pinger": "types",
    "Severity": "types",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'opshift' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
