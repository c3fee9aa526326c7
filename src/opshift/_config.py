"""A client's settings, checked: the secret, ``base_url`` and ``OPSHIFT_DISABLED``.

Each comes from an argument or, when that is left out, from the environment; a bad one
is a ``ConfigurationError`` saying what is wrong and how to fix it, never showing a
secret.
"""

from __future__ import annotations

import os
import re

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "check_base_url",
    "check_secret",
    "disabled_by_environment",
    "quoted",
]

DEFAULT_BASE_URL = "https://www.opshift.io"
_HEX = frozenset("0123456789abcdef")  # OpShift's secrets are lowercase hex
_ANY_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPED_CONTROL = re.compile(r"%(?:[01][0-9A-Fa-f]|20|7[Ff])")  # in a host: %0D%0A, %20...


def check_secret(secret: str | None) -> str:
    """The secret given, or ``OPSHIFT_SECRET``'s when None, checked as OpShift's form."""
    where = ""
    if secret is None:
        secret = os.environ.get("OPSHIFT_SECRET")
        where = " in OPSHIFT_SECRET"
    if not secret:
        raise ConfigurationError(
            "No OpShift secret: pass OpShift(secret=...) or set OPSHIFT_SECRET to the team's "
            "webhook secret (Settings > Webhook Secret)."
        )
    if not isinstance(secret, str):
        raise ConfigurationError(
            f"The secret must be a str (the 64-character hex text), not {type(secret).__name__}."
        )
    if len(secret) == 64 and _HEX.issuperset(secret):
        return secret
    stripped = secret.strip()
    if stripped != secret and len(stripped) == 64 and _ANY_HEX.issuperset(stripped):
        if where:  # from the environment: say so, and fix it there (no Python advice)
            ends = "ends with a newline" if secret.endswith("\n") else "has spaces around it"
            raise ConfigurationError(
                f"The secret in OPSHIFT_SECRET has surrounding whitespace (OPSHIFT_SECRET "
                f"{ends}, often from a secrets file); remove it where the variable is set."
            )
        raise ConfigurationError(
            "The secret has surrounding whitespace (often a trailing newline from a "
            "secrets file); strip it, e.g. OpShift(secret=value.strip())."
        )
    quote = quoted(secret)
    if quote:
        fix = (
            "remove them where OPSHIFT_SECRET is set (a shell removes them; a file read "
            "without one, such as docker run --env-file's, keeps them)"
            if where
            else "pass the secret without them"
        )
        raise ConfigurationError(
            f"The secret{where} is wrapped in quotes ({quote}...{quote}): they are part of "
            f"its value, {len(secret.strip())} characters instead of the secret's 64; {fix}."
        )
    if len(secret) == 64 and _ANY_HEX.issuperset(secret):
        raise ConfigurationError(
            f"The secret{where} has uppercase hex digits: OpShift's secrets are lowercase, and "
            "the signature's key is the secret's exact text, so OpShift would refuse every "
            "call (401). Use the secret exactly as Settings > Webhook Secret shows it."
        )
    raise ConfigurationError(
        f"The secret{where} must be the 64 hex characters shown in Settings > Webhook Secret; "
        f"this one has {len(secret)} characters"
        + ("" if _ANY_HEX.issuperset(secret) else ", not all of them hex digits")
        + "."
    )


def quoted(value: str) -> str:
    """The quote (``"`` or ``'``) that ``value`` is wrapped in, spaces aside, or "": a
    secret pasted with its quotes into a file no shell reads (``docker run --env-file``)."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[0]
    return ""


def check_base_url(base_url: str | None) -> str:
    """``base_url``, or ``OPSHIFT_BASE_URL``'s when None, or the default; checked and with
    no trailing slash. An error names the variable when the value came from it."""
    name = "base_url"
    if base_url is None:
        base_url = os.environ.get("OPSHIFT_BASE_URL")
        name = "OPSHIFT_BASE_URL"
    if base_url is None or base_url == "":
        return DEFAULT_BASE_URL
    if not isinstance(base_url, str):
        raise ConfigurationError(f"base_url must be a str, not {type(base_url).__name__}.")
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(base_url)
        valid = parts.port is None or parts.port > 0  # .port raises ValueError when malformed
    except ValueError:
        valid = False
    if not valid or parts.scheme not in ("http", "https") or not parts.hostname:
        if name != "base_url":
            raise ConfigurationError(
                f"{name}={base_url:.80} is not an http(s) URL with a host; set it like "
                f"{DEFAULT_BASE_URL}, or unset it for that default."
            )
        raise ConfigurationError(
            f"base_url must be an http(s) URL with a host, like {DEFAULT_BASE_URL} "
            f"(got {base_url!r:.80})."
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"{name} must not contain credentials; OpShift uses the secret. Nothing was sent."
        )
    if (
        parts.query
        or parts.fragment
        or any(c.isspace() or c < " " or c == "\x7f" for c in base_url)
        or _ESCAPED_CONTROL.search(parts.netloc)
    ):
        raise ConfigurationError(
            f"{name} must not contain a query, fragment, spaces or control characters "
            f"(got {base_url!r:.80})."
        )
    return base_url.rstrip("/")


def disabled_by_environment() -> bool:
    """True when OPSHIFT_DISABLED says 1, true or yes; raise for a value that is neither."""
    value = os.environ.get("OPSHIFT_DISABLED", "").strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("", "0", "false", "no"):
        return False
    raise ConfigurationError(
        f"OPSHIFT_DISABLED must be 1, true or yes to disable OpShift, or 0, false, no or "
        f"empty to enable it (got {value!r:.20})."
    )
