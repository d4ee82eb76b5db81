"""Exceptions raised on bad input.

Each one names what was wrong and, where it applies, both of the values that disagree, so that a user
who stacked a head on the wrong base or loaded a damaged checkpoint knows what to change.
"""

from __future__ import annotations

import json


class LogitMLPError(Exception):
    """Base class of the package's errors."""


class IncompatibleBaseModelError(LogitMLPError, ValueError):
    """The base model a head is attached to does not have the hidden size or vocabulary the head was built for."""


class NonFiniteLogitsError(LogitMLPError, ValueError):
    """Logits contain NaN or +inf, or a row has no finite entry at all, so the warp is undefined."""


class HeadCheckpointError(LogitMLPError, OSError):
    """A head checkpoint is missing, unreadable, or does not hold the tensors its config describes."""


class DataFileError(LogitMLPError, ValueError):
    """A dataset or rollouts file (JSON lines) is empty or unreadable, or one of its rows is malformed.

    The message names the file and the 1-based line (``path:line:``), the field, the bad value (as JSON) and what is
    allowed; ``path``, ``line`` and ``field`` are also attributes (``None`` where they do not apply). Rows given in
    memory rather than read from a file are named by their index instead of ``path:line``.
    """

    def __init__(self, message: str, path: object = None, line: int | None = None, field: str | None = None):
        super().__init__(message)
        self.path, self.line, self.field = path, line, field


class MissingFieldError(DataFileError, KeyError):
    """A row lacks a field it needs (also a `KeyError`, as the loaders raised before)."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class RolloutsMismatchError(LogitMLPError, ValueError):
    """Rollouts record a model or tokenizer other than the one asked to analyse them: their token ids and
    log-probabilities would be read against the wrong vocabulary or distribution."""


def json_snippet(value: object, width: int = 80) -> str:
    """A value as a JSON file shows it (``null``, ``true``, ``"text"``), cut to ``width`` characters, for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


class InvalidHeadConfigError(LogitMLPError, ValueError):
    """A head config field has the wrong type, is out of its range, or is not finite.

    Raised when the config is built or read, before anything is allocated from it. ``field``, ``value`` and
    ``allowed`` say which field, what it held and what it may hold; ``source`` is the file it was read from, if any.
    """

    def __init__(self, field: str, value: object, allowed: str, source: str | None = None) -> None:
        self.field, self.value, self.allowed, self.source = field, value, allowed, source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid head config{where}: {field}={value!r}; {field} must be {allowed}")

    def __reduce__(self):  # keep the fields through pickling (multiprocessing, DDP)
        return type(self), (self.field, self.value, self.allowed, self.source)
