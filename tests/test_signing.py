"""Signing: known answers frozen from `openssl dgst -sha256 -hmac`, and verify()."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import opshift

from .helpers import ALERT_EXAMPLE, PING_EXAMPLE, SECRET

KNOWN_ANSWERS = [
    pytest.param(
        b"", "294a3c92fda7d1b6abc158feebc6d72c23a606c62e82af75f4799f15432e2592", id="empty"
    ),
    pytest.param(
        PING_EXAMPLE, "0e975f72954be934fea48ba6e70580beb7dfab295b1fc0d9f818314ab019c1c9", id="ping"
    ),
    pytest.param(
        ALERT_EXAMPLE,
        "c047deaa58f9d6a4bb7a6fac8ac082b8fe3e7287716bd68437cfb44db3a8cd98",
        id="alert",
    ),
]


@pytest.mark.parametrize(("body", "expected"), KNOWN_ANSWERS)
def test_sign_matches_frozen_openssl_answers(body: bytes, expected: str) -> None:
    """sign() gives the hex openssl gave for the docs' example bodies."""
    assert opshift.sign(body, SECRET) == expected


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize(("body", "expected"), KNOWN_ANSWERS)
def test_sign_matches_openssl_now(body: bytes, expected: str) -> None:
    """The docs' curl recipe (openssl dgst -hmac with the secret's text) agrees with sign()."""
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", SECRET, "-hex"],
        input=body,
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert out.strip().split("= ")[-1] == opshift.sign(body, SECRET)


def test_key_is_the_secret_text_not_hex_decoded() -> None:
    """The HMAC key is the secret's UTF-8 text; hex-decoding it gives another signature."""
    import hashlib
    import hmac

    decoded = hmac.new(bytes.fromhex(SECRET), PING_EXAMPLE, hashlib.sha256).hexdigest()
    assert opshift.sign(PING_EXAMPLE, SECRET) != decoded


def test_signature_is_64_lowercase_hex() -> None:
    """A signature is 64 lowercase hex characters."""
    signature = opshift.sign(b"{}", SECRET)
    assert len(signature) == 64
    assert signature == signature.lower()
    int(signature, 16)


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        pytest.param(
            "0e975f72954be934fea48ba6e70580beb7dfab295b1fc0d9f818314ab019c1c9", True, id="ok"
        ),
        pytest.param(
            "0E975F72954BE934FEA48BA6E70580BEB7DFAB295B1FC0D9F818314AB019C1C9", True, id="upper"
        ),
        pytest.param(
            "0e975f72954be934fea48ba6e70580beb7dfab295b1fc0d9f818314ab019c1c8",
            False,
            id="off-by-one",
        ),
        pytest.param("", False, id="empty"),
        pytest.param("sha256=0e975f72", False, id="prefixed"),
        pytest.param("é" * 64, False, id="non-ascii"),
    ],
)
def test_verify(signature: str, expected: bool) -> None:
    """verify() accepts exactly the body's signature (any hex case) and nothing else."""
    assert opshift.verify(PING_EXAMPLE, signature, SECRET) is expected


def test_verify_rejects_other_body_and_other_secret() -> None:
    """verify() fails for a changed body or another secret."""
    good = opshift.sign(PING_EXAMPLE, SECRET)
    assert not opshift.verify(PING_EXAMPLE + b" ", good, SECRET)
    assert not opshift.verify(PING_EXAMPLE, good, "0" * 64)


def test_verify_rejects_non_string_signature() -> None:
    """verify() returns False for a signature that is not a string."""
    assert opshift.verify(b"", None, SECRET) is False  # type: ignore[arg-type]
