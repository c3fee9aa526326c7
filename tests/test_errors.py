"""The exception tree, the messages it builds, and the public surface of the package."""

from __future__ import annotations

import pickle
import types

import pytest

import opshift
from opshift import NotFoundError, OpShift, errors
from opshift.errors import error_for_status
from opshift.testing import OpShiftServer

from .helpers import SECRET


@pytest.mark.parametrize(
    ("status", "cls", "advice"),
    [
        pytest.param(400, errors.BadRequestError, "Fix the field", id="400"),
        pytest.param(401, errors.AuthenticationError, "OPSHIFT_SECRET", id="401"),
        pytest.param(403, errors.PermissionDeniedError, "subscription", id="403"),
        pytest.param(404, errors.NotFoundError, "paused monitor", id="404"),
        pytest.param(429, errors.RateLimitError, "10 per minute", id="429"),
        pytest.param(500, errors.ServerError, "retry later", id="500"),
        pytest.param(599, errors.ServerError, "retry later", id="599"),
        pytest.param(409, errors.OpShiftError, "not part of the OpShift API", id="409"),
    ],
)
def test_error_for_status(status: int, cls: type[errors.OpShiftError], advice: str) -> None:
    """Each status maps to its class; the message has status, server text and advice."""
    error = error_for_status(status, b'{"error": "Something specific."}')
    assert type(error) is cls
    assert error.status_code == status
    assert error.body == {"error": "Something specific."}
    assert str(error).startswith(f"{status} ")
    assert "Something specific." in str(error)
    assert advice in str(error)


def test_json_body_without_error_field_is_kept() -> None:
    """A JSON error body without an error field is kept and summarised in the message."""
    error = error_for_status(500, b'{"detail": "x"}')
    assert error.body == {"detail": "x"}
    assert "non-JSON" in str(error)  # no "error" text to quote: the raw body is summarised


def test_long_non_json_body_is_summarised() -> None:
    """A long HTML error page is summarised by its size, never pasted whole."""
    error = error_for_status(502, b"<html>" + b"x" * 5000)
    assert error.body is None
    assert "5006 bytes" in str(error)
    assert len(str(error)) < 400


def test_hierarchy() -> None:
    """Every error is an OpShiftError; timeouts are network errors; bad input is a ValueError."""
    assert issubclass(errors.RequestTimeoutError, errors.NetworkError)
    assert issubclass(errors.BadRequestError, ValueError)
    assert issubclass(errors.ConfigurationError, ValueError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.OpShiftError)


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_pickles(name: str) -> None:
    """Each error class pickles with its message, status and body."""
    cls = getattr(errors, name)
    error = cls("message", status_code=418, body={"error": "x"})
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is cls
    assert (str(copy), copy.status_code, copy.body) == ("message", 418, {"error": "x"})


def test_all_is_sorted_complete_and_public() -> None:
    """Every name in __all__ exists, the list is sorted, and nothing private leaks."""
    assert opshift.__all__ == sorted(opshift.__all__)
    for name in opshift.__all__:
        assert hasattr(opshift, name), name
        assert not name.startswith("_") or name == "__version__"
    public = {
        name
        for name, value in vars(opshift).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(opshift.__all__)


def test_a_404_names_the_url_so_an_extra_path_in_base_url_shows(server: OpShiftServer) -> None:
    """base_url ending in /api: the 404 shows /api/api/ping/... and says what to check."""
    client = OpShift(SECRET, base_url=server.url + "/api", max_retries=0)
    with pytest.raises(NotFoundError) as caught:
        client.ping("payments-worker")
    text = str(caught.value)
    assert f"POST {server.url}/api/api/ping/payments-worker" in text
    assert "base_url has an extra path" in text
