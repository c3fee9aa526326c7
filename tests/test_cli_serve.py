"""`opshift serve` as a real process: its URL and secret, one line per request, a clean stop."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from opshift import OpShift
from opshift.cli._serve import request_line
from opshift.testing import RecordedRequest

from .helpers import OTHER_SECRET, SECRET

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
WAIT = 30.0  # seconds a line may take before the test fails (it never waits otherwise)


class Serving:
    """A running `opshift serve`, its stdout read line by line by a thread into a queue."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPSHIFT_")}
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "opshift", "serve", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line_matching(self, pattern: str) -> re.Match[str]:
        """The next line matching ``pattern``, waiting at most WAIT seconds for it."""
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} in {WAIT} s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"serve ended before {pattern!r}: {self.seen}")
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self, signum: int) -> int:
        """Send ``signum`` and return the exit status."""
        self.process.send_signal(signum)
        return self.process.wait(WAIT)


@pytest.fixture
def serving() -> Iterator[list[Serving]]:
    """Started servers, killed at the end if a test left one running."""
    started: list[Serving] = []
    yield started
    for serve in started:
        if serve.process.poll() is None:
            serve.process.kill()
        serve.process.communicate()


def test_serve_answers_signed_pings_and_stops_on_sigint(serving: list[Serving]) -> None:
    """It prints its URL and throwaway secret, a line per request, and exits 0 on Ctrl-C."""
    serve = Serving()
    serving.append(serve)
    url = serve.line_matching(r"listening on (http://127\.0\.0\.1:\d+)$").group(1)
    secret = serve.line_matching(r"^secret: ([0-9a-f]{64})  \(a throwaway").group(1)
    export = serve.line_matching(r"^  export ").group(0)
    assert f"OPSHIFT_BASE_URL={url} OPSHIFT_SECRET={secret}" in serve.seen[-1]
    assert export
    answer = OpShift(secret, base_url=url, max_retries=0).ping("payments-worker")
    assert answer["pingStatus"] == "up"  # created on first use
    line = serve.line_matching(r"^POST ").string
    assert line.startswith("POST /api/ping/payments-worker  signature valid  -> 200")
    wrong = OpShift(OTHER_SECRET, base_url=url, max_retries=0)
    with pytest.raises(Exception, match="401"):
        wrong.alert("deploy-failures", title="t")
    line = serve.line_matching(r"^POST ").string
    assert "signature INVALID  -> 401" in line
    assert serve.stop(signal.SIGINT) == 0
    serve.line_matching(r"^stopped after 2 request\(s\)$")


def test_serve_never_prints_a_given_secret(serving: list[Serving]) -> None:
    """A secret from OPSHIFT_SECRET is used but not printed; SIGTERM stops it with 0."""
    serve = Serving(env={"OPSHIFT_SECRET": SECRET})
    serving.append(serve)
    url = serve.line_matching(r"listening on (http://\S+)$").group(1)
    serve.line_matching(r"^secret: \(from OPSHIFT_SECRET, not shown\)$")
    OpShift(SECRET, base_url=url, max_retries=0).alert("deploy-failures", title="t")
    serve.line_matching(r"^POST /api/alerts/trigger/deploy-failures  signature valid  -> 200")
    assert serve.stop(signal.SIGTERM) == 0
    out = "\n".join(serve.seen) + (serve.process.communicate()[0] or "")
    assert SECRET not in out


def test_serve_prints_a_line_for_every_method(serving: list[Serving]) -> None:
    """HEAD and methods OpShift has no use for get an answer and a line each, as POSTs do."""
    import http.client

    serve = Serving()
    serving.append(serve)
    host, port = serve.line_matching(r"listening on http://([\d.]+):(\d+)$").groups()
    connection = http.client.HTTPConnection(host, int(port), timeout=WAIT)
    try:
        for method, path in [("HEAD", "/api/ping/w"), ("BREW", "/coffee"), ("HEAD", "/")]:
            connection.request(method, path)
            response = connection.getresponse()
            body = response.read()
            assert response.status in (404, 405), (method, response.status)
            assert (body == b"") == (method == "HEAD"), body  # HEAD: headers only
    finally:
        connection.close()
    assert serve.line_matching(r"^HEAD ").string == (
        "HEAD /api/ping/w  no signature  -> 405 Method not allowed"
    )
    assert serve.line_matching(r"^BREW ").string == "BREW /coffee  no signature  -> 404 Not found"
    assert serve.line_matching(r"^HEAD ").string == "HEAD /  no signature  -> 404 Not found"
    assert serve.stop(signal.SIGINT) == 0
    serve.line_matching(r"^stopped after 3 request\(s\)$")


def test_serve_prints_a_line_for_a_request_it_refuses_unread(serving: list[Serving]) -> None:
    """A malformed request, a bad or too big Content-Length: a JSON error and a line each."""
    import socket

    serve = Serving()
    serving.append(serve)
    host, port = serve.line_matching(r"listening on http://([\d.]+):(\d+)$").groups()
    sent = [
        (b"POST /api/ping/w HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", b"Payload too large"),
        (b"POST /api/ping/w HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"Invalid Content-Length"),
        (b"nonsense\r\n\r\n", b"Bad request syntax"),
    ]
    for request, error in sent:
        with socket.create_connection((host, int(port)), timeout=WAIT) as connection:
            connection.sendall(request)
            answer = b"".join(iter(lambda: connection.recv(4096), b""))  # closed after it
        assert b'{"error": "' + error in answer, answer
    assert serve.line_matching(r"-> 413").string == (
        "POST /api/ping/w  no signature  -> 413 Payload too large"
    )
    assert serve.line_matching(r"-> 400").string.endswith("-> 400 Invalid Content-Length")
    assert "-> 400 Bad request syntax ('nonsense')" in serve.line_matching(r"-> 400").string
    assert serve.stop(signal.SIGINT) == 0


def test_serve_rejects_a_malformed_secret_flag() -> None:
    """A bad --secret exits 2 naming --secret, without starting a server."""
    done = subprocess.run(
        [sys.executable, "-m", "opshift", "serve", "--secret", "hunter2"],
        capture_output=True, text=True, timeout=WAIT,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--secret" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


def test_serve_says_when_the_port_is_taken(serving: list[Serving]) -> None:
    """A port already in use is a usage error (2) naming the address."""
    first = Serving()
    serving.append(first)
    port = first.line_matching(r"listening on http://127\.0\.0\.1:(\d+)$").group(1)
    done = subprocess.run(
        [sys.executable, "-m", "opshift", "serve", "--port", port],
        capture_output=True, text=True, timeout=WAIT,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert first.stop(signal.SIGINT) == 0


@pytest.mark.parametrize(
    ("signature", "valid", "status", "response", "line"),
    [
        pytest.param(None, False, 401, b'{"error": "Missing webhook signature"}',
                     "GET /api/ping/w  no signature  -> 401 Missing webhook signature",
                     id="unsigned"),
        pytest.param("ab", True, 200, b"not json", "GET /api/ping/w  signature valid  -> 200",
                     id="not-json"),
    ],
)  # fmt: skip
def test_a_request_line_reads_at_a_glance(
    signature: str | None, valid: bool, status: int, response: bytes, line: str
) -> None:
    """Each request line shows method, path, the signature's verdict, status and message."""
    headers = {} if signature is None else {"X-Webhook-Signature": signature}
    request = RecordedRequest("GET", "/api/ping/w", headers, b"", valid, status, response)
    assert request_line(request) == line


def test_the_server_hands_each_request_to_on_request_and_can_keep_none() -> None:
    """on_request sees every answered request in order; keep_requests=False keeps no list."""
    from opshift import OpShift
    from opshift.testing import OpShiftServer

    seen: list[RecordedRequest] = []
    with OpShiftServer(
        SECRET, auto_create=True, on_request=seen.append, keep_requests=False
    ) as server:
        client = OpShift(SECRET, base_url=server.url, max_retries=0)
        client.ping("a")
        client.alert("b", title="t")
    assert [(r.path, r.status) for r in seen] == [
        ("/api/ping/a", 200),
        ("/api/alerts/trigger/b", 200),
    ]
    assert server.requests == []
