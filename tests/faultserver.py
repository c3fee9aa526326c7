"""A raw-socket HTTP server on 127.0.0.1 that misbehaves on cue, for the fault matrix.

Each request read is recorded, then the next behaviour writes whatever bytes (or silence,
or a reset) the test wants. The connection is closed after it unless the behaviour returns
True (keep-alive). Waiting inside a behaviour uses the server's stop event, so closing the
server ends every behaviour at once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from typing import Callable

from .listener import ThreadedListener

Behaviour = Callable[[socket.socket, "FaultServer"], "bool | None"]


class FaultServer(ThreadedListener):
    """Serve behaviours in order, one per request; the last one repeats."""

    def __init__(self, behaviours: Sequence[Behaviour]) -> None:
        super().__init__()
        self.behaviours = list(behaviours)
        self.requests: list[bytes] = []
        self.sent = 0  # body bytes a flooding behaviour managed to send
        self._served: dict[socket.socket, int] = {}
        self.closed = 0  # connections this server has closed (or seen closed)
        self._closed_changed = threading.Condition()
        self._lock = threading.Lock()

    def __enter__(self) -> FaultServer:
        return super().__enter__()  # type: ignore[no-any-return]

    def handle(self, conn: socket.socket) -> None:
        """Read each request on ``conn`` and answer it with the next behaviour."""
        self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(5)
                while not self.stop.is_set():
                    request = _read_request(conn)
                    if not request:
                        return
                    with self._lock:
                        self.requests.append(request)
                        index = min(len(self.requests), len(self.behaviours)) - 1
                        self._served[conn] = self._served.get(conn, 0) + 1
                    if not self.behaviours[index](conn, self):
                        return
        except OSError:
            pass  # the client hung up, as most faults make it do
        finally:
            with self._closed_changed:
                self.closed += 1
                self._closed_changed.notify_all()

    def wait_closed(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until the server has closed ``count`` connections; False if it did not."""
        with self._closed_changed:
            return self._closed_changed.wait_for(lambda: self.closed >= count, timeout)

    def served_on(self, conn: socket.socket) -> int:
        """How many requests this connection carried so far, the current one included."""
        return self._served[conn]

    def signatures(self) -> list[str]:
        """The X-Webhook-Signature of each recorded request."""
        found = []
        for raw in self.requests:
            for line in raw.split(b"\r\n"):
                if line.lower().startswith(b"x-webhook-signature:"):
                    found.append(line.split(b":", 1)[1].strip().decode())
        return found

    def bodies(self) -> list[bytes]:
        return [raw.split(b"\r\n\r\n", 1)[1] for raw in self.requests]


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def respond(raw: bytes, keep_open: bool = False) -> Behaviour:
    """Send these exact bytes, then close (or wait for the next request)."""

    def behaviour(conn: socket.socket, server: FaultServer) -> bool:
        conn.sendall(raw)
        return keep_open

    return behaviour


def keep_alive_ok(body: bytes) -> Behaviour:
    """A 200 that keeps the connection open for the next request."""
    return respond(answer(body), keep_open=True)


def answer(body: bytes, head: str = "") -> bytes:
    """A 200 with this JSON body and Content-Length, plus any extra header lines in ``head``."""
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{head}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def ping_body(message: str) -> bytes:
    """OpShift's answer to a ping, with ``message`` saying which answer it is."""
    monitor = {"name": "w", "status": "up", "monitoringActive": True}
    return json.dumps({"message": message, "monitor": monitor, "pingStatus": "up"}).encode()


def json_response(status: int, body: bytes, reason: str = "OK", extra: str = "") -> Behaviour:
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}"
    return respond(
        f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
    )


def drip(raw: bytes, interval: float) -> Behaviour:
    """Send one byte every ``interval`` seconds: each recv is quick, the whole is not."""

    def behaviour(conn: socket.socket, server: FaultServer) -> None:
        for i in range(len(raw)):
            conn.sendall(raw[i : i + 1])
            if server.stop.wait(interval):
                return

    return behaviour


def silent(conn: socket.socket, server: FaultServer) -> None:
    """Read the request and never answer, until the client gives up or the test ends."""
    conn.settimeout(0.05)
    while not server.stop.is_set():
        try:
            if conn.recv(1) == b"":
                return
        except socket.timeout:
            continue


def reset_after(raw: bytes) -> Behaviour:
    """Send ``raw``, then abort the connection with a TCP reset."""

    def behaviour(conn: socket.socket, server: FaultServer) -> None:
        conn.sendall(raw)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return behaviour


def flood(head: bytes, chunk: bytes = b"[" * 65536, total: int = 64 * 1024 * 1024) -> Behaviour:
    """Send ``head``, then ``chunk`` again and again up to ``total`` bytes, counting them."""

    def behaviour(conn: socket.socket, server: FaultServer) -> None:
        conn.sendall(head)
        for _ in range(total // len(chunk)):
            if server.stop.is_set():
                return
            conn.sendall(chunk)
            server.sent += len(chunk)

    return behaviour


# A 200 whose body never ends (no Content-Length); bounded at 64 MiB for safety.
endless = flood(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")


class DripRelay(ThreadedListener):
    """A TCP relay to ``upstream`` that passes the client's bytes at once and drips the
    upstream's back one byte every ``interval`` seconds (a slow TLS handshake, say)."""

    def __init__(self, upstream: tuple[str, int], interval: float) -> None:
        super().__init__()
        self.upstream = upstream
        self.interval = interval

    def __enter__(self) -> DripRelay:
        return super().__enter__()  # type: ignore[no-any-return]

    def on_accept(self, conn: socket.socket) -> None:
        """Open the upstream connection and pump both ways, one thread each."""
        upstream = socket.create_connection(self.upstream, timeout=5)
        self.track(upstream)
        self.spawn(self._pump, conn, upstream, 0.0)
        self.spawn(self._pump, upstream, conn, self.interval)

    def _pump(self, src: socket.socket, dst: socket.socket, interval: float) -> None:
        with contextlib.suppress(OSError):
            while not self.stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if not interval:
                    dst.sendall(data)
                    continue
                for i in range(len(data)):
                    dst.sendall(data[i : i + 1])
                    if self.stop.wait(interval):
                        return


@contextlib.contextmanager
def blackhole() -> Iterator[tuple[str, int] | None]:
    """A loopback address whose connects hang (a listener with a full backlog), or None
    where this platform answers them anyway."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    queued = socket.create_connection(address, timeout=1)  # fills the backlog of one
    probe = socket.socket()
    probe.settimeout(0.1)
    try:
        probe.connect(address)
    except socket.timeout:
        yield address
    except OSError:
        yield None
    else:
        yield None
    finally:
        for sock in (probe, queued, listener):
            sock.close()
