"""Datasets for math RL and evaluation, all in one shape: ``prompt`` (conversational), ``answer``, ``question``.

- ``prompt``: TRL's conversational format, ``[{"role": "user", "content": "What is 14 + 15?"}]`` (preceded by a
  ``system`` message when ``system_prompt`` is given), so ``GRPOTrainer`` applies the model's chat template;
- ``answer``: the reference answer as a string (``"29"``, ``"\\frac{1}{2}"``), read by
  [`~logitmlp_hf.tasks.rewards.MathVerifyReward`];
- ``question``: the bare problem text, for logging and evaluation.

Sources: seeded arithmetic problems generated in code ([`make_arithmetic_dataset`], [`make_arithmetic_splits`]),
MATH-500 and GSM8K jsonl files ([`load_math_jsonl`], [`load_gsm8k_jsonl`]) and the DAPO-Math-17k format
([`load_dapo_math`]). Nothing is vendored or downloaded implicitly: loaders take paths (or, for DAPO, a Hub id).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from datasets import Dataset, load_dataset

from ..errors import DataFileError, MissingFieldError, json_snippet


logger = logging.getLogger(__name__)

__all__ = [
    "BOXED_INSTRUCTION",
    "ArithmeticTaskConfig",
    "build_prompt",
    "gsm8k_final_answer",
    "load_dapo_math",
    "load_gsm8k_jsonl",
    "load_math_jsonl",
    "make_arithmetic_dataset",
    "make_arithmetic_splits",
    "make_arithmetic_train_validation_test",
]

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The instruction Qwen2.5-Math and most math RL recipes append to a problem; pass it as ``instruction=``."""


def build_prompt(
    question: str, system_prompt: str | None = None, instruction: str | None = None
) -> list[dict[str, str]]:
    """Build a conversational prompt for one problem.

    Args:
        question (`str`):
            The problem text.
        system_prompt (`str`, *optional*):
            If given, a leading ``system`` message.
        instruction (`str`, *optional*):
            If given, appended to the user message after a blank line, e.g. [`BOXED_INSTRUCTION`].

    Returns:
        `list[dict[str, str]]`: ``[{"role": "system", ...}?, {"role": "user", "content": ...}]``.
    """
    content = question if not instruction else f"{question}\n\n{instruction}"
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": content})
    return messages


def _to_dataset(
    questions: Sequence[str],
    answers: Sequence[str],
    system_prompt: str | None,
    instruction: str | None,
    extra: dict[str, list[Any]] | None = None,
) -> Dataset:
    columns: dict[str, list[Any]] = {
        "prompt": [build_prompt(q, system_prompt, instruction) for q in questions],
        "answer": list(answers),
        "question": list(questions),
    }
    columns.update(extra or {})
    return Dataset.from_dict(columns)


# --------------------------------------------------------------------------------------------------------------------
# Arithmetic problems generated in code
# --------------------------------------------------------------------------------------------------------------------

_OPERATIONS = ("+", "-", "*", "/")


@dataclass
class ArithmeticTaskConfig:
    """Configuration of seeded arithmetic problems like "What is 14 + 15?".

    Problems are distinct within a dataset; answers are integers (divisions are kept only when exact, and results
    below zero only when ``allow_negative_results``). Expressions follow the usual precedence (``*`` and ``/`` before
    ``+`` and ``-``, left to right).

    Args:
        seed (`int`, *optional*, defaults to `0`):
            Seed of the problem generator; the same config always gives the same problems in the same order.
        n_problems (`int`, *optional*, defaults to `1000`):
            Number of problems in [`make_arithmetic_dataset`].
        operations (`tuple[str, ...]`, *optional*, defaults to `("+",)`):
            Operators to draw from, among ``"+"``, ``"-"``, ``"*"`` and ``"/"``.
        min_operand (`int`, *optional*, defaults to `0`):
            Smallest operand (negative operands are shown in parentheses).
        max_operand (`int`, *optional*, defaults to `20`):
            Largest operand.
        n_operands (`int`, *optional*, defaults to `2`):
            Operands per expression.
        allow_negative_results (`bool`, *optional*, defaults to `False`):
            Whether a problem's answer may be negative.
        question_template (`str`, *optional*, defaults to `"What is {expression}?"`):
            How an expression becomes a question.

    Example:

    ```python
    >>> ds = make_arithmetic_dataset(ArithmeticTaskConfig(seed=0, n_problems=3))
    >>> ds.column_names
    ['prompt', 'answer', 'question']
    ```
    """

    seed: int = field(default=0, metadata={"help": "Seed of the problem generator."})
    n_problems: int = field(default=1000, metadata={"help": "Number of problems."})
    operations: tuple[str, ...] = field(default=("+",), metadata={"help": "Operators among + - * /."})
    min_operand: int = field(default=0, metadata={"help": "Smallest operand."})
    max_operand: int = field(default=20, metadata={"help": "Largest operand."})
    n_operands: int = field(default=2, metadata={"help": "Operands per expression."})
    allow_negative_results: bool = field(default=False, metadata={"help": "Whether answers may be negative."})
    question_template: str = field(
        default="What is {expression}?", metadata={"help": "Question text; must contain '{expression}'."}
    )

    def __post_init__(self) -> None:
        # Accept a list (e.g. from YAML or argparse) but store a tuple, which a caller cannot mutate afterwards.
        self.operations = tuple(self.operations)
        if not self.operations or any(op not in _OPERATIONS for op in self.operations):
            raise ValueError(f"operations must be a non-empty subset of {_OPERATIONS}, got {self.operations!r}")
        if self.min_operand > self.max_operand:
            raise ValueError(f"min_operand ({self.min_operand}) > max_operand ({self.max_operand})")
        if self.n_operands < 2:
            raise ValueError(f"n_operands must be at least 2, got {self.n_operands}")
        if self.n_problems < 0:
            raise ValueError(f"n_problems must be non-negative, got {self.n_problems}")
        if "{expression}" not in self.question_template:
            raise ValueError("question_template must contain '{expression}'")

    @property
    def max_distinct_expressions(self) -> int:
        """Upper bound on the number of distinct expressions (before dropping inexact or negative results)."""
        n_values = self.max_operand - self.min_operand + 1
        return n_values**self.n_operands * len(self.operations) ** (self.n_operands - 1)


def _evaluate(operands: Sequence[int], ops: Sequence[str]) -> Fraction | None:
    """Exact value with the usual precedence, or ``None`` on division by zero."""
    terms: list[Fraction] = [Fraction(operands[0])]
    signs: list[int] = [1]
    for op, value in zip(ops, operands[1:]):
        if op in "+-":
            terms.append(Fraction(value))
            signs.append(1 if op == "+" else -1)
        elif op == "*":
            terms[-1] *= value
        else:
            if value == 0:
                return None
            terms[-1] /= value
    return sum((s * t for s, t in zip(signs, terms)), Fraction(0))


def _format_expression(operands: Sequence[int], ops: Sequence[str]) -> str:
    # Negative operands after the first are parenthesized: "3 - (-4)" reads unambiguously, "3 - -4" does not.
    parts = [str(operands[0])]
    for op, value in zip(ops, operands[1:]):
        parts += [op, f"({value})" if value < 0 else str(value)]
    return " ".join(parts)


def _arithmetic_problems(config: ArithmeticTaskConfig, n: int) -> Iterator[tuple[str, int]]:
    """Yield ``n`` distinct ``(expression, integer answer)`` pairs, deterministically from ``config.seed``."""
    if n > config.max_distinct_expressions:
        raise ValueError(
            f"Asked for {n} distinct problems but this config allows at most {config.max_distinct_expressions}; "
            "widen the operand range, add operations or operands."
        )
    # Its own Random instance: reproducible, and independent of (and harmless to) the global random state.
    rng = random.Random(config.seed)
    seen: set[str] = set()
    # Rejection sampling; the cap covers the coupon-collector cost of drawing nearly the whole space.
    max_attempts = 50 * n + 10_000
    for _ in range(max_attempts):
        if len(seen) == n:
            return
        operands = [rng.randint(config.min_operand, config.max_operand) for _ in range(config.n_operands)]
        ops = [rng.choice(config.operations) for _ in range(config.n_operands - 1)]
        expression = _format_expression(operands, ops)
        if expression in seen:
            continue
        value = _evaluate(operands, ops)
        if value is None or value.denominator != 1 or (value < 0 and not config.allow_negative_results):
            continue
        seen.add(expression)
        yield expression, int(value)
    if len(seen) < n:
        kind = "integer" if config.allow_negative_results else "non-negative integer"
        raise ValueError(
            f"Found only {len(seen)} of {n} distinct problems with {kind} answers in {max_attempts} draws; widen the "
            "operand range or allow negative results."
        )


def make_arithmetic_dataset(
    config: ArithmeticTaskConfig, system_prompt: str | None = None, instruction: str | None = None
) -> Dataset:
    """Generate ``config.n_problems`` distinct arithmetic problems.

    Args:
        config ([`ArithmeticTaskConfig`]):
            What to generate; the same config always gives the same dataset.
        system_prompt (`str`, *optional*):
            Leading system message of every prompt.
        instruction (`str`, *optional*):
            Appended to every question, e.g. [`BOXED_INSTRUCTION`].

    Returns:
        `datasets.Dataset`: Columns ``prompt`` (conversational), ``answer`` (the integer as a string), ``question``.
    """
    problems = list(_arithmetic_problems(config, config.n_problems))
    questions = [config.question_template.format(expression=e) for e, _ in problems]
    return _to_dataset(questions, [str(v) for _, v in problems], system_prompt, instruction)


def make_arithmetic_splits(
    config: ArithmeticTaskConfig,
    n_train: int,
    n_test: int,
    system_prompt: str | None = None,
    instruction: str | None = None,
) -> tuple[Dataset, Dataset]:
    """Disjoint train and test sets of arithmetic problems (no question appears in both).

    Both come from one stream of distinct problems (``config.n_problems`` is ignored): the test set is its first
    ``n_test`` problems and the training set the next ``n_train``, so the test set stays the same when only
    ``n_train`` changes.

    Args:
        config ([`ArithmeticTaskConfig`]): What to generate.
        n_train (`int`): Training problems.
        n_test (`int`): Test problems.
        system_prompt (`str`, *optional*): See [`make_arithmetic_dataset`].
        instruction (`str`, *optional*): See [`make_arithmetic_dataset`].

    Returns:
        `tuple[datasets.Dataset, datasets.Dataset]`: ``(train, test)``; wrap them in a `datasets.DatasetDict` if a
        split mapping is needed.

    Example:

    ```python
    >>> train, test = make_arithmetic_splits(ArithmeticTaskConfig(seed=0), n_train=100, n_test=20)
    >>> set(train["question"]) & set(test["question"])
    set()
    ```
    """
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be non-negative, got {n_train} and {n_test}")
    full = make_arithmetic_dataset(
        dataclasses.replace(config, n_problems=n_train + n_test), system_prompt=system_prompt, instruction=instruction
    )
    return _select_range(full, n_test, n_test + n_train), _select_range(full, 0, n_test)


def _select_range(dataset: Dataset, start: int, stop: int) -> Dataset:
    # datasets rejects an empty range that starts at the end (select(range(n, n)) on n rows), so spell empty as []
    return dataset.select(range(start, stop) if stop > start else [])


def make_arithmetic_train_validation_test(
    config: ArithmeticTaskConfig,
    n_train: int,
    n_validation: int,
    n_test: int,
    system_prompt: str | None = None,
    instruction: str | None = None,
) -> tuple[Dataset, Dataset, Dataset]:
    """Disjoint (train, validation, test) arithmetic sets, laid out as ``logitmlp eval`` and ``logitmlp sweep`` see them.

    From one seeded stream of distinct problems: test = the first ``n_test``, validation = the next
    ``n_validation``, train = the ``n_train`` after those. So ``logitmlp eval --n-problems <n_test>`` evaluates
    exactly these test problems, ``logitmlp sweep --n-validation <n_validation>`` selects on exactly these
    validation problems, and training never sees either.

    Returns:
        `tuple[datasets.Dataset, datasets.Dataset, datasets.Dataset]`: ``(train, validation, test)``.
    """
    if min(n_train, n_validation, n_test) < 0:
        raise ValueError(f"set sizes must be non-negative, got {n_train}, {n_validation}, {n_test}")
    rest, test = make_arithmetic_splits(config, n_validation + n_train, n_test, system_prompt, instruction)
    return _select_range(rest, n_validation, n_validation + n_train), _select_range(rest, 0, n_validation), test


# --------------------------------------------------------------------------------------------------------------------
# Evaluation sets from jsonl files
# --------------------------------------------------------------------------------------------------------------------


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def read_jsonl_rows(path: str | os.PathLike, limit: int | None = None, what: str = "rows") -> list[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file, 1-based line numbers.

    Raises:
        [`~logitmlp_hf.errors.DataFileError`]: a line is not valid JSON or not a JSON object, the file is not UTF-8
        text, or it holds no rows at all (with ``limit`` 0 an empty list is returned instead).
    """
    rows: list[tuple[int, dict]] = []
    line_no = 0
    with open(path, encoding="utf-8") as f:
        try:
            for line_no, line in enumerate(f, start=1):
                if limit is not None and len(rows) >= limit:
                    break
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataFileError(
                        f"{path}:{line_no}: not valid JSON ({e.msg}, column {e.colno}); each line must be one JSON "
                        "object",
                        path,
                        line_no,
                    ) from e
                if not isinstance(row, dict):
                    kind = _JSON_TYPES.get(type(row), "a number")
                    raise DataFileError(
                        f"{path}:{line_no}: expected a JSON object ({{...}}) on each line, got {kind}: "
                        f"{json_snippet(row)}",
                        path,
                        line_no,
                    )
                rows.append((line_no, row))
        except UnicodeDecodeError as e:
            raise DataFileError(f"{path}:{line_no + 1}: not UTF-8 text ({e.reason})", path, line_no + 1) from e
    if not rows and limit != 0:
        raise DataFileError(f"{path}: no {what} (the file is empty or holds only blank lines)", path)
    return rows


def _require(row: dict[str, Any], key: str, path: str | os.PathLike, line: int) -> Any:
    if key not in row:
        raise MissingFieldError(f"{path}:{line}: no field {key!r} (the row has {sorted(row)})", path, line, key)
    return row[key]


def _text(row: dict[str, Any], key: str, path: str | os.PathLike, line: int) -> str:
    value = _require(row, key, path, line)
    if not isinstance(value, str) or not value.strip():
        raise DataFileError(
            f"{path}:{line}: field {key!r} is {json_snippet(value)}; expected a non-empty string", path, line, key
        )
    return value


def _reference_answer(row: dict[str, Any], path: str | os.PathLike, line: int) -> str:
    """The ``answer`` field as the reference string: a non-empty string or a finite number (``null`` would become
    the string "None", which ``\\boxed{None}`` then matches)."""
    value = _require(row, "answer", path, line)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    raise DataFileError(
        f"{path}:{line}: field 'answer' is {json_snippet(value)}; expected the reference answer as a non-empty string "
        "or a number",
        path,
        line,
        "answer",
    )


def _extra(rows: list[tuple[int, dict]], names: Sequence[str], path: str | os.PathLike) -> dict[str, list[Any]]:
    reserved = {"prompt", "answer", "question"}
    if reserved & set(names):
        raise ValueError(f"extra_columns may not include {sorted(reserved & set(names))}")
    return {name: [_require(row, name, path, line) for line, row in rows] for name in names}


def load_math_jsonl(
    path: str | os.PathLike,
    system_prompt: str | None = None,
    instruction: str | None = None,
    extra_columns: Sequence[str] = (),
    limit: int | None = None,
) -> Dataset:
    """Load MATH-style problems (e.g. MATH-500) from a jsonl file with fields ``problem`` and ``answer``.

    Args:
        path (`str` or `os.PathLike`):
            The jsonl file, e.g. ``math500_test.jsonl`` (fields ``problem``, ``solution``, ``answer``, ``subject``,
            ``level``, ``unique_id``).
        system_prompt (`str`, *optional*): Leading system message of every prompt.
        instruction (`str`, *optional*): Appended to every problem, e.g. [`BOXED_INSTRUCTION`].
        extra_columns (`Sequence[str]`, *optional*, defaults to `()`):
            Source fields to keep as extra columns, e.g. ``("subject", "level")`` for per-category scores.
        limit (`int`, *optional*): Read only the first ``limit`` rows.

    Returns:
        `datasets.Dataset`: Columns ``prompt``, ``answer``, ``question`` (the problem), then ``extra_columns``.

    Raises:
        [`~logitmlp_hf.errors.DataFileError`]: The file has no rows, or a line is not a JSON object with a non-empty
        string ``problem`` and an ``answer`` that is a non-empty string or a number (``path:line`` in the message; a
        missing field raises its subclass `MissingFieldError`, also a `KeyError`).
    """
    rows = read_jsonl_rows(path, limit)
    questions = [_text(row, "problem", path, line) for line, row in rows]
    answers = [_reference_answer(row, path, line) for line, row in rows]
    return _to_dataset(questions, answers, system_prompt, instruction, _extra(rows, extra_columns, path))


_GSM8K_ANSWER_RE = re.compile(r"####\s*(.+?)\s*$", re.DOTALL)


def gsm8k_final_answer(solution: str) -> str:
    """The final answer of a GSM8K worked solution: what follows ``####``, without thousands separators or ``$``.

    Raises:
        `ValueError`: If the solution has no ``####`` line, or nothing after it.
    """
    match = _GSM8K_ANSWER_RE.search(solution)
    if match is None:
        raise ValueError(f"No '####' final answer in GSM8K solution: {solution[-200:]!r}")
    answer = match.group(1).replace(",", "").replace("$", "").strip()
    if not answer:
        raise ValueError(f"Empty '####' final answer in GSM8K solution: {solution[-200:]!r}")
    return answer


def _gsm8k_reference(row: dict[str, Any], path: str | os.PathLike, line: int) -> str:
    solution = _text(row, "answer", path, line)
    try:
        return gsm8k_final_answer(solution)
    except ValueError as e:
        raise DataFileError(
            f"{path}:{line}: field 'answer' has no '#### <answer>' line with a final answer (it ends "
            f"{json_snippet(solution[-60:])}); expected a GSM8K solution ending in '#### <answer>'",
            path,
            line,
            "answer",
        ) from e


def load_gsm8k_jsonl(
    path: str | os.PathLike,
    system_prompt: str | None = None,
    instruction: str | None = None,
    extra_columns: Sequence[str] = (),
    limit: int | None = None,
) -> Dataset:
    """Load GSM8K problems from a jsonl file with fields ``question`` and ``answer`` (a solution ending ``#### n``).

    Args:
        path (`str` or `os.PathLike`): The jsonl file, e.g. ``gsm8k_test.jsonl``.
        system_prompt (`str`, *optional*): Leading system message of every prompt.
        instruction (`str`, *optional*): Appended to every question, e.g. [`BOXED_INSTRUCTION`].
        extra_columns (`Sequence[str]`, *optional*, defaults to `()`): Source fields to keep, e.g. ``("idx",)``.
        limit (`int`, *optional*): Read only the first ``limit`` rows.

    Returns:
        `datasets.Dataset`: Columns ``prompt``, ``answer`` (the number after ``####``, commas removed),
        ``question``, then ``extra_columns``.

    Raises:
        [`~logitmlp_hf.errors.DataFileError`]: The file has no rows, or a line is not a JSON object with non-empty
        string ``question`` and ``answer`` fields, the answer ending in ``#### <answer>`` (``path:line`` in the
        message).
    """
    rows = read_jsonl_rows(path, limit)
    questions = [_text(row, "question", path, line) for line, row in rows]
    answers = [_gsm8k_reference(row, path, line) for line, row in rows]
    return _to_dataset(questions, answers, system_prompt, instruction, _extra(rows, extra_columns, path))


# --------------------------------------------------------------------------------------------------------------------
# DAPO-Math-17k
# --------------------------------------------------------------------------------------------------------------------

# BytedTsinghua-SIA/DAPO-Math-17k wraps every problem in an "Answer: $Answer" instruction. The loader strips it so
# the problem can be re-prompted with this project's instruction (e.g. \boxed{}), unless keep_original_prompt.
_DAPO_PREFIX_RE = re.compile(
    r"^\s*Solve the following math problem step by step\. The last line of your response should be of the form "
    r"Answer: \$Answer \(without quotes\) where \$Answer is the answer to the problem\.\s*"
)
_DAPO_SUFFIX_RE = re.compile(r"\s*Remember to put your answer on its own line after \"Answer:\"\.?\s*$")


def _dapo_problem(prompt: Any) -> str:
    """The bare problem from a DAPO ``prompt`` (a message list, or a string in processed variants)."""
    if isinstance(prompt, str):
        content = prompt
    else:
        user = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if not user:
            raise ValueError(f"DAPO prompt has no user message: {prompt!r:.200}")
        content = user[-1]["content"]
    return _DAPO_SUFFIX_RE.sub("", _DAPO_PREFIX_RE.sub("", content)).strip()


def _dapo_answer(row: dict[str, Any]) -> str:
    reward_model = row.get("reward_model")
    if isinstance(reward_model, dict) and reward_model.get("ground_truth") is not None:
        return str(reward_model["ground_truth"]).strip()
    # Processed copies (e.g. open-r1's) also carry the answer as a plain column.
    for key in ("solution", "answer"):
        if row.get(key) is not None:
            return str(row[key]).strip()
    raise KeyError(f"DAPO row has no reward_model.ground_truth (fields: {sorted(row)})")


def _load_raw(name_or_path: str | os.PathLike, split: str, **load_kwargs: Any) -> Dataset:
    path = os.fspath(name_or_path)
    if os.path.isfile(path):
        suffix = path.rsplit(".", 1)[-1].lower()
        builders = {"jsonl": "json", "json": "json", "parquet": "parquet"}
        if suffix not in builders:
            raise ValueError(f"Unsupported file type {suffix!r} for {path}; use .jsonl, .json or .parquet")
        # A single local file is one split; datasets calls it "train" whatever `split` says.
        return load_dataset(builders[suffix], data_files=path, split="train", **load_kwargs)
    # A local directory of data files, or a Hub dataset id.
    return load_dataset(path, split=split, **load_kwargs)


def load_dapo_math(
    name_or_path: str | os.PathLike = "BytedTsinghua-SIA/DAPO-Math-17k",
    split: str = "train",
    system_prompt: str | None = None,
    instruction: str | None = None,
    keep_original_prompt: bool = False,
    deduplicate: bool = True,
    limit: int | None = None,
    **load_kwargs: Any,
) -> Dataset:
    """Load problems in the DAPO-Math-17k format.

    That format (verl's RL parquet layout) has columns ``prompt`` (a message list whose user message wraps the
    problem in an "Answer: $Answer" instruction), ``reward_model`` (``{"ground_truth": ..., "style": ...}``),
    ``data_source``, ``ability`` and ``extra_info`` (``{"index": ...}``).

    Args:
        name_or_path (`str` or `os.PathLike`, *optional*, defaults to `"BytedTsinghua-SIA/DAPO-Math-17k"`):
            A local ``.jsonl``/``.json``/``.parquet`` file, a local dataset directory, or a Hub dataset id (loaded
            with `datasets.load_dataset`, which may download it).
        split (`str`, *optional*, defaults to `"train"`):
            Split to load from a directory or the Hub (a single file is one split).
        system_prompt (`str`, *optional*): Leading system message of every prompt.
        instruction (`str`, *optional*): Appended to every problem, e.g. [`BOXED_INSTRUCTION`].
        keep_original_prompt (`bool`, *optional*, defaults to `False`):
            Keep the dataset's own prompt (with its "Answer:" instruction) instead of rebuilding it from the bare
            problem; ``system_prompt`` and ``instruction`` are then ignored.
        deduplicate (`bool`, *optional*, defaults to `True`):
            Keep only the first row of each distinct problem. The Hub copy of DAPO-Math-17k repeats its ~17k
            problems about a hundred times (1.79M rows).
        limit (`int`, *optional*): Keep only the first ``limit`` rows (after deduplication).
        **load_kwargs: Passed to `datasets.load_dataset`, e.g. ``revision`` or ``cache_dir``.

    Returns:
        `datasets.Dataset`: Columns ``prompt``, ``answer`` (the ground truth) and ``question`` (the bare problem).
    """
    raw = _load_raw(name_or_path, split, **load_kwargs)
    if "prompt" not in raw.column_names:
        raise KeyError(f"{os.fspath(name_or_path)} is not in the DAPO format: no 'prompt' column ({raw.column_names})")

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        question = _dapo_problem(row["prompt"])
        if keep_original_prompt:
            prompt = row["prompt"] if not isinstance(row["prompt"], str) else build_prompt(row["prompt"])
            prompt = [{"role": m["role"], "content": m["content"]} for m in prompt]
        else:
            prompt = build_prompt(question, system_prompt, instruction)
        return {"prompt": prompt, "answer": _dapo_answer(row), "question": question}

    if deduplicate:
        # Deduplicate before converting: cheaper on the 1.79M-row original than converting every copy.
        # Batched iteration: materializing the whole prompt column of the original would take gigabytes.
        first_seen: dict[str, int] = {}
        i = 0
        for batch in raw.select_columns(["prompt"]).iter(batch_size=10_000):
            for prompt in batch["prompt"]:
                first_seen.setdefault(_dapo_problem(prompt), i)
                i += 1
        if len(first_seen) < len(raw):
            logger.info("DAPO: kept %d distinct problems of %d rows", len(first_seen), len(raw))
            raw = raw.select(sorted(first_seen.values()))
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    # "prompt" is rebuilt, so drop every source column; an explicit column order keeps the schema the same as the
    # other loaders'.
    converted = raw.map(convert, remove_columns=raw.column_names, desc="Converting DAPO rows")
    return converted.select_columns(["prompt", "answer", "question"])
