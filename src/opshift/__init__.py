"""OpShift's Python SDK: signed heartbeat pings and webhook alerts, standard library only.

from opshift import OpShift
opshift = OpShift(secret=os.environ["OPSHIFT_SECRET"])
opshift.ping("payments-worker", status="down", reason="stripe-timeout")
opshift.alert("deploy-failures", title="Deploy failed", severity="sev1")
"""

from typing import TYPE_CHECKING

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
    RateLimitError,
    RequestTimeoutError,
    ServerError,
)
from .transport import Transport, UrllibTransport
from .types import (
    AlertResponse,
    AlertStatus,
    Metadata,
    MonitorInfo,
    MonitorStatus,
    PingResponse,
    PingStatus,
    Severity,
)

if TYPE_CHECKING:
    from .async_client import AsyncOpShift
    from .heartbeat import Heartbeat
    from .monitor import JobMonitor

__all__ = [
    "AlertResponse",
    "AlertStatus",
    "AsyncOpShift",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "Heartbeat",
    "JobMonitor",
    "Metadata",
    "MonitorInfo",
    "MonitorStatus",
    "NetworkError",
    "NotFoundError",
    "OpShift",
    "OpShiftError",
    "PermissionDeniedError",
    "PingResponse",
    "PingStatus",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "Severity",
    "Transport",
    "UrllibTransport",
    "__version__",
    "sign",
    "verify",
]

del TYPE_CHECKING

# Imported on first use: they pull in asyncio and threading, which `import opshift` avoids.
_LAZY = {
    "AsyncOpShift": "async_client",
    "Heartbeat": "heartbeat",
    "JobMonitor": "monitor",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'opshift' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)
