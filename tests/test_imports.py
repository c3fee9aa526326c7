"""`import opshift` stays light: the network, TLS, email, asyncio and logging load on use."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = [
    "urllib.request",
    "http.client",
    "ssl",
    "email",
    "asyncio",
    "logging",
    "socket",
    "threading",
    "typing",
    "sqlite3",
    "pytest",
]


def _new_modules(code: str) -> set[str]:
    probe = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_import_opshift_loads_no_heavy_modules() -> None:
    """Modules already loaded by the interpreter don't count; opshift must add none of these."""
    added = _new_modules("import opshift")
    assert "opshift.client" in added
    assert not {
        m for m in added if m.split(".")[0] in {h.split(".")[0] for h in HEAVY} and m in HEAVY
    }, added
    assert not any(
        m.startswith(("urllib.request", "http.", "email", "asyncio", "logging")) for m in added
    )


def test_lazy_names_resolve() -> None:
    """Names loaded on first use resolve to the real objects."""
    added = _new_modules(
        "import opshift\n"
        "assert opshift.UrllibTransport.__name__ == 'UrllibTransport'\n"
        "assert opshift.AsyncOpShift.__name__ == 'AsyncOpShift'\n"
        "assert opshift.PingResponse.__name__ == 'PingResponse'\n"
        "assert 'JobMonitor' in dir(opshift)\n"
    )
    assert {"opshift.transport", "opshift.async_client", "opshift.types"} <= added


def test_unknown_attribute_is_an_attribute_error() -> None:
    """A misspelt name on the package raises AttributeError naming it."""
    import opshift

    try:
        opshift.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_a_first_ping_does_not_import_logging_handlers() -> None:
    """A first ping does not import logging.handlers."""
    added = _new_modules(
        "import opshift\n"
        "from opshift.testing import FakeTransport\n"
        "opshift.OpShift('ab' * 32, transport=FakeTransport('ab' * 32)).ping('w')\n"
    )
    assert "logging.handlers" not in added
