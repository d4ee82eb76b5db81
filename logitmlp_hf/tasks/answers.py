"""Final answers: one canonical spelling for grouping and voting, and the majority vote.

The reward (:mod:`~logitmlp_hf.tasks.rewards`) decides whether an answer is *correct*; this module decides when two
answers are *the same answer* for answer entropy, uniq/k and maj@k (cheap textual canonicalisation here, math-verify
equivalence on top in :func:`~logitmlp_hf.evaluation.metrics.group_equivalent_answers`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction


_SPACE_RE = re.compile(r"\s+|\\[,;:! ]|~")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_DOLLARS_RE = re.compile(r"^\$+(.*?)\$+$", re.DOTALL)
_NUMBER_RE = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)$")
_FRAC_RE = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(\d+)\}$|^(-?\d+)/(\d+)$")


def canonical_answer(answer: str | None) -> str | None:
    r"""A cheap canonical string for an extracted final answer, so trivially different spellings group together.

    Strips surrounding ``$``, whitespace and LaTeX spacing commands, ``\left``/``\right``, ``\dfrac``/``\tfrac`` (→
    ``\frac``), ``\text{...}`` wrappers, a trailing period and degree signs; numbers are written in lowest terms
    (``"29.0"`` → ``"29"``, ``"0.50"`` → ``"1/2"``, ``"\frac{2}{4}"`` → ``"1/2"``). Anything finer (``"x+1"`` vs
    ``"1+x"``) is left to math-verify in [`group_equivalent_answers`].

    Args:
        answer (`str`, *optional*): An extracted answer (e.g. from [`~logitmlp_hf.tasks.rewards.extract_answer`]).

    Returns:
        `str | None`: The canonical string; ``None`` for ``None`` or an empty answer.
    """
    if answer is None:
        return None
    text = answer.strip()
    match = _DOLLARS_RE.match(text)
    if match:
        text = match.group(1)
    text = text.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = text.replace("^\\circ", "").replace("^{\\circ}", "").replace("°", "").replace("−", "-")
    text = _TEXT_RE.sub(r"\1", text)
    text = _SPACE_RE.sub("", text).rstrip(".")
    if not text:
        return None
    value = exact_number(text)
    if value is not None:
        return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    return text


def exact_number(text: str) -> Fraction | None:
    """The exact rational value of a plain number or simple fraction string, else ``None``."""
    if _NUMBER_RE.match(text):
        return Fraction(text)
    match = _FRAC_RE.match(text)
    if match:
        if match.group(2) is not None:
            sign, num, den = match.group(1), int(match.group(2)), int(match.group(3))
            value = Fraction(num, den) if den else None
            return -value if (value is not None and sign) else value
        den = int(match.group(5))
        return Fraction(int(match.group(4)), den) if den else None
    return None


def majority_vote(
    answers: Sequence[str | None],
    normalize: Callable[[str], str | None] | None = canonical_answer,
) -> str | None:
    r"""
    The most frequent normalised answer among ``answers`` (maj@k, multi-temperature voting).

    Meant for the pooled final answers of a problem's samples taken at several temperatures. ``None`` answers (no
    answer extracted) and answers that normalise to ``None`` are ignored; ties go to the answer whose first
    occurrence comes first, so the result does not depend on hash order.

    Args:
        answers (`Sequence[str | None]`): one final answer per sample.
        normalize (`Callable[[str], str | None]`, *optional*, defaults to :func:`canonical_answer`): maps an answer to
            its voting key; `None` votes on the raw strings.

    Returns:
        `str` or `None`: the winning normalised answer, `None` if no sample has an answer.

    Example:

    ```python
    >>> majority_vote(["4", None, " 5", "5.", "4"])
    '4'
    ```
    """
    keys = [a if normalize is None or a is None else normalize(a) for a in answers]
    keys = [k for k in keys if k is not None]
    if not keys:
        return None
    counts = Counter(keys)
    best = max(counts.values())
    # Counter preserves first-insertion order, so the first key reaching the maximum is the earliest-seen one.
    return next(k for k, c in counts.items() if c == best)


__all__ = ["canonical_answer", "exact_number", "majority_vote"]
