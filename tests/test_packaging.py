"""The wheel that ships: its contents, and an install into a fresh venv with nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import opshift

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel scripts/check built from this tree (OPSHIFT_TEST_WHEEL_DIR), else one built now."""
    built = os.environ.get("OPSHIFT_TEST_WHEEL_DIR")
    if built:
        (path,) = Path(built).glob("opshift-*.whl")
        yield path
        return
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("not running from a source checkout")
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("opshift-*.whl")
    yield path


def test_wheel_contents(wheel: Path) -> None:
    """py.typed ships; tests, docs and benchmarks do not; no runtime dependencies."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = archive.read(metadata).decode()
    assert "opshift/py.typed" in names
    assert "opshift/testing/_server.py" in names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]
    assert f"Version: {opshift.__version__}" in meta
    assert "Requires-Python: >=3.9" in meta
    assert "Requires-Dist" not in meta
    assert "Classifier: Typing :: Typed" in meta


def test_wheel_installs_and_runs_alone(wheel: Path, tmp_path: Path) -> None:
    """In a fresh venv with only the wheel: import, ping the demo server, run the CLI."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)  # this pip installs into it: no ensurepip, faster
    python = env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    install = subprocess.run(
        [*pip, "install", "--quiet", "--no-index", "--no-deps", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    listed = subprocess.run(
        [*pip, "list", "--format=freeze"], capture_output=True, text=True
    ).stdout.lower()
    others = {line.split("==")[0] for line in listed.split()} - {"opshift"}
    assert others == set()
    code = (
        "import opshift, opshift.testing, sys\n"
        "assert opshift.__file__.startswith(sys.prefix)\n"
        "print(opshift.__version__)\n"
    )
    done = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == opshift.__version__
    demo = subprocess.run(
        [str(python), "-I", "-m", "opshift", "demo"], capture_output=True, text=True, timeout=60
    )
    assert demo.returncode == 0, demo.stderr
    assert "The server checked 5 signatures: 4 valid." in demo.stdout
