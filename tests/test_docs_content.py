"""The docs say what the code does: the changelog's version, every environment variable the
code reads, the troubleshooting page's topics, and how to build the docs site."""

from __future__ import annotations

import re

from opshift._version import __version__

from .helpers import ROOT

SRC = ROOT / "src" / "opshift"
DOCS = ROOT / "docs"
# What urllib's getproxies() reads for the SDK's http(s) base URLs (lowercase forms too).
URLLIB_PROXIES = {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"}


def _read(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The Markdown section under ``## heading``, up to the next heading of that level."""
    found = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert found, heading
    return found.group(1)


def variables_read_by_the_code() -> set[str]:
    """Every environment variable src/opshift reads, found in the source itself: each
    ``OPSHIFT_*`` name, each name looked up in ``os.environ`` or ``os.getenv``, each
    ``*_PROXY`` name, and the proxy variables urllib reads when the code asks it."""
    names: set[str] = set()
    lookup = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()\s*["']([A-Za-z_]\w*)["']""")
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        names.update(re.findall(r"\bOPSHIFT_[A-Z][A-Z_]*\b", text))
        names.update(re.findall(r"\b[A-Z]+_PROXY\b", text))
        names.update(name.upper() for name in lookup.findall(text))
        if "getproxies(" in text:
            names.update(URLLIB_PROXIES)
    return names


def test_the_changelog_has_a_section_for_the_packages_version() -> None:
    """CHANGELOG.md's newest section heading is `opshift.__version__`."""
    headings = re.findall(r"^## \[?([^\]\s]+)\]?", _read("CHANGELOG.md"), re.M)
    assert headings, "no version section in CHANGELOG.md"
    assert headings[0] == __version__, headings[:3]


def test_the_variables_are_found_in_the_source() -> None:
    """The scan of the source finds the variables every user sets (so it finds anything)."""
    found = variables_read_by_the_code()
    assert {"OPSHIFT_SECRET", "OPSHIFT_BASE_URL", "OPSHIFT_DISABLED"} <= found
    assert found >= URLLIB_PROXIES


def test_environment_md_names_every_variable_the_code_reads() -> None:
    """docs/environment.md has a `NAME` for each environment variable read in src/opshift."""
    text = (DOCS / "environment.md").read_text(encoding="utf-8")
    missing = sorted(name for name in variables_read_by_the_code() if f"`{name}`" not in text)
    assert missing == []


def test_troubleshooting_covers_the_first_failures() -> None:
    """troubleshooting.md has a section on 401, 404, proxies, private CA, clock, early exit."""
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    headings = "\n".join(re.findall(r"^##+ (.*)$", text, re.M)).lower()
    for topic in ("401", "404", "prox", "private ca", "clock", "exits before delivery"):
        assert topic in headings, topic
    for fix in ("opshift doctor", "SSL_CERT_FILE", "NO_PROXY", "flush"):
        assert fix in text, fix


def test_the_readme_says_how_to_build_the_docs() -> None:
    """README installs requirements-docs.txt for mkdocs and names the Python that file needs."""
    section = _section(_read("README.md"), "Documentation")
    assert "pip install -r requirements-docs.txt" in section
    assert "mkdocs build" in section and "mkdocs serve" in section
    needs = re.search(r"Python\s*>=\s*(\d+\.\d+)", _read("requirements-docs.txt"))
    if needs:
        assert re.search(rf"Python {re.escape(needs.group(1))}\b", section), needs.group(1)
