"""FakeTransport: OpShift's answers without a socket, for fast unit tests."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Callable
from urllib.parse import urlsplit

from ._backend import Backend
from ._model import Model

Responder = Callable[[str, bytes, Mapping[str, str]], tuple[int, bytes]]


class FakeTransport(Backend):
    """A transport that answers like OpShift in memory and records every request.

    Pass it as ``OpShift(secret, transport=FakeTransport(secret))``. Signatures are
    verified against ``secret`` (a wrong one gets OpShift's 401). Queue canned answers
    with ``respond()`` / ``fail_next()``, or raise with ``raise_next()``; otherwise the
    in-memory OpShift answers. Unknown tokens and webhooks are created on first use
    unless ``auto_create=False``.
    """

    def __init__(
        self,
        secret: str,
        *,
        previous_secret: str | None = None,
        auto_create: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            Model(secret, previous_secret=previous_secret, auto_create=auto_create, clock=clock)
        )
        self.calls: list[tuple[str, bytes, Mapping[str, str], float]] = []
        self._raises: list[BaseException] = []

    def respond(self, status: int = 200, body: bytes | dict[str, Any] | None = None) -> None:
        """Answer the next request with this status and body (a dict is sent as JSON)."""
        self.fail_next(status, body if body is not None else {}, times=1)

    def raise_next(self, exc: BaseException) -> None:
        """Make the next call raise ``exc``, as a network failure would."""
        self._raises.append(exc)

    def __call__(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        self.calls.append((url, body, headers, timeout))
        if self._raises:
            raise self._raises.pop(0)
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        status, data, _ = self.model.handle("POST", path, headers, body)
        return status, data

    def __repr__(self) -> str:
        return f"FakeTransport(requests={len(self.requests)})"
