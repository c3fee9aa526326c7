"""A minimal forward proxy on 127.0.0.1: absolute-URI HTTP requests and CONNECT tunnels.

Given ``answer``, it answers every request with those bytes instead of forwarding (a 407,
say), dripped one byte every ``drip`` seconds if asked. Closing it ends every connection
at once, kept-alive tunnels included.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlsplit

from .listener import ThreadedListener


class ProxyServer(ThreadedListener):
    """Records the request line, Proxy-Authorization and head of everything it receives."""

    def __init__(self, answer: bytes | None = None, drip: float = 0.0) -> None:
        super().__init__()
        self.answer = answer
        self.drip = drip
        self.seen: list[tuple[str, str | None]] = []
        self.heads: list[str] = []

    def __enter__(self) -> ProxyServer:
        return super().__enter__()  # type: ignore[no-any-return]

    def handle(self, conn: socket.socket) -> None:
        """Answer, forward or tunnel one client connection."""
        self._handle(conn)

    def _handle(self, client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            client.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            auth = next((ln.split(":", 1)[1].strip() for ln in lines[1:]
                         if ln.lower().startswith("proxy-authorization:")), None)  # fmt: skip
            self.seen.append((lines[0], auth))
            self.heads.append(head.decode("latin-1"))
            if self.answer is not None:
                self._send_answer(client)
                return
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)), timeout=5)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                url = urlsplit(target)
                upstream = socket.create_connection((url.hostname, url.port or 80), timeout=5)
                path = url.path + (f"?{url.query}" if url.query else "")
                kept = [ln for ln in lines[1:] if not ln.lower().startswith("proxy-")]
                request = "\r\n".join([f"{method} {path} HTTP/1.1", *kept]).encode() + b"\r\n\r\n"
                upstream.sendall(request + rest)
            self.track(upstream)
            with upstream:
                self._pipe(client, upstream)

    def _send_answer(self, client: socket.socket) -> None:
        answer = self.answer or b""
        if not self.drip:
            client.sendall(answer)
            return
        for i in range(len(answer)):
            client.sendall(answer[i : i + 1])
            if self.stop.wait(self.drip):
                return

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

        other = threading.Thread(target=pump, args=(b, a), daemon=True)
        other.start()
        pump(a, b)
        other.join()
