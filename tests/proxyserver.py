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

from .faultserver import close_all, wake


class ProxyServer:
    """Records the request line, Proxy-Authorization and head of everything it receives."""

    def __init__(self, answer: bytes | None = None, drip: float = 0.0) -> None:
        self.answer = answer
        self.drip = drip
        self.seen: list[tuple[str, str | None]] = []
        self.heads: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def __enter__(self) -> ProxyServer:
        self._accepter.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        wake(self._port)
        self._accepter.join()
        close_all(self._sockets)
        for thread in self._threads:
            thread.join()
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            if self._stop.is_set():
                client.close()  # the wake-up call from __exit__
                break
            self._sockets.append(client)
            thread = threading.Thread(target=self._handle, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

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
            self._sockets.append(upstream)
            with upstream:
                self._pipe(client, upstream)

    def _send_answer(self, client: socket.socket) -> None:
        answer = self.answer or b""
        if not self.drip:
            client.sendall(answer)
            return
        for i in range(len(answer)):
            client.sendall(answer[i : i + 1])
            if self._stop.wait(self.drip):
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
