"""Every rule on input, in one place: the documented field limits and the SDK's own settings.

The client checks fields before sending, so bad input raises ``BadRequestError`` with the
same ``{"error": ...}`` text the server would answer, and nothing reaches the wire. The
local test server uses the same checks. Settings (timeouts, intervals, pool sizes) are
checked by ``check_number`` and ``check_int`` and raise ``ConfigurationError``.
"""

from __future__ import annotations

import json

from .errors import BadRequestError, ConfigurationError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any

TEXT_LIMITS = {"title": 200, "description": 2000, "reason": 200, "group_key": 200}
MAX_METADATA_BYTES = 102_400
MAX_METADATA_DEPTH = 10

# Built once: json.dumps with non-default options builds a new encoder on every call.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_SCALARS = (str, int, type(None))
_CONTAINERS = (dict, list, tuple)


def encode(kind: str, fields: dict[str, Any]) -> bytes:
    """Validate a ping or alert's fields and return the compact UTF-8 JSON body to sign.

    Keys keep the caller's order. The body is serialised once; metadata's own size is
    measured only when the whole body is over the metadata limit, since metadata cannot be
    larger than the body that holds it. Raises BadRequestError naming the field and limit.
    """
    problem = fields_problem(kind, fields)
    if problem is None:
        try:
            text = _dumps(fields)
        except (TypeError, ValueError):  # the other fields are checked strings: metadata
            problem = _unencodable(fields.get("metadata"), "metadata")
            problem = problem or "metadata cannot be encoded as JSON"
    if problem is None:
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request(
                "a field contains a lone surrogate, which is not valid UTF-8; clean the text first"
            ) from None
        if len(body) <= MAX_METADATA_BYTES or "metadata" not in fields:
            return body
        problem = _encode_metadata(fields["metadata"])[1]
        if problem is None:
            return body
    raise bad_request(problem)


def problem(kind: str, fields: dict[str, Any]) -> str | None:
    """Return the server's error message for decoded fields, or None if they are valid."""
    found = fields_problem(kind, fields)
    if found is None and "metadata" in fields:
        found = _encode_metadata(fields["metadata"])[1]
    return found


def fields_problem(kind: str, fields: dict[str, Any]) -> str | None:
    """Check types, enums, lengths and metadata shape; not metadata's serialised size."""
    if kind == "alert":
        title = fields.get("title")
        if title is None or (isinstance(title, str) and not title.strip()):
            return "title is required"
    for key, value in fields.items():
        choices = _choices.get(key) or (choices_for(key) if key in _ENUM_FIELDS else None)
        if choices is not None:
            if not isinstance(value, str) or value not in choices:
                shown = repr(value)[:40]
                return f"{key} must be one of {', '.join(choices)} (got {shown})"
            continue
        limit = TEXT_LIMITS.get(key)
        if limit is not None:
            if not isinstance(value, str):
                return f"{key} must be a string (got {type(value).__name__})"
            if len(value) > limit:
                return f"{key} must be at most {limit} characters (got {len(value)})"
        elif key == "metadata":
            if not isinstance(value, dict):
                return f"metadata must be a JSON object (a dict), got {type(value).__name__}"
            found = _key_problem(value, "metadata")
            if found is not None:
                return found
            # Flat metadata (the usual case) has no depth or cycle to look for.
            if any(isinstance(child, _CONTAINERS) for child in value.values()):
                found = _shape_problem(value, 1, "metadata", set())
                if found is not None:
                    return found
    return None


_ENUM_FIELDS = ("status", "severity")
_choices: dict[str, tuple[str, ...]] = {}


def choices_for(field: str) -> tuple[str, ...]:
    """The allowed values of an enum field (``status``, ``severity``), from types.py's Literals.

    Read on first use, so ``import opshift`` does not import ``typing``.
    """
    found = _choices.get(field)
    if found is None:
        from typing import get_args

        from .types import PingStatus, Severity

        _choices.update(status=get_args(PingStatus), severity=get_args(Severity))
        found = _choices[field]
    return found


def path_problem(name: str, value: object) -> str | None:
    """Check a path parameter (ping token, webhook id): a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        return f"{name} must be a non-empty string (got {value!r:.40})"
    return None


def bad_request(problem: str) -> BadRequestError:
    """The error for input rejected before sending, with the server's error envelope."""
    return BadRequestError(
        f"400 Bad Request: {problem}. Checked before sending; nothing was sent.",
        status_code=400,
        body={"error": problem},
    )


def _encode_metadata(metadata: dict[str, Any]) -> tuple[str, str | None]:
    """Serialise metadata compactly; return (json, None) or ("", the problem)."""
    try:
        text = _dumps(metadata)
    except (TypeError, ValueError):
        found = _unencodable(metadata, "metadata")
        return "", found or "metadata cannot be encoded as JSON"
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_METADATA_BYTES:
        return "", (
            f"metadata must be at most {MAX_METADATA_BYTES} bytes as compact JSON (got {size})"
        )
    return text, None


def _shape_problem(value: Any, level: int, path: str, active: set[int]) -> str | None:
    """Find a cycle or a nesting deeper than the limit; ``metadata`` itself is level 1."""
    if id(value) in active:
        return f"metadata contains a circular reference at {path}"
    if level > MAX_METADATA_DEPTH:
        return f"metadata must nest at most {MAX_METADATA_DEPTH} levels deep ({path} is deeper)"
    active.add(id(value))
    if isinstance(value, dict):
        found = _key_problem(value, path)
        if found is not None:
            return found
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        if isinstance(child, _CONTAINERS):
            found = _shape_problem(child, level + 1, _child_path(path, key, value), active)
            if found is not None:
                return found
    active.discard(id(value))
    return None


def _key_problem(value: dict[Any, Any], path: str) -> str | None:
    """Refuse a key that is not a string: json would quietly send 1 as "1", None as "null"."""
    for key in value:
        if not isinstance(key, str):
            return (
                f"{path} has a key of type {type(key).__name__} ({key!r:.20}); JSON keys "
                "must be strings, and json would change it to one: convert it yourself"
            )
    return None


def _an(word: str) -> str:
    """``word`` with its indefinite article: "a datetime", "an object"."""
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _unencodable(value: Any, path: str) -> str | None:
    """Name the first value JSON cannot encode, so the error points at the key."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return f"{path} is {value!r}, which is not valid JSON; send null or a string instead"
        return None
    if isinstance(value, _SCALARS):
        return None
    if isinstance(value, (dict, list, tuple)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            if isinstance(value, dict) and not isinstance(key, (str, int, float, type(None))):
                return f"{path} has a key of type {type(key).__name__}; JSON keys must be strings"
            found = _unencodable(child, _child_path(path, key, value))
            if found is not None:
                return found
        return None
    return (
        f"{path} is {_an(type(value).__name__)}, which JSON cannot encode; "
        "convert it to a string or number first"
    )


def _child_path(path: str, key: object, container: object) -> str:
    return f"{path}.{key}" if isinstance(container, dict) else f"{path}[{key}]"


def check_number(
    name: str,
    value: object,
    *,
    minimum: float = 0.0,
    inclusive: bool = False,
    maximum: float | None = None,
) -> float:
    """Return ``value`` as a float if it is a finite number in range, else raise.

    Booleans, strings, NaN and infinities are refused: ``interval=float("nan")`` would
    otherwise spin a thread and ``float("inf")`` overflow a timer.

    Raises:
        ConfigurationError: naming the setting, the range and the value given.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        above = number >= minimum if inclusive else number > minimum
        if above and (number <= maximum if maximum is not None else number != float("inf")):
            return number  # NaN fails every comparison, so it never gets here
    bound = f">= {minimum:g}" if inclusive else f"> {minimum:g}"
    if maximum is not None:
        bound += f" and <= {maximum:g}"
    raise ConfigurationError(f"{name} must be a finite number {bound} (got {value!r:.40}).")


def check_int(name: str, value: object, *, minimum: int = 0, hint: str = "") -> int:
    """Return ``value`` if it is an int (not a bool) of at least ``minimum``, else raise.

    Raises:
        ConfigurationError: naming the setting, the minimum and the value given.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return value
    raise ConfigurationError(f"{name} must be an int >= {minimum} (got {value!r:.40}){hint}.")
