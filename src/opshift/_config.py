"""A client's settings, checked: the secret, ``base_url`` and ``OPSHIFT_DISABLED``.

Each comes from an argument or, when that is left out, from the environment; a bad one
is a ``ConfigurationError`` saying what is wrong and how to fix it, never showing a
secret.
"""

from __future__ import annotations

import os

from .errors import ConfigurationError

__all__ = ["DEFAULT_BASE_URL", "check_base_url", "check_secret", "disabled_by_environment"]

DEFAULT_BASE_URL = "https://www.opshift.io"
_HEX = frozenset("0123456789abcdefABCDEF")


def check_secret(secret: str | None) -> str:
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
    if len(stripped) == 64 and _HEX.issuperset(stripped):
        raise ConfigurationError(
            f"The secret{where} has surrounding whitespace (often a trailing newline from a "
            "secrets file); strip it, e.g. OpShift(secret=value.strip())."
        )
    raise ConfigurationError(
        f"The secret{where} must be the 64 hex characters shown in Settings > Webhook Secret; "
        f"this one has {len(secret)} characters"
        + ("" if _HEX.issuperset(secret) else ", not all of them hex digits")
        + "."
    )


def check_base_url(base_url: str | None) -> str:
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
        raise ConfigurationError(
            f"base_url must be an http(s) URL with a host, like {DEFAULT_BASE_URL} "
            f"(got {base_url!r:.80})."
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError("base_url must not contain credentials; OpShift uses the secret.")
    if (
        parts.query
        or parts.fragment
        or any(c.isspace() or c < " " or c == "\x7f" for c in base_url)
    ):
        raise ConfigurationError(
            "base_url must not contain a query, fragment, spaces or control characters "
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
