"""Evaluate decoding policies side by side: ``n`` samples per problem, math-verify grading, Table-1 metrics with CIs.

A *decoding policy* is the base model at a fixed temperature (optionally with top-p / top-k / min-p), a LogitMLP head,
or a baseline logits processor (``logitmlp_hf.evaluation.baselines``). [`evaluate`] samples every policy on the same problems
and reports the metrics of [`~logitmlp_hf.evaluation.metrics.compute_metrics`] with bootstrap confidence intervals.

Sampling is batched (many problems × ``n`` samples per decoding call, left-padded) and reproducible independently
of the batch size: every sample draws its token noise from its own generator seeded by ``(seed, problem_id,
sample)``. Decoding is :func:`~logitmlp_hf.evaluation.sampler.sample_completions` (each problem prefilled once, its KV
cache repeated to its ``n`` samples, finished rows dropped from the batch) for temperature policies and per-token
heads, and the model's ``generate`` for baselines and heads that read a decoding context; both compute the same
samples. Technically decoding runs in greedy mode and the last logits processor adds seeded Gumbel noise to the
final (warped, temperature-scaled, truncated) scores, so the argmax is an exact sample from the same distribution that
``do_sample=True`` would draw from (the Gumbel-max trick), but with noise that does not depend on which other rows
share the batch. The same ``(seed, problem, sample)`` noise is reused across policies (common random numbers), which
makes policy differences less noisy. Residual batch dependence is only the floating-point difference of padded
batched forwards, which can flip a token at an exact near-tie.

Command line (wired into the ``logitmlp`` console script)::

    logitmlp eval --policy temperature:1.0 --policy head:outputs/demo-head --dataset arithmetic --n-problems 50
    logitmlp eval --policy temperature:0.6:top_p=0.95 --policy baseline:entropy_guided:t_low=0.6,t_high=1.2 \\
        --dataset math500 --n-samples 8 --save-rollouts

Rollouts are written one JSON object per sample (JSON Lines, so ``datasets.load_dataset("json", ...)`` and
``pandas.read_json(..., lines=True)`` read them as they are)::

    {"problem_id": int, "sample": int, "policy": str, "prompt_ids": [int], "completion_ids": [int],
     "completion": str, "answer": str | null, "correct": bool,
     "model": str | null, "tokenizer": str | null, "tokenizer_hash": str}

The last three say what made the token ids ([`rollout_source`]), on every row so that filtered or concatenated files
keep them: ``model`` is the base model's ``name_or_path`` (the portable id, as a head's ``base_model_name_or_path``;
``null`` for a model built in code), ``tokenizer`` the tokenizer's ``name_or_path``, and ``tokenizer_hash``
(``"sha256:"`` + 16 hex digits) a digest of its vocabulary (every token and id, added tokens included), which
identifies the tokenizer whatever path it was loaded from. ``logitmlp analyze`` refuses rollouts whose model or
vocabulary differ from its own; files written before these fields existed are read as before, unchecked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList

from ..errors import DataFileError
from ..sampling_rules import SamplingRule
from .metrics import NO_ANSWER_MODES, compute_metrics, group_equivalent_answers
from .policies import DecodingPolicy, baseline_processors, parse_policy, policy_warpers
from .results import EvalResults, PolicyResults, library_versions
from .sampler import SeededGumbelSampler, sample_completions, sample_seed


logger = logging.getLogger(__name__)

__all__ = ["evaluate", "load_eval_dataset", "prompt_token_ids", "rollout_source", "tokenizer_hash"]


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
      the ``n_validation`` after them, as in [`~logitmlp_hf.tasks.data.make_arithmetic_train_validation_test`]; the
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
    from ..tasks import data

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
        from ..tasks.benchmark_data import benchmark_path

        path = benchmark_path(name)
        full = data.load_gsm8k_jsonl(path, **kwargs) if name == "gsm8k" else data.load_math_jsonl(path, **kwargs)
    elif name.endswith((".jsonl", ".json")) and os.path.isfile(name):
        # The first row tells the format (the loaders then check every row, with its line number).
        [(line, first)] = data.read_jsonl_rows(name, limit=1)
        if "reward_model" in first or isinstance(first.get("prompt"), list):
            full = data.load_dapo_math(name, **kwargs)
        elif "problem" in first:
            full = data.load_math_jsonl(name, **kwargs)
        elif "question" in first:
            full = data.load_gsm8k_jsonl(name, **kwargs)
        else:
            raise DataFileError(
                f"{name}:{line}: cannot tell the format from its fields {sorted(first)}; expected 'problem' and "
                "'answer' (MATH), 'question' and 'answer' (GSM8K), or 'prompt' and 'reward_model' (DAPO)",
                name,
                line,
            )
    else:
        full = data.load_dapo_math(name, split=dapo_split, **kwargs)
    if split == "validation":
        selected = full.select(range(min(n_validation, len(full))))
    else:
        start = min(n_validation, len(full))
        stop = len(full) if n_problems is None else min(len(full), start + n_problems)
        selected = full.select(range(start, stop))
    if len(selected) == 0:
        raise ValueError(
            f"the {split} split of {name} is empty: it has {len(full)} problems, n_validation={n_validation} of them "
            f"held out for validation, n_problems={n_problems}"
        )
    return selected


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


def tokenizer_hash(tokenizer) -> str:
    """``"sha256:"`` + the first 16 hex digits of a digest of the tokenizer's vocabulary (tokens and ids, added
    tokens included): equal for the same tokenizer loaded from a Hub id or a local copy, different if any token or id
    differs."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: (item[1], item[0]))
    digest = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"sha256:{digest[:16]}"


def rollout_source(model, tokenizer) -> dict[str, str | None]:
    """What made a rollout's token ids, as rollout rows record it: ``model`` (the base model's ``name_or_path``, or
    ``None`` when it has none), ``tokenizer`` (its ``name_or_path``, or ``None``) and ``tokenizer_hash``.

    Args:
        model: the base model (a `PreTrainedModel` or `PeftModel`) or a `DecodingHeadForCausalLM` (its base counts).
        tokenizer: the tokenizer that made the prompt ids and decodes the completions.
    """
    get_base = getattr(model, "get_base_model", None)
    if get_base is not None and hasattr(model, "decoding_head"):
        model = get_base()
    from ..hub.offline_model import portable_model_id

    # The portable name, as heads record their base: the embedded model loaded from its cache directory and by its
    # Hub id are the same model, and rollouts sampled from one must analyse on the other.
    return {
        "model": portable_model_id(getattr(model, "name_or_path", None) or "") or None,
        "tokenizer": getattr(tokenizer, "name_or_path", None) or None,
        "tokenizer_hash": tokenizer_hash(tokenizer),
    }


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
        from ..modeling import DecodingHeadForCausalLM

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
            from ..modeling import load_decoding_head_model

            self._heads[policy.head] = load_decoding_head_model(policy.head, base_model=self.base).eval()
        return self._heads[policy.head]


def _absorbs_user_rule(policy: DecodingPolicy, model) -> bool:
    """Whether the policy's head composes the policy's temperature/top-p with its own rule (AutoDeco's released
    composition) instead of having them applied as warpers after it."""
    return policy.kind == "head" and model.decoding_head.absorbs_user_rule and not policy.greedy


def _decodes_row_by_row(policy: DecodingPolicy, model) -> bool:
    """Whether [`sample_completions`] computes this policy's samples: its processors treat rows independently (every
    policy but the baselines, whose processors may see a problem's rows together) and a head, if any, decides per
    token without a decoding context (one that does is given its budgets by the wrapper's ``generate``) and without
    absorbing the policy's rule (it gets it through ``generate``'s ``user_rule``)."""
    if policy.kind == "baseline":
        return False
    if policy.kind == "head":
        head = model.decoding_head
        return bool(head.per_token and not head.uses_context and not _absorbs_user_rule(policy, model))
    return True


def _generate_rows(
    model, policy, rows, prompt_ids, seeds, n_samples, max_new_tokens, pad_id, eos, device, absorbed=False
) -> list[list[int]]:
    """The rows' completions from the model's ``generate`` in greedy mode with the seeded noise (the general path).

    ``absorbed``: the head composes the policy's temperature/top-p into its own rule (AutoDeco's released
    composition), so they reach it as ``user_rule`` instead of running as warpers after it."""
    width = max(len(prompt_ids[pid]) for pid, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (pid, _) in enumerate(rows):
        ids = prompt_ids[pid]
        input_ids[r, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[r, width - len(ids) :] = 1
    processors = LogitsProcessorList(
        baseline_processors(policy, n_samples, rows, device) + policy_warpers(policy, absorbed)
    )
    if seeds is not None:
        processors.append(SeededGumbelSampler(seeds, device))
    # Greedy mode + Gumbel noise = sampling (module docstring); an explicit config keeps the model's own sampling
    # defaults (temperature, top_p in generation_config.json) from applying a second time.
    generation_config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        pad_token_id=pad_id,
        eos_token_id=sorted(eos) if eos else None,
    )
    # A head that conditions on the parallel budget must know that each problem gets n_samples rows.
    budget = {"parallel_budget": n_samples} if policy.kind == "head" else {}
    if absorbed:  # e.g. AutoDeco's released composition: T = T̂·T_policy, top-p min(1, p̂·top_p)
        budget["user_rule"] = SamplingRule(policy.temperature, top_p=policy.top_p)
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=generation_config,
            logits_processor=processors,
            **budget,
        )
    return [_trim(row, eos) for row in out[:, width:].tolist()]


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
        batch_size (`int`, *optional*, defaults to `8`): Problems per decoding call (``batch_size × n_samples``
            sequences). Does not change the samples (see the module docstring).
        seed (`int`, *optional*, defaults to `0`): Sampling seed; same seed, same samples.
        max_new_tokens (`int`, *optional*, defaults to `512`): Completion length limit.
        n_resamples (`int`, *optional*, defaults to `1000`): Bootstrap resamples for the CIs.
        confidence (`float`, *optional*, defaults to `0.95`): CI coverage.
        no_answer (`str`, *optional*, defaults to `"category"`): How no-answer samples count in the diversity
            metrics (see [`~logitmlp_hf.evaluation.metrics.answer_entropy`]).
        grading_timeout (`float`, *optional*, defaults to `5.0`): math-verify bound per sample, seconds.
        rollouts_path (`str` or `os.PathLike`, *optional*): Write every sample as a JSONL line here.
        results_path (`str` or `os.PathLike`, *optional*): Write the results JSON here.
        progress (`bool`, *optional*, defaults to `True`): Show a tqdm progress bar with an ETA on stderr (see
            :mod:`logitmlp_hf.progress`).
        config (`dict`, *optional*): Extra entries for the results' ``config`` (e.g. the dataset name).

    Returns:
        [`EvalResults`].

    Example:

    ```python
    >>> from logitmlp_hf.hub.offline_model import load_embedded_model
    >>> model, tokenizer = load_embedded_model()
    >>> test = load_eval_dataset("arithmetic", n_problems=20)
    >>> results = evaluate(model, tokenizer, test, ["temperature:0.7", "temperature:1.0"], max_new_tokens=48)
    >>> print(results.format_table())
    ```
    """
    from ..progress import progress_bar
    from ..tasks.rewards import MatchOutcome, check_answer, extract_answer

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
    # A None reference would become the string "None", which \boxed{None} then matches.
    references = ["" if a is None else str(a) for a in dataset["answer"]]
    missing = [i for i, a in enumerate(references) if not a.strip()]
    if missing:
        raise ValueError(
            f"dataset row {missing[0]} has no reference answer ({dataset['answer'][missing[0]]!r}); "
            f"{len(missing)} of {len(dataset)} rows lack one. Every problem needs a non-empty 'answer' to grade against"
        )

    models = _PolicyModels(model_or_base)
    device = next(models.base.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = _eos_ids(models.base, tokenizer)
    prompt_ids = prompt_token_ids(tokenizer, dataset)
    questions = dataset["question"] if "question" in dataset.column_names else [None] * len(dataset)
    # Longest prompts first: batches of similar length waste less compute on padding, and an out-of-memory error
    # shows up in the first batch rather than the last. The order does not change any sample.
    order = sorted(range(len(dataset)), key=lambda i: -len(prompt_ids[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    rollout_file, source = None, {}
    if rollouts_path is not None:
        source = rollout_source(models.base, tokenizer)
        Path(rollouts_path).parent.mkdir(parents=True, exist_ok=True)
        rollout_file = open(rollouts_path, "w", encoding="utf-8")
    results: dict[str, PolicyResults] = {}
    bar = progress_bar(total=len(policies) * len(dataset), desc="evaluate", unit="problem", disable=not progress)
    try:
        for policy in policies:
            model = models.get(policy)
            absorbed = _absorbs_user_rule(policy, model)
            row_by_row = _decodes_row_by_row(policy, model)
            rows_per_problem = 1 if policy.greedy else n_samples
            completions: dict[int, list[list[int]]] = {}
            gen_seconds = 0.0
            bar.set_postfix_str(policy.name)
            for batch in batches:
                rows = [(pid, s) for pid in batch for s in range(rows_per_problem)]
                seeds = None if policy.greedy else [sample_seed(seed, pid, s) for pid, s in rows]
                start = time.perf_counter()
                if row_by_row:
                    # The evaluation's own loop: one prefill per problem, finished rows leave the batch.
                    generated = sample_completions(
                        model,
                        [prompt_ids[pid] for pid in batch],
                        rows_per_problem,
                        max_new_tokens=max_new_tokens,
                        eos_token_ids=eos,
                        pad_token_id=pad_id,
                        row_seeds=seeds,
                        logits_processor=LogitsProcessorList(policy_warpers(policy)),
                    )
                else:
                    generated = _generate_rows(
                        model,
                        policy,
                        rows,
                        prompt_ids,
                        seeds,
                        n_samples,
                        max_new_tokens,
                        pad_id,
                        eos,
                        device,
                        absorbed,
                    )
                gen_seconds += time.perf_counter() - start
                for r, (pid, _) in enumerate(rows):
                    completions.setdefault(pid, []).append(generated[r])
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
                problems.append(
                    {
                        "problem_id": pid,
                        "question": questions[pid],
                        "reference": references[pid],
                        "correct": correct,
                        "answers": answers,
                        "grouped_answers": grouped,
                        "completion_tokens": [len(c) for c in samples],
                    }
                )
                if rollout_file is not None:
                    for s, (ids, text, answer, ok) in enumerate(zip(samples, texts, answers, correct)):
                        rollout_file.write(
                            json.dumps(
                                {
                                    "problem_id": pid,
                                    "sample": s,
                                    "policy": policy.name,
                                    "prompt_ids": prompt_ids[pid],
                                    "completion_ids": ids,
                                    "completion": text,
                                    "answer": answer,
                                    "correct": ok,
                                    **source,
                                },
                                ensure_ascii=False,
                            )
                            + "\n"
                        )
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
                policy.name,
                n_samples,
                metrics["best@k"].value,
                metrics["mean_accuracy"].value,
                gen_seconds,
                n_tokens,
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
