"""A raw-socket HTTP server on 127.0.0.1 that misbehaves on cue, for the fault matrix.

Each request read is recorded, then the next behaviour writes whatever bytes (or silence,
or a reset) the test wants. The connection is closed after it unless the behaviour returns
True (keep-alive). Waiting inside a behaviour uses the server's stop event, so closing the
server ends every behaviour at once.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Sequence
from typing import Callable

Behaviour = Callable[[socket.socket, "FaultServer"], "bool | None"]


class FaultServer:
    """Serve behaviours in order, one per request; the last one repeats."""

    def __init__(self, behaviours: Sequence[Behaviour]) -> None:
        self.behaviours = list(behaviours)
        self.requests: list[bytes] = []
        self.connections = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> FaultServer:
        self._accepter.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self._accepter.join()
        for thread in self._threads:
            thread.join()
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                while not self.stop.is_set():
                    request = _read_request(conn)
                    if not request:
                        return
                    with self._lock:
                        self.requests.append(request)
                        index = min(len(self.requests), len(self.behaviours)) - 1
                    if not self.behaviours[index](conn, self):
                        return
            except OSError:
                pass  # the client hung up, as most faults make it do

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
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return respond(head.encode() + body, keep_open=True)


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


def endless(conn: socket.socket, server: FaultServer) -> None:
    """A 200 whose body never ends (no Content-Length); bounded at 64 MiB for safety."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    chunk = b"[" * 65536
    for _ in range(1024):
        if server.stop.is_set():
            return
        conn.sendall(chunk)
