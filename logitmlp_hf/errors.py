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
