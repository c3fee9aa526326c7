"""HMAC-SHA256 request signing, as OpShift checks it: hex of HMAC(secret's UTF-8, exact body)."""

from __future__ import annotations

import hmac

__all__ = ["sign", "verify"]


def sign(body: bytes, secret: str) -> str:
    """Return the ``X-Webhook-Signature`` value for ``body``: 64 lowercase hex characters.

    The key is the secret's text as UTF-8 (not hex-decoded), matching
    ``printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$OPSHIFT_SECRET" -hex``.
    """
    return hmac.digest(secret.encode("utf-8"), body, "sha256").hex()


def verify(body: bytes, signature: str, secret: str) -> bool:
    """Return True if ``signature`` is the signature of ``body`` under ``secret``.

    The comparison is constant-time; hex case is ignored; anything malformed is just False.
    """
    if not isinstance(signature, str) or not signature.isascii():
        return False
    return hmac.compare_digest(sign(body, secret), signature.lower())


class Signer:
    """Holds the key for one client and signs bodies; its repr never shows the secret."""

    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        self._key = secret.encode("utf-8")

    def sign(self, body: bytes) -> str:
        """The ``X-Webhook-Signature`` value for ``body`` under this key."""
        return hmac.digest(self._key, body, "sha256").hex()

    def redact(self, text: str, replacement: str) -> str:
        """``text`` with every occurrence of the secret replaced by ``replacement``."""
        return text.replace(self._key.decode("utf-8"), replacement)

    def __repr__(self) -> str:
        return "<secret redacted>"
