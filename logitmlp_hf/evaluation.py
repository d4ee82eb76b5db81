"""Evaluate decoding policies side by side: ``n`` samples per problem, math-verify grading, Table-1 metrics with CIs.

A *decoding policy* is the base model at a fixed temperature (optionally with top-p / top-k / min-p), a LogitMLP head,
or a baseline logits processor (``logitmlp_hf.baselines``). [`evaluate`] samples every policy on the same problems
and reports the metrics of [`~logitmlp_hf.eval_metrics.compute_metrics`] with bootstrap confidence intervals.

Sampling is batched (many problems × ``n`` samples per ``generate`` call, left-padded) and reproducible independently
of the batch size: every sample draws its token noise from its own generator seeded by ``(seed, problem_id,
sample)``. Technically ``generate`` runs in greedy mode and the last logits processor adds seeded Gumbel noise to the
final (warped, temperature-scaled, truncated) scores, so the argmax is an exact sample from the same distribution that
``do_sample=True`` would draw from (the Gumbel-max trick), but with noise that does not depend on which other rows
share the batch. The same ``(seed, problem, sample)`` noise is reused across policies (common random numbers), which
makes policy differences less noisy. Residual batch dependence is only the floating-point difference of padded
batched forwards, which can flip a token at an exact near-tie.

Command line (wired into the ``logitmlp`` console script)::

    logitmlp eval --policy temperature:1.0 --policy head:outputs/demo-head --dataset arithmetic --n-problems 50
    logitmlp eval --policy temperature:0.6:top_p=0.95 --policy baseline:entropy_guided:t_low=0.6,t_high=1.2 \\
        --dataset math500 --n-samples 8 --save-rollouts

Rollouts are written one JSON object per sample::

    {"problem_id": int, "sample": int, "policy": str, "prompt_ids": [int], "completion_ids": [int],
     "completion": str, "answer": str | null, "correct": bool}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from .eval_metrics import NO_ANSWER_MODES, MetricValue, compute_metrics, group_equivalent_answers

logger = logging.getLogger(__name__)

__all__ = [
    "POLICY_KINDS",
    "DecodingPolicy",
    "EvalResults",
    "PolicyResults",
    "SeededGumbelSampler",
    "add_eval_arguments",
    "evaluate",
    "format_metrics_table",
    "load_eval_dataset",
    "parse_policy",
    "run_eval",
]

POLICY_KINDS = ("temperature", "head", "baseline")
_GENERATION_KEYS = ("temperature", "top_p", "top_k", "min_p")


# --------------------------------------------------------------------------------------------------------------------
# Decoding policies
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class DecodingPolicy:
    """One way of decoding from the model, as compared in an evaluation.

    Args:
        name (`str`): Label in tables, plots, results and rollouts (defaults to the policy string).
        kind (`str`): ``"temperature"`` (the base model), ``"head"`` (any decoding head: LogitMLP, AutoDeco, an adapter) or ``"baseline"`` (a
            processor from ``logitmlp_hf.baselines`` on the base model).
        temperature (`float`, *optional*, defaults to `1.0`): Sampling temperature; 0 means greedy (one sample,
            repeated ``n`` times). For heads, the temperature applied on top of the warp.
        top_p (`float`, *optional*): Nucleus sampling, as transformers' ``TopPLogitsWarper``.
        top_k (`int`, *optional*): Top-k sampling, as ``TopKLogitsWarper``.
        min_p (`float`, *optional*): Min-p sampling, as ``MinPLogitsWarper``.
        head (`str`, *optional*): Head repo (directory or Hub id) for ``kind="head"``; ``None`` uses the head of
            the model passed to [`evaluate`] (which must then be a `DecodingHeadForCausalLM`, e.g. a `LogitMLPForCausalLM`).
        baseline (`str`, *optional*): Baseline name for ``kind="baseline"`` (``"entropy_guided"``, ``"annealed"``,
            ``"multi_temperature"``).
        baseline_kwargs (`dict[str, Any]`, *optional*): Keyword arguments of the baseline's processor. For
            ``multi_temperature``, ``temperatures`` (a list) splits each problem's samples across temperatures.

    Example:

    ```python
    >>> parse_policy("baseline:entropy_guided:t_low=0.6,t_high=1.2")
    DecodingPolicy(name='baseline:entropy_guided:t_low=0.6,t_high=1.2', kind='baseline', temperature=1.0, ...)
    ```
    """

    name: str
    kind: str = "temperature"
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    head: str | None = None
    baseline: str | None = None
    baseline_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"policy kind must be one of {POLICY_KINDS}, got {self.kind!r}")
        if self.temperature < 0 or not math.isfinite(self.temperature):
            raise ValueError(f"temperature must be finite and >= 0, got {self.temperature}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.min_p is not None and not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.kind == "baseline" and not self.baseline:
            raise ValueError("a baseline policy needs a baseline name")

    @property
    def greedy(self) -> bool:
        """Temperature 0: argmax decoding, so all ``n`` samples are the same."""
        return self.temperature == 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse_value(text: str) -> Any:
    """``"3"`` → 3, ``"0.5"`` → 0.5, ``"true"`` → True, ``"none"`` → None, ``"0.5|1.0"`` → [0.5, 1.0], else text."""
    if "|" in text:
        return [_parse_value(part) for part in text.split("|")]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _parse_kwargs(text: str, spec: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"policy {spec!r}: expected key=value, got {item!r}")
        kwargs[key.strip()] = _parse_value(value.strip())
    return kwargs


def parse_policy(spec: str) -> DecodingPolicy:
    """Parse a policy string.

    Forms (``key=value`` lists are comma-separated; a list value is written ``a|b|c``)::

        temperature:0.7                       the base model at T = 0.7
        temperature:0.7:top_p=0.95,min_p=0.05 with transformers' top-p / top-k / min-p
        head:outputs/demo-head                a decoding head repo (directory or Hub id, any head type) at T = 1
        head:outputs/demo-head:temperature=0.8
        head                                  the head of the model passed to evaluate()
        baseline:entropy_guided:t_low=0.6,t_high=1.2
        baseline:multi_temperature:temperatures=0.6|1.0|1.4

    A ``name=...`` entry sets the label (default: the string itself). ``temperature``, ``top_p``, ``top_k`` and
    ``min_p`` entries always configure generation; other entries of a baseline go to its processor.

    Args:
        spec (`str`): The policy string.

    Returns:
        [`DecodingPolicy`].
    """
    kind, _, rest = spec.strip().partition(":")
    if kind not in POLICY_KINDS:
        raise ValueError(f"policy {spec!r}: kind must be one of {POLICY_KINDS}")
    fields: dict[str, Any] = {"name": spec.strip(), "kind": kind}
    if kind == "temperature":
        value, _, extra = rest.partition(":")
        if not value:
            raise ValueError(f"policy {spec!r}: expected temperature:<T>")
        fields["temperature"] = float(value)
        kwargs = _parse_kwargs(extra, spec)
    elif kind == "head":
        # Only split off a trailing key=value list, so a head path may itself contain ':' (e.g. hf://, C:\).
        head, sep, extra = rest.rpartition(":")
        if not sep or "=" not in extra:
            head, extra = rest, ""
        fields["head"] = head or None
        kwargs = _parse_kwargs(extra, spec)
    else:
        baseline, _, extra = rest.partition(":")
        if not baseline:
            raise ValueError(f"policy {spec!r}: expected baseline:<name>[:key=value,...]")
        fields["baseline"] = baseline
        kwargs = _parse_kwargs(extra, spec)
    if "name" in kwargs:
        fields["name"] = str(kwargs.pop("name"))
    for key in _GENERATION_KEYS:
        if key in kwargs:
            fields[key] = kwargs.pop(key)
    if kwargs and kind != "baseline":
        raise ValueError(f"policy {spec!r}: unknown options {sorted(kwargs)} (allowed: {_GENERATION_KEYS}, name)")
    if kind == "baseline":
        fields["baseline_kwargs"] = kwargs
    return DecodingPolicy(**fields)


# --------------------------------------------------------------------------------------------------------------------
# Seeded, batch-independent sampling
# --------------------------------------------------------------------------------------------------------------------


def sample_seed(seed: int, problem_id: int, sample: int) -> int:
    """The 63-bit seed of one sample's noise stream (a hash of the three numbers, not a simple sum)."""
    return int(np.random.SeedSequence([seed, problem_id, sample]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class SeededGumbelSampler(LogitsProcessor):
    """Adds per-row seeded Gumbel noise, turning greedy decoding into exact sampling from ``softmax(scores)``.

    ``argmax(scores + G)`` with ``G`` i.i.d. standard Gumbel is distributed as ``softmax(scores)`` (the Gumbel-max
    trick); ``-inf`` scores stay ``-inf``. Each row owns a generator, so its samples do not depend on the other rows.
    Must be the last processor (after temperature, top-k, top-p, min-p).

    Args:
        row_seeds (`Sequence[int]`): One seed per batch row (see [`sample_seed`]).
        device (`torch.device`): Where the scores live.
    """

    def __init__(self, row_seeds: Sequence[int], device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in row_seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"SeededGumbelSampler was built for {len(self.generators)} rows, got {scores.shape[0]}")
        vocab = scores.shape[-1]
        uniform = torch.stack(
            [torch.rand(vocab, generator=g, device=self.device, dtype=torch.float32) for g in self.generators]
        )
        # Clamp away from 0 and 1 so the double log is finite (float32: the extreme Gumbel values are ~±4.5 and 16).
        tiny = torch.finfo(torch.float32).tiny
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=tiny, max=1.0 - 2**-24)))
        return scores.float() + gumbel


def _warpers(policy: DecodingPolicy) -> list[LogitsProcessor]:
    """transformers' own warpers, in the order ``generate(do_sample=True)`` applies them."""
    from .baselines import static_warpers

    temperature = 1.0 if policy.greedy else policy.temperature
    return list(static_warpers(temperature, top_k=policy.top_k, top_p=policy.top_p, min_p=policy.min_p))


def _baseline_processors(
    policy: DecodingPolicy, n_samples: int, rows: Sequence[tuple[int, int]], device: torch.device
) -> list[LogitsProcessor]:
    if policy.kind != "baseline":
        return []
    if policy.baseline == "multi_temperature" and "temperatures" in policy.baseline_kwargs:
        # The row layout is ours, so the per-sample temperatures are applied here rather than by a processor that
        # would have to guess it: sample s of every problem gets the s-th of the split.
        from .baselines import MultiTemperatureProcessor, split_samples_across_temperatures

        temps = policy.baseline_kwargs["temperatures"]
        split = split_samples_across_temperatures(n_samples, list(temps if isinstance(temps, list) else [temps]))
        return [MultiTemperatureProcessor([split[s] for _, s in rows])]
    from .baselines import make_baseline_processor

    return [make_baseline_processor(policy.baseline, **policy.baseline_kwargs)]


# --------------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------------


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented UTF-8 JSON, creating parent directories; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@dataclass
class PolicyResults:
    """One policy's evaluation.

    Args:
        policy ([`DecodingPolicy`]): What was evaluated.
        metrics (`dict[str, MetricValue]`): See [`~logitmlp_hf.eval_metrics.compute_metrics`].
        problems (`list[dict]`): Per problem: ``problem_id``, ``question``, ``reference``, ``correct`` (per sample),
            ``answers`` (extracted), ``grouped_answers`` (math-equivalence representatives), ``completion_tokens``.
        generation_seconds (`float`): Wall time spent in ``generate``.
        grading_seconds (`float`): Wall time spent grading and grouping answers.
        generated_tokens (`int`): Completion tokens generated (up to and including EOS).
    """

    policy: DecodingPolicy
    metrics: dict[str, MetricValue]
    problems: list[dict[str, Any]]
    generation_seconds: float = 0.0
    grading_seconds: float = 0.0
    generated_tokens: int = 0

    @property
    def name(self) -> str:
        return self.policy.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.to_dict(),
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "timing": {
                "generation_seconds": self.generation_seconds,
                "grading_seconds": self.grading_seconds,
                "generated_tokens": self.generated_tokens,
            },
            "problems": self.problems,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyResults:
        timing = data.get("timing", {})
        return cls(
            policy=DecodingPolicy(**data["policy"]),
            metrics={k: MetricValue(**v) for k, v in data["metrics"].items()},
            problems=data["problems"],
            **timing,
        )


@dataclass
class EvalResults:
    """An evaluation of several policies on the same problems.

    Args:
        config (`dict[str, Any]`): Run configuration (model, dataset, ``n_samples``, seed, ...).
        policies (`dict[str, PolicyResults]`): Policy name → results, in evaluation order.
        versions (`dict[str, str]`): Library versions of the run.
    """

    config: dict[str, Any]
    policies: dict[str, PolicyResults]
    versions: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> PolicyResults:
        return self.policies[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "versions": self.versions,
            "policies": {name: result.to_dict() for name, result in self.policies.items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the results as JSON (creating parent directories) and return the path."""
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResults:
        return cls(
            config=data["config"],
            policies={name: PolicyResults.from_dict(p) for name, p in data["policies"].items()},
            versions=data.get("versions", {}),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvalResults:
        """Read a ``results.json`` written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def format_table(self, columns: Sequence[str] | None = None) -> str:
        """The metrics of every policy as a text table with CIs (see [`format_metrics_table`])."""
        return format_metrics_table(self, columns)


_TABLE_COLUMNS = ("best@k", "mean_accuracy", "worst@k", "answer_entropy", "uniq/k", "accuracy_std", "maj@k")
_COLUMN_TITLES = {"mean_accuracy": "mean acc", "answer_entropy": "entropy", "accuracy_std": "acc std"}


def format_metrics_table(results: EvalResults, columns: Sequence[str] | None = None) -> str:
    """A fixed-width table: one row per policy, ``value [ci_low, ci_high]`` per metric (Table 1's columns)."""
    k = results.config.get("n_samples", "k")
    columns = list(columns or _TABLE_COLUMNS)
    titles = [_COLUMN_TITLES.get(c, c).replace("@k", f"@{k}").replace("/k", f"/{k}") for c in columns]
    confidence = results.config.get("confidence", 0.95)
    name_width = max([len("policy")] + [len(n) for n in results.policies])
    cell = 21
    lines = [f"{'policy':<{name_width}}  " + "  ".join(f"{t:>{cell}}" for t in titles)]
    lines.append("-" * len(lines[0]))
    for name, result in results.policies.items():
        cells = [f"{result.metrics[c]:.3f}" if c in result.metrics else "-" for c in columns]
        lines.append(f"{name:<{name_width}}  " + "  ".join(f"{c:>{cell}}" for c in cells))
    lines.append(f"(value [{100 * confidence:.0f}% bootstrap CI over {results.config.get('n_problems', '?')} problems])")
    return "\n".join(lines)


def library_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Versions of the libraries that determine the samples and the grading (plus ``extra`` installed packages)."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"python": platform.python_version(), "logitmlp_hf": __version__}
    for package in ("torch", "transformers", "math-verify", "numpy", "datasets", *extra):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


# --------------------------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------------------------


def load_eval_dataset(
    name: str,
    n_problems: int | None = None,
    *,
    split: str = "test",
    n_validation: int = 0,
    instruction: str | None = "auto",
    arithmetic_seed: int = 0,
    arithmetic_max_operand: int = 20,
    arithmetic_n_operands: int = 2,
    dapo_split: str = "train",
):
    """Load an evaluation set by name: ``arithmetic``, ``gsm8k``, ``math500``, a ``.jsonl`` file or a Hub id.

    Splits, so that temperature selection never sees the reported problems:

    - ``arithmetic``: ``split="test"`` is the first ``n_problems`` of the seeded stream and ``split="validation"``
      the ``n_validation`` after them, as in [`~logitmlp_hf.data.make_arithmetic_train_validation_test`]; the
      training recipes and ``logitmlp reproduce`` train only on problems after both.
    - everything else: ``split="validation"`` is the first ``n_validation`` problems in file order, ``split="test"``
      the ``n_problems`` after them (all the rest when ``n_problems`` is ``None``).

    Args:
        name (`str`): ``"arithmetic"``, ``"gsm8k"``, ``"math500"`` (vendored files), a jsonl path (MATH fields
            ``problem``/``answer``, GSM8K ``question``/``answer`` with ``####``, or DAPO ``prompt``/``reward_model``)
            or a Hub dataset id in the DAPO format.
        n_problems (`int`, *optional*): Test problems (``None`` = all; arithmetic defaults to 100).
        split (`str`, *optional*, defaults to `"test"`): ``"test"`` or ``"validation"``.
        n_validation (`int`, *optional*, defaults to `0`): Validation problems, held out before the test problems.
        instruction (`str`, *optional*, defaults to `"auto"`): Appended to each question; ``"auto"`` asks for a
            ``\\boxed{}`` answer on GSM8K / MATH / DAPO and adds nothing to arithmetic; ``None`` adds nothing.
        arithmetic_seed, arithmetic_max_operand, arithmetic_n_operands: The arithmetic task (as in the recipes).
        dapo_split (`str`, *optional*, defaults to `"train"`): Split of a Hub dataset.

    Returns:
        `datasets.Dataset` with columns ``prompt``, ``answer``, ``question``.
    """
    from . import data

    if split not in ("test", "validation"):
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
    if instruction == "auto":
        instruction = None if name == "arithmetic" else data.BOXED_INSTRUCTION
    kwargs = {"instruction": instruction}
    if name == "arithmetic":
        n_test = 100 if n_problems is None else n_problems
        config = data.ArithmeticTaskConfig(
            seed=arithmetic_seed, max_operand=arithmetic_max_operand, n_operands=arithmetic_n_operands
        )
        if split == "validation" and n_validation < 1:
            raise ValueError("the validation split needs n_validation >= 1")
        _, validation, test = data.make_arithmetic_train_validation_test(config, 0, n_validation, n_test, **kwargs)
        return validation if split == "validation" else test
    if name in ("gsm8k", "math500"):
        from .benchmark_data import benchmark_path

        path = benchmark_path(name)
        full = data.load_gsm8k_jsonl(path, **kwargs) if name == "gsm8k" else data.load_math_jsonl(path, **kwargs)
    elif name.endswith((".jsonl", ".json")) and os.path.isfile(name):
        with open(name, encoding="utf-8") as f:
            first = json.loads(next(line for line in f if line.strip()))
        if "reward_model" in first or isinstance(first.get("prompt"), list):
            full = data.load_dapo_math(name, **kwargs)
        elif "problem" in first:
            full = data.load_math_jsonl(name, **kwargs)
        elif "question" in first:
            full = data.load_gsm8k_jsonl(name, **kwargs)
        else:
            raise ValueError(f"{name}: cannot tell the format from its fields {sorted(first)}")
    else:
        full = data.load_dapo_math(name, split=dapo_split, **kwargs)
    if split == "validation":
        return full.select(range(min(n_validation, len(full))))
    start = min(n_validation, len(full))
    stop = len(full) if n_problems is None else min(len(full), start + n_problems)
    return full.select(range(start, stop))


# --------------------------------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------------------------------


def prompt_token_ids(tokenizer, dataset) -> list[list[int]]:
    """Token ids of each problem's prompt, chat template applied, as ``evaluate`` feeds them to ``generate``."""
    if "prompt" in dataset.column_names:
        prompts = dataset["prompt"]
    else:
        prompts = [[{"role": "user", "content": q}] for q in dataset["question"]]
    ids = []
    for prompt in prompts:
        if isinstance(prompt, str):
            text = prompt
        elif getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        else:
            text = "\n".join(m["content"] for m in prompt)
        # The chat template already wrote any special tokens the model expects.
        ids.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids


def _eos_ids(model, tokenizer) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = eos if eos is not None else tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


def _trim(completion: list[int], eos: set[int]) -> list[int]:
    """Up to and including the first EOS (what follows is padding)."""
    for i, token in enumerate(completion):
        if token in eos:
            return completion[: i + 1]
    return completion


class _PolicyModels:
    """Resolves each policy to the model that generates it; loads each head once."""

    def __init__(self, model_or_base) -> None:
        from .modeling_decoding_head import DecodingHeadForCausalLM

        self.own = model_or_base if isinstance(model_or_base, DecodingHeadForCausalLM) else None
        self.base = self.own.get_base_model() if self.own is not None else model_or_base
        self._heads: dict[str, Any] = {}

    def get(self, policy: DecodingPolicy):
        if policy.kind != "head":
            return self.base
        if policy.head is None:
            if self.own is None:
                raise ValueError(f"policy {policy.name!r} uses the model's own head, but a plain model was given")
            return self.own
        if policy.head not in self._heads:
            logger.info("Loading head %s", policy.head)
            from .modeling_decoding_head import load_decoding_head_model

            self._heads[policy.head] = load_decoding_head_model(policy.head, base_model=self.base).eval()
        return self._heads[policy.head]


def evaluate(
    model_or_base,
    tokenizer,
    dataset,
    policies: Iterable[DecodingPolicy | str],
    n_samples: int = 8,
    batch_size: int = 8,
    seed: int = 0,
    max_new_tokens: int = 512,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    no_answer: str = "category",
    grading_timeout: float | None = 5.0,
    rollouts_path: str | os.PathLike | None = None,
    results_path: str | os.PathLike | None = None,
    progress: bool = True,
    config: dict[str, Any] | None = None,
) -> EvalResults:
    """Sample ``n_samples`` completions per problem under each policy, grade them, and compute metrics with CIs.

    Args:
        model_or_base (`PreTrainedModel`, `PeftModel` or a `DecodingHeadForCausalLM`): The base model, or a model with a
            head (temperature and baseline policies then use its base; ``head`` policies without a path its head).
        tokenizer (`PreTrainedTokenizerBase`): The model's tokenizer (its chat template builds the prompts).
        dataset (`datasets.Dataset`): Columns ``prompt`` (chat messages) or ``question``, and ``answer``.
        policies (`Iterable[DecodingPolicy | str]`): Policies or policy strings (see [`parse_policy`]).
        n_samples (`int`, *optional*, defaults to `8`): Samples per problem (the ``k`` of the metrics).
        batch_size (`int`, *optional*, defaults to `8`): Problems per ``generate`` call (``batch_size × n_samples``
            sequences). Does not change the samples (see the module docstring).
        seed (`int`, *optional*, defaults to `0`): Sampling seed; same seed, same samples.
        max_new_tokens (`int`, *optional*, defaults to `512`): Completion length limit.
        n_resamples (`int`, *optional*, defaults to `1000`): Bootstrap resamples for the CIs.
        confidence (`float`, *optional*, defaults to `0.95`): CI coverage.
        no_answer (`str`, *optional*, defaults to `"category"`): How no-answer samples count in the diversity
            metrics (see [`~logitmlp_hf.eval_metrics.answer_entropy`]).
        grading_timeout (`float`, *optional*, defaults to `5.0`): math-verify bound per sample, seconds.
        rollouts_path (`str` or `os.PathLike`, *optional*): Write every sample as a JSONL line here.
        results_path (`str` or `os.PathLike`, *optional*): Write the results JSON here.
        progress (`bool`, *optional*, defaults to `True`): Show a tqdm progress bar.
        config (`dict`, *optional*): Extra entries for the results' ``config`` (e.g. the dataset name).

    Returns:
        [`EvalResults`].

    Example:

    ```python
    >>> from logitmlp_hf.offline_model import load_embedded_model
    >>> model, tokenizer = load_embedded_model()
    >>> test = load_eval_dataset("arithmetic", n_problems=20)
    >>> results = evaluate(model, tokenizer, test, ["temperature:0.7", "temperature:1.0"], max_new_tokens=48)
    >>> print(results.format_table())
    ```
    """
    from tqdm.auto import tqdm

    from .rewards import MatchOutcome, check_answer, extract_answer

    if n_samples < 1 or batch_size < 1:
        raise ValueError(f"n_samples and batch_size must be >= 1, got {n_samples} and {batch_size}")
    if no_answer not in NO_ANSWER_MODES:
        raise ValueError(f"no_answer must be one of {NO_ANSWER_MODES}, got {no_answer!r}")
    policies = [parse_policy(p) if isinstance(p, str) else p for p in policies]
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}")
    if len(dataset) == 0:
        raise ValueError("the dataset is empty")

    models = _PolicyModels(model_or_base)
    device = next(models.base.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = _eos_ids(models.base, tokenizer)
    prompt_ids = prompt_token_ids(tokenizer, dataset)
    references = [str(a) for a in dataset["answer"]]
    questions = dataset["question"] if "question" in dataset.column_names else [None] * len(dataset)
    # Longest prompts first: batches of similar length waste less compute on padding, and an out-of-memory error
    # shows up in the first batch rather than the last. The order does not change any sample.
    order = sorted(range(len(dataset)), key=lambda i: -len(prompt_ids[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    rollout_file = None
    if rollouts_path is not None:
        Path(rollouts_path).parent.mkdir(parents=True, exist_ok=True)
        rollout_file = open(rollouts_path, "w", encoding="utf-8")
    results: dict[str, PolicyResults] = {}
    bar = tqdm(total=len(policies) * len(dataset), desc="evaluate", unit="problem", disable=not progress)
    try:
        for policy in policies:
            model = models.get(policy)
            rows_per_problem = 1 if policy.greedy else n_samples
            completions: dict[int, list[list[int]]] = {}
            gen_seconds = 0.0
            bar.set_postfix_str(policy.name)
            for batch in batches:
                rows = [(pid, s) for pid in batch for s in range(rows_per_problem)]
                width = max(len(prompt_ids[pid]) for pid, _ in rows)
                input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, (pid, _) in enumerate(rows):
                    ids = prompt_ids[pid]
                    input_ids[r, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                    attention_mask[r, width - len(ids) :] = 1
                processors = LogitsProcessorList(
                    _baseline_processors(policy, n_samples, rows, device) + _warpers(policy)
                )
                if not policy.greedy:
                    processors.append(SeededGumbelSampler([sample_seed(seed, pid, s) for pid, s in rows], device))
                # Greedy mode + Gumbel noise = sampling (module docstring); an explicit config keeps the model's own
                # sampling defaults (temperature, top_p in generation_config.json) from applying a second time.
                generation_config = GenerationConfig(
                    do_sample=False,
                    num_beams=1,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad_id,
                    eos_token_id=sorted(eos) if eos else None,
                )
                start = time.perf_counter()
                # A head that conditions on the parallel budget must know that each problem gets n_samples rows.
                budget = {"parallel_budget": n_samples} if policy.kind == "head" else {}
                with torch.no_grad():
                    out = model.generate(
                        input_ids=input_ids.to(device),
                        attention_mask=attention_mask.to(device),
                        generation_config=generation_config,
                        logits_processor=processors,
                        **budget,
                    )
                gen_seconds += time.perf_counter() - start
                generated = out[:, width:].tolist()
                for r, (pid, _) in enumerate(rows):
                    completions.setdefault(pid, []).append(_trim(generated[r], eos))
                bar.update(len(batch))

            start = time.perf_counter()
            problems, n_tokens = [], 0
            for pid in range(len(dataset)):
                samples = completions[pid] * (n_samples if policy.greedy else 1)
                texts = [tokenizer.decode(c, skip_special_tokens=True) for c in samples]
                answers = [extract_answer(t) for t in texts]
                correct = [
                    check_answer(t, references[pid], timeout_seconds=grading_timeout) is MatchOutcome.CORRECT
                    for t in texts
                ]
                grouped = group_equivalent_answers(answers, timeout_seconds=grading_timeout)
                n_tokens += sum(len(c) for c in completions[pid])
                problems.append({
                    "problem_id": pid,
                    "question": questions[pid],
                    "reference": references[pid],
                    "correct": correct,
                    "answers": answers,
                    "grouped_answers": grouped,
                    "completion_tokens": [len(c) for c in samples],
                })
                if rollout_file is not None:
                    for s, (ids, text, answer, ok) in enumerate(zip(samples, texts, answers, correct)):
                        rollout_file.write(json.dumps({
                            "problem_id": pid,
                            "sample": s,
                            "policy": policy.name,
                            "prompt_ids": prompt_ids[pid],
                            "completion_ids": ids,
                            "completion": text,
                            "answer": answer,
                            "correct": ok,
                        }, ensure_ascii=False) + "\n")
            metrics = compute_metrics(
                [p["correct"] for p in problems],
                [p["grouped_answers"] for p in problems],
                n_resamples=n_resamples,
                confidence=confidence,
                seed=seed,
                no_answer=no_answer,
            )
            results[policy.name] = PolicyResults(
                policy, metrics, problems, gen_seconds, time.perf_counter() - start, n_tokens
            )
            logger.info(
                "%s: best@%d %.3f, mean acc %.3f (%.1f s generating, %d tokens)",
                policy.name, n_samples, metrics["best@k"].value, metrics["mean_accuracy"].value, gen_seconds, n_tokens,
            )
    finally:
        bar.close()
        if rollout_file is not None:
            rollout_file.close()

    run_config = {
        "model": getattr(models.base, "name_or_path", None),
        "n_problems": len(dataset),
        "n_samples": n_samples,
        "batch_size": batch_size,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "n_resamples": n_resamples,
        "confidence": confidence,
        "no_answer": no_answer,
        "sampler": "seeded Gumbel-max per (seed, problem_id, sample)",
        **(config or {}),
    }
    evaluation = EvalResults(run_config, results, library_versions())
    if results_path is not None:
        evaluation.save(results_path)
    return evaluation


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Model, dataset and sampling options shared by ``logitmlp eval`` and ``logitmlp sweep``."""
    parser.add_argument("--base-model", default=None,
                        help="base model id or path (default: the embedded SmolLM2-135M-Instruct, offline)")
    parser.add_argument("--dataset", default="arithmetic",
                        help="arithmetic | gsm8k | math500 (vendored) | a .jsonl file | a Hub id in DAPO format")
    parser.add_argument("--n-problems", type=int, default=None,
                        help="test problems (default: all; 100 for arithmetic)")
    parser.add_argument("--instruction", default="auto",
                        help="text appended to each question; 'auto' = ask for \\boxed{} except on arithmetic; "
                        "'none' = nothing")
    parser.add_argument("--arithmetic-seed", type=int, default=0, help="arithmetic: problem seed (the recipes' seed)")
    parser.add_argument("--arithmetic-max-operand", type=int, default=20)
    parser.add_argument("--arithmetic-n-operands", type=int, default=2)
    parser.add_argument("--n-samples", type=int, default=8, help="samples per problem (the k of best@k)")
    parser.add_argument("--batch-size", type=int, default=8, help="problems per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples for the CIs")
    parser.add_argument("--no-answer", choices=NO_ANSWER_MODES, default="category",
                        help="how samples without an answer count in answer entropy and uniq/k")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--device", default=None, help="e.g. cuda (default: cuda if available, else cpu)")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``logitmlp eval``."""
    parser.add_argument("--policy", action="append", dest="policies", default=None,
                        help="decoding policy, repeatable: temperature:T[:top_p=..], head:DIR, "
                        "baseline:NAME[:k=v,...] (default: temperature:1.0)")
    add_common_arguments(parser)
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/eval"))
    parser.add_argument("--save-rollouts", action="store_true", help="also write rollouts.jsonl")


def load_model_for_eval(args: argparse.Namespace):
    """(model, tokenizer) from ``--base-model`` (default: the embedded SmolLM2), on ``--device``, left-padded."""
    dtype = getattr(torch, args.dtype)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.base_model is None:
        from .offline_model import load_embedded_model

        model, tokenizer = load_embedded_model(dtype=dtype)
    else:
        from transformers import AutoTokenizer

        from .base_loading import load_base_model

        model = load_base_model(args.base_model, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(args.base_model, padding_side="left")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def dataset_from_args(args: argparse.Namespace, split: str = "test", n_validation: int = 0):
    instruction = None if args.instruction == "none" else args.instruction
    return load_eval_dataset(
        args.dataset, args.n_problems, split=split, n_validation=n_validation, instruction=instruction,
        arithmetic_seed=args.arithmetic_seed, arithmetic_max_operand=args.arithmetic_max_operand,
        arithmetic_n_operands=args.arithmetic_n_operands,
    )


def run_eval(args: argparse.Namespace) -> Path:
    """Run ``logitmlp eval``: print the metrics table, write ``results.json`` (and ``rollouts.jsonl``).

    Returns:
        `Path`: The output directory.
    """
    policies = [parse_policy(p) for p in (args.policies or ["temperature:1.0"])]
    print(f"Loading {args.base_model or 'the embedded SmolLM2-135M-Instruct'} ...", flush=True)
    model, tokenizer = load_model_for_eval(args)
    dataset = dataset_from_args(args)
    print(f"{len(dataset)} problems from {args.dataset}, {args.n_samples} samples each, "
          f"{len(policies)} policies", flush=True)
    output_dir = Path(args.output_dir)
    results = evaluate(
        model, tokenizer, dataset, policies, n_samples=args.n_samples, batch_size=args.batch_size, seed=args.seed,
        max_new_tokens=args.max_new_tokens, n_resamples=args.n_resamples, no_answer=args.no_answer,
        rollouts_path=output_dir / "rollouts.jsonl" if args.save_rollouts else None,
        results_path=output_dir / "results.json", progress=sys.stderr.isatty(),
        config={"dataset": args.dataset, "command": "eval"},
    )
    print()
    print(results.format_table())
    print(f"\nResults written to {output_dir / 'results.json'}"
          + (f" and {output_dir / 'rollouts.jsonl'}" if args.save_rollouts else ""))
    return output_dir
