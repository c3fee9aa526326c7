"""How an answer ends: slow, broken, hostile or strangely framed answers fail fast and
clearly, and nothing of one answer ever reaches the next call. Every test runs on both
transports.
"""

from __future__ import annotations

import socket
import time

import pytest

from opshift import (
    ConfigurationError,
    NetworkError,
    OpShift,
    OpShiftError,
    RequestTimeoutError,
    ServerError,
)
from opshift.transport._connection import HTTPConnection

from .. import faultserver as fs
from ..helpers import (
    CHUNKED,
    CHUNKED_OK,
    HEAD_100,
    HTML_502,
    OK,
    PING_OK,
    SECRET,
    SLACK,
    TRANSPORTS,
    MakeClient,
    chunked,
    run,
)
from ..proxyserver import ProxyServer


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


# -- every hostile answer, on both transports -------------------------------------------


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
    """Whatever follows an answer on its connection is dropped with it."""
    first = fs.respond(fs.answer(fs.ping_body("first")) + extra, keep_open=True)
    second = fs.respond(fs.answer(fs.ping_body("second")), keep_open=True)
    with fs.FaultServer([first, second]) as server:
        client = make_client(server.url, max_retries=0)
        assert client.ping("w")["message"] == "first"
        assert client.ping("w")["message"] == "second"
    assert len(server.requests) == 2  # nothing re-sent, so OpShift saw each ping once
    assert server.connections == 2


def test_a_204_with_a_body_never_leaks_into_the_next_call(make_client: MakeClient) -> None:
    """A body after a 204 (which has none) is not read as the next call's answer."""
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
    """CONNECT www.opshift.io:443 HTTP/1.1 with the same Host, behind any proxy."""
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
    """Only 100-999 as three ASCII digits is a status code; the rest is malformed."""
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
    """A Content-Length that is not one digit string is refused, never read to close."""
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
    """A chunk size is one or more hex digits, nothing else."""
    raw = CHUNKED + b"\r\n" + chunked(PING_OK, size=size)
    error, _, _ = run(make_client, [fs.respond(raw)], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "chunk size" in str(error)


def test_a_negative_chunk_size_stops_the_read_at_once(make_client: MakeClient) -> None:
    """Chunk size -1 is refused before the body, not read to EOF."""
    error, _, server = run(
        make_client, [fs.flood(CHUNKED + b"\r\n-1\r\n")], timeout=5, max_retries=0
    )
    assert type(error) is NetworkError, repr(error)
    assert "chunk size" in str(error)
    assert server.sent < 32 * 1024 * 1024  # of 64 MiB: only what the socket buffers took


def test_a_chunk_size_line_longer_than_64_kib_is_refused(make_client: MakeClient) -> None:
    """An over-long chunk-size line is an error, not cut and read as body."""
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
    """Transfer-Encoding is matched as tokens and only chunked is accepted."""
    raw = CHUNKED.replace(b"chunked", coding) + b"\r\n" + chunked(PING_OK)
    error, _, _ = run(make_client, [fs.respond(raw)], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "Transfer-Encoding" in str(error)


def test_101_switching_protocols_is_an_error(make_client: MakeClient) -> None:
    """101 is not an interim answer to skip: the SDK never asked to switch."""
    raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + fs.answer(PING_OK)
    error, _, _ = run(make_client, [fs.respond(raw)], timeout=5, max_retries=0)
    assert type(error) is NetworkError, repr(error)
    assert "101" in str(error)


def test_transfer_encoding_with_content_length_is_read_chunked_and_never_reused(
    make_client: MakeClient,
) -> None:
    """Both framings: the body is read as chunked and the connection closed."""
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
    """NUL, CR, LF (and spaces in names) are refused before a byte is sent."""
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
    """A request target with a space, NUL, CR or LF is refused before connecting."""
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


@pytest.mark.parametrize("value", ["a\r\n b", "a\rb", "a\nb", "a\x00b"])
def test_a_header_with_a_line_break_or_nul_never_leaves_the_connection(value: str) -> None:
    """The connection's one-write POST refuses CR, LF and NUL in any header, whoever set it."""
    with fs.FaultServer([OK]) as server:
        conn = HTTPConnection("127.0.0.1", server.port, deadline=time.monotonic() + 5)
        try:
            with pytest.raises(ValueError, match="line break or NUL"):
                conn.request("POST", "/api/ping/w", b"", {"X-Test": value})
        finally:
            conn.close()
    assert server.requests == []


def test_a_request_other_than_a_post_of_bytes_goes_through_http_client() -> None:
    """GET (never sent by the SDK) still works through http.client's own request()."""
    with fs.FaultServer([OK]) as server:
        conn = HTTPConnection("127.0.0.1", server.port, deadline=time.monotonic() + 5)
        try:
            conn.request("GET", "/api/ping/w")
            assert conn.getresponse().status == 200
        finally:
            conn.close()
    assert server.requests[0].startswith(b"GET /api/ping/w HTTP/1.1\r\n")
