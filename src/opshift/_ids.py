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

__all__ = ["id_from"]

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
    problem = _validation.path_problem(id_name, value)
    if problem is not None:
        raise _validation.bad_request(problem)
    if not any(mark in value for mark in _URL_MARKS):
        return value  # the usual case: one check, no parsing
    example = f"{base_url}{prefix}ID"
    if "://" not in value:
        raise _validation.bad_request(
            f"{id_name} must be the id alone (the last part of {example}), not a path or "
            f"URL (got {value!r:.80})"
        )
    return _from_url(value, prefix=prefix, id_name=id_name, base_url=base_url)


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
        return unquote(found, errors="strict")
    except UnicodeDecodeError:
        raise _validation.bad_request(
            f"{id_name} URL {value!r:.80} has a percent-escape that is not UTF-8; copy the URL "
            "again from the dashboard, or pass the id alone"
        ) from None


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)
