"""The repository's own rules: CI runs the one check command, pinned and bounded; every test
says what it pins; shared test code lives in helpers.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(workflow: Path) -> None:
    """`uses:` names a full 40-hex commit SHA, never a movable tag like @v4."""
    uses = re.findall(r"uses:\s*(\S+)", workflow.read_text())
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), action


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_every_job_has_a_timeout(workflow: Path) -> None:
    """A hung job is killed in minutes, not after GitHub's six hours."""
    text = workflow.read_text()
    jobs = re.findall(r"^  (\w[\w-]*):\n", text.split("\njobs:\n", 1)[1], flags=re.M)
    assert jobs
    assert text.count("timeout-minutes:") == len(jobs), jobs


def test_ci_runs_the_check_command_and_nothing_else() -> None:
    """CI's steps are scripts/check, so CI and a developer's machine run one definition."""
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    runs = re.findall(r"^\s*- run: (.+)$", text, flags=re.M)
    assert runs == ["scripts/check --static", "scripts/check --python ${{ matrix.python-version }}"]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec scripts/check")


TEST_MODULES = sorted((ROOT / "tests").rglob("test_*.py"))


@pytest.mark.parametrize("module", TEST_MODULES, ids=lambda p: str(p.relative_to(ROOT / "tests")))
def test_every_test_has_a_one_line_docstring(module: Path) -> None:
    """Each test function states, in one line, the behaviour it pins."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    missing = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
        and (
            not (ast.get_docstring(node) or "").strip()
            or "\n" in (ast.get_docstring(node) or "").strip()
        )
    ]
    assert missing == []


@pytest.mark.parametrize("module", TEST_MODULES, ids=lambda p: str(p.relative_to(ROOT / "tests")))
def test_shared_test_code_comes_from_helpers_not_conftest_or_other_tests(module: Path) -> None:
    """Test modules import shared constants and helpers from tests/helpers.py only."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    relative = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level >= 1 and node.module
    }
    assert not {name for name in relative if name == "conftest" or name.startswith("test_")}
