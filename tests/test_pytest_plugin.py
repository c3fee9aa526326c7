"""The pytest plugin: opshift_server and opshift_client in a user's own pytest run."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .helpers import OTHER_SECRET, ROOT, user_env

# The user's environment before the run: a CI job with OpShift switched off.
OUTER = {
    "OPSHIFT_SECRET": OTHER_SECRET,
    "OPSHIFT_BASE_URL": "http://opshift.invalid",
    "OPSHIFT_DISABLED": "1",
    "NO_PROXY": "example.com",
}

USER_TESTS = """
import os

import pytest

from opshift import OpShift, ServerError

OUTER = {outer!r}


def report_backup(ok):
    # The code under test makes its own client from the environment, as in production.
    OpShift().ping("nightly-backup", status="up" if ok else "down")


def test_code_under_test_reaches_the_local_server(opshift_server):
    report_backup(ok=False)
    (request,) = opshift_server.requests
    assert request.path == "/api/ping/nightly-backup"
    assert request.json == {{"status": "down"}}
    assert request.signature_valid
    assert opshift_server.monitors["nightly-backup"].status == "down"
    assert os.environ["OPSHIFT_BASE_URL"] == opshift_server.url
    assert "OPSHIFT_DISABLED" not in os.environ
    assert os.environ["NO_PROXY"].split(",") == ["example.com", "127.0.0.1"]


def test_the_client_fixture_sends_to_the_same_server(opshift_client, opshift_server):
    opshift_client.alert("deploy-failures", title="Deploy failed", severity="sev1")
    assert [alert.title for alert in opshift_server.alerts] == ["Deploy failed"]
    opshift_server.fail_next(503)
    with pytest.raises(ServerError):
        opshift_client.with_options(max_retries=0).ping("payments-worker")


def test_the_environment_is_restored_for_the_next_test():
    assert {{name: os.environ.get(name) for name in OUTER}} == OUTER
"""


def _run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``folder`` as a user would, with opshift (and its entry point) installed."""
    env = user_env({**os.environ, **OUTER})
    env.pop("no_proxy", None)  # the fixture adds 127.0.0.1 to both spellings; check one
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_users_tests_use_the_fixtures_and_the_environment_is_restored(tmp_path: Path) -> None:
    """A real pytest run: code calling OpShift() reaches the fixture's server; env restored."""
    (tmp_path / "test_user.py").write_text(USER_TESTS.format(outer=OUTER), encoding="utf-8")
    done = _run_pytest(tmp_path, "-q", "test_user.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_the_fixtures_are_listed_with_their_docstrings(tmp_path: Path) -> None:
    """`pytest --fixtures` shows both fixtures and what they do."""
    done = _run_pytest(tmp_path, "--fixtures")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "opshift_server" in done.stdout
    assert "A local OpShift on 127.0.0.1" in done.stdout
    assert "opshift_client" in done.stdout
    assert "An ``OpShift`` client pointed at ``opshift_server``" in done.stdout


def test_p_no_opshift_switches_the_plugin_off(tmp_path: Path) -> None:
    """With `-p no:opshift` the fixtures do not exist and opshift is not even imported."""
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import sys

            def test_uses_the_fixture(opshift_server):
                pass

            def test_opshift_was_not_loaded():
                assert "opshift" not in sys.modules
            """
        ),
        encoding="utf-8",
    )
    done = _run_pytest(tmp_path, "-q", "-p", "no:opshift", "test_user.py")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "fixture 'opshift_server' not found" in done.stdout
    assert "1 passed, 1 error" in done.stdout
    listed = _run_pytest(tmp_path, "--fixtures", "-p", "no:opshift")
    assert "opshift_server" not in listed.stdout


def test_only_the_plugin_module_imports_pytest() -> None:
    """No other module of the package imports pytest, so nothing can pull it in."""
    importers = [
        path.relative_to(ROOT / "src").as_posix()
        for path in (ROOT / "src" / "opshift").rglob("*.py")
        if "import pytest" in path.read_text(encoding="utf-8")
    ]
    assert importers == ["opshift/testing/_pytest_plugin.py"]


def test_the_entry_point_is_named_opshift_and_names_the_plugin_module() -> None:
    """`-p no:opshift` relies on the name; the module it names is importable."""
    entry_points = importlib.metadata.distribution("opshift").entry_points
    found = [(ep.name, ep.value) for ep in entry_points if ep.group == "pytest11"]
    assert found == [("opshift", "opshift.testing._pytest_plugin")]
    import opshift.testing._pytest_plugin as plugin

    assert plugin.__all__ == ["opshift_client", "opshift_server"]
