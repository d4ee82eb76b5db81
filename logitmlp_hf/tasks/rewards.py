"""Verifiable rewards for math RL: answer extraction, math-verify matching and a TRL ``GRPOTrainer`` reward.

TRL (1.16) calls a reward function as ``f(prompts=..., completions=..., completion_ids=..., **columns)``, where
``columns`` holds every dataset column but ``prompt`` (one entry per completion) plus ``trainer_state``,
``log_extra`` and ``log_metric``; it must return one ``float`` (or ``None``, logged as NaN) per completion and is
logged under ``getattr(f, "__name__", type(f).__name__)``. [`MathVerifyReward`] follows that protocol.

Timeouts and threads. math-verify 0.9 bounds ``parse``/``verify`` with ``signal.alarm``: that only works in the main
thread (elsewhere both functions raise ``ValueError``, even with ``raise_on_error=False``), only takes whole seconds,
and cancels any alarm the caller had set. This module therefore always calls math-verify with its timeouts disabled
and enforces its own per-answer bound:

- in the main thread (POSIX, no timer already armed): ``SIGALRM`` through ``setitimer``. CPython checks for signals
  inside its big-integer loops, so this also interrupts e.g. ``10**(10**10)``;
- in any other thread: a shared watchdog thread that raises an asynchronous exception in the worker
  (``PyThreadState_SetAsyncExc``). That interrupts Python-level work (most of sympy) but not a single long C call
  that holds the GIL — a huge ``int ** int`` blocks *every* thread until it finishes, so no thread-based timeout can
  help. Such inputs are rejected before evaluation by a cheap structural check of the parsed expression
  ([`check_answer`] reports them as ``MatchOutcome.TOO_LARGE``), in every thread so rewards do not depend on where
  they were computed.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from math_verify import LatexExtractionConfig, parse, verify


logger = logging.getLogger(__name__)

__all__ = [
    "MatchOutcome",
    "MathVerifyReward",
    "answers_match",
    "check_answer",
    "extract_answer",
]

_T = TypeVar("_T")

# --------------------------------------------------------------------------------------------------------------------
# Answer extraction
# --------------------------------------------------------------------------------------------------------------------

# ``\boxed`` and ``\fbox`` (Qwen-Math and MATH solutions use both); the negative lookahead keeps ``\boxedfoo`` out.
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_TOKEN_RE = re.compile(r"[^\s$]+")

# A number as it ends a worked solution. Alternatives are ordered so the longest reading wins at a position:
# a LaTeX fraction, a plain fraction, a number with thousands separators, a plain integer or decimal.
# The minus sign is a sign only where it cannot be a binary minus (not after a digit, letter, or closing bracket),
# so "10-3" ends in 3, not -3. "−" is the Unicode minus some models emit.
_SIGN = r"(?:(?<![\w)\]}.])[-−]\s?)?"
_UINT = r"\d+"
# Never start inside another number: "2.0.1" must not yield ".1" or "1", and a match attempt at every digit of a
# long run would make the scan quadratic.
_UNUM = r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+(?![\d])(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_NUMBER_RE = re.compile(
    rf"(?P<latex>{_SIGN}\\[dt]?frac\{{\s*(?P<lnum>[-−]?{_UINT})\s*\}}\{{\s*(?P<lden>[-−]?{_UINT})\s*\}})"
    rf"|(?P<frac>{_SIGN}(?<![\d.]){_UINT}\s*/\s*{_UINT})(?![\d.])"
    rf"|(?P<num>{_SIGN}{_UNUM})"
)


def _closing_braces(text: str, start: int) -> dict[int, int]:
    """Map the index of every ``{`` at or after ``start`` to the index of its closing ``}`` (if it has one).

    One linear pass with a stack, so a text with thousands of unclosed ``\\boxed{`` costs no more than one. Escaped
    braces (``\\{``/``\\}``, LaTeX set braces) do not count: ``\\boxed{\\{1, 2\\}}`` is one group.
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i, n = start, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character, whatever it is
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def _last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty ``\\boxed{...}``/``\\fbox{...}`` (or ``\\boxed 5``)."""
    matches = list(_BOX_RE.finditer(text))
    if not matches:
        return None
    pairs = _closing_braces(text, matches[0].end())
    # Walk the occurrences from the last one back: a generation cut off inside its final \boxed{ should still be
    # graded on an earlier complete one rather than on a stray number.
    for match in reversed(matches):
        i = match.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            close = pairs.get(i)
            if close is None:
                continue
            content = text[i + 1 : close].strip()
        else:
            # "\boxed 5" — TeX's one-token argument form; take the token up to whitespace or "$".
            token = _TOKEN_RE.match(text, i)
            content = token.group(0) if token else ""
        if content:
            return content
    return None


def _normalize_minus(s: str) -> str:
    return s.replace("−", "-")


def extract_answer(text: str) -> str | None:
    r"""Extract the final answer from a model's solution.

    The content of the last ``\boxed{...}`` (or ``\fbox{...}``; braces balanced, so nested LaTeX is kept whole) if
    there is one; otherwise the last number in the text: integers, decimals, negatives, thousands separators
    (returned without them), simple fractions ``3/4`` and LaTeX ``\frac{a}{b}`` (also ``\dfrac``/``\tfrac``).

    Args:
        text (`str`):
            The solution, e.g. a completion. Anything else (``None``, non-strings) yields ``None``.

    Returns:
        `str | None`: The answer as a string (boxed content verbatim, numbers normalized), or ``None``.

    Example:

    ```python
    >>> extract_answer(r"so $x = \boxed{\frac{\sqrt{3}}{2}}$.")
    '\\frac{\\sqrt{3}}{2}'
    >>> extract_answer("She pays 1,234 dollars, then -5.5 more.")
    '-5.5'
    >>> extract_answer("no idea") is None
    True
    ```
    """
    if not isinstance(text, str) or not text:
        return None
    boxed = _last_boxed(text)
    return boxed if boxed is not None else _last_number(text)


def _last_number(text: str) -> str | None:
    last = None
    for last in _NUMBER_RE.finditer(text):  # noqa: B007 - the loop keeps the last match
        pass
    if last is None:
        return None
    if last.group("latex") is not None:
        sign = "-" if _normalize_minus(last.group("latex")).lstrip().startswith("-") else ""
        num, den = _normalize_minus(last.group("lnum")), _normalize_minus(last.group("lden"))
        return f"{sign}\\frac{{{num}}}{{{den}}}"
    if last.group("frac") is not None:
        return re.sub(r"\s+", "", _normalize_minus(last.group("frac")))
    return re.sub(r"[\s,]", "", _normalize_minus(last.group("num")))


# --------------------------------------------------------------------------------------------------------------------
# Time bounds that work in any thread
# --------------------------------------------------------------------------------------------------------------------


class _Deadline(BaseException):
    """Raised inside a computation that ran past its bound.

    A ``BaseException`` on purpose: math-verify and sympy catch ``Exception`` all over the place and would swallow it
    (math-verify's own ``TimeoutException`` is a ``BaseException`` for the same reason).
    """


class _Watchdog:
    """One daemon thread that interrupts worker threads past their deadline with an asynchronous exception.

    A shared thread (rather than a ``threading.Timer`` per answer) keeps the per-call cost to a dict insert. Until a
    computation is disarmed the watchdog re-raises every ``_RETRY_S``: some library code has bare ``except:`` clauses
    that would otherwise swallow a single interrupt.

    An asynchronous exception can land on any bytecode of the target thread, so the code the target runs while armed
    (``disarm``) only uses a C-level lock in a ``with`` statement, which is released even if the exception lands
    inside, and the callers retry ``disarm`` until it completes.
    """

    _RETRY_S = 0.25
    _POLL_S = 0.02  # deadline resolution while something is armed
    _IDLE_S = 5.0  # idle wake-ups, only a safety net: ``arm`` sets the event

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._active: dict[int, tuple[int, float]] = {}  # token -> (thread id, next time to interrupt it)
        self._next_token = 0
        self._thread: threading.Thread | None = None

    def arm(self, thread_id: int, seconds: float) -> int:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="logitmlp-reward-watchdog", daemon=True)
                self._thread.start()
            # Wake the watchdog *before* the entry exists: once it exists an interrupt may arrive, and it must not
            # land inside ``Event.set`` (pure Python, with its own lock). Both happen under ``_lock``, which the
            # watchdog also holds when it clears the event, so no wake-up is lost.
            self._wake.set()
            token = self._next_token
            self._next_token += 1
            self._active[token] = (thread_id, time.monotonic() + seconds)
            return token

    def disarm(self, token: int) -> None:
        """Stop watching ``token`` and clear an interrupt raised for it but not yet seen. Idempotent."""
        with self._lock:
            entry = self._active.pop(token, None)
            if entry is not None:
                _set_async_exc(entry[0], None)

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                for token, (thread_id, fire_at) in list(self._active.items()):
                    if fire_at <= now:
                        _set_async_exc(thread_id, _Deadline)
                        self._active[token] = (thread_id, now + self._RETRY_S)
                busy = bool(self._active)
                self._wake.clear()
            if busy:
                time.sleep(self._POLL_S)
            else:
                self._wake.wait(self._IDLE_S)


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    # A NULL ``exc`` clears a pending asynchronous exception (documented C-API behaviour).
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


_WATCHDOG = _Watchdog()
_CAN_INTERRUPT_THREADS = sys.implementation.name == "cpython" and hasattr(ctypes, "pythonapi")


def _reset_watchdog_after_fork() -> None:
    # A forked child (e.g. a DataLoader worker) inherits the watchdog's state but not its thread, and possibly a lock
    # held by a thread that no longer exists: start from scratch.
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_watchdog_after_fork)


def _can_use_sigalrm() -> bool:
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return False
    # Someone else's timer is running (e.g. math-verify's own alarm around this call): do not clobber it.
    return signal.getitimer(signal.ITIMER_REAL)[0] == 0.0


def _call_with_timeout(fn: Callable[[], _T], seconds: float | None) -> _T:
    """Run ``fn()`` and raise ``TimeoutError`` if it takes longer than ``seconds`` (``None``: no bound)."""
    if seconds is None:
        return fn()
    try:
        if _can_use_sigalrm():
            return _run_under_sigalrm(fn, seconds)
        if _CAN_INTERRUPT_THREADS:
            return _run_under_watchdog(fn, seconds)
    except _Deadline:
        # Caught out here, after the helpers' cleanup has finished, so no further interrupt can arrive.
        raise TimeoutError(f"computation exceeded {seconds} s") from None
    logger.debug("Cannot interrupt this thread on %s; running without a time bound.", sys.implementation.name)
    return fn()


def _run_under_sigalrm(fn: Callable[[], _T], seconds: float) -> _T:
    state = {"active": True}

    def on_alarm(signum, frame):
        # A signal already delivered by the OS can run this handler after cleanup began: ignore it then.
        if state["active"]:
            raise _Deadline()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        # Repeats every _RETRY_S until cancelled, in case library code swallows the first interrupt.
        signal.setitimer(signal.ITIMER_REAL, seconds, _Watchdog._RETRY_S)
        return fn()
    finally:
        while True:  # the handler may fire between these statements; retry until the timer is off
            try:
                state["active"] = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                break
            except _Deadline:
                continue
        signal.signal(signal.SIGALRM, previous)


def _run_under_watchdog(fn: Callable[[], _T], seconds: float) -> _T:
    watchdog = _WATCHDOG  # the same instance for arm and disarm, even if a fork handler swaps the global
    token = watchdog.arm(threading.get_ident(), seconds)
    try:
        return fn()
    finally:
        while True:  # an interrupt may land inside disarm; disarm is idempotent, so retry until it completes
            try:
                watchdog.disarm(token)
                break
            except _Deadline:
                continue


# --------------------------------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------------------------------


class MatchOutcome(str, enum.Enum):
    """How a prediction compared with a reference in [`check_answer`]."""

    CORRECT = "correct"
    WRONG = "wrong"
    NO_ANSWER = "no_answer"  # nothing to grade: no \boxed{}, no number
    PARSE_ERROR = "parse_error"  # math-verify could not read the prediction
    REFERENCE_ERROR = "reference_error"  # ... or the reference
    TIMEOUT = "timeout"  # parsing or comparison ran past the bound
    TOO_LARGE = "too_large"  # too long, or a number too big to evaluate safely (e.g. 9^{9^{9^9}})


# Only a prediction this short can be a bare answer ("x^2", "\pi") or be searched whole for LaTeX when it has no
# \boxed{} and no number; in a long derivation that would pick up stray LaTeX.
_BARE_ANSWER_MAX_CHARS = 200

# Structural limits for the pre-evaluation check: a number with more than ~10^5 decimal digits, or a symbolic power
# above 10^4, costs seconds to minutes of C time that cannot be interrupted outside the main thread.
_MAX_LOG10_MAGNITUDE = 1e5
_MAX_SYMBOLIC_EXPONENT = 1e4

_LATEX_ONLY = (LatexExtractionConfig(),)
# A LaTeX command with its first argument: "\text{Evelyn}", "\begin{pmatrix}" and "\mbox{ inches}" are not prose.
_LATEX_COMMAND_RE = re.compile(r"\\[A-Za-z]+\*?(?:\s*\{[^{}]*\})?")
_UNESCAPED_DOLLAR_RE = re.compile(r"(?<!\\)\$")
_WORD_RE = re.compile(r"[A-Za-z]{3,}")
_DOLLARS_RE = re.compile(r"^\$+([^$]*)\$+$")


def _bare_answer(text: str) -> str | None:
    """``text`` itself if it is a bare math answer (``"x^2"``, ``"$10-3$"``, ``"\\pi"``) rather than a solution.

    Graded whole, because the last-number rule would turn ``x^2`` into ``2``. Prose (a run of three letters outside
    LaTeX commands) means a solution, which keeps the last-number rule.
    """
    if len(text) > _BARE_ANSWER_MAX_CHARS:
        return None
    match = _DOLLARS_RE.match(text)
    body = _normalize_minus(match.group(1) if match else text).strip()
    # A \boxed that _last_boxed did not take is empty or unclosed: a failed answer, not a bare one.
    if not body or _UNESCAPED_DOLLAR_RE.search(body) or _BOX_RE.search(body):
        return None
    if _WORD_RE.search(_LATEX_COMMAND_RE.sub(" ", body)):
        return None
    return body


def _log10_bound(expr: Any, depth: int = 0) -> float:
    """A cheap upper bound on ``log10(|value|)`` of an unevaluated sympy expression (0 for symbols, inf if huge).

    Only the tree is inspected, nothing is evaluated, so it is safe on inputs like ``9**(9**(9**9))``.
    """
    if depth > 200:
        return math.inf
    if getattr(expr, "is_Integer", False) or getattr(expr, "is_Rational", False):
        p, q = int(expr.p), int(expr.q)
        return max(abs(p).bit_length(), abs(q).bit_length()) * math.log10(2)
    if getattr(expr, "is_Float", False):
        mantissa_exp = getattr(expr, "_mpf_", (0, 0, 0, 0))
        return max(0.0, (mantissa_exp[2] + mantissa_exp[3]) * math.log10(2))
    func_name = type(expr).__name__
    args = getattr(expr, "args", ())
    if getattr(expr, "is_Pow", False):
        base, exponent = args
        exp_log = _log10_bound(exponent, depth + 1)
        if exp_log > 300:
            return math.inf
        base_log = _log10_bound(base, depth + 1)
        exp_value = 10.0**exp_log
        if not getattr(base, "is_number", True) and exp_value > _MAX_SYMBOLIC_EXPONENT:
            return math.inf
        return exp_value * max(base_log, 1.0)
    if func_name in ("factorial", "factorial2", "subfactorial", "gamma", "RisingFactorial", "FallingFactorial"):
        arg_log = max(_log10_bound(a, depth + 1) for a in args) if args else 0.0
        if arg_log > 300:
            return math.inf
        n = 10.0**arg_log
        return n * math.log10(max(n, 2.0))
    if not args:
        return 0.0
    bounds = [_log10_bound(a, depth + 1) for a in args]
    if getattr(expr, "is_Mul", False):
        return sum(bounds)
    return max(bounds) + 1.0


def _too_large(parsed: Sequence[Any]) -> bool:
    for item in parsed:
        if isinstance(item, str):
            continue
        try:
            if _log10_bound(item) > _MAX_LOG10_MAGNITUDE:
                return True
        except (RecursionError, TypeError, ValueError, AttributeError, OverflowError):
            # Unusual node types: let the time bound deal with them.
            continue
    return False


@functools.lru_cache(maxsize=8192)
def _parse_reference(reference: str) -> tuple[Any, ...]:
    # Cached because GRPO grades every reference num_generations times in a row; sympy expressions are immutable,
    # so sharing them across threads is safe. ``lru_cache`` does not cache exceptions (a timeout is retried).
    return tuple(_parse_latex_answer(reference))


def _parse_latex_answer(answer: str) -> list[Any]:
    # Wrapping a bare answer in \boxed{} makes math-verify read the whole string as one LaTeX expression
    # ("\left( 3, \frac{\pi}{2} \right)" → a tuple, "1,234" → 1234, "10\%" → 1/10) instead of hunting in it.
    return parse(f"\\boxed{{{answer}}}", extraction_config=_LATEX_ONLY, parsing_timeout=None)


def _grade(candidate: str | None, text: str, reference: str) -> MatchOutcome:
    """Parse and compare, without a time bound (the caller provides it)."""
    gold = _parse_reference(reference)
    if not gold:
        return MatchOutcome.REFERENCE_ERROR
    if candidate is not None:
        pred = _parse_latex_answer(candidate)
    else:
        # A short text with neither a box, a bare expression nor a number, like "the answer is $\pi$": let
        # math-verify look for LaTeX in it.
        pred = parse(text, parsing_timeout=None)
    if not pred:
        # Without an extracted answer there was never a candidate to fail on ("I give up").
        return MatchOutcome.PARSE_ERROR if candidate is not None else MatchOutcome.NO_ANSWER
    if _too_large(pred) or _too_large(gold):
        return MatchOutcome.TOO_LARGE
    return MatchOutcome.CORRECT if verify(list(gold), pred, timeout_seconds=None) else MatchOutcome.WRONG


def check_answer(
    prediction: str,
    reference: str,
    *,
    timeout_seconds: float | None = 5.0,
    max_answer_chars: int = 1000,
) -> MatchOutcome:
    r"""Grade a prediction against a reference answer with math-verify, never raising.

    The prediction's answer is, in order: the last ``\boxed{}``; the whole prediction if it is a short bare answer
    without prose (``"x^2"``, ``"$\frac{\pi}{2}$"``, ``"10-3"``), which the last-number rule would misread; the last
    number (as in [`extract_answer`]); for a short prediction with none of these (at most 200 characters, e.g.
    ``"the answer is $\pi$"``), whatever LaTeX math-verify finds in it. The reference is read as one LaTeX
    expression. Safe to call from any thread (see the module docstring for how the time bound works).

    Args:
        prediction (`str`):
            A full solution or a bare answer.
        reference (`str`):
            The reference answer, e.g. ``"29"``, ``"\frac{1}{2}"`` or ``"\left( 3, \frac{\pi}{2} \right)"``.
        timeout_seconds (`float`, *optional*, defaults to `5.0`):
            Bound on parsing plus comparison, in seconds (fractions allowed); ``None`` disables it.
        max_answer_chars (`int`, *optional*, defaults to `1000`):
            Extracted answers longer than this are not parsed (``TOO_LARGE``): nobody's final answer is that long,
            and parsing it would only cost time.

    Returns:
        [`MatchOutcome`]: ``CORRECT`` or ``WRONG``, else why it could not be graded.
    """
    if not isinstance(prediction, str) or not isinstance(reference, str):
        return MatchOutcome.NO_ANSWER if not isinstance(prediction, str) else MatchOutcome.REFERENCE_ERROR
    reference = reference.strip()
    if not reference:
        return MatchOutcome.REFERENCE_ERROR
    if len(reference) > max_answer_chars:
        return MatchOutcome.REFERENCE_ERROR
    text = prediction.strip()
    candidate = _last_boxed(text) or _bare_answer(text) or _last_number(text)
    if candidate is None and not (0 < len(text) <= _BARE_ANSWER_MAX_CHARS):
        return MatchOutcome.NO_ANSWER
    if candidate is not None and len(candidate) > max_answer_chars:
        return MatchOutcome.TOO_LARGE
    try:
        return _call_with_timeout(lambda: _grade(candidate, text, reference), timeout_seconds)
    except TimeoutError:
        return MatchOutcome.TIMEOUT
    except RecursionError:
        # Deeply nested LaTeX can exhaust the parser's recursion; that is an unreadable answer, not a crash.
        return MatchOutcome.PARSE_ERROR
    except Exception:
        logger.debug(
            "math-verify failed on prediction %.200r vs reference %.200r", prediction, reference, exc_info=True
        )
        return MatchOutcome.PARSE_ERROR


def answers_match(
    prediction: str, reference: str, *, timeout_seconds: float | None = 5.0, max_answer_chars: int = 1000
) -> bool:
    r"""Whether a prediction's answer equals the reference, as judged by math-verify.

    A thin wrapper over [`check_answer`]: anything that cannot be graded (no answer, unparsable, timeout) is
    ``False``. Numeric answers compare by value (``"29"``, ``"29.0"``, ``"\boxed{29}"`` and ``"$29$"`` all match
    ``"29"``; ``"0.5"`` matches ``"\frac{1}{2}"``).

    Args:
        prediction (`str`): A full solution or a bare answer.
        reference (`str`): The reference answer.
        timeout_seconds (`float`, *optional*, defaults to `5.0`): See [`check_answer`].
        max_answer_chars (`int`, *optional*, defaults to `1000`): See [`check_answer`].

    Example:

    ```python
    >>> answers_match(r"The total is $\boxed{29}$.", "29")
    True
    >>> answers_match("0.5", r"\frac{1}{2}")
    True
    ```
    """
    outcome = check_answer(prediction, reference, timeout_seconds=timeout_seconds, max_answer_chars=max_answer_chars)
    return outcome is MatchOutcome.CORRECT


# math-verify warns once that its timeouts are disabled and "you must provide the logic for timeout interruption
# yourself" — this module does, so the warning would only mislead. The filter drops that message and nothing else.
class _DropDisabledTimeoutWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _DropDisabledTimeoutWarning) for f in _logger.filters):
        _logger.addFilter(_DropDisabledTimeoutWarning())


# --------------------------------------------------------------------------------------------------------------------
# TRL reward
# --------------------------------------------------------------------------------------------------------------------


def _completion_text(completion: Any) -> str | None:
    """The text of one completion: a string, or (conversational) the content of its last message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)) and completion:
        message = completion[-1]
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            return content
        if isinstance(content, (list, tuple)):
            # Multimodal-style content parts: [{"type": "text", "text": ...}, ...]
            parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            return "".join(parts)
    return None


class MathVerifyReward:
    r"""Binary correctness reward for TRL's ``GRPOTrainer``: 1.0 if a completion's answer matches the reference.

    The reference comes from a dataset column (``answer`` by default, the column this package's loaders produce).
    Completions may be strings or conversational message lists. The call never raises on bad completions: anything
    that cannot be graded scores 0.0 and is counted in [`~MathVerifyReward.stats`]. A missing reference column is a
    configuration error and does raise. Thread-safe; may be called concurrently.

    Args:
        answer_column (`str`, *optional*, defaults to `"answer"`):
            Name of the dataset column holding the reference answer.
        timeout_seconds (`float`, *optional*, defaults to `5.0`):
            Bound on grading one completion (parse + compare); ``None`` disables it.
        max_answer_chars (`int`, *optional*, defaults to `1000`):
            Extracted answers longer than this score 0.0 without being parsed.
        log_metrics (`bool`, *optional*, defaults to `True`):
            When TRL passes ``log_metric``, log this batch's fractions of timeouts, parse errors and missing answers
            as ``<name>/timeout_frac`` etc., next to TRL's own metrics.
        name (`str`, *optional*, defaults to `"math_verify_reward"`):
            Exposed as ``__name__``, which TRL uses to name the reward in its logs.

    Example:

    ```python
    >>> reward = MathVerifyReward()
    >>> reward(prompts=["What is 2 + 2?"] * 2, completions=[r"\boxed{4}", "5"], answer=["4", "4"])
    [1.0, 0.0]
    >>> reward.stats()["n_completions"]
    2
    ```
    """

    _COUNTERS = (
        "n_calls",
        "n_completions",
        "n_correct",
        "n_no_answer",
        "n_parse_errors",
        "n_reference_errors",
        "n_timeouts",
        "n_too_large",
    )

    def __init__(
        self,
        answer_column: str = "answer",
        timeout_seconds: float | None = 5.0,
        max_answer_chars: int = 1000,
        log_metrics: bool = True,
        name: str = "math_verify_reward",
    ) -> None:
        if timeout_seconds is not None and not timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be positive or None, got {timeout_seconds!r}")
        if max_answer_chars <= 0:
            raise ValueError(f"max_answer_chars must be positive, got {max_answer_chars!r}")
        self.answer_column = answer_column
        self.timeout_seconds = timeout_seconds
        self.max_answer_chars = max_answer_chars
        self.log_metrics = log_metrics
        self.__name__ = name
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self._COUNTERS, 0)

    # A lock cannot be pickled; TRL and accelerate may pickle reward functions (e.g. to ship them to workers).
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(answer_column={self.answer_column!r}, timeout_seconds={self.timeout_seconds!r}, "
            f"max_answer_chars={self.max_answer_chars!r}, name={self.__name__!r})"
        )

    def score(self, completion: Any, reference: Any) -> tuple[float, MatchOutcome]:
        """Grade one completion (string or message list) against one reference; never raises."""
        text = _completion_text(completion)
        if text is None:
            outcome = MatchOutcome.NO_ANSWER
        elif reference is None or not str(reference).strip():
            outcome = MatchOutcome.REFERENCE_ERROR
        else:
            outcome = check_answer(
                text,
                str(reference),
                timeout_seconds=self.timeout_seconds,
                max_answer_chars=self.max_answer_chars,
            )
        return (1.0 if outcome is MatchOutcome.CORRECT else 0.0), outcome

    def __call__(
        self, prompts: list[Any] | None = None, completions: list[Any] | None = None, **kwargs: Any
    ) -> list[float]:
        """Score a batch, following TRL's reward-function protocol.

        Args:
            prompts (`list`, *optional*): Unused; accepted because TRL passes it.
            completions (`list[str]` or `list[list[dict]]`): One completion per sample.
            **kwargs: Dataset columns (one value per completion) — the reference is read from ``answer_column`` —
                plus TRL's ``completion_ids``, ``trainer_state``, ``log_extra`` and ``log_metric``.

        Returns:
            `list[float]`: 1.0 or 0.0 per completion.
        """
        if completions is None:
            raise ValueError("MathVerifyReward needs `completions`.")
        if self.answer_column not in kwargs:
            columns = sorted(k for k in kwargs if k not in _TRL_NON_COLUMN_KWARGS)
            raise KeyError(
                f"MathVerifyReward reads references from the dataset column {self.answer_column!r}, which is not "
                f"among the columns passed in ({columns}); set `answer_column`."
            )
        references = kwargs[self.answer_column]
        if len(references) != len(completions):
            raise ValueError(f"Got {len(completions)} completions but {len(references)} references.")

        counts = dict.fromkeys(self._COUNTERS, 0)
        rewards = []
        for completion, reference in zip(completions, references):
            reward, outcome = self.score(completion, reference)
            rewards.append(reward)
            key = _OUTCOME_COUNTER.get(outcome)
            if key is not None:
                counts[key] += 1
        counts["n_calls"] = 1
        counts["n_completions"] = len(completions)
        with self._lock:
            for key, value in counts.items():
                self._counts[key] += value

        log_metric = kwargs.get("log_metric")
        if self.log_metrics and callable(log_metric) and completions:
            n = len(completions)
            for key in ("n_timeouts", "n_parse_errors", "n_no_answer", "n_too_large"):
                log_metric(f"{self.__name__}/{key[2:]}_frac", counts[key] / n)
        return rewards

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters since construction (or the last [`reset_stats`]).

        Keys: ``n_calls`` (batches), ``n_completions``, ``n_correct``, ``n_no_answer``, ``n_parse_errors``,
        ``n_reference_errors``, ``n_timeouts`` and ``n_too_large``.
        """
        with self._lock:
            return dict(self._counts)

    def reset_stats(self) -> None:
        """Zero all counters."""
        with self._lock:
            self._counts = dict.fromkeys(self._COUNTERS, 0)


# Keyword arguments TRL passes to reward functions that are not dataset columns.
_TRL_NON_COLUMN_KWARGS = frozenset({"completion_ids", "trainer_state", "log_extra", "log_metric", "environments"})

_OUTCOME_COUNTER = {
    MatchOutcome.CORRECT: "n_correct",
    MatchOutcome.NO_ANSWER: "n_no_answer",
    MatchOutcome.PARSE_ERROR: "n_parse_errors",
    MatchOutcome.REFERENCE_ERROR: "n_reference_errors",
    MatchOutcome.TIMEOUT: "n_timeouts",
    MatchOutcome.TOO_LARGE: "n_too_large",
}
