"""Evaluation sets shipped with the package (offline copies; see ``README.md`` here for sources and licences).

- ``math500``: MATH-500 (``math500_test.jsonl``), the PRM800K test subset of MATH; MIT (``LICENSE.MATH500-prm800k.txt``).
- ``gsm8k``: the GSM8K test split (``gsm8k_test.jsonl``); MIT (``LICENSE.GSM8K-grade-school-math.txt``).

Both are evaluation sets: do not train on them.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path


__all__ = ["BENCHMARKS", "benchmark_path"]

BENCHMARKS = {"math500": "math500_test.jsonl", "gsm8k": "gsm8k_test.jsonl"}
"""Benchmark name → file name in this package."""

# Files from a zipped install must be extracted to be opened by path; keep them until the interpreter exits.
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def benchmark_path(name: str) -> Path:
    """The path of a vendored benchmark's jsonl file.

    Args:
        name (`str`): ``"math500"`` or ``"gsm8k"`` (see [`BENCHMARKS`]).

    Returns:
        `pathlib.Path`: A readable file (load it with [`~logitmlp_hf.tasks.data.load_math_jsonl`] or
        [`~logitmlp_hf.tasks.data.load_gsm8k_jsonl`]).

    Raises:
        `KeyError`: For an unknown name.
    """
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; vendored: {sorted(BENCHMARKS)}")
    resource = resources.files(__name__) / BENCHMARKS[name]
    if isinstance(resource, Path):
        return resource
    return _extracted.enter_context(resources.as_file(resource))
