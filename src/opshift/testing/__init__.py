"""Test helpers: a local OpShift-compatible server and an in-memory fake transport.

``OpShiftServer`` serves OpShift's API over real HTTP on 127.0.0.1; ``FakeTransport``
answers the same way without a socket. Both check signatures, keep monitors and alerts,
apply the documented limits and record every request.
"""

from ._fake import FakeTransport
from ._model import Alert, FilterRule, Model, Monitor, RecordedRequest, Webhook
from ._server import OpShiftServer

__all__ = [
    "Alert",
    "FakeTransport",
    "FilterRule",
    "Model",
    "Monitor",
    "OpShiftServer",
    "RecordedRequest",
    "Webhook",
]
