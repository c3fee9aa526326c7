"""AsyncOpShift: the same calls, types and errors, awaited, over real HTTP."""

from __future__ import annotations

import asyncio
import threading

import pytest

import opshift
from opshift import AsyncOpShift, NotFoundError
from opshift.testing import OpShiftServer

from .helpers import SECRET


def test_ping_and_alert(server: OpShiftServer) -> None:
    """Awaited ping and alert send the same bodies and raise the same errors as the sync client."""

    async def main() -> None:
        async with AsyncOpShift(SECRET, base_url=server.url) as client:
            ping = await client.ping("payments-worker", status="down", reason="r")
            alert = await client.alert("deploy-failures", title="t", severity="sev2")
            assert ping["pingStatus"] == "down"
            assert alert["status"] == "created"
            with pytest.raises(NotFoundError) as caught:
                await client.ping("nope")
            assert caught.value.body == {"error": "Ping token not found"}

    asyncio.run(main())
    assert [r.body for r in server.requests[:2]] == [
        b'{"status":"down","reason":"r"}',
        b'{"title":"t","severity":"sev2"}',
    ]


def test_calls_run_off_the_event_loop_thread(server: OpShiftServer) -> None:
    """The blocking work happens in worker threads, so calls overlap and the loop stays free."""
    seen: list[str] = []
    inner = opshift.UrllibTransport()

    def transport(url: str, body: bytes, headers: object, timeout: float) -> tuple[int, bytes]:
        seen.append(threading.current_thread().name)
        return inner(url, body, headers, timeout)  # type: ignore[arg-type]

    async def main() -> None:
        client = AsyncOpShift(SECRET, base_url=server.url, transport=transport)
        loop_thread = threading.current_thread().name
        await asyncio.gather(*(client.alert("deploy-failures", title=f"t{n}") for n in range(4)))
        assert loop_thread not in seen

    asyncio.run(main())
    assert len(seen) == 4


def test_async_monitor(server: OpShiftServer) -> None:
    """`async with client.monitor()` pings up over HTTP when the block ends."""

    async def main() -> None:
        client = AsyncOpShift(SECRET, base_url=server.url)
        async with client.monitor("payments-worker"):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert server.requests[-1].json["status"] == "up"


def test_repr_and_sync_client() -> None:
    """The async client's repr shows settings, never the secret, and exposes the sync client."""
    client = AsyncOpShift(SECRET, base_url="http://127.0.0.1:1")
    assert repr(client).startswith("AsyncOpShift(base_url='http://127.0.0.1:1'")
    assert SECRET not in repr(client)
    assert isinstance(client.sync, opshift.OpShift)


def test_with_options_on_the_async_client(server: OpShiftServer) -> None:
    """AsyncOpShift.with_options shares the transport and changes only the copy."""

    async def main() -> str:
        client = AsyncOpShift(SECRET, base_url=server.url)
        quick = client.with_options(timeout=2, max_retries=0)
        assert (quick.sync.timeout, quick.sync.max_retries) == (2.0, 0)
        assert (client.sync.timeout, client.sync.max_retries) == (30.0, 2)
        assert quick.sync.transport is client.sync.transport
        return (await quick.ping("payments-worker"))["pingStatus"]

    assert asyncio.run(main()) == "up"
