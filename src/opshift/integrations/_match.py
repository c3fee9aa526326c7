"""Which ping token a job's run goes to: the ``monitors`` setting, and shared tokens.

``monitors`` maps a job name (a beat entry, a task, a scheduler job id) to a ping token,
or to ``None`` to opt out; keys may be glob patterns (``cleanup-*``). An exact key wins
over a pattern, and the first matching pattern (in the mapping's order) over later ones.
It may also be a callable ``name -> token | None``. A name nothing matches is not
monitored.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Callable, Optional, Union

from .._ids import id_problem
from ..errors import ConfigurationError

__all__ = ["NO_MATCH", "Matcher", "Monitors", "check_token", "shared_token_warnings"]

Monitors = Union[Mapping[str, Optional[str]], Callable[[str], Optional[str]], None]
"""Job name (or glob pattern) -> ping token, ``None`` to opt out; or a callable doing that."""

NO_MATCH = object()  # lookup()'s answer when no key matches (unlike an explicit None)
_GLOB_CHARS = frozenset("*?[")


def check_token(where: str, token: object) -> str:
    """``token`` if it is a usable ping token, else ConfigurationError naming ``where``."""
    problem = id_problem(token, prefix="/api/ping/", id_name="ping_token")
    if problem is not None:
        raise ConfigurationError(f"{where}: {problem}")
    return str(token)


class Matcher:
    """Looks names up in a ``monitors`` setting: exact keys first, then globs in order.

    Raises:
        ConfigurationError: a key is not a string, or a token is not a usable ping token.
    """

    def __init__(self, monitors: Monitors) -> None:
        self.function: Callable[[str], str | None] | None = None
        self.exact: dict[str, str | None] = {}
        self.globs: list[tuple[str, str | None]] = []
        if monitors is None:
            return
        if callable(monitors):
            self.function = monitors
            return
        if not isinstance(monitors, Mapping):
            raise ConfigurationError(
                f"monitors must be a mapping or a callable, not {type(monitors).__name__}."
            )
        for key, token in monitors.items():
            if not isinstance(key, str):
                raise ConfigurationError(f"monitors keys must be names, not {key!r}.")
            if token is not None:
                check_token(f"monitors[{key!r}]", token)
            if _GLOB_CHARS.intersection(key):
                self.globs.append((key, token))
            else:
                self.exact[key] = token

    def lookup(self, name: str) -> str | object | None:
        """The token for ``name``, ``None`` if opted out, or ``NO_MATCH``."""
        if self.function is not None:
            token = self.function(name)
            return NO_MATCH if token is None else token
        if name in self.exact:
            return self.exact[name]
        for pattern, token in self.globs:
            if fnmatch.fnmatchcase(name, pattern):
                return token
        return NO_MATCH

    def token(self, *names: str | None) -> str | None:
        """The token of the first of ``names`` a key matches (None if none, or opted out)."""
        for name in names:
            if name is None:
                continue
            found = self.lookup(name)
            if found is not NO_MATCH:
                return found if isinstance(found, str) else None
        return None


def shared_token_warnings(owners: Iterable[tuple[str, str | None]]) -> list[str]:
    """One line per token that two or more distinct owners (``(label, token)``) map to."""
    by_token: dict[str, list[str]] = {}
    for label, token in owners:
        if token is not None and label not in by_token.setdefault(token, []):
            by_token[token].append(label)
    return [
        f"ping token {token!r} is shared by {' and '.join(labels)}: OpShift sees one "
        "monitor, so one job's success hides the other's silence. Give each its own token."
        for token, labels in by_token.items()
        if len(labels) > 1
    ]
