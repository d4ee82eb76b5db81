"""`logitmlp analyze`: where and how a head changes the base distribution, per token, on saved rollouts.

The analyses of the method's §5, as functions on tensors/arrays plus one teacher-forced pass that collects them:

1. :func:`analyze_rollouts` teacher-forces saved rollouts (prompt + completion) through base + head in left-padded
   batches and keeps, per *completion* token, only small per-position numbers: KL(warp‖base), the base top-1
   probability, ``(s1, s2)``, the breakpoint as ``(max − b)/std``, the effective temperature ``T*`` at active
   positions, the top-6 candidates with their base and warped probabilities, the token and the word it starts.
   Full-vocabulary logits live only for one batch.
2. Pure functions on the collected arrays: :func:`kl_concentration`, :func:`lorenz_curve`, :func:`kl_by_top1_bin`,
   :func:`effective_temperature` (the 1-D solver), :func:`effective_temperature_summary`,
   :func:`top_kl_positions`, :func:`following_words`, :func:`words_after`.
3. Plots and a Markdown + HTML report: :mod:`logitmlp_hf.analysis.report`.

Command line (offline; without ``--rollouts`` a small set of arithmetic rollouts is sampled from the head first)::

    logitmlp analyze --head outputs/demo-head --rollouts outputs/eval/rollouts.jsonl --output-dir outputs/analysis
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import DataFileError, MissingFieldError, RolloutsMismatchError, json_snippet
from ..features import kl_from_log_probs, logit_statistics
from ..modeling import DecodingHeadForCausalLM
from ..progress import progress_bar


logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TOP1_BINS",
    "TokenAnalysis",
    "analyze_rollouts",
    "check_rollouts",
    "effective_temperature",
    "effective_temperature_summary",
    "following_words",
    "generate_arithmetic_rollouts",
    "kl_by_top1_bin",
    "kl_concentration",
    "load_rollouts",
    "lorenz_curve",
    "top_kl_positions",
    "words_after",
]

DEFAULT_TOP1_BINS: tuple[float, ...] = (0.0, 0.5, 0.7, 0.85, 0.95, 0.99, 0.995, 1.0)
"""Edges of the base top-1 probability bins: ``[0, 0.5), [0.5, 0.7), …, [0.995, 1.0]`` (the last one closed)."""

DEFAULT_TOP_PERCENTS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
N_CANDIDATES = 6
T_MIN, T_MAX = 0.05, 20.0


# ---------------------------------------------------------------------------------------------------- rollouts
class _FileRow(dict):
    """A rollout read from a file: a plain dict that also knows its ``path:line``, so that checks made later (token
    ids against the model's vocabulary, the recorded model) can name it, even after the rows were filtered."""

    __slots__ = ("location",)


_SOURCE_FIELDS = ("model", "tokenizer", "tokenizer_hash")


def _where(row: dict[str, Any], index: int) -> tuple[str, str | None, int | None]:
    """``(text, path, line)`` naming a rollout: its ``path:line`` if it came from a file, else its index."""
    location = getattr(row, "location", None)
    if location is None:
        return f"rollout {index}", None, None
    path, line = location
    return f"{path}:{line}", path, line


def _check_rollout(row: Any, index: int, vocab_size: int | None = None) -> None:
    """Raise :class:`DataFileError` unless ``row`` is an object with non-empty ``prompt_ids`` and a ``completion_ids``
    list of token ids (ints in ``[0, vocab_size)``) and string-or-null source fields."""
    if not isinstance(row, dict):
        raise DataFileError(f"rollout {index}: expected an object (dict), got {type(row).__name__}")
    where, path, line = _where(row, index)
    allowed = f"[0, {vocab_size})" if vocab_size is not None else "[0, vocab)"
    for key in ("prompt_ids", "completion_ids"):
        if key not in row:
            raise MissingFieldError(
                f"{where}: no field {key!r} (the row has {sorted(row)}); expected an object with prompt_ids and "
                "completion_ids, as `logitmlp eval --save-rollouts` writes it",
                path,
                line,
                key,
            )
        ids = row[key]
        expected = f"expected a {'non-empty ' if key == 'prompt_ids' else ''}list of integer token ids in {allowed}"
        if not isinstance(ids, (list, tuple)) or (key == "prompt_ids" and not ids):
            raise DataFileError(f"{where}: field {key!r} is {json_snippet(ids)}; {expected}", path, line, key)
        bad = next(((p, t) for p, t in enumerate(ids) if type(t) is not int or t < 0), None)  # bool is not int
        if bad is not None:
            position, token = bad
            raise DataFileError(
                f"{where}: field {key!r} holds {json_snippet(token)} at index {position}; {expected}", path, line, key
            )
        if vocab_size is not None and ids and max(ids) >= vocab_size:
            token = max(ids)
            raise DataFileError(
                f"{where}: field {key!r} holds token id {token}, outside [0, {vocab_size}) (the model's vocabulary) at "
                f"index {list(ids).index(token)}; were these rollouts made with another tokenizer?",
                path,
                line,
                key,
            )
    for key in _SOURCE_FIELDS:
        if row.get(key) is not None and not isinstance(row[key], str):
            raise DataFileError(
                f"{where}: field {key!r} is {json_snippet(row[key])}; expected a string or null", path, line, key
            )


def load_rollouts(path: str | os.PathLike, limit: int | None = None) -> list[dict[str, Any]]:
    """Read a rollouts JSONL file (one object per sample, as ``logitmlp eval --save-rollouts`` writes it).

    Every row is checked as it is read (a JSON object, ``prompt_ids`` a non-empty and ``completion_ids`` a list of
    non-negative integers); :func:`analyze_rollouts` later checks the ids against the model's vocabulary and the
    recorded model and tokenizer against its own, naming each row by ``path:line``.

    Args:
        path (`str` or `os.PathLike`): the ``.jsonl`` file.
        limit (`int`, *optional*): keep only the first ``limit`` rollouts (at least 1).

    Returns:
        `list[dict]`: each with at least ``prompt_ids`` and ``completion_ids`` (lists of ints); the other fields
        (``problem_id``, ``sample``, ``policy``, ``completion``, ``answer``, ``correct``, and ``model``,
        ``tokenizer``, ``tokenizer_hash`` in files that record them, see
        :func:`~logitmlp_hf.evaluation.runner.rollout_source`) are kept as they are.

    Raises:
        [`~logitmlp_hf.errors.DataFileError`]: the file holds no rollouts, or a line is not a JSON object with such
        ``prompt_ids`` and ``completion_ids`` (the message names ``path:line``, the field and the value).
    """
    from ..tasks.data import read_jsonl_rows

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    rollouts = []
    for line, row in read_jsonl_rows(path, limit, what="rollouts"):
        row = _FileRow(row)
        row.location = (str(path), line)
        _check_rollout(row, len(rollouts))
        rollouts.append(row)
    return rollouts


def rollout_policies(rollouts: Sequence[dict[str, Any]]) -> list[str]:
    """The ``policy`` names in ``rollouts``, in order of first appearance (rows without one are not counted)."""
    return list(dict.fromkeys(r["policy"] for r in rollouts if r.get("policy") is not None))


def select_policy(
    rollouts: Sequence[dict[str, Any]], policy: str | None, source: str | os.PathLike = "rollouts"
) -> list[dict[str, Any]]:
    """The rollouts of one decoding policy: ``policy``'s, or all when the rollouts come from at most one policy.

    A rollouts file of ``logitmlp eval`` holds every evaluated policy's samples; analysing them under one head
    would mix e.g. a pass@1 head's rollouts with a pass@k head's, so several policies need an explicit choice.

    Raises:
        [`~logitmlp_hf.errors.DataFileError`]: ``policy`` is not in the rollouts, or it is ``None`` and they hold
        several policies (the message lists them).
    """
    names = rollout_policies(rollouts)
    listed = ", ".join(repr(n) for n in names)
    if policy is None:
        if len(names) > 1:
            raise DataFileError(
                f"{source}: holds the rollouts of {len(names)} policies ({listed}); pick the ones to analyse with "
                "--policy NAME (policy=...)",
                source,
                field="policy",
            )
        return list(rollouts)
    if policy not in names:
        raise DataFileError(
            f"{source}: no rollouts of policy {policy!r}; the policies in it are: {listed or 'none recorded'}",
            source,
            field="policy",
        )
    return [r for r in rollouts if r.get("policy") == policy]


def _vocab_size(model: DecodingHeadForCausalLM) -> int:
    """Rows of the base's input embedding: every prompt and completion id is fed to it."""
    return int(model.get_input_embeddings().num_embeddings)


def check_rollouts(
    rollouts: Sequence[dict[str, Any]], model: DecodingHeadForCausalLM, tokenizer, allow_other_model: bool = False
) -> None:
    """Check rollouts against the model and tokenizer about to analyse them, before any forward pass.

    Raises:
        [`~logitmlp_hf.errors.DataFileError`]: a row is malformed, or holds a token id outside the model's vocabulary.
        [`~logitmlp_hf.errors.RolloutsMismatchError`]: a row records another model (``model``, compared when both
            are known) or another vocabulary (``tokenizer_hash``) than ``model`` and ``tokenizer``; skipped when
            ``allow_other_model``.
    """
    from ..evaluation.runner import rollout_source

    vocab_size = _vocab_size(model)
    own = rollout_source(model, tokenizer)
    unrecorded: Counter[str] = Counter()  # per file: rows from files written before the source was recorded
    for i, row in enumerate(rollouts):
        _check_rollout(row, i, vocab_size)
        if isinstance(row, _FileRow) and not any(row.get(key) for key in _SOURCE_FIELDS):
            unrecorded[row.location[0]] += 1
        if allow_other_model:
            continue
        where = _where(row, i)[0]
        recorded = row.get("model")
        if recorded and own["model"] and os.path.normpath(recorded) != os.path.normpath(own["model"]):
            raise RolloutsMismatchError(
                f"{where}: these rollouts were sampled from model {recorded!r}, but the model analysing them is "
                f"{own['model']!r}; the analysis must teacher-force them through the model that sampled them. Load "
                f"{recorded!r} (--base-model, or a head trained on it), or, if both names point to the same weights, "
                "pass allow_other_model=True (--allow-other-model)."
            )
        if row.get("tokenizer_hash") and row["tokenizer_hash"] != own["tokenizer_hash"]:
            raise RolloutsMismatchError(
                f"{where}: these rollouts were tokenized by tokenizer {row.get('tokenizer')!r} (vocabulary "
                f"{row['tokenizer_hash']}), but the tokenizer given is {own['tokenizer']!r} (vocabulary "
                f"{own['tokenizer_hash']}): the same ids would be other tokens. Use the tokenizer that made them, or "
                "pass allow_other_model=True (--allow-other-model) to analyse them anyway."
            )
    for path, count in unrecorded.items():
        logger.warning(
            "%d rollouts of %s do not record the model and tokenizer that made them (written before rollouts recorded "
            "them): cannot check that they come from %s",
            count,
            path,
            own["model"] or "the model analysing them",
        )


# ------------------------------------------------------------------------------------------------ T* solver
T_STAR_BINS = 4096


def _newton_beta(
    points: torch.Tensor,
    log_weights: torch.Tensor | None,
    target: torch.Tensor,
    beta: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    max_iter: int,
    tol: float,
) -> torch.Tensor:
    """Root of ``E_{q_β}[x] − target`` per row, ``q_β ∝ w·exp(β·x)`` over weighted points (``x ≤ 0``).

    Newton steps on β, safeguarded by a bracket ``[lo, hi]`` that every step shrinks (a step leaving it becomes a
    geometric bisection). Rows that have converged (relative change of β ≤ ``tol``) drop out, so the cost is set
    by the slowest rows only. ``log_weights`` is ``None`` for unit weights.
    """
    beta, lo, hi = beta.clone(), lo.clone(), hi.clone()
    n = points.shape[0]
    squares = points.square()
    todo = torch.arange(n, device=points.device)  # rows still iterating
    tiny = torch.finfo(points.dtype).tiny
    for _ in range(max_iter):
        # Full-width passes dominate the cost: index (copy) rows only once some have dropped out.
        every = todo.numel() == n
        x, x_sq = (points, squares) if every else (points[todo], squares[todo])
        b_t = beta[todo]
        exponent = b_t.unsqueeze(-1) * x
        if log_weights is not None:
            exponent += log_weights if every else log_weights[todo]
        q = torch.exp(exponent)
        z = q.sum(-1)
        mean = torch.linalg.vecdot(q, x) / z
        var = (torch.linalg.vecdot(q, x_sq) / z - mean.square()).clamp_min(0)
        grad = mean - target[todo]
        # The derivative increases with β: a positive one means the root lies below β.
        hi_t = torch.where(grad > 0, b_t, hi[todo])
        lo_t = torch.where(grad <= 0, b_t, lo[todo])
        newton = b_t - grad / var.clamp_min(tiny)
        inside = (newton >= lo_t) & (newton <= hi_t) & torch.isfinite(newton)
        new_b = torch.where(inside, newton, (lo_t * hi_t).sqrt())
        done = ((new_b - b_t).abs() <= tol * b_t) | ((hi_t - lo_t) <= tol * lo_t)
        beta[todo], lo[todo], hi[todo] = new_b, lo_t, hi_t
        todo = todo[~done]
        if todo.numel() == 0:
            break
    return beta


def _histogram(ell: torch.Tensor, finite: torch.Tensor | None, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's values (all ``≤ 0``; masked entries already 0) as ``bins`` equal-width bins: (bin mean, log
    count), ``-inf`` when empty. Masked entries count 0 (``finite`` weights the counts; their 0 adds nothing to
    the sums)."""
    n = ell.shape[0]
    low = ell.amin(-1, keepdim=True)  # masked entries are 0 here, never the minimum of a row with any logit < 0
    scale = (bins - 1) / (-low).clamp_min(1e-12)
    index = (ell - low).mul_(scale).long().clamp_(0, bins - 1)  # in place: each full-row pass counts
    index += torch.arange(n, device=ell.device).unsqueeze(-1) * bins
    index = index.view(-1)
    weights = None if finite is None else finite.view(-1).to(ell.dtype)
    counts = torch.bincount(index, weights=weights, minlength=n * bins).view(n, bins).to(ell.dtype)
    sums = torch.bincount(index, weights=ell.view(-1), minlength=n * bins).view(n, bins).to(ell.dtype)
    means = torch.where(counts > 0, sums / counts.clamp_min(1), torch.zeros_like(sums))
    return means, counts.log()


@torch.no_grad()
def effective_temperature(
    warped_logits: torch.Tensor,
    base_logits: torch.Tensor,
    t_min: float = T_MIN,
    t_max: float = T_MAX,
    max_iter: int = 50,
    tol: float = 1e-5,
    dtype: torch.dtype = torch.float32,
    bins: int | None = T_STAR_BINS,
) -> torch.Tensor:
    r"""The temperature ``T*`` minimising ``KL(softmax(warped) ‖ softmax(base/T))`` per row, over ``[t_min, t_max]``.

    In the inverse temperature ``β = 1/T`` the objective is ``const − β·E_w[ℓ] + logsumexp(β·ℓ)``: convex, with
    derivative ``E_{q_β}[ℓ] − E_w[ℓ]`` (monotone in β) and second derivative ``Var_{q_β}[ℓ]``. So the minimiser is
    the unique root of the derivative, found for all rows at once by safeguarded Newton on β. A root outside the
    range gives the nearest bound.

    Speed: ``E_{q_β}[ℓ]`` depends on a row only through the distribution of its logits, so the iterations first
    run on a ``bins``-bin histogram of each row (count and mean logit per bin: exact wherever a bin holds one
    token, as the few top logits that dominate at low temperature do), which costs ~1/12 of a full-vocabulary
    pass per iteration for SmolLM2's 49k vocabulary. Exact Newton steps on the full row then finish from there
    (usually one, as the histogram's root is already within ~1e-4), so the result meets ``tol`` on the exact
    objective either way. ``bins=None`` iterates on the full rows from the start (the reference path).
    When the warp *is* temperature ``T`` the root is exact and ``T*`` recovers ``T`` to ~1e-5 in float32 (pass
    ``dtype=torch.float64`` for ~1e-10).

    Args:
        warped_logits (`torch.Tensor` of shape `(n, vocab)`): the warped logits (``-inf`` allowed where base is).
        base_logits (`torch.Tensor` of shape `(n, vocab)`): the base logits at the same positions.
        t_min, t_max (`float`, *optional*, default to `0.05` and `20.0`): the temperature range searched.
        max_iter (`int`, *optional*, defaults to `50`): iteration cap per stage (bisection alone needs ~30).
        tol (`float`, *optional*, defaults to `1e-5`): relative change of β at which a row has converged.
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`): the precision of the iteration.
        bins (`int`, *optional*, defaults to `4096`): histogram size of the first stage; `None` skips it.

    Returns:
        `torch.Tensor` of shape `(n,)`, float32: ``T*`` per row.
    """
    n = warped_logits.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.float32, device=warped_logits.device)
    base = base_logits.to(dtype)
    warped = warped_logits.to(dtype)
    finite = torch.isfinite(base)
    if bool(finite.all()):
        finite = None  # the common case: no masking passes at all
    # Shift by the max so that β·ℓ ≤ 0: exp never overflows (even at β = 1/t_min). Masked entries become 0 here
    # and get weight 0 (log-weight -inf) in every sum.
    ell = base - base.amax(-1, keepdim=True)
    log_w = None
    if finite is not None:
        ell = torch.where(finite, ell, torch.zeros_like(ell))
        log_w = torch.where(finite, 0.0, float("-inf")).to(dtype)
    target = torch.linalg.vecdot(torch.softmax(warped, dim=-1), ell)  # E_w[ℓ]
    lo = torch.full_like(target, 1.0 / t_max)
    hi = torch.full_like(target, 1.0 / t_min)
    # Start from the ratio of spreads (max − mean): exact for a pure temperature warp (warped = ℓ/T + c), where the
    # objective can be too flat at low T for float32 Newton steps to find the root from afar; between the two
    # slopes for a piecewise warp. Plain sums: torch.std costs ~7 of them on CPU. (Masked entries count as 0 here:
    # only a starting point.)
    w0 = warped if finite is None else torch.where(finite, warped, torch.zeros_like(warped))
    spread_w = w0.amax(-1) - w0.mean(-1)
    beta = (spread_w / (-ell.mean(-1)).clamp_min(1e-12)).clamp(1.0 / t_max, 1.0 / t_min)
    beta = torch.where(torch.isfinite(beta), beta, torch.ones_like(beta))
    if bins is not None and bins < ell.shape[-1]:
        means, log_counts = _histogram(ell, finite, bins)
        beta = _newton_beta(means, log_counts, target, beta, lo, hi, max_iter, tol)
    beta = _newton_beta(ell, log_w, target, beta, lo, hi, max_iter, tol)
    return (1.0 / beta).clamp(t_min, t_max).float()


# ------------------------------------------------------------------------------------------------ the words
def _whitespace_label(text: str) -> str:
    """A visible stand-in for a whitespace-only token (newlines as ``\\n``, anything else as ``␣``)."""
    return "\\n" * text.count("\n") if "\n" in text else "␣"


def words_after(tokenizer, token_ids: Sequence[int], max_tokens: int = 8) -> list[str]:
    r"""For each position ``t`` of ``token_ids``, the word that token ``t`` starts (or continues).

    The word is the text decoded from token ``t`` onwards, leading whitespace dropped, up to the next whitespace
    (at most ``max_tokens`` tokens, never across a special token). A token that is only whitespace is the "word"
    itself, shown as ``\n`` (per newline) or ``␣``: choosing a line break is a decision the head can make too.

    Tokens are decoded one by one (cached per id) to find each word's span; a span whose pieces contain partial
    UTF-8 characters (decoded as U+FFFD) is decoded again as a whole.

    Args:
        tokenizer: a transformers tokenizer.
        token_ids (`Sequence[int]`): one completion's token ids.
        max_tokens (`int`, *optional*, defaults to `8`): longest span looked at.

    Returns:
        `list[str]`: one word per token.
    """
    ids = [int(i) for i in token_ids]
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    cache: dict[int, str] = {}

    def piece(i: int) -> str:
        if i not in cache:
            cache[i] = tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return cache[i]

    words = []
    for t, tok in enumerate(ids):
        text = piece(tok)
        if tok in special:
            words.append(text)
            continue
        if not text.strip():
            words.append(_whitespace_label(text) if text else "")
            continue
        word, end, done = text.lstrip(), t + 1, False
        if any(c.isspace() for c in word):
            done = True
        while not done and end < len(ids) and end - t < max_tokens:
            nxt = ids[end]
            nxt_text = piece(nxt)
            if nxt in special or not nxt_text or nxt_text[0].isspace():
                break
            word += nxt_text
            end += 1
            if any(c.isspace() for c in nxt_text):
                break
        if "\ufffd" in word:  # a multi-byte character split across tokens: decode the span as a whole
            word = tokenizer.decode(ids[t:end], skip_special_tokens=False, clean_up_tokenization_spaces=False).lstrip()
        words.append(word.split()[0] if word.split() else word)
    return words


# ------------------------------------------------------------------------------------------------ collection
@dataclass
class TokenAnalysis:
    r"""
    Per-completion-token results of :func:`analyze_rollouts` (numpy arrays of length ``n_tokens``, in rollout
    order, then position order).

    kl (`np.ndarray`, float32): KL(warp‖base) in nats.
    base_top1 (`np.ndarray`, float32): the base distribution's top-1 probability.
    s1, s2 (`np.ndarray`, float32): tail and head slopes (LogitMLP heads; NaN for other head types).
    b_rel (`np.ndarray`, float32): the breakpoint below the max in stds, ``(max ℓ − b)/std ℓ`` ∈ (0, 4) (LogitMLP).
    t_star (`np.ndarray`, float32): effective temperature at active positions (``kl > active_kl``), NaN elsewhere.
    token_id, rollout_index, position (`np.ndarray`, int64): the completion token, its rollout and its index in it.
    top_ids (`np.ndarray` of shape `(n_tokens, 6)`, int64): the base's top-6 token ids. The warp is strictly
        increasing, so they are also the warp's top-6 (ties aside).
    top_base_probs, top_warp_probs (`np.ndarray` of shape `(n_tokens, 6)`, float32): their probabilities.
    words (`list[str]`): the word each token starts (see :func:`words_after`).
    active_kl (`float`): the KL threshold for "active".
    rollouts (`list[dict]`): the rollouts analysed (as given).
    decisions (`dict[str, np.ndarray]`): every head's own per-token choices (``s1``/``s2``/``b`` for LogitMLP,
        ``temperature``/``top_p`` for AutoDeco, ``p_<action>`` for the decoding adapter), float32.
    """

    kl: np.ndarray
    base_top1: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    b_rel: np.ndarray
    t_star: np.ndarray
    token_id: np.ndarray
    rollout_index: np.ndarray
    position: np.ndarray
    top_ids: np.ndarray
    top_base_probs: np.ndarray
    top_warp_probs: np.ndarray
    words: list[str]
    active_kl: float = 0.01
    rollouts: list[dict[str, Any]] = field(default_factory=list, repr=False)
    decisions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.kl.shape[0])

    @property
    def active(self) -> np.ndarray:
        """Boolean mask of the active positions (``kl > active_kl``)."""
        return self.kl > self.active_kl

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a JSON-serialisable dict (concentration, bins, T*)."""
        return {
            "n_rollouts": len(self.rollouts),
            "n_tokens": len(self),
            "active_kl": self.active_kl,
            "n_active": int(self.active.sum()),
            "concentration": kl_concentration(self.kl),
            "kl_by_top1_bin": kl_by_top1_bin(self.kl, self.base_top1),
            "effective_temperature": effective_temperature_summary(self.t_star),
            "mean_s1": float(np.mean(self.s1)) if len(self) else float("nan"),
            "mean_s2": float(np.mean(self.s2)) if len(self) else float("nan"),
            "mean_decisions": {k: float(np.mean(v)) if len(v) else float("nan") for k, v in self.decisions.items()},
        }


def length_order(rollouts: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of the rollouts with a non-empty completion, shortest prompt + completion first (little padding)."""
    return sorted(
        (i for i, r in enumerate(rollouts) if len(r["completion_ids"]) > 0),
        key=lambda i: len(rollouts[i]["prompt_ids"]) + len(rollouts[i]["completion_ids"]),
    )


def teacher_forcing_batch(prompts: list[list[int]], completions: list[list[int]], pad_id: int):
    """One left-padded teacher-forcing batch, as ``generate`` would have laid it out.

    Returns:
        ``(input_ids, attention_mask, position_ids, keep, rows, cols)``: the model inputs (position ids follow the
        attention mask), the ``logits_to_keep`` to pass, and the (row, kept index) whose logits score each completion
        token, in order.
    """
    total, keep, rows, cols = _batch_positions([len(p) for p in prompts], [len(c) for c in completions])
    input_ids = torch.full((len(prompts), total), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), total), dtype=torch.long)
    for r, (p, c) in enumerate(zip(prompts, completions)):
        seq = p + c
        input_ids[r, total - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        attention_mask[r, total - len(seq) :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
    return input_ids, attention_mask, position_ids, keep, rows, cols


def _batch_positions(prompt_lens: list[int], completion_lens: list[int]):
    """Left-padded layout of one batch: total length, kept-logit count and (row, kept index) of each token."""
    total = max(p + c for p, c in zip(prompt_lens, completion_lens))
    keep = max(completion_lens) + 1
    rows, cols = [], []
    for r, c in enumerate(completion_lens):
        # Completion token j sits at absolute index total − c + j; its logits are at the index before, which is
        # kept index keep − 1 − c + j (the last kept position predicts past the end and is unused).
        rows.extend([r] * c)
        cols.extend(range(keep - 1 - c, keep - 1))
    return total, keep, torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)


@torch.no_grad()
def _reduce_rows(
    warped: torch.Tensor, base: torch.Tensor, active_kl: float, chunk_rows: int
) -> dict[str, torch.Tensor]:
    """Per-row reductions of full-vocabulary logits, ``chunk_rows`` rows at a time to bound the temporaries."""
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("kl", "top1", "b_max", "b_std", "t", "ids", "pb", "pw")}
    for start in range(0, warped.shape[0], chunk_rows):
        w, b = warped[start : start + chunk_rows].float(), base[start : start + chunk_rows].float()
        # One log-softmax per distribution serves the KL and the candidates' probabilities.
        log_w, log_b = torch.log_softmax(w, -1), torch.log_softmax(b, -1)
        kl = kl_from_log_probs(log_w, log_b)
        stats = logit_statistics(b, check_finite=False)
        top_ids = b.topk(N_CANDIDATES, dim=-1).indices
        t_star = torch.full_like(kl, float("nan"))
        active = kl > active_kl
        if bool(active.any()):
            t_star[active] = effective_temperature(w[active], b[active])
        out["kl"].append(kl)
        out["top1"].append(log_b.gather(-1, top_ids[:, :1]).squeeze(-1).exp())
        out["b_max"].append(stats.max)
        out["b_std"].append(stats.std)
        out["t"].append(t_star)
        out["ids"].append(top_ids)
        out["pb"].append(log_b.gather(-1, top_ids).exp())
        out["pw"].append(log_w.gather(-1, top_ids).exp())
    return {k: torch.cat(v) for k, v in out.items()}


@torch.no_grad()
def analyze_rollouts(
    model: DecodingHeadForCausalLM,
    tokenizer,
    rollouts: Iterable[dict[str, Any]],
    batch_size: int = 16,
    active_kl: float = 0.01,
    chunk_rows: int = 512,
    allow_other_model: bool = False,
    progress: bool = True,
) -> TokenAnalysis:
    r"""Teacher-force rollouts through base + head and collect per-completion-token statistics.

    Rollouts are sorted by length and grouped into left-padded batches (little padding, so little wasted compute);
    only the last ``max completion + 1`` positions of each batch get logits (``logits_to_keep``), and position
    ``t``'s logits are scored against completion token ``t``. Position ids follow the attention mask, as in
    ``generate``, so a padded row sees exactly the positions it was sampled with.

    Args:
        model (:class:`DecodingHeadForCausalLM`): base + a per-token head (LogitMLP, AutoDeco, the decoding
            adapter), the head enabled.
        tokenizer: the base's tokenizer (used for the pad id and to decode words).
        rollouts (`Iterable[dict]`): objects with ``prompt_ids`` and ``completion_ids`` (see :func:`load_rollouts`).
        batch_size (`int`, *optional*, defaults to `16`): rollouts per forward pass.
        active_kl (`float`, *optional*, defaults to `0.01`): KL above which a position is "active" (gets a ``T*``).
        chunk_rows (`int`, *optional*, defaults to `512`): positions reduced at once after each forward.
        allow_other_model (`bool`, *optional*, defaults to `False`): analyse rollouts that record another model or
            tokenizer than ``model`` and ``tokenizer`` (e.g. the same weights under another path).
        progress (`bool`, *optional*, defaults to `True`): Show a tqdm progress bar (rollouts) on stderr.

    Returns:
        :class:`TokenAnalysis`.

    Raises:
        [`~logitmlp_hf.errors.DataFileError`], [`~logitmlp_hf.errors.RolloutsMismatchError`]: see
        :func:`check_rollouts`, which runs first.

    Example:

    ```python
    >>> analysis = analyze_rollouts(model, tokenizer, load_rollouts("rollouts.jsonl"))
    >>> kl_concentration(analysis.kl)["top_share"]["0.1"]
    ```
    """
    rollouts = list(rollouts)
    if not model.decoding_head.per_token:
        raise ValueError(f"{type(model).__name__} decides once per sequence; per-token analysis does not apply")
    if not model.head_enabled:
        logger.warning("the head is disabled: every KL will be 0")
    check_rollouts(rollouts, model, tokenizer, allow_other_model=allow_other_model)
    device = model.get_output_embeddings().weight.device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = length_order(rollouts)
    pieces: dict[str, list[torch.Tensor]] = {}
    bar = progress_bar(total=len(order), desc="analyze", unit="rollout", disable=not progress)
    for n_batch, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start : start + batch_size]
        completions = [list(rollouts[i]["completion_ids"]) for i in idx]
        input_ids, attention_mask, position_ids, keep, rows, cols = teacher_forcing_batch(
            [list(rollouts[i]["prompt_ids"]) for i in idx], completions, pad_id
        )
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=position_ids.to(device),
            logits_to_keep=keep,
            output_base_logits=True,
            output_decisions=True,
            use_cache=False,
        )
        rows, cols = rows.to(device), cols.to(device)
        reduced = _reduce_rows(out.logits[rows, cols], out.base_logits[rows, cols], active_kl, chunk_rows)
        decisions = {k: v[rows, cols].float() for k, v in (out.decisions or {}).items()}
        nan = torch.full(rows.shape, float("nan"), device=device)
        for key in ("s1", "s2", "b"):
            reduced[key] = decisions.get(key, nan)
        for key, value in model.decoding_head.scalar_decisions(decisions).items():
            reduced[f"decision/{key}"] = value
        reduced["rollout"] = torch.tensor(idx, device=device)[rows]
        reduced["position"] = torch.cat([torch.arange(len(c)) for c in completions]).to(device)
        reduced["token"] = torch.cat([torch.tensor(c, dtype=torch.long) for c in completions]).to(device)
        del out  # the full-vocabulary logits: the only large tensors, freed before the next batch
        for key, value in reduced.items():
            pieces.setdefault(key, []).append(value.cpu())
        logger.info("analyzed batch %d (%d/%d rollouts)", n_batch + 1, min(start + batch_size, len(order)), len(order))
        bar.update(len(idx))
    bar.close()

    if not pieces:
        empty = np.zeros(0, dtype=np.float32)
        empty_i = np.zeros(0, dtype=np.int64)
        empty_k = np.zeros((0, N_CANDIDATES), dtype=np.float32)
        return TokenAnalysis(
            empty,
            empty,
            empty,
            empty,
            empty,
            empty,
            empty_i,
            empty_i,
            empty_i,
            empty_k.astype(np.int64),
            empty_k,
            empty_k,
            [],
            active_kl,
            rollouts,
        )
    cat = {k: torch.cat(v) for k, v in pieces.items()}
    # Back to rollout order (batches were length-sorted), then position order within each rollout.
    perm = torch.from_numpy(np.lexsort((cat["position"].numpy(), cat["rollout"].numpy())))
    cat = {k: v[perm] for k, v in cat.items()}
    b_rel = (cat["b_max"] - cat["b"]) / cat["b_std"].clamp_min(1e-12)
    words_by_rollout = {i: words_after(tokenizer, rollouts[i]["completion_ids"]) for i in sorted(set(order))}
    words = [words_by_rollout[int(r)][int(p)] for r, p in zip(cat["rollout"].tolist(), cat["position"].tolist())]
    return TokenAnalysis(
        kl=cat["kl"].numpy().astype(np.float32),
        base_top1=cat["top1"].numpy().astype(np.float32),
        s1=cat["s1"].numpy().astype(np.float32),
        s2=cat["s2"].numpy().astype(np.float32),
        b_rel=b_rel.numpy().astype(np.float32),
        t_star=cat["t"].numpy().astype(np.float32),
        token_id=cat["token"].numpy().astype(np.int64),
        rollout_index=cat["rollout"].numpy().astype(np.int64),
        position=cat["position"].numpy().astype(np.int64),
        top_ids=cat["ids"].numpy().astype(np.int64),
        top_base_probs=cat["pb"].numpy().astype(np.float32),
        top_warp_probs=cat["pw"].numpy().astype(np.float32),
        words=words,
        active_kl=active_kl,
        rollouts=rollouts,
        decisions={
            k.split("/", 1)[1]: v.numpy().astype(np.float32) for k, v in cat.items() if k.startswith("decision/")
        },
    )


# ------------------------------------------------------------------------------------- pure array analyses
def kl_concentration(
    kl: np.ndarray | Sequence[float],
    top_percents: Sequence[float] = DEFAULT_TOP_PERCENTS,
    zero_threshold: float = 1e-5,
) -> dict[str, Any]:
    """How concentrated the total KL is on few positions.

    Args:
        kl (`np.ndarray`): KL(warp‖base) per position.
        top_percents (`Sequence[float]`, *optional*, defaults to `(0.01, 0.1, 1, 10)`):
            For each ``x``, the share of the total KL held by the top ``x`` % of positions (at least one position).
        zero_threshold (`float`, *optional*, defaults to `1e-5`): positions below it count as "untouched".

    Returns:
        `dict`: ``n_positions``, ``total_kl``, ``mean_kl``, ``top_share`` (``{"0.01": share, ...}``, keyed by the
        percent as a string so it survives JSON), ``fraction_below`` (share of positions with KL below
        ``zero_threshold``), ``zero_threshold`` and ``percent_for_half`` (the smallest % of positions holding
        half the KL). Shares are NaN when the total KL is 0.
    """
    kl = np.clip(np.asarray(kl, dtype=np.float64), 0.0, None)  # round-off can make a KL of ~0 slightly negative
    n = kl.size
    result: dict[str, Any] = {"n_positions": int(n), "zero_threshold": zero_threshold}
    if n == 0:
        return {
            **result,
            "total_kl": 0.0,
            "mean_kl": float("nan"),
            "fraction_below": float("nan"),
            "top_share": {str(x): float("nan") for x in top_percents},
            "percent_for_half": float("nan"),
        }
    desc = np.sort(kl)[::-1]
    cumulative = np.cumsum(desc)
    total = float(cumulative[-1])
    shares = {}
    for x in top_percents:
        k = max(1, math.ceil(n * x / 100.0))
        shares[str(x)] = float(cumulative[k - 1] / total) if total > 0 else float("nan")
    half = int(np.searchsorted(cumulative, 0.5 * total) + 1) if total > 0 else n
    return {
        **result,
        "total_kl": total,
        "mean_kl": total / n,
        "top_share": shares,
        "fraction_below": float((kl < zero_threshold).mean()),
        "percent_for_half": 100.0 * half / n if total > 0 else float("nan"),
    }


def lorenz_curve(kl: np.ndarray | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Concentration curve: fraction of positions (highest KL first) vs the share of total KL they hold.

    Returns:
        `tuple[np.ndarray, np.ndarray]`: ``(position_fraction, kl_share)``, both starting at 0 and ending at 1.
    """
    kl = np.sort(np.clip(np.asarray(kl, dtype=np.float64), 0.0, None))[::-1]
    if kl.size == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    total = kl.sum()
    share = np.cumsum(kl) / total if total > 0 else np.linspace(0, 1, kl.size + 1)[1:]
    x = np.arange(kl.size + 1) / kl.size
    return x, np.concatenate(([0.0], share))


def kl_by_top1_bin(
    kl: np.ndarray | Sequence[float],
    base_top1: np.ndarray | Sequence[float],
    edges: Sequence[float] = DEFAULT_TOP1_BINS,
) -> list[dict[str, Any]]:
    """KL statistics per bin of the base top-1 probability (where does the head act: confident or unsure spots?).

    Bins are ``[edges[i], edges[i+1])``, the last one closed on the right, so a top-1 probability of exactly 1 is
    counted.

    Args:
        kl (`np.ndarray`): KL(warp‖base) per position.
        base_top1 (`np.ndarray`): the base top-1 probability at the same positions.
        edges (`Sequence[float]`, *optional*): bin edges, defaults to :data:`DEFAULT_TOP1_BINS`.

    Returns:
        `list[dict]`: per bin ``label``, ``lo``, ``hi``, ``count``, ``mean`` and ``p95`` (NaN for an empty bin).
    """
    kl = np.asarray(kl, dtype=np.float64)
    top1 = np.asarray(base_top1, dtype=np.float64)
    if kl.shape != top1.shape:
        raise ValueError(f"kl has shape {kl.shape} but base_top1 has shape {top1.shape}")
    bins = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        mask = (top1 >= lo) & ((top1 <= hi) if last else (top1 < hi))
        values = kl[mask]
        bins.append(
            {
                "label": f"[{lo:g}, {hi:g}{']' if last else ')'}",
                "lo": float(lo),
                "hi": float(hi),
                "count": int(mask.sum()),
                "mean": float(values.mean()) if values.size else float("nan"),
                "p95": float(np.percentile(values, 95)) if values.size else float("nan"),
            }
        )
    return bins


def effective_temperature_summary(t_star: np.ndarray | Sequence[float]) -> dict[str, float]:
    """Count, quartiles and the share of cooling (``T* < 1``) vs heating (``T* > 1``) among active positions.

    Args:
        t_star (`np.ndarray`): ``T*`` per position, NaN where inactive (as in :class:`TokenAnalysis`).
    """
    t = np.asarray(t_star, dtype=np.float64)
    t = t[np.isfinite(t)]
    if t.size == 0:
        return {
            "n_active": 0,
            "median": float("nan"),
            "q25": float("nan"),
            "q75": float("nan"),
            "fraction_below_1": float("nan"),
            "fraction_above_1": float("nan"),
        }
    q25, median, q75 = np.percentile(t, [25, 50, 75])
    return {
        "n_active": int(t.size),
        "median": float(median),
        "q25": float(q25),
        "q75": float(q75),
        "fraction_below_1": float((t < 1).mean()),
        "fraction_above_1": float((t > 1).mean()),
    }


def _decode(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def top_kl_positions(analysis: TokenAnalysis, tokenizer, n: int = 10, context_chars: int = 60) -> list[dict[str, Any]]:
    """The ``n`` highest-KL positions with the top-6 candidates under base and warp, and the head's ``(s1, s2)``.

    Args:
        analysis (:class:`TokenAnalysis`): collected statistics.
        tokenizer: decodes the candidates and the context.
        n (`int`, *optional*, defaults to `10`): how many positions.
        context_chars (`int`, *optional*, defaults to `60`): characters of completion text shown before the token.

    Returns:
        `list[dict]`: per position ``rollout``, ``problem_id``, ``position``, ``kl``, ``s1``, ``s2``, ``b_rel``,
        ``base_top1``, ``t_star``, ``token`` (the sampled one), ``context`` and ``candidates`` (a list of
        ``{"token", "base_prob", "warp_prob"}``, most likely first).
    """
    if len(analysis) == 0:
        return []
    order = np.argsort(-analysis.kl, kind="stable")[:n]
    rows = []
    for i in order:
        r, p = int(analysis.rollout_index[i]), int(analysis.position[i])
        rollout = analysis.rollouts[r] if r < len(analysis.rollouts) else {}
        completion = rollout.get("completion_ids", [])
        context = _decode(tokenizer, completion[:p])[-context_chars:] if completion else ""
        rows.append(
            {
                "rollout": r,
                "problem_id": rollout.get("problem_id"),
                "position": p,
                "kl": float(analysis.kl[i]),
                "s1": float(analysis.s1[i]),
                "s2": float(analysis.s2[i]),
                "b_rel": float(analysis.b_rel[i]),
                "base_top1": float(analysis.base_top1[i]),
                "t_star": float(analysis.t_star[i]),
                "token": _decode(tokenizer, [int(analysis.token_id[i])]),
                "context": context,
                "candidates": [
                    {"token": _decode(tokenizer, [int(t)]), "base_prob": float(pb), "warp_prob": float(pw)}
                    for t, pb, pw in zip(analysis.top_ids[i], analysis.top_base_probs[i], analysis.top_warp_probs[i])
                ],
            }
        )
    return rows


def following_words(
    words: Sequence[str], active: np.ndarray | Sequence[bool], top: int | None = 50
) -> list[dict[str, Any]]:
    """Frequency table of the words that follow (start at) active positions.

    Args:
        words (`Sequence[str]`): the word at each position (:attr:`TokenAnalysis.words`).
        active (`np.ndarray` of bool): which positions are active.
        top (`int`, *optional*, defaults to `50`): keep the most frequent ``top`` words (``None``: all).

    Returns:
        `list[dict]`: ``word``, ``count`` (at active positions), ``share`` (of active positions) and
        ``active_rate`` (fraction of all the word's occurrences that are active: high means the head acts on this
        word specifically, not just because it is common), most frequent first.
    """
    active = np.asarray(active, dtype=bool)
    if len(words) != active.size:
        raise ValueError(f"{len(words)} words but {active.size} positions")
    all_counts = Counter(words)
    counts = Counter(w for w, a in zip(words, active) if a)
    n_active = max(1, int(active.sum()))
    return [
        {"word": w, "count": c, "share": c / n_active, "active_rate": c / all_counts[w]}
        for w, c in counts.most_common(top)
    ]


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@torch.no_grad()
def generate_arithmetic_rollouts(
    model: DecodingHeadForCausalLM,
    tokenizer,
    n_problems: int = 8,
    n_samples: int = 4,
    max_new_tokens: int = 96,
    seed: int = 0,
    max_operand: int = 50,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Sample rollouts of "What is a + b?" (chat template) from the warp, in the rollouts-file format.

    The answer is the last number in the completion; ``correct`` compares it with ``a + b``. Meant for a quick,
    offline look at a head; real analyses should use rollouts saved by ``logitmlp eval --save-rollouts``.
    ``progress`` shows a tqdm bar (problems) on stderr.
    """
    from ..evaluation.runner import rollout_source

    rng = random.Random(seed)
    problems = [(rng.randint(1, max_operand), rng.randint(1, max_operand)) for _ in range(n_problems)]
    device = model.get_output_embeddings().weight.device
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [tokenizer.eos_token_id])
    source = rollout_source(model, tokenizer)
    rollouts = []
    for problem_id, (a, b) in enumerate(progress_bar(problems, desc="sample", unit="problem", disable=not progress)):
        messages = [{"role": "user", "content": f"What is {a} + {b}?"}]
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = messages[0]["content"]
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        torch.manual_seed(seed * 100003 + problem_id)
        out = model.generate(
            input_ids=torch.tensor([prompt_ids], device=device).repeat(n_samples, 1),
            attention_mask=torch.ones(n_samples, len(prompt_ids), dtype=torch.long, device=device),
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
        for sample, seq in enumerate(out[:, len(prompt_ids) :].tolist()):
            cut = next((i + 1 for i, t in enumerate(seq) if t in eos), len(seq))  # through the first EOS
            completion_ids = seq[:cut]
            completion = tokenizer.decode(completion_ids, skip_special_tokens=True)
            numbers = _NUMBER.findall(completion)
            answer = numbers[-1] if numbers else None
            rollouts.append(
                {
                    "problem_id": problem_id,
                    "sample": sample,
                    "policy": "head",
                    "prompt_ids": prompt_ids,
                    "completion_ids": completion_ids,
                    "completion": completion,
                    "answer": answer,
                    "correct": answer is not None and float(answer) == a + b,
                    **source,
                }
            )
    return rollouts
