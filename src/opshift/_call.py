"""One call's wire work, shared by ``OpShift``, ``Outbox`` and ``AsyncOpShift``.

A ``Kind`` says what a call is (a ping or an alert: its path and the name of its id);
a ``Caller`` prepares a call (checked id, encoded path, validated JSON body) and sends
prepared bytes once: sign with the current secret, POST through the transport, parse
the answer or raise the ``OpShiftError`` it means. Retries are the caller's policy.
"""

from __future__ import annotations

import json
import sys

from . import _validation
from ._ids import id_from
from ._version import __version__
from .errors import OpShiftError, error_for_status, redirect_error

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

    from ._signing import Signer
    from .transport import Transport

__all__ = [
    "ALERT",
    "KINDS",
    "PING",
    "USER_AGENT",
    "Caller",
    "Kind",
    "SignedHeaders",
    "fields_given",
    "parse_answer",
]

USER_AGENT = "opshift-python/{} (python {}.{}.{})".format(__version__, *sys.version_info[:3])
_decode_json = json.JSONDecoder().decode  # built once: json.loads re-checks its options per call
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_CACHE = 1024  # encoded paths kept per kind and caller


class Kind:
    """What a call is: ``PING`` or ``ALERT``, the only two instances.

    ``name`` is the wire name (kept in outbox files), ``prefix`` the endpoint's path
    before the id, ``id_name`` the id's argument name in errors.
    """

    __slots__ = ("id_name", "name", "prefix")

    def __init__(self, name: str, prefix: str, id_name: str) -> None:
        self.name = name
        self.prefix = prefix
        self.id_name = id_name

    def __repr__(self) -> str:
        return f"Kind({self.name!r})"


PING = Kind("ping", "/api/ping/", "ping_token")
ALERT = Kind("alert", "/api/alerts/trigger/", "webhook_url")
KINDS = {kind.name: kind for kind in (PING, ALERT)}  # wire name -> Kind


def fields_given(**fields: Any) -> dict[str, Any]:
    """The fields the caller passed, in wire order; None means "not given", never null.

    A missing alert title stays absent, so validation reports "title is required".
    """
    return {key: value for key, value in fields.items() if value is not None}


class Caller:
    """What a client's calls share: ``base_url``, the signer and the transport.

    ``signer`` is None for a disabled client, which prepares (validates) but never sends.
    Thread-safe: the path caches only grow, by whole entries.
    """

    __slots__ = ("_paths", "base_url", "signer", "transport")

    def __init__(self, base_url: str, signer: Signer | None, transport: Transport | None) -> None:
        self.base_url = base_url
        self.signer = signer
        self.transport = transport
        self._paths: dict[Kind, dict[str, str]] = {PING: {}, ALERT: {}}

    def prepare(self, kind: Kind, key: str, fields: dict[str, Any]) -> tuple[str, bytes]:
        """Check a call; return its path and the body to sign (empty for a bare ping).

        Raises:
            BadRequestError: the id or a field breaks a documented limit.
        """
        path = self.path(kind, key)
        if kind is PING and not fields:
            return path, b""
        return path, _validation.encode(kind.name, fields)

    def path(self, kind: Kind, key: str) -> str:
        """The request path for an id (or the dashboard's URL for it), e.g. ``/api/ping/x``.

        Raises:
            BadRequestError: the id is empty, too long, or a URL or path it cannot be.
        """
        cache = self._paths[kind]
        path = cache.get(key) if isinstance(key, str) else None
        if path is None:
            # The id, or the id out of the dashboard's URL for it; raises for a bad one.
            found = id_from(key, prefix=kind.prefix, id_name=kind.id_name, base_url=self.base_url)
            path = kind.prefix + _path_segment(found)
            if len(cache) < _PATH_CACHE:
                cache[key] = path
        return path

    def send_once(self, path: str, body: bytes, timeout: float) -> tuple[int, Any]:
        """POST ``body`` signed with the current secret, once; return the status and
        OpShift's JSON object.

        Raises:
            OpShiftError: the transport failed, or the answer is an error (its subclass).
        """
        signer = self.signer
        if signer is None:
            from .errors import ConfigurationError

            raise ConfigurationError("This OpShift client is disabled; it sends nothing.")
        url = self.base_url + path
        headers = SignedHeaders(
            {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
                "X-Webhook-Signature": signer.sign(body),
            }
        )
        status, data = _call_transport(self.transport, url, body, headers, timeout)
        return status, parse_answer(status, data, url)

    def redact(self, text: str, replacement: str) -> str:
        """``text`` with the secret replaced, so nothing derived from a log record leaks it."""
        return text if self.signer is None else self.signer.redact(text, replacement)


class SignedHeaders(dict[str, str]):
    """Request headers whose repr hides the signature, so logging them leaks no credential."""

    def __repr__(self) -> str:
        shown = {k: ("<redacted>" if k == "X-Webhook-Signature" else v) for k, v in self.items()}
        return repr(shown)

    __str__ = __repr__


def _call_transport(
    transport: Any, url: str, body: bytes, headers: SignedHeaders, timeout: float
) -> tuple[int, bytes]:
    """Call the transport; whatever it raises becomes an OpShiftError with the cause chained."""
    try:
        result = transport(url, body, headers, timeout)
    except OpShiftError:
        raise
    except Exception as exc:
        from .transport._errors import translate_exception

        raise translate_exception(exc, url, timeout) from exc
    if (
        not isinstance(result, tuple)
        or len(result) != 2
        or not isinstance(result[0], int)
        or not isinstance(result[1], (bytes, bytearray))
    ):
        raise OpShiftError(
            f"The transport returned {type(result).__name__}, not (status_code, body_bytes); "
            "fix the custom transport."
        )
    return result[0], bytes(result[1])


def parse_answer(status: int, data: bytes, url: str | None = None) -> Any:
    """Return a 2xx JSON object, or raise the OpShiftError this response means (``url``,
    the URL requested, for the messages that name it)."""
    if 200 <= status <= 299:
        problem = "an empty body" if not data else None
        parsed: Any = None
        if data:
            try:
                parsed = _decode_json(data.decode("utf-8"))  # UnicodeDecodeError is a ValueError
            except ValueError:
                problem = f"a body that is not valid JSON ({len(data)} bytes)"
            else:
                if not isinstance(parsed, dict):
                    problem = f"JSON that is not an object ({type(parsed).__name__})"
        if problem is None:
            return parsed
        raise OpShiftError(
            f"{status} with {problem}: expected OpShift's JSON answer. "
            "Check base_url points at OpShift, not a proxy or another service.",
            status_code=status,
        )
    if 300 <= status <= 399:
        raise redirect_error(status, None)
    raise error_for_status(status, data, url)


def _path_segment(value: str) -> str:
    """Percent-encode a checked token or webhook id so no input can reach another path."""
    if not value.strip("."):
        return value.replace(".", "%2E")  # "." and ".." would climb the path
    if _UNRESERVED.issuperset(value):
        return value
    from urllib.parse import quote

    return quote(value, safe="")
