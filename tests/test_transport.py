"""The fault matrix: a raw-socket server misbehaves, the client fails fast and clearly.

Every test that takes ``make_client`` runs on both transports.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

import pytest

import opshift
from opshift import (
    AuthenticationError,
    ConfigurationError,
    KeepAliveTransport,
    NetworkError,
    OpShift,
    OpShiftError,
    ProxyAuthenticationError,
    RequestTimeoutError,
    ServerError,
    UrllibTransport,
)
from opshift.testing import OpShiftServer
from opshift.transport import translate_exception

from . import faultserver as fs
from .helpers import PING_OK, SECRET, TRANSPORTS, Certificate, refused_url
from .proxyserver import ProxyServer

OK = fs.json_response(200, PING_OK)
# Generous margin over the call's timeout: proves "bounded", without timing flakiness.
SLACK = 3.0


class MakeClient(Protocol):
    def __call__(
        self, base_url: str, *, timeout: float = ..., max_retries: int = ...
    ) -> OpShift: ...


@pytest.fixture(params=["urllib", "keepalive"])
def transport_name(request: pytest.FixtureRequest) -> str:
    """The transport under test: every fault test runs on each."""
    return str(request.param)


@pytest.fixture
def make_client(transport_name: str) -> Iterator[MakeClient]:
    """Clients for the transport under test; their transports are closed after the test."""
    opened: list[object] = []

    def make(base_url: str, *, timeout: float = 30.0, max_retries: int = 2) -> OpShift:
        transport = TRANSPORTS[transport_name]()
        opened.append(transport)
        return OpShift(
            SECRET,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            retry_backoff=0,
            transport=transport,
        )

    yield make
    for transport in opened:
        if isinstance(transport, KeepAliveTransport):
            transport.close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with no proxy settings; tests add the ones they need."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def run(
    make_client: MakeClient,
    behaviours: Sequence[fs.Behaviour],
    timeout: float = 30.0,
    max_retries: int = 2,
) -> tuple[OpShiftError, float, fs.FaultServer]:
    """Ping a FaultServer; return the error raised, the elapsed seconds and the server."""
    with fs.FaultServer(behaviours) as server:
        client = make_client(server.url, timeout=timeout, max_retries=max_retries)
        started = time.monotonic()
        with pytest.raises(OpShiftError) as caught:
            client.ping("w", status="down", reason="fault")
        elapsed = time.monotonic() - started
    return caught.value, elapsed, server


def malformed(raw: bytes) -> NetworkError:
    """The error a ping gets when the server answers ``raw``; asserts it is a malformed one."""
    with fs.FaultServer([fs.respond(raw)]) as server:
        client = OpShift(SECRET, base_url=server.url, max_retries=0)
        with pytest.raises(OpShiftError) as caught:
            client.ping("w")
    assert type(caught.value) is NetworkError, repr(caught.value)
    assert "malformed or truncated HTTP response" in str(caught.value)
    return caught.value


HTML_502 = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
HEAD_100 = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"


def chunked(*parts: bytes, size: bytes = b"%x") -> bytes:
    """A chunked body of these parts, each size written with ``size``, then the last chunk."""
    sizes = [size % len(part) if b"%" in size else size for part in parts]
    return b"".join(s + b"\r\n" + p + b"\r\n" for s, p in zip(sizes, parts)) + b"0\r\n\r\n"


CHUNKED_OK = CHUNKED + b"\r\n" + chunked(PING_OK[:30], PING_OK[30:])


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(fs.drip(HEAD_100 + b"x" * 100, 0.05), id="drip-body"),
        pytest.param(fs.drip(b"HTTP/1.1 200 OK\r\n" * 20, 0.05), id="drip-status-and-headers"),
        pytest.param(fs.silent, id="never-answers"),
    ],
)
def test_slow_servers_are_bounded_by_the_whole_call_timeout(
    make_client: MakeClient, behaviour: fs.Behaviour
) -> None:
    """A server that drips or stalls cannot hold a call past its timeout."""
    error, elapsed, server = run(make_client, [behaviour], timeout=0.3, max_retries=2)
    assert isinstance(error, RequestTimeoutError)
    assert error.status_code == 0
    assert "timed out" in str(error)
    assert elapsed < 0.3 + SLACK
    assert len(server.requests) == 1  # no time left for a retry


@pytest.mark.parametrize(
    ("behaviour", "cls", "status", "text"),
    [
        pytest.param(fs.reset_after(HEAD_100 + b"x" * 10), NetworkError, 0, "closed", id="reset-mid-body"),
        pytest.param(fs.respond(HEAD_100 + b"x" * 10), NetworkError, 0, "truncated", id="cut-short"),
        pytest.param(fs.respond(b""), NetworkError, 0, "closed", id="closed-without-answer"),
        pytest.param(fs.respond(b"garbage\r\n\r\n"), NetworkError, 0, "malformed", id="not-http"),
        pytest.param(fs.endless, NetworkError, 0, "cap", id="endless-body"),
        pytest.param(
            fs.json_response(200, b'{"message": "Ping rec'), OpShiftError, 200, "not valid JSON",
            id="truncated-json",
        ),
        pytest.param(fs.json_response(200, b""), OpShiftError, 200, "empty body", id="empty-200"),
        pytest.param(
            fs.respond(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s"
                % (len(HTML_502), HTML_502)
            ),
            ServerError, 502, "non-JSON", id="html-502",
        ),
        pytest.param(
            fs.respond(HEAD_100.replace(b"100", str(2 * 1024 * 1024).encode())),
            NetworkError, 0, "cap", id="declared-too-large",
        ),
    ],
)  # fmt: skip
def test_broken_responses_raise_clear_errors(
    make_client: MakeClient,
    behaviour: fs.Behaviour,
    cls: type[OpShiftError],
    status: int,
    text: str,
) -> None:
    """Each broken response is an OpShiftError with the right class, status and message."""
    error, elapsed, _ = run(make_client, [behaviour], timeout=5, max_retries=0)
    assert type(error) is cls, repr(error)
    assert error.status_code == status
    assert text in str(error)
    assert elapsed < 5 + SLACK


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(CHUNKED_OK, id="chunked"),
        pytest.param(CHUNKED.replace(b"chunked", b"Chunked") + b"\r\n" + chunked(PING_OK), id="chunked-any-case"),
        pytest.param(CHUNKED + b"\r\n" + chunked(PING_OK, size=b"%x ;name=value"), id="chunk-extension"),
        pytest.param(CHUNKED + b"\r\n" + chunked(PING_OK)[:-2], id="last-chunk-then-eof"),
        pytest.param(CHUNKED + b"\r\n" + chunked(PING_OK)[:-2] + b"X-Trailer: 1\r\n\r\n", id="trailer"),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + PING_OK, id="http10-close-delimited"),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(PING_OK), PING_OK),
            id="interim-100",
        ),
        pytest.param(
            b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
            b"HTTP/1.1 100 Continue\r\n\r\n" + fs.answer(PING_OK),
            id="interim-102-103-100",
        ),
        pytest.param(fs.answer(PING_OK, "X-A: 1\r\nX-A: 2\r\nConnection: close\r\n"), id="repeated-header"),
        pytest.param(fs.answer(PING_OK, "X-Long: a\r\n folded\r\n\tagain\r\n"), id="obs-fold"),
        pytest.param(fs.answer(PING_OK, f"Content-Length: {len(PING_OK)}\r\n"), id="same-length-twice"),
        pytest.param(
            fs.answer(PING_OK).replace(b"Length: %d" % len(PING_OK), b"Length: %d, %d" % (len(PING_OK), len(PING_OK))),
            id="same-length-listed",
        ),
        pytest.param(fs.answer(PING_OK).replace(b"200 OK", b"200"), id="no-reason-phrase"),
    ],
)  # fmt: skip
def test_unusual_but_valid_responses(make_client: MakeClient, raw: bytes) -> None:
    """Valid HTTP/1.x framings all parse to the same answer on every transport."""
    with fs.FaultServer([fs.respond(raw)]) as server:
        result = make_client(server.url, max_retries=0).ping("w")
    assert result["message"] == "Ping received"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        pytest.param(CHUNKED_OK[:-20], "truncated", id="chunked-cut-short"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "malformed",
            id="bad-chunk-size",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "malformed", id="headers-cut-short"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n",
            "malformed",
            id="headers-cut-short-no-length",
        ),
        pytest.param(b"HTTP/1.1 200 OK", "malformed", id="status-line-cut-short"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
            "malformed",
            id="header-too-long",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 150 + b"\r\n", "malformed", id="too-many-headers"
        ),
        pytest.param(
            CHUNKED + b"\r\n" + chunked(PING_OK).replace(b"\r\n0\r\n", b"XY0\r\n"),
            "malformed",
            id="chunk-data-not-followed-by-crlf",
        ),
    ],
)
def test_malformed_framing(make_client: MakeClient, raw: bytes, text: str) -> None:
    """Broken framing is a NetworkError saying the response was malformed or truncated."""
    error, _, _ = run(make_client, [fs.respond(raw)], timeout=5, max_retries=0)
    assert type(error) is NetworkError
    assert "malformed or truncated HTTP response" in str(error)


# -- issue 9: every hostile answer, on both transports ----------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(fs.answer(fs.ping_body("STALE")), id="a-second-response"),
        pytest.param(b"\r\n", id="stray-crlf"),
        pytest.param(b"junk line\r\n", id="junk-line"),
    ],
)
def test_bytes_after_an_answer_never_reach_the_next_call(
    make_client: MakeClient, extra: bytes
) -> None:
    """Whatever follows an answer on its connection is dropped with it (issue 9, item 1)."""
    first = fs.respond(fs.answer(fs.ping_body("first")) + extra, keep_open=True)
    second = fs.respond(fs.answer(fs.ping_body("second")), keep_open=True)
    with fs.FaultServer([first, second]) as server:
        client = make_client(server.url, max_retries=0)
        assert client.ping("w")["message"] == "first"
        assert client.ping("w")["message"] == "second"
    assert len(server.requests) == 2  # nothing re-sent, so OpShift saw each ping once
    assert server.connections == 2


def test_a_204_with_a_body_never_leaks_into_the_next_call(make_client: MakeClient) -> None:
    """A body after a 204 (which has none) is not read as the next call's answer (item 1)."""
    no_content = b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"
    stale = fs.answer(fs.ping_body("STALE"))
    first = fs.respond(no_content + stale, keep_open=True)
    second = fs.respond(fs.answer(fs.ping_body("second")), keep_open=True)
    with fs.FaultServer([first, second]) as server:
        client = make_client(server.url, max_retries=0)
        with pytest.raises(OpShiftError) as caught:
            client.ping("w")
        assert caught.value.status_code == 204
        assert client.ping("w")["message"] == "second"
    assert len(server.requests) == 2


def test_connect_names_the_port_even_when_it_is_443(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """CONNECT www.opshift.io:443 HTTP/1.1 with the same Host, behind any proxy (item 3)."""
    with ProxyServer(answer=b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n") as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        client = OpShift(SECRET, transport=TRANSPORTS[transport_name](), max_retries=0)
        with pytest.raises(NetworkError) as caught:
            client.ping("w")
    request_line, host = proxy.heads[0].split("\r\n")[:2]
    assert request_line == "CONNECT www.opshift.io:443 HTTP/1.1"
    assert host == "Host: www.opshift.io:443"
    message = str(caught.value)
    assert f"proxy {proxy.url[len('http://') :]}" in message
    assert "403" in message
    assert "HTTPS_PROXY" in message


def test_a_malformed_keep_alive_hint_is_ignored(make_client: MakeClient) -> None:
    """`Keep-Alive: timeout=²` is a hint gone wrong, not a failed call: the answer stands."""
    raw = (
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=\xb2, max=100\r\nContent-Length: %d\r\n\r\n%s"
        % (
            len(PING_OK),
            PING_OK,
        )
    )
    with fs.FaultServer([fs.respond(raw, keep_open=True)]) as server:
        assert make_client(server.url, max_retries=0).ping("w")["message"] == "Ping received"


def test_a_trailer_longer_than_read_never_leaks_into_the_next_call(
    make_client: MakeClient,
) -> None:
    """A trailer the client stops reading is never finished as the next call's answer."""
    trailer = b"X-T: y\r\n" * 33  # as many lines as the client reads; the rest comes later
    first = fs.respond(CHUNKED + b"\r\n" + chunked(PING_OK)[:-2] + trailer, keep_open=True)

    def second(conn: socket.socket, server: fs.FaultServer) -> bool:
        if server.served_on(conn) > 1:  # the first connection was reused: finish the trailer
            conn.sendall(b"\r\n" + fs.answer(fs.ping_body("FORGED")))
        else:
            conn.sendall(fs.answer(fs.ping_body("second")))
        return True

    with fs.FaultServer([first, second]) as server:
        client = make_client(server.url, max_retries=0)
        assert client.ping("w")["message"] == "Ping received"
        assert client.ping("w")["message"] == "second"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        pytest.param(b"HTTP/1.1 200 Connection established\r\nVia: 1.1 pr", "cut short", id="cut"),
        pytest.param(
            b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            "sent data after its CONNECT answer",
            id="data-before-tls",
        ),
    ],
)
def test_a_connect_answer_that_is_not_a_clean_tunnel_is_refused(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch, answer: bytes, problem: str
) -> None:
    """A 200 to CONNECT cut short, or followed by bytes before TLS, opens no tunnel."""
    with ProxyServer(answer=answer) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        client = OpShift(SECRET, transport=TRANSPORTS[transport_name](), max_retries=0)
        with pytest.raises(NetworkError, match=problem):
            client.ping("w")


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(b"+200", id="plus-sign"),
        pytest.param(b"2_00", id="underscore"),
        pytest.param(b"\xb200", id="superscript-two"),
        pytest.param(b"2\xb20", id="superscript-two-inside"),
        pytest.param(b"0200", id="four-digits"),
        pytest.param(b"20", id="two-digits"),
        pytest.param(b"099", id="below-100"),
        pytest.param(b"1000", id="above-999"),
    ],
)
def test_status_codes_are_exactly_three_ascii_digits(
    make_client: MakeClient, status: bytes
) -> None:
    """Only 100-999 as three ASCII digits is a status code; the rest is malformed (items 4, 7)."""
    raw = fs.answer(PING_OK).replace(b"200 OK", status + b" OK")
    error, _, _ = run(make_client, [fs.respond(raw)], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "malformed or truncated HTTP response" in str(error)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"+%d", id="plus-sign"),
        pytest.param(b"%d_0", id="underscore"),
        pytest.param(b"\xb2", id="superscript-two"),
        pytest.param(b"0x%x", id="hex"),
        pytest.param(b"-1", id="negative"),
        pytest.param(b"%d, 1", id="disagreeing-list"),
        pytest.param(b"%d\r\nContent-Length: 1", id="disagreeing-headers"),
        pytest.param(b"1" * 5000, id="five-thousand-digits"),
    ],
)
def test_content_length_is_plain_ascii_digits(make_client: MakeClient, value: bytes) -> None:
    """A Content-Length that is not one digit string is refused, never read to close (item 4)."""
    value = value % len(PING_OK) if b"%" in value else value
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s" % (value, PING_OK)
    error, _, _ = run(make_client, [fs.respond(raw)], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "Content-Length" in str(error)
    assert len(str(error)) < 400  # no 5000-digit number in a message


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(b"+%x", id="plus-sign"),
        pytest.param(b"0x%x", id="0x-prefix"),
        pytest.param(b" %x", id="leading-space"),
        pytest.param(b"0_%x", id="underscore"),
        pytest.param(b"", id="empty"),
    ],
)
def test_chunk_sizes_are_hex_digits(make_client: MakeClient, size: bytes) -> None:
    """A chunk size is one or more hex digits, nothing else (item 5)."""
    raw = CHUNKED + b"\r\n" + chunked(PING_OK, size=size)
    error, _, _ = run(make_client, [fs.respond(raw)], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "chunk size" in str(error)


def test_a_negative_chunk_size_stops_the_read_at_once(make_client: MakeClient) -> None:
    """Chunk size -1 is refused before the body, not read to EOF (items 5, 11)."""
    error, _, server = run(
        make_client, [fs.flood(CHUNKED + b"\r\n-1\r\n")], timeout=5, max_retries=0
    )
    assert type(error) is NetworkError, repr(error)
    assert "chunk size" in str(error)
    assert server.sent < 32 * 1024 * 1024  # of 64 MiB: only what the socket buffers took


def test_a_chunk_size_line_longer_than_64_kib_is_refused(make_client: MakeClient) -> None:
    """An over-long chunk-size line is an error, not cut and read as body (item 6)."""
    line = b"2;" + b"e" * 65535 + b"{}\r\n"  # cut at 64 KiB, the rest would be a body: {}
    raw = CHUNKED + b"\r\n" + line + b"0\r\n\r\n"
    error, _, _ = run(make_client, [fs.respond(raw)], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "malformed or truncated HTTP response" in str(error)


@pytest.mark.parametrize(
    "coding",
    [
        pytest.param(b"xchunked", id="substring"),
        pytest.param(b"gzip, chunked", id="gzip-then-chunked"),
        pytest.param(b"chunked, gzip", id="chunked-then-gzip"),
        pytest.param(b"chunked, chunked", id="chunked-twice"),
        pytest.param(b"identity", id="identity"),
    ],
)
def test_transfer_codings_other_than_chunked_are_refused(
    make_client: MakeClient, coding: bytes
) -> None:
    """Transfer-Encoding is matched as tokens and only chunked is accepted (item 7)."""
    raw = CHUNKED.replace(b"chunked", coding) + b"\r\n" + chunked(PING_OK)
    error, _, _ = run(make_client, [fs.respond(raw)], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "Transfer-Encoding" in str(error)


def test_101_switching_protocols_is_an_error(make_client: MakeClient) -> None:
    """101 is not an interim answer to skip: the SDK never asked to switch (item 7)."""
    raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + fs.answer(PING_OK)
    error, _, _ = run(make_client, [fs.respond(raw)], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "101" in str(error)


def test_transfer_encoding_with_content_length_is_read_chunked_and_never_reused(
    make_client: MakeClient,
) -> None:
    """Both framings: the body is read as chunked and the connection closed (item 7)."""
    head = CHUNKED + b"Content-Length: 3\r\n\r\n"
    first = fs.respond(head + chunked(fs.ping_body("first")), keep_open=True)
    second = fs.respond(fs.answer(fs.ping_body("second")), keep_open=True)
    with fs.FaultServer([first, second]) as server:
        client = make_client(server.url, max_retries=0)
        assert client.ping("w")["message"] == "first"
        assert client.ping("w")["message"] == "second"
    assert server.connections == 2


def test_interim_answers_flooding_forever_are_cut_off(make_client: MakeClient) -> None:
    """1xx answers are skipped, but a server that sends nothing else is stopped after 32."""
    flood = fs.flood(
        b"", chunk=b"HTTP/1.1 103 Early Hints\r\nLink: </%s>\r\n\r\n" % (b"a" * 40) * 16
    )
    error, _, _ = run(make_client, [flood], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "more than 32 interim (1xx) answers" in str(error)


def test_an_interim_answer_with_megabytes_of_headers_hits_the_byte_budget(
    make_client: MakeClient,
) -> None:
    """Everything one call reads is capped at 2 MiB, headers of interim answers included."""
    line = b"Link: </%s>\r\n" % (b"a" * 60_000)
    flood = fs.flood(b"HTTP/1.1 103 Early Hints\r\n", chunk=line * 8)
    error, _, server = run(make_client, [flood], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "exceeds 2097152 bytes" in str(error)
    assert server.sent < 32 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("X-Trace", "a\x00b", id="nul-in-value"),
        pytest.param("X-Trace", "a\r\n b", id="folded-value"),
        pytest.param("X-Trace", "a\nInjected: 1", id="lf-in-value"),
        pytest.param("X-Trace", "a\rb", id="cr-in-value"),
        pytest.param("X Trace", "1", id="space-in-name"),
        pytest.param("X-Trace\x00", "1", id="nul-in-name"),
        pytest.param("X-Trace\r\nInjected", "1", id="crlf-in-name"),
    ],
)
def test_control_characters_in_headers_never_reach_the_wire(
    transport_name: str, name: str, value: str
) -> None:
    """NUL, CR, LF (and spaces in names) are refused before a byte is sent (item 8)."""
    with fs.FaultServer([OK]) as server:
        transport = TRANSPORTS[transport_name]()
        with pytest.raises(ConfigurationError) as caught:
            transport(server.url + "/api/ping/w", b"", {name: value}, 5.0)
    assert server.connections == 0
    assert "nothing was sent" in str(caught.value)
    assert value not in str(caught.value) or value == "1"  # a value may be a signature


@pytest.mark.parametrize("target", ["/api/ping/a b", "/api/ping/a\x00b", "/api/ping/a\r\nX: 1"])
def test_control_characters_in_the_target_never_reach_the_wire(
    transport_name: str, target: str
) -> None:
    """A request target with a space, NUL, CR or LF is refused before connecting (item 8)."""
    with fs.FaultServer([OK]) as server:
        transport = TRANSPORTS[transport_name]()
        with pytest.raises(ConfigurationError):
            transport(server.url + target, b"", {}, 5.0)
    assert server.connections == 0


def test_host_and_content_length_given_by_the_caller_are_sent_once(transport_name: str) -> None:
    """A caller's own Host or Content-Length replaces the generated one, never doubles it."""
    with fs.FaultServer([OK]) as server:
        transport = TRANSPORTS[transport_name]()
        headers = {"Host": "ops.example", "Content-Length": "2", "Content-Type": "application/json"}
        status, _ = transport(server.url + "/api/ping/w", b"{}", headers, 5.0)
    assert status == 200
    lines = server.requests[0].split(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert [ln for ln in lines if ln.startswith(b"host:")] == [b"host: ops.example"]
    assert [ln for ln in lines if ln.startswith(b"content-length:")] == [b"content-length: 2"]


def test_proxy_url_without_a_port_goes_where_urllib_sends_it(
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    """Both transports reach a portless proxy on the same port: the target scheme's (item 9)."""
    tried: list[tuple[str, object]] = []

    def getaddrinfo(host: str, port: object, *args: object, **kwargs: object) -> list[object]:
        tried.append((host, port))
        raise socket.gaierror(socket.EAI_NONAME, "not looked up in tests")

    no_proxy_env.setattr(socket, "getaddrinfo", getaddrinfo)
    no_proxy_env.setenv("HTTPS_PROXY", "http://proxy.invalid")
    no_proxy_env.setenv("HTTP_PROXY", "http://proxy.invalid")
    for base_url in ("https://www.opshift.io", "http://ops.example"):
        for name in sorted(TRANSPORTS):
            client = OpShift(SECRET, base_url=base_url, transport=TRANSPORTS[name](), max_retries=0)
            with pytest.raises(NetworkError):
                client.ping("w")
    assert tried == [("proxy.invalid", 443)] * 2 + [("proxy.invalid", 80)] * 2


# -- 407: the proxy's credentials, named and never retried (item 12) --------------------

PROXY_407 = (
    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
    b'Proxy-Authenticate: Basic realm="corp"\r\nContent-Length: 0\r\n\r\n'
)


def test_a_407_to_connect_is_one_proxy_authentication_error(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """A 407 to CONNECT names the proxy, never its password, and is tried exactly once."""
    with ProxyServer(answer=PROXY_407) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url.replace("://", "://alice:s3cret-pw@"))
        client = OpShift(SECRET, transport=TRANSPORTS[transport_name](), retry_backoff=0)
        with pytest.raises(ProxyAuthenticationError) as caught:
            client.ping("w")
    assert len(proxy.seen) == 1  # one CONNECT per call: a 407 is never retried
    assert proxy.seen[0][1] == "Basic YWxpY2U6czNjcmV0LXB3"
    error = caught.value
    assert error.status_code == 407
    assert proxy.url[len("http://") :] in str(error)
    assert "HTTPS_PROXY" in str(error)
    assert "s3cret-pw" not in str(error)
    assert "alice" not in str(error)


def test_a_401_to_connect_is_a_proxy_authentication_error_too(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """tinyproxy answers CONNECT with 401, not 407: still the proxy's credentials, once."""
    unauthorized = (
        b"HTTP/1.0 401 Unauthorized\r\nServer: tinyproxy/1.11.1\r\n"
        b'WWW-Authenticate: Basic realm="Tinyproxy"\r\nConnection: close\r\n\r\n<html></html>'
    )
    with ProxyServer(answer=unauthorized) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url.replace("://", "://alice:wrong@"))
        client = OpShift(SECRET, transport=TRANSPORTS[transport_name](), retry_backoff=0)
        with pytest.raises(ProxyAuthenticationError) as caught:
            client.ping("w")
    assert len(proxy.seen) == 1
    assert caught.value.status_code == 401
    assert "HTTPS_PROXY" in str(caught.value)


TINYPROXY_401 = (
    b"HTTP/1.0 401 Unauthorized\r\nServer: tinyproxy/1.11.1\r\nContent-Type: text/html\r\n"
    b'WWW-Authenticate: Basic realm="Tinyproxy"\r\nConnection: close\r\n\r\n<html></html>'
)


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        pytest.param(PROXY_407, 407, id="407"),
        pytest.param(TINYPROXY_401, 401, id="tinyproxy-html-401"),
    ],
)
def test_a_proxys_refusal_of_a_plain_http_request_is_about_its_credentials(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch, answer: bytes, status: int
) -> None:
    """Through a proxy to an http:// base URL, its 407 (or HTML 401) names the proxy."""
    with ProxyServer(answer=answer) as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url.replace("://", "://alice:s3cret-pw@"))
        client = OpShift(
            SECRET, base_url="http://ops.example", transport=TRANSPORTS[transport_name]()
        )
        with pytest.raises(ProxyAuthenticationError) as caught:
            client.ping("w")
    assert len(proxy.seen) == 1
    assert caught.value.status_code == status
    assert proxy.url[len("http://") :] in str(caught.value)
    assert "HTTP_PROXY" in str(caught.value)
    assert "OPSHIFT_SECRET" not in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


def test_opshifts_own_401_through_a_proxy_is_about_the_secret(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """A JSON 401 that came through the proxy is OpShift's: check OPSHIFT_SECRET."""
    body = b'{"error": "Invalid webhook signature"}'
    answer = b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
    answer += b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    with ProxyServer(answer=answer) as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        client = OpShift(
            SECRET, base_url="http://ops.example", transport=TRANSPORTS[transport_name]()
        )
        with pytest.raises(AuthenticationError) as caught:
            client.ping("w")
    assert "OPSHIFT_SECRET" in str(caught.value)


def test_a_407_without_a_proxy_is_still_about_proxy_credentials(
    make_client: MakeClient, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """With no proxy configured, a 407 (from a proxy we cannot see) is not retried either."""
    error, _, server = run(make_client, [fs.respond(PROXY_407)], max_retries=2)
    assert type(error) is ProxyAuthenticationError
    assert error.status_code == 407
    assert "HTTPS_PROXY" in str(error)
    assert len(server.requests) == 1


# -- the deadline bounds connecting, CONNECT and the TLS handshake (items 2, 11) ---------


def test_each_resolved_address_gets_only_the_time_left(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty addresses that never answer cannot stretch the call past its timeout."""
    with fs.blackhole() as address:
        if address is None:
            pytest.skip("this platform answers connects to a full backlog")
        answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", address)] * 20
        monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            make_client("http://ops.example", timeout=0.3, max_retries=0).ping("w")
        elapsed = time.monotonic() - started
    assert elapsed < 0.3 + SLACK  # create_connection would take 20 x 0.3 s


def test_a_dripping_connect_answer_is_bounded_by_the_timeout(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """A proxy that drips its CONNECT answer cannot stretch timeout=0.3 (item 11)."""
    established = b"HTTP/1.1 200 Connection established\r\nX-Pad: " + b"x" * 300 + b"\r\n\r\n"
    with ProxyServer(answer=established, drip=0.02) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        transport = TRANSPORTS[transport_name]()
        client = OpShift(SECRET, transport=transport, timeout=0.3, max_retries=0)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            client.ping("w")
        elapsed = time.monotonic() - started
    assert elapsed < 0.3 + SLACK  # 330 bytes at 20 ms each: 6.6 s per socket operation


def test_a_dripping_tls_handshake_is_bounded_by_the_timeout(
    transport_name: str, certificate: Certificate
) -> None:
    """A server that drips its TLS handshake cannot stretch timeout=0.3."""
    server = OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context())
    with server as srv, fs.DripRelay(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])), 0.02) as relay:
        transport = TRANSPORTS[transport_name](ssl_context=certificate.client_context())
        url = f"https://127.0.0.1:{relay.port}"
        client = OpShift(SECRET, base_url=url, transport=transport, timeout=0.3, max_retries=0)
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            client.ping("w")
        elapsed = time.monotonic() - started
    assert elapsed < 0.3 + SLACK


# -- the rest of the contract --------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_never_followed(make_client: MakeClient, status: int) -> None:
    """A 3xx is an error naming the location; the POST is not re-sent anywhere."""
    behaviour = fs.respond(
        f"HTTP/1.1 {status} Moved\r\nLocation: https://elsewhere.example/api/ping/w\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    error, _, server = run(make_client, [behaviour, OK], max_retries=2)
    assert error.status_code == status
    assert "https://elsewhere.example/api/ping/w" in str(error)
    assert "not followed" in str(error)
    assert len(server.requests) == 1


def test_503_then_200_is_delivered_with_the_same_bytes(make_client: MakeClient) -> None:
    """A transient 503 is retried; the retry re-sends the same body and signature."""
    unavailable = fs.json_response(503, b'{"error": "Service unavailable"}', "Unavailable")
    with fs.FaultServer([unavailable, OK]) as server:
        result = make_client(server.url).ping("w", status="down", reason="r")
    assert result["pingStatus"] == "up"
    assert len(server.requests) == 2
    assert server.bodies() == [b'{"status":"down","reason":"r"}'] * 2
    signature = opshift.sign(b'{"status":"down","reason":"r"}', SECRET)
    assert server.signatures() == [signature, signature]


def test_500_three_times_fails_after_one_plus_max_retries(make_client: MakeClient) -> None:
    """A persistent 500 is tried 1 + max_retries times, then raised with its body."""
    failing = fs.json_response(500, b'{"error": "Internal error"}', "Internal Server Error")
    error, _, server = run(make_client, [failing], max_retries=2)
    assert isinstance(error, ServerError)
    assert error.status_code == 500
    assert error.body == {"error": "Internal error"}
    assert len(server.requests) == 3


def test_reset_then_success_is_retried(make_client: MakeClient) -> None:
    """A network error is retried like a 5xx."""
    with fs.FaultServer([fs.reset_after(b""), OK]) as server:
        result = make_client(server.url).ping("w")
    assert result["message"] == "Ping received"
    assert len(server.requests) == 2


def test_4xx_is_never_retried(make_client: MakeClient) -> None:
    """A 429 is raised at once, however many retries are allowed."""
    limited = fs.json_response(
        429, b'{"error": "Rate limit exceeded. Maximum 10 pings per minute."}'
    )
    error, _, server = run(make_client, [limited, OK], max_retries=5)
    assert error.status_code == 429
    assert len(server.requests) == 1


def test_retries_stop_at_the_deadline(make_client: MakeClient) -> None:
    """With a slow 503 and a short timeout, retries stop when no room is left."""
    slow_503 = fs.drip(b"HTTP/1.1 503 X\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 0.002)
    error, elapsed, server = run(make_client, [slow_503], timeout=0.3, max_retries=100)
    assert error.status_code in (0, 503)
    assert elapsed < 0.3 + SLACK
    assert len(server.requests) < 100


def test_https_with_an_untrusted_certificate_fails_verification(
    make_client: MakeClient, certificate: Certificate
) -> None:
    """TLS verification is on: a self-signed server is a NetworkError naming TLS."""
    with OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context()) as srv:
        client = make_client(srv.url, max_retries=0)
        with pytest.raises(NetworkError) as caught:
            client.ping("w")
    assert srv.url.startswith("https://")
    assert "TLS" in str(caught.value)
    assert "ssl_context" in str(caught.value)


def test_https_with_a_custom_ca_via_ssl_context(
    transport_name: str, certificate: Certificate
) -> None:
    """ssl_context trusts a private CA; the signed ping arrives over TLS."""
    with OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context()) as srv:
        transport = TRANSPORTS[transport_name](ssl_context=certificate.client_context())
        result = OpShift(SECRET, base_url=srv.url, transport=transport).ping("w", status="up")
    assert result["pingStatus"] == "up"
    assert srv.requests[0].signature_valid


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
def test_transport_returns_4xx_and_5xx_as_values(name: str) -> None:
    """The transport itself returns every status; the client decides what is an error."""
    body = b'{"error": "Ping token not found"}'
    with fs.FaultServer([fs.json_response(404, body, "Not Found")]) as server:
        status, data = TRANSPORTS[name]()(server.url + "/api/ping/x", b"", {}, 5.0)
    assert (status, data) == (404, body)


# -- proxies from the environment ---------------------------------------------------------


def test_http_proxy_from_environment(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch, server: OpShiftServer
) -> None:
    """Plain http goes through HTTP_PROXY in absolute form, with its credentials."""
    with ProxyServer() as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://alice:s3cret@"))
        client = OpShift(SECRET, base_url=server.url, transport=TRANSPORTS[transport_name]())
        assert client.ping("payments-worker")["pingStatus"] == "up"
    line, auth = proxy.seen[0]
    assert line == f"POST {server.url}/api/ping/payments-worker HTTP/1.1"
    assert auth == "Basic YWxpY2U6czNjcmV0"
    assert server.requests[0].signature_valid


def test_https_proxy_tunnels_with_connect(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch, certificate: Certificate
) -> None:
    """HTTPS through a proxy uses a CONNECT tunnel; TLS is still verified end to end."""
    with (
        ProxyServer() as proxy,
        OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context()) as srv,
    ):
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url.replace("http://", "http://alice:s3cret@"))
        transport = TRANSPORTS[transport_name](ssl_context=certificate.client_context())
        client = OpShift(SECRET, base_url=srv.url, transport=transport)
        assert client.alert("h", title="through the tunnel")["status"] == "created"
        assert client.alert("h", title="and again")["status"] == "created"
    host_port = srv.url[len("https://") :]
    assert proxy.seen[0] == (f"CONNECT {host_port} HTTP/1.1", "Basic YWxpY2U6czNjcmV0")
    assert all(r.signature_valid for r in srv.requests)
    sent = {name.lower() for name in srv.requests[0].headers}
    assert "proxy-authorization" not in sent  # only the proxy sees it


def test_no_proxy_bypasses_the_proxy(
    transport_name: str, no_proxy_env: pytest.MonkeyPatch, server: OpShiftServer
) -> None:
    """A host in NO_PROXY is reached directly, however HTTP_PROXY is set."""
    no_proxy_env.setenv("HTTP_PROXY", refused_url())  # would be refused
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    client = OpShift(SECRET, base_url=server.url, transport=TRANSPORTS[transport_name]())
    assert client.ping("payments-worker")["pingStatus"] == "up"


# -- construction, settings and the exception mapping ---------------------------------------


def test_building_a_client_loads_no_tls_and_no_urllib() -> None:
    """OpShift() and both transports build without I/O: no ssl, urllib.request or http.client."""
    probe = (
        "import json, sys\n"
        "import opshift\n"
        "opshift.OpShift('ab' * 32)\n"
        "opshift.OpShift('ab' * 32, base_url='http://127.0.0.1:9')\n"
        "opshift.UrllibTransport()\n"
        "opshift.KeepAliveTransport().close()\n"
        "heavy = ('ssl', '_ssl', 'urllib.request', 'http.client', 'email')\n"
        "print(json.dumps([name for name in heavy if name in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_cli_builds_its_parser_and_client_without_typing() -> None:
    """`opshift alert ...` reaches its first call without importing typing (a cron job's 2 ms)."""
    probe = (
        "import json, sys\n"
        "preloaded = 'typing' in sys.modules\n"
        "from opshift import cli\n"
        "cli._parser().parse_args(['alert', 'deploy', '--title', 't', '--quiet'])\n"
        "cli.OpShift('ab' * 32, base_url='http://127.0.0.1:9')\n"
        "print(json.dumps([preloaded, 'typing' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    preloaded, loaded = json.loads(out.stdout)
    if preloaded:
        pytest.skip("this interpreter imports typing at start-up (a .pth file)")
    assert not loaded


def test_the_cli_metavars_list_the_enum_values_it_accepts() -> None:
    """The CLI names --status and --severity values in its metavars; they match types.py."""
    import argparse

    from opshift import cli

    commands = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for command in commands.choices.values():
        for action in command._actions:
            if isinstance(action.choices, cli._Choices):
                assert action.metavar == "{" + ",".join(action.choices) + "}"
                checked += 1
    assert checked == 2


def test_transports_share_one_default_tls_context_built_on_first_https_call(
    monkeypatch: pytest.MonkeyPatch, certificate: Certificate
) -> None:
    """The system's CAs load once per process, on the first https call, for all transports."""
    from opshift import _http

    built: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        built.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return built[-1]

    monkeypatch.setattr(_http, "_default_context", None)
    monkeypatch.setattr(ssl, "create_default_context", counting)
    keepalive = KeepAliveTransport()
    transports: list[opshift.Transport] = [UrllibTransport(), keepalive, UrllibTransport()]
    assert built == []
    with OpShiftServer(SECRET, auto_create=True, ssl_context=certificate.server_context()) as srv:
        for transport in transports * 2:
            with pytest.raises(NetworkError, match="TLS"):  # the system's CAs do not trust it
                transport(srv.url + "/api/ping/w", b"", {}, 5.0)
    assert len(built) == 1
    keepalive.close()


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"max_idle_connections": -1}, id="negative-pool"),
        pytest.param({"max_idle_connections": True}, id="bool-pool"),
        pytest.param({"max_idle_connections": 2.5}, id="float-pool"),
        pytest.param({"max_idle_seconds": 0}, id="zero-idle"),
        pytest.param({"max_idle_seconds": float("nan")}, id="nan-idle"),
        pytest.param({"max_idle_seconds": float("inf")}, id="inf-idle"),
        pytest.param({"max_idle_seconds": "30"}, id="str-idle"),
        pytest.param({"ssl_context": "/etc/ssl/cert.pem"}, id="path-as-context"),
    ],
)
def test_transport_settings_are_checked(options: dict[str, object]) -> None:
    """A bad transport setting is a ConfigurationError naming it, at construction."""
    with pytest.raises(ConfigurationError) as caught:
        KeepAliveTransport(**options)  # type: ignore[arg-type]
    assert next(iter(options)) in str(caught.value)
    if "ssl_context" in options:
        with pytest.raises(ConfigurationError):
            UrllibTransport(**options)  # type: ignore[arg-type]


def _exceptions() -> list[object]:
    refused = ConnectionRefusedError(111, "Connection refused")
    return [
        pytest.param(socket.timeout("timed out"), RequestTimeoutError, "timed out", id="socket-timeout"),
        pytest.param(TimeoutError("timed out"), RequestTimeoutError, "timed out", id="timeout"),
        pytest.param(urllib.error.URLError(refused), NetworkError, "refused", id="urlerror-refused"),
        pytest.param(urllib.error.URLError(socket.timeout("t")), RequestTimeoutError, "timed out", id="urlerror-timeout"),
        pytest.param(socket.gaierror(-2, "Name or service not known"), NetworkError, "resolve", id="dns"),
        pytest.param(ConnectionResetError(104, "reset"), NetworkError, "closed", id="reset"),
        pytest.param(http.client.RemoteDisconnected("closed"), NetworkError, "closed", id="remote-disconnected"),
        pytest.param(http.client.IncompleteRead(b"ab", 10), NetworkError, "truncated", id="incomplete"),
        pytest.param(http.client.BadStatusLine("xx"), NetworkError, "malformed", id="bad-status"),
        pytest.param(ssl.SSLCertVerificationError("bad cert"), NetworkError, "TLS", id="ssl"),
        pytest.param(OSError(101, "Network is unreachable"), NetworkError, "network", id="oserror"),
        pytest.param(ValueError("bug"), OpShiftError, "transport raised ValueError", id="other"),
    ]  # fmt: skip


@pytest.mark.parametrize(("exc", "cls", "text"), _exceptions())
def test_translate_exception_maps_each_low_level_failure(
    exc: BaseException, cls: type[OpShiftError], text: str
) -> None:
    """Every low-level failure maps to the right class, status 0, in one place."""
    error = translate_exception(exc, "https://www.opshift.io/api/ping/w", 30.0)
    assert type(error) is cls
    assert error.status_code == 0
    assert text in str(error)
    assert "POST https://www.opshift.io/api/ping/w" in str(error)


def test_a_malformed_header_line_never_hides_the_framing(make_client: MakeClient) -> None:
    """A malformed header line, which would hide Content-Length, is refused."""
    answer = b"HTTP/1.1 200 OK\r\nX-Bad : 1\r\nContent-Length: %d\r\n\r\n%s" % (
        len(PING_OK),
        PING_OK,
    )
    error, elapsed, _ = run(make_client, [fs.respond(answer)], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "malformed header line" in str(error)
    assert elapsed < 5


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"Transfer-Encoding": "chunked"}, id="transfer-encoding"),
        pytest.param({"Connection": "close"}, id="connection"),
        pytest.param({"Content-Length": "99"}, id="wrong-content-length"),
    ],
)
def test_a_callers_framing_headers_never_reach_the_wire(name: str, header: dict[str, str]) -> None:
    """A caller's Transfer-Encoding, Connection or wrong Content-Length is refused."""
    transport: opshift.Transport = TRANSPORTS[name]()
    with (
        fs.FaultServer([OK]) as server,
        pytest.raises(ConfigurationError, match="contradict how the transport frames"),
    ):
        transport(server.url + "/api/ping/w", b"{}", header, 5.0)
    assert server.requests == []


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
def test_a_malformed_proxy_url_never_shows_its_password(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib's own error quotes the whole proxy URL; ours names the variable only."""
    for variable in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, "http:/alice:S3CRET-PW@proxy.corp:3128")
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    client = OpShift(SECRET, base_url="http://opshift.example", transport=TRANSPORTS[name]())
    with pytest.raises(ConfigurationError) as caught:
        client.ping("w")
    assert "HTTP_PROXY" in str(caught.value)
    assert "S3CRET" not in str(caught.value)
    assert "S3CRET" not in repr(caught.value.__cause__)


@pytest.mark.parametrize("name", sorted(TRANSPORTS))
def test_a_proxy_with_a_bad_port_is_a_configuration_error(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-numeric proxy port is a setting to fix, not a network fault to retry."""
    for variable in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, "http://proxy.corp:31x8")
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    transport: opshift.Transport = TRANSPORTS[name]()
    calls = 0

    def counting(
        url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        nonlocal calls
        calls += 1
        return transport(url, body, headers, timeout)

    with pytest.raises(ConfigurationError, match="HTTP_PROXY"):
        OpShift(SECRET, base_url="http://opshift.example", transport=counting).ping("w")
    assert calls == 1  # never retried
