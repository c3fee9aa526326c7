"""Every Python and shell example in README.md and docs/ runs against the local server.

A block that cannot run is marked on the line before its fence, and the test says why:

    <!-- skip: needs Celery, which is not a dependency -->
    <!-- requires: openssl curl -->     (skipped when a tool is missing)
    <!-- run: pytest -->                (run the block with pytest instead of python)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from opshift.testing import OpShiftServer

from .helpers import SECRET, user_env

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = {"python": "python", "py": "python", "sh": "shell", "bash": "shell", "console": "shell"}
# Generated or included pages hold no examples of their own.
NOT_EXAMPLES = {"benchmarks.md", "changelog.md"}
MARKER = re.compile(r"<!--\s*(skip|requires|run):\s*(.*?)\s*-->")


@dataclass
class Example:
    path: Path
    line: int
    language: str
    code: str
    marker: tuple[str, str] | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def collect() -> list[Example]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    examples = []
    for path in files:
        if path.name in NOT_EXAMPLES or not path.exists():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            fence = re.match(r"^```(\w*)", lines[index])
            if not fence:
                index += 1
                continue
            end = next(j for j in range(index + 1, len(lines)) if lines[j].startswith("```"))
            language = LANGUAGES.get(fence.group(1))
            if language is not None:
                previous = next((ln for ln in reversed(lines[:index]) if ln.strip()), "")
                found = MARKER.search(previous)
                marker = (found.group(1), found.group(2)) if found else None
                code = "\n".join(lines[index + 1 : end]) + "\n"
                examples.append(Example(path, index + 1, language, code, marker))
            index = end + 1
    return examples


EXAMPLES = collect()


def _param(example: Example) -> object:
    marks = []
    if example.marker and example.marker[0] == "skip":
        marks.append(pytest.mark.skip(reason=f"marked in the docs: {example.marker[1]}"))
    return pytest.param(example, id=example.id, marks=marks)


def test_the_docs_have_examples() -> None:
    """The collector finds the examples (a broken collector must not pass silently)."""
    assert len(EXAMPLES) >= 40
    assert {e.language for e in EXAMPLES} == {"python", "shell"}
    skipped = [e for e in EXAMPLES if e.marker and e.marker[0] == "skip"]
    assert len(skipped) <= len(EXAMPLES) // 4, "most examples must actually run"


def _missing_tools(example: Example) -> list[str]:
    """The tools a ``requires:`` example needs that this machine lacks."""
    if example.marker and example.marker[0] == "requires":
        return [tool for tool in example.marker[1].split() if shutil.which(tool) is None]
    return []


def _run(example: Example, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run one example in ``folder`` against a local OpShift of its own."""
    bin_dir = str(Path(sys.executable).parent)
    with OpShiftServer(SECRET, auto_create=True) as server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OPSHIFT_")},
            "OPSHIFT_SECRET": SECRET,
            "OPSHIFT_BASE_URL": server.url,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        if example.language == "python":
            script = folder / "example_test.py"
            script.write_text(example.code, encoding="utf-8")
            pytest_run = example.marker == ("run", "pytest")
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
            if pytest_run:  # the fixtures come from opshift's installed pytest11 entry point
                # As in a CI that disables OpShift for the application: the user's tests
                # of the SDK (the plugin's fixtures, their own enabled=True fixture) still work.
                env = {**user_env(env), "OPSHIFT_DISABLED": "1"}
            else:
                command = [sys.executable, str(script)]
        else:
            command = ["bash", "-e", "-o", "pipefail", "-c", example.code]
        return subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=120
        )


@pytest.fixture(scope="session")
def example_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every selected, runnable example, run four at a time (each waits mostly on a
    subprocess), so the docs cost a fraction of their one-by-one time."""
    selected = [
        cast(Example, item.callspec.params["example"])
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.originalname == "test_example_runs"
        and not item.get_closest_marker("skip")
    ]
    runnable = [example for example in selected if not _missing_tools(example)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            example.id: pool.submit(_run, example, tmp_path_factory.mktemp("example"))
            for example in runnable
        }
    return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("example", [_param(e) for e in EXAMPLES])
def test_example_runs(
    example: Example, example_runs: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    """Each example runs to success with OPSHIFT_SECRET / OPSHIFT_BASE_URL at a local server."""
    missing = _missing_tools(example)
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, not installed here")
    done = example_runs[example.id]
    assert done.returncode == 0, (
        f"{example.id} failed ({done.returncode}):\n{example.code}\n"
        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )


def test_docs_build_in_strict_mode(tmp_path: Path) -> None:
    """`mkdocs build --strict`: broken links, bad references or a failing docstring fail."""
    pytest.importorskip("mkdocs", reason="mkdocs is installed for the tools' Python only")
    pytest.importorskip("mkdocstrings")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    reference = (tmp_path / "site" / "reference" / "index.html").read_text(encoding="utf-8")
    assert "Send a heartbeat" in reference  # docstrings rendered, not just headings
