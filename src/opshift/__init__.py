"""OpShift's Python SDK: signed heartbeat pings and webhook alerts, standard library only.

from opshift import OpShift
opshift = OpShift(secret=os.environ["OPSHIFT_SECRET"])
opshift.ping("payments-worker", status="down", reason="stripe-timeout")
opshift.alert("deploy-failures", title="Deploy failed", severity="sev1")
"""

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

__all__ = [
    "AlertResponse",
    "AlertStatus",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
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
