"""A ping token or webhook id, or the dashboard's URL for it: take out the id, or refuse.

The dashboard shows URLs (``https://www.opshift.io/api/alerts/trigger/deploy-failures``)
and the argument is named ``webhook_url``, so users pass them. A URL for the same
endpoint on the client's own ``base_url`` gives its id; a URL for another server is a
``ConfigurationError`` naming both; anything else that looks like a URL or a path (``/``,
``://``, ``?``, ``#``) is refused before sending, showing the expected form.
"""

from __future__ import annotations

from . import _validation
from .errors import ConfigurationError

__all__ = ["id_from", "id_problem"]

_URL_MARKS = ("/", "?", "#")  # "://" holds "/"


def id_from(value: str, *, prefix: str, id_name: str, base_url: str) -> str:
    """The id in ``value``: ``value`` itself, or the last part of a URL for this endpoint.

    ``prefix`` is the endpoint's path before the id (``/api/ping/``), ``id_name`` the
    argument's name in messages.

    Raises:
        BadRequestError: the id is empty, or holds ``/``, ``?`` or ``#`` and is not a URL
            for this endpoint.
        ConfigurationError: a URL for this endpoint on another server than ``base_url``.
    """
    problem = id_problem(value, prefix=prefix, id_name=id_name, base_url=base_url)
    if problem is not None:
        raise _validation.bad_request(problem)
    if "://" not in value:
        return value  # the usual case: no parsing
    return _from_url(value, prefix=prefix, id_name=id_name, base_url=base_url)


def id_problem(value: object, *, prefix: str, id_name: str, base_url: str = "") -> str | None:
    """What is wrong with ``value`` as an id or a full URL, seen without parsing it: not a
    non-empty string, or a path or query (``/``, ``?``, ``#`` without ``://``); else None.

    Settings taken before any call (an integration's ``monitors``) are checked with it at
    once; a full URL is checked against ``base_url`` when it is used.
    """
    problem = _validation.path_problem(id_name, value)
    if problem is not None:
        return problem
    if (
        not isinstance(value, str)
        or "://" in value
        or not any(mark in value for mark in _URL_MARKS)
    ):
        return None
    return (
        f"{id_name} must be the id alone (the last part of {base_url}{prefix}ID), not a path "
        f"or URL (got {value!r:.80})"
    )


def _from_url(value: str, *, prefix: str, id_name: str, base_url: str) -> str:
    """The id at the end of a full URL for this endpoint on ``base_url``."""
    from urllib.parse import unquote, urlsplit

    example = f"{base_url}{prefix}ID"
    if not value.isprintable() or " " in value:
        # urlsplit would silently drop tabs and line breaks: the id would change unseen.
        raise _validation.bad_request(
            f"{id_name} URL {value!r:.80} holds a space or control character; pass the id "
            f"alone, like the last part of {example}"
        )
    try:
        url = urlsplit(value)
        url_port = url.port
    except ValueError:
        url, url_port = None, None
    if url is None or url.scheme not in ("http", "https") or not url.hostname:
        raise _validation.bad_request(
            f"{id_name} must be the id alone, like the last part of {example} (got {value!r:.80})"
        )
    if "@" in url.netloc:  # never echoed: it may hold a password
        raise _validation.bad_request(
            f"{id_name} URL must not contain a user or password; pass the id alone, like the "
            f"last part of {example}"
        )
    if prefix not in url.path:
        raise _validation.bad_request(
            f"{id_name} {value!r:.80} is not a URL for this endpoint; pass the id alone, like "
            f"the last part of {example}"
        )
    base = urlsplit(base_url)
    endpoint = base.path.rstrip("/") + prefix
    same_server = (url.scheme, url.hostname, _port(url.scheme, url_port)) == (
        base.scheme,
        base.hostname,
        _port(base.scheme, base.port),
    )
    if not same_server or not url.path.startswith(endpoint):
        raise ConfigurationError(
            f"The {id_name} URL {value:.120} is not under this client's base_url {base_url} "
            "(scheme, host, port and path must match); set base_url (or OPSHIFT_BASE_URL) "
            "to that server, or pass the id alone. Nothing was sent."
        )
    found = url.path[len(endpoint) :]
    if url.query or url.fragment or not found or "/" in found:
        raise _validation.bad_request(
            f"{id_name} URL {value!r:.80} must end with the id, like {example}, with no "
            "query or fragment"
        )
    try:
        found = unquote(found, errors="strict")
    except UnicodeDecodeError:
        raise _validation.bad_request(
            f"{id_name} URL {value!r:.80} has a percent-escape that is not UTF-8; copy the URL "
            "again from the dashboard, or pass the id alone"
        ) from None
    if any(mark in found for mark in _URL_MARKS) or not found.isprintable():
        # An escaped / ? # or control character: no OpShift id holds one.
        raise _validation.bad_request(
            f"{id_name} URL {value!r:.80} ends with {found!r:.60}, which is not an id (an "
            f"escaped / ? # or control character); copy it again, like {example}"
        )
    return found


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)
