"""Canaries: the private stdlib members the wire overrides or uses are still there, called
the same way, on this Python.

``opshift.transport`` builds on http.client and urllib and fixes their gaps by overriding
a few private methods (as urllib3 does). A new Python release could rename one, change
its signature or stop calling it, and our framing checks would silently stop running.
These tests fail loudly first, on every supported Python; each names what to re-check.
"""

from __future__ import annotations

import email.message
import http.client
import inspect
import socket
import urllib.request
from typing import Callable

import pytest

from opshift.transport._connection import HTTPConnection
from opshift.transport._response import Response

# (owner, member, its parameters after self) for each private method we override or call.
OVERRIDDEN = [
    (http.client.HTTPResponse, "_read_status", []),
    (http.client.HTTPResponse, "_get_chunk_left", []),
    (http.client.HTTPResponse, "_read_next_chunk_size", []),
    (http.client.HTTPResponse, "_read_and_discard_trailer", []),
    (http.client.HTTPResponse, "_close_conn", []),
    (http.client.HTTPConnection, "_send_output", ["message_body", "encode_chunked"]),
    (http.client.HTTPConnection, "_output", ["s"]),
]

# (caller, private names it must still use): who calls our overrides, or sets what we read.
CALLS = [
    (http.client.HTTPResponse.begin, {"_read_status"}),
    (
        http.client.HTTPResponse._get_chunk_left,  # type: ignore[attr-defined]
        {"_read_next_chunk_size", "_read_and_discard_trailer", "_close_conn"},
    ),
    (http.client.HTTPResponse.read, {"_close_conn"}),
    (http.client.HTTPConnection.endheaders, {"_send_output"}),
    (http.client.HTTPConnection.__init__, {"_buffer"}),
    (http.client.HTTPConnection.set_tunnel, {"_tunnel_host", "_tunnel_port", "_tunnel_headers"}),
    (http.client.HTTPConnection.putheader, {"_output"}),
    (urllib.request.AbstractHTTPHandler.do_open, {"request"}),
    (email.message.Message.__init__, {"_payload"}),
    (socket.SocketIO.__init__, {"_sock"}),
    (socket.SocketIO.close, {"_sock"}),
    (socket.SocketIO.readinto, {"_sock"}),
]


def _names(function: Callable[..., object]) -> set[str]:
    """Every attribute name the function's code (and its nested code) refers to."""
    code = function.__code__
    names: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        stack.extend(c for c in current.co_consts if inspect.iscode(c))
    return names


@pytest.mark.parametrize(
    ("owner", "name", "params"), OVERRIDDEN, ids=[f"{o.__name__}.{n}" for o, n, _ in OVERRIDDEN]
)
def test_each_private_member_we_override_exists_with_its_signature(
    owner: type, name: str, params: list[str]
) -> None:
    """http.client's private methods we override are there, taking the same parameters."""
    member = getattr(owner, name, None)
    assert callable(member), (
        f"{owner.__module__}.{owner.__name__}.{name} is gone on this Python: opshift's "
        "transport overrides it; re-check src/opshift/transport/_response.py and _connection.py."
    )
    found = list(inspect.signature(member).parameters)[1:]
    assert found == params, (
        f"{owner.__name__}.{name} now takes {found}, not {params}: re-check opshift's override."
    )


@pytest.mark.parametrize(("caller", "names"), CALLS, ids=[c.__qualname__ for c, _ in CALLS])
def test_the_stdlib_still_calls_what_we_override_and_sets_what_we_read(
    caller: Callable[..., object], names: set[str]
) -> None:
    """Each override is still reached from the public method that used to call it."""
    missing = names - _names(caller)
    assert not missing, (
        f"{caller.__module__}.{caller.__qualname__} no longer uses {sorted(missing)}: "
        "opshift's strict framing may be silently skipped; re-check src/opshift/transport/."
    )


def test_the_chunked_read_paths_still_go_through_get_chunk_left() -> None:
    """Every chunked read path of http.client goes through our checked _get_chunk_left."""
    readers = [
        function
        for name, function in vars(http.client.HTTPResponse).items()
        if inspect.isfunction(function) and "chunk" in name and name != "_get_chunk_left"
    ]
    assert readers, "http.client.HTTPResponse has no chunked read path left: re-check"
    assert "_get_chunk_left" in set().union(*(_names(f) for f in readers))
    for public in ("read1", "peek"):
        assert {"_get_chunk_left", "_read1_chunked", "_peek_chunked"} & _names(
            getattr(http.client.HTTPResponse, public)
        ), public


def test_our_overrides_are_the_ones_the_stdlib_finds() -> None:
    """Response and HTTPConnection define each override themselves (no typo in a name)."""
    for owner, name, _ in OVERRIDDEN:
        ours = Response if owner is http.client.HTTPResponse else HTTPConnection
        if name == "_output":  # called, not overridden
            continue
        assert name in vars(ours), f"{ours.__name__} no longer overrides {name}"


def test_urllib_parse_proxy_still_takes_a_proxy_url_apart() -> None:
    """urllib.request._parse_proxy (one call, in transport._proxy) returns its 4-tuple."""
    parse = getattr(urllib.request, "_parse_proxy", None)
    assert callable(parse), "urllib.request._parse_proxy is gone: re-check transport/_proxy.py"
    assert parse("http://u:p@proxy.example:3128") == ("http", "u", "p", "proxy.example:3128")
    assert parse("proxy.example:3128") == (None, None, None, "proxy.example:3128")


def test_do_open_passes_our_connection_keywords_through() -> None:
    """urllib's do_open(http_class, req, **http_conn_args) hands our deadline to the class."""
    params = inspect.signature(urllib.request.AbstractHTTPHandler.do_open).parameters
    assert list(params)[:3] == ["self", "http_class", "req"]
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
