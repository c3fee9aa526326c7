"""AsyncOpShift: the same client for asyncio apps, each call run in a worker thread.

    client = AsyncOpShift()
    await client.ping("payments-worker", status="down", reason="stripe-timeout")

The sync client's work (signing, blocking I/O) runs through ``asyncio.to_thread`` so the
event loop never blocks. Same arguments, return types and errors as ``OpShift``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .client import OpShift
from .types import AlertResponse, Metadata, PingResponse, PingStatus, Severity

if TYPE_CHECKING:
    from ._retry import RetryPolicy
    from .monitor import JobMonitor
    from .transport import Transport

__all__ = ["AsyncOpShift"]


class AsyncOpShift:
    """An asyncio facade over ``OpShift``; the constructor takes the same arguments."""

    def __init__(
        self,
        secret: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int | None = None,
        retry_backoff: float | None = None,
        retry_policy: RetryPolicy | None = None,
        transport: Transport | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.sync = OpShift(
            secret,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            retry_policy=retry_policy,
            transport=transport,
            enabled=enabled,
        )

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_backoff: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> AsyncOpShift:
        """A client sharing this one's secret and transport, with some settings changed.

        See ``OpShift.with_options``; no I/O, and the original is untouched.
        """
        copy = object.__new__(AsyncOpShift)
        copy.sync = self.sync.with_options(
            timeout=timeout,
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            retry_policy=retry_policy,
        )
        return copy

    async def ping(
        self,
        ping_token: str,
        *,
        status: PingStatus | None = None,
        reason: str | None = None,
        group_key: str | None = None,
        metadata: Metadata | None = None,
    ) -> PingResponse:
        """Send a heartbeat; see ``OpShift.ping``."""
        return await asyncio.to_thread(
            self.sync.ping,
            ping_token,
            status=status,
            reason=reason,
            group_key=group_key,
            metadata=metadata,
        )

    async def alert(
        self,
        webhook_url: str,
        *,
        title: str,
        description: str | None = None,
        severity: Severity | None = None,
        metadata: Metadata | None = None,
        group_key: str | None = None,
    ) -> AlertResponse:
        """Raise an alert; see ``OpShift.alert``."""
        return await asyncio.to_thread(
            self.sync.alert,
            webhook_url,
            title=title,
            description=description,
            severity=severity,
            metadata=metadata,
            group_key=group_key,
        )

    def monitor(
        self,
        ping_token: str,
        *,
        metadata: Metadata | None = None,
        group_key: str | None = None,
    ) -> JobMonitor:
        """``async with client.monitor("token"):`` or decorate an ``async def``."""
        return self.sync.monitor(ping_token, metadata=metadata, group_key=group_key)

    async def close(self) -> None:
        """Release the default transport's resources."""
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncOpShift:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"
