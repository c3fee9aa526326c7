"""What a log record's alert says: its title, description and group key, and text made
safe to send (valid UTF-8, cut to the documented limits). ``AlertHandler`` builds alerts
with these, and the metadata a record's call site gives; they hold no state.
"""

from __future__ import annotations

import hashlib
import logging

from . import _validation
from .types import Metadata

__all__ = [
    "METADATA_TEXT_LIMIT",
    "clean",
    "cut",
    "description",
    "exception_type",
    "group_key",
    "site_metadata",
    "title",
    "trace",
]

TITLE_LIMIT = _validation.TEXT_LIMITS["title"]
DESCRIPTION_LIMIT = _validation.TEXT_LIMITS["description"]
# A long message keeps at least this much of its start when a traceback needs the room.
_MESSAGE_HEAD = 500
_TITLE_SCAN = 10_000  # look this far into a message for a non-blank first line
_ELLIPSIS = "\u2026"
METADATA_TEXT_LIMIT = 500  # each string in metadata: paths and names, never near 100 KB
_DEFAULT_FORMATTER = logging.Formatter()


def exception_type(record: logging.LogRecord) -> str:
    """The qualified name of the record's exception type, or "" when it has none."""
    if not record.exc_info or record.exc_info[0] is None:
        return ""
    kind = record.exc_info[0]
    module = getattr(kind, "__module__", None)
    name = getattr(kind, "__qualname__", None) or kind.__name__
    return name if module in (None, "builtins") else f"{module}.{name}"


def group_key(logger_name: str, template: str, exc_type: str) -> str:
    """A stable key (the same in every process) from logger, template and exception type.

    The logger name keeps it readable; a hash of all three keeps it short and distinct.
    """
    source = "\0".join((logger_name, template, exc_type)).encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(source).hexdigest()[:16]
    return f"log:{clean(logger_name, 100)}:{digest}"


def title(message: str, record: logging.LogRecord) -> str:
    """The message's first non-blank line; the logger and level for a blank message."""
    for line in message[:_TITLE_SCAN].splitlines():
        if line.strip():
            return clean(line.strip(), TITLE_LIMIT)
    return clean(f"{record.levelname} in {record.name}", TITLE_LIMIT)


def description(message: str, trace: str) -> str:
    """The message and the traceback in 2,000 characters: the message's start and the
    traceback's end (where the exception and its cause are) survive a cut."""
    # Only the message's first and the trace's last 2,000 characters can be kept.
    message = clean(message[: DESCRIPTION_LIMIT + 1])
    trace = clean(trace[-(DESCRIPTION_LIMIT + 1) :])
    if not trace:
        return cut(message, DESCRIPTION_LIMIT) if message.strip() else ""
    budget = DESCRIPTION_LIMIT - 1  # the newline between them
    if len(message) + len(trace) <= budget:
        return f"{message}\n{trace}"
    head = cut(message, max(min(len(message), _MESSAGE_HEAD), budget - len(trace)))
    room = budget - len(head)
    tail = trace if len(trace) <= room else _ELLIPSIS + trace[len(trace) - room + 1 :]
    return f"{head}\n{tail}"


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def clean(text: str, limit: int | None = None) -> str:
    """Text that encodes as UTF-8 (lone surrogates, e.g. from undecodable file names,
    become escapes rather than failing validation), cut to ``limit``."""
    if not text.isascii():  # ASCII (most text) always encodes: no need to try
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if limit is None else cut(text, limit)


def trace(record: logging.LogRecord, formatter: logging.Formatter | None) -> str:
    """The stack (if asked for) then the traceback: the exception's line comes last."""
    formatter = formatter or _DEFAULT_FORMATTER
    parts = []
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    if record.exc_info and record.exc_info[0] is not None:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:  # a record from another process (SocketHandler) keeps only this
        parts.append(record.exc_text)
    return "\n".join(part.rstrip("\n") for part in parts)


def site_metadata(record: logging.LogRecord, host: str) -> Metadata:
    """The metadata a call site's records share: logger, level, location, process..."""
    metadata: Metadata = {
        "logger": clean(record.name, METADATA_TEXT_LIMIT),
        "level": clean(record.levelname, METADATA_TEXT_LIMIT),
        "location": clean(f"{record.pathname}:{record.lineno}", METADATA_TEXT_LIMIT),
    }
    if record.funcName:
        metadata["function"] = clean(record.funcName, METADATA_TEXT_LIMIT)
    if isinstance(record.process, int):
        metadata["process"] = record.process
    if record.threadName:
        metadata["thread"] = clean(str(record.threadName), METADATA_TEXT_LIMIT)
    metadata["host"] = host
    return metadata
