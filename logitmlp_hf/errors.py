"""Exceptions raised on bad input.

Each one names what was wrong and, where it applies, both of the values that disagree, so that a user
who stacked a head on the wrong base or loaded a damaged checkpoint knows what to change.
"""

from __future__ import annotations


class LogitMLPError(Exception):
    """Base class of the package's errors."""


class IncompatibleBaseModelError(LogitMLPError, ValueError):
    """The base model a head is attached to does not have the hidden size or vocabulary the head was built for."""


class NonFiniteLogitsError(LogitMLPError, ValueError):
    """Logits contain NaN or +inf, or a row has no finite entry at all, so the warp is undefined."""


class HeadCheckpointError(LogitMLPError, OSError):
    """A head checkpoint is missing, unreadable, or does not hold the tensors its config describes."""


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
