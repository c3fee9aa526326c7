"""The floor plan holds: no import circle, small modules, no private reach across modules,
and one set of ping/alert keywords everywhere a ping or an alert is made."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any, Callable

import pytest

from .helpers import ROOT

SRC = ROOT / "src" / "opshift"
MODULES = sorted(SRC.rglob("*.py"))
MAX_MODULE_LINES = 450
MAX_TEST_LINES = 600

# Private members of the standard library the wire uses, each with its reason; the
# canaries in tests/transport/test_stdlib_canary.py fail if one changes.
STDLIB_PRIVATES = {
    "_output": "http.client.HTTPConnection._output: header lines joined in one go",
    "_buffer": "http.client.HTTPConnection._buffer: a request sent in one write",
    "_payload": "email.message.Message._payload: a malformed header line is detected",
    "_parse_proxy": "urllib.request._parse_proxy: proxies parsed exactly as urllib does",
    "_exit": "os._exit: documented; a forked child ends without running atexit hooks",
    "_getframe": "sys._getframe: documented; the caller's frame for a log record",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _run_time_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    nodes: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` in ``path`` names."""
    if not node.level:
        return node.module or ""
    name = _module_name(path)
    package = (name if path.name == "__init__.py" else name.rpartition(".")[0]).split(".")
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path) -> set[str]:
    """The opshift modules ``path`` imports at run time, eagerly or on first use."""
    found: set[str] = set()
    for node in _run_time_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("opshift"))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(path, node)
            if not target.startswith("opshift"):
                continue
            found.add(target)
            for alias in node.names:  # `from . import _log` imports a module
                if f"{target}.{alias.name}" in ALL_NAMES:
                    found.add(f"{target}.{alias.name}")
    return found - {_module_name(path)}


ALL_NAMES = {_module_name(path) for path in MODULES}


def _cycle() -> list[str] | None:
    """One import circle among opshift's modules, or None."""
    graph = {_module_name(p): _imports(p) for p in MODULES}
    for name, targets in graph.items():
        # Importing a.b.c runs a/__init__ and a/b/__init__ first: edges to those too,
        # but not to the module's own packages, which are always initialised before it.
        for target in list(targets):
            parts = target.split(".")
            targets.update(".".join(parts[:i]) for i in range(2, len(parts)))
        targets.difference_update(
            ".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)
        )
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_circle_among_the_packages_modules() -> None:
    """Data flows down: no module imports, even on first use, one that imports it back."""
    # A package's __init__ re-exporting its own modules is the face, not a circle.
    assert _cycle() is None, " -> ".join(_cycle() or [])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_over_450_lines(path: Path) -> None:
    """Each module does one job, small enough to read in one sitting."""
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_MODULE_LINES


@pytest.mark.parametrize("path", sorted((ROOT / "tests").rglob("test_*.py")), ids=lambda p: p.name)
def test_no_test_module_is_over_600_lines(path: Path) -> None:
    """Tests are split by subsystem into files one can read whole."""
    assert len(path.read_text(encoding="utf-8").splitlines()) <= MAX_TEST_LINES


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(tree: ast.AST) -> set[str]:
    """Private names the module itself defines: functions, classes, attributes it assigns,
    annotated fields and __slots__ entries."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {name for name in names if _private(name)}


def _private_reach(path: Path) -> list[str]:
    """Uses in ``path`` of another module's private name: ``obj._x`` where this module
    defines no ``_x``, and ``from module import _x`` of a name (not a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if node.attr not in own and node.attr not in STDLIB_PRIVATES:
                found.append(f"{path.name}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(path, node)
            for alias in node.names:  # a private module is fine; a private name is not
                if _private(alias.name) and f"{module}.{alias.name}" not in ALL_NAMES:
                    found.append(f"{path.name}:{node.lineno}: import {alias.name}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_reaches_into_another_modules_privates(path: Path) -> None:
    """A module uses only other modules' public names (and the listed stdlib privates)."""
    assert _private_reach(path) == []


def _keywords(function: Callable[..., Any], *, skip: int = 1) -> dict[str, Any]:
    """A function's keyword parameters after the first ``skip`` (self and the id): name ->
    default, to compare across the places that make a ping or an alert."""
    params = list(inspect.signature(function).parameters.values())[skip:]
    return {p.name: p.default for p in params}


def _cli_options(command: str) -> set[str]:
    """The option names (as keywords) of one CLI command."""
    import argparse

    from opshift.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        action.dest
        for action in sub.choices[command]._actions
        if action.option_strings and action.dest != "help"
    }


@pytest.mark.parametrize("kind", ["ping", "alert"])
def test_ping_and_alert_take_the_same_keywords_everywhere(kind: str) -> None:
    """One set of ping/alert keywords on the client, async client, outbox, monitor and CLI."""
    from opshift import AsyncOpShift, OpShift, Outbox

    reference = _keywords(getattr(OpShift, kind), skip=2)
    for owner in (AsyncOpShift, Outbox):
        assert _keywords(getattr(owner, kind), skip=2) == reference, owner.__name__
    if kind == "ping":
        from opshift.monitor import JobMonitor

        # The monitor decides status and reason itself; it takes the rest.
        monitor = _keywords(OpShift.monitor, skip=2)
        assert set(monitor) == set(reference) - {"status", "reason"}
        assert set(_keywords(JobMonitor.__init__, skip=3)) >= set(monitor)
    options = _cli_options(kind)
    assert set(reference) <= options | {"metadata"}, sorted(set(reference) - options)
