"""OpShiftServer: the in-memory OpShift served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from ._backend import Backend
from ._model import Model, RecordedRequest

MAX_REQUEST_BYTES = 2 * 1024 * 1024


class OpShiftServer(Backend):
    """A local OpShift-compatible HTTP server on a free port, run in a background thread.

    It checks signatures (also ``previous_secret``, as during rotation), keeps monitors and
    alerts, applies the documented limits and answers with OpShift's bodies and errors.
    Every request is recorded in ``requests``.

        with OpShiftServer(secret) as server:
            server.add_monitor("payments-worker", "Payments worker")
            client = OpShift(secret, base_url=server.url)
            client.ping("payments-worker")
            assert server.requests[0].signature_valid

    Unknown tokens and webhooks answer 404 unless ``auto_create=True``. Pass a server-side
    ``ssl_context`` to serve HTTPS (e.g. to test a custom CA). ``on_request`` is called
    with each ``RecordedRequest`` once it is answered, one at a time, in order; with
    ``keep_requests=False`` nothing is kept in ``requests`` (a long-running server).
    """

    def __init__(
        self,
        secret: str,
        *,
        previous_secret: str | None = None,
        auto_create: bool = False,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        on_request: Callable[[RecordedRequest], object] | None = None,
        keep_requests: bool = True,
    ) -> None:
        super().__init__(
            Model(
                secret,
                previous_secret=previous_secret,
                auto_create=auto_create,
                clock=clock,
                on_request=on_request,
                keep_requests=keep_requests,
            )
        )
        self._httpd = _HTTPServer((host, port), _handler_for(self))
        self._scheme = "http"
        if ssl_context is not None:
            # The handshake happens in the handler thread, so a stalled client blocks no one.
            self._httpd.socket = ssl_context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
            self._scheme = "https"
        self._thread: threading.Thread | None = None
        self._connections = 0
        self._connections_lock = threading.Lock()

    @property
    def url(self) -> str:
        """The base URL for ``OpShift(base_url=...)``, e.g. ``http://127.0.0.1:54321``."""
        return f"{self._scheme}://{self._httpd.server_name}:{self._httpd.server_port}"

    @property
    def connections(self) -> int:
        """How many TCP connections clients opened (keep-alive reuse shows here)."""
        return self._connections

    def _connected(self) -> None:
        with self._connections_lock:
            self._connections += 1

    def start(self) -> OpShiftServer:
        """Start serving in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                args=(0.05,),
                name="opshift-test-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> OpShiftServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"OpShiftServer(url={self.url!r})"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops bursts of concurrent connects

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for the host's FQDN, which can hang offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up or rejects our TLS certificate is not a server bug.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _handler_for(server: OpShiftServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "OpShiftLocal/1"
        # One write per response, sent at once: headers and body in separate unbuffered
        # writes would meet the client's delayed ACK and stall kept-alive connections.
        wbufsize = 64 * 1024
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            server._connected()

        def __getattr__(self, name: str) -> Callable[[], None]:
            # http.server looks up do_<METHOD>: every method is the model's to answer (a
            # HEAD from a probe too), so each is recorded and reaches on_request.
            if name.startswith("do_"):
                return self._answer
            raise AttributeError(name)

        def _answer(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self.send_error(400, "Invalid Content-Length")
                return
            if length > MAX_REQUEST_BYTES:
                self.send_error(413, "Payload too large")
                return
            body = self.rfile.read(length) if length else b""
            status, data, ctype = server.model.handle(
                self.command, self.path, dict(self.headers.items()), body
            )
            self._send(status, data, ctype)

        def _send(self, status: int, data: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            # Refused before the model could read it (a malformed request line, headers too
            # long, a bad or too large body): OpShift's JSON error, recorded like the rest.
            self.close_connection = True  # what is left of the request is not read
            reason = message or self.responses.get(code, ("Error",))[0]
            method = getattr(self, "command", None) or "-"
            path = getattr(self, "path", None) or "-"
            self._send(*server.model.refused(method, path, code, reason))

        def log_message(self, format: str, *args: Any) -> None:
            pass  # Tests read server.requests; stderr noise helps nobody.

    return Handler
