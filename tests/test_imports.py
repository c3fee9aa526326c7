"""Import-cost probes, all in one place: `import opshift`, building a client or a transport,
and the CLI's first call load only what they need; the network, TLS, email, asyncio,
logging, typing and pytest load on use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .helpers import SECRET

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


def test_building_a_client_loads_no_tls_and_no_urllib() -> None:
    """OpShift() and both transports build without I/O: no ssl, urllib.request or http.client."""
    probe = (
        "import json, sys\n"
        "import opshift\n"
        "opshift.OpShift('ab' * 32)\n"
        "opshift.OpShift('ab' * 32, base_url='http://127.0.0.1:9')\n"
        "opshift.UrllibTransport()\n"
        "opshift.KeepAliveTransport().close()\n"
        "heavy = ('ssl', '_ssl', 'urllib.request', 'http.client', 'email')\n"
        "print(json.dumps([name for name in heavy if name in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize(
    ("transport", "background", "loaded"),
    [
        ("None", True, True),
        ("opshift.KeepAliveTransport()", True, True),
        ("None", False, False),
        ("lambda *call: (200, b'{}')", True, False),
    ],
)
def test_a_background_outbox_loads_its_transport_when_built(
    transport: str, background: bool, loaded: bool
) -> None:
    """An Outbox with a sender thread loads http.client and idna when built; others do not."""
    added = _new_modules(
        "import opshift\n"
        f"opshift.Outbox(opshift.OpShift('ab' * 32, transport={transport}), "
        f"background={background}, exit_timeout=0)\n"
    )
    assert ("http.client" in added) is loaded
    assert ("encodings.idna" in added) is loaded  # every connection's host name goes through it


def test_the_cli_builds_its_parser_and_client_without_typing() -> None:
    """`opshift alert ...` reaches its first call without importing typing (a cron job's 2 ms)."""
    probe = (
        "import json, sys\n"
        "preloaded = 'typing' in sys.modules\n"
        "from opshift.cli import _commands, build_parser\n"
        "args = build_parser().parse_args(\n"
        "    ['alert', 'deploy', '--title', 't', '--quiet', '--base-url', 'http://127.0.0.1:9']\n"
        ")\n"
        "_commands.client_from(args)\n"
        "print(json.dumps([preloaded, 'typing' in sys.modules]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSHIFT_")}
    env["OPSHIFT_SECRET"] = SECRET
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    preloaded, loaded = json.loads(out.stdout)
    if preloaded:
        pytest.skip("this interpreter imports typing at start-up (a .pth file)")
    assert not loaded


def test_import_opshift_never_imports_pytest() -> None:
    """`import opshift`, `opshift.testing` and `opshift.AlertHandler` leave pytest unloaded."""
    code = (
        "import json, sys\n"
        "import opshift, opshift.testing\n"
        "opshift.AlertHandler, opshift.Outbox\n"
        "print(json.dumps(sorted(m for m in sys.modules if 'pytest' in m)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_importing_the_integrations_package_imports_no_framework() -> None:
    """`import opshift.integrations` loads no framework (nor redis, nor typing)."""
    added = _new_modules("import opshift, opshift.integrations")
    assert "opshift.integrations" in added
    frameworks = {"celery", "kombu", "billiard", "apscheduler", "rq", "redis", "django", "typing"}
    assert not {m.split(".")[0] for m in added} & frameworks, added
