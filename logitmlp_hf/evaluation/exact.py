"""Exact success probabilities on tasks with one right completion, and the best per-position warp (the oracle).

When a problem has exactly one right completion ``a_1 … a_L`` (end-of-sequence included), the probability that one
sample is right is ``q = Π_t p(a_t | prompt, a_<t)``: the product of the sampling distribution's probabilities
along the *reference path*. Every per-problem metric of ``k`` independent samples then follows without sampling
noise: mean accuracy ``q`` and best@k ``1 − (1 − q)^k``. This holds for any policy that reshapes each next-token
distribution from the model's state on that path: a temperature, a static rule, a per-token head.

It does not apply to tasks with many right completions (free-form reasoning): use sampled evaluation there.

The oracle searches the warp family ``softmax(s1·ℓ + (s2 − s1)·ReLU(ℓ − b))`` with the head's own bounds
(``s_i ∈ [1/B, B]``, ``b = max − 4·std·u``, ``u ∈ [0, 1]``) exhaustively on a grid, one warp per answer *position*
(shared by all problems), by coordinate ascent over positions on the mean of the chosen objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..features import logit_statistics
from ..heads.logitmlp.transform import warp_logits


__all__ = [
    "ReferencePaths",
    "exact_metrics",
    "oracle_position_warps",
    "reference_paths",
    "success_probability",
]


@dataclass
class ReferencePaths:
    """Base logits (and, for a model with a head, its sampling logits and decisions) along each reference path.

    Args:
        base_logits (`torch.Tensor` of shape `(N, L, V)`): float32, at the ``L`` completion positions.
        targets (`torch.Tensor` of shape `(N, L)`): The right token at each position.
        head_logits (`torch.Tensor` of shape `(N, L, V)`, *optional*): The head's sampling logits.
        decisions (`dict[str, torch.Tensor]`, *optional*): The head's scalar decisions per position, each `(N, L)`.
    """

    base_logits: torch.Tensor
    targets: torch.Tensor
    head_logits: torch.Tensor | None = None
    decisions: dict[str, torch.Tensor] | None = None


@torch.no_grad()
def reference_paths(model, tokenizer, dataset, completion: Callable[[str], str] | None = None, batch_size: int = 64):
    """Teacher-force each problem's reference completion (its ``answer``, then end-of-sequence) through ``model``.

    Args:
        model: A causal LM, or a [`~logitmlp_hf.DecodingHeadForCausalLM`] (then the head's logits and decisions are
            collected too).
        tokenizer: Its tokenizer (chat template and EOS).
        dataset (`datasets.Dataset`): ``prompt`` (chat messages) and ``answer`` columns.
        completion (`Callable[[str], str]`, *optional*): Maps an answer to the completion text (default: itself).
        batch_size (`int`, *optional*, defaults to `64`): Problems per forward pass.

    Returns:
        [`ReferencePaths`]. All reference completions must have the same number of tokens.
    """
    from ..modeling import DecodingHeadForCausalLM

    with_head = isinstance(model, DecodingHeadForCausalLM) and model.head_enabled
    prompts = [
        tokenizer(
            tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False), add_special_tokens=False
        )["input_ids"]
        for p in dataset["prompt"]
    ]
    answers = [(completion or str)(a) for a in dataset["answer"]]
    completions = [tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for a in answers]
    lengths = {len(c) for c in completions}
    if len(lengths) != 1:
        raise ValueError(f"reference completions have different token counts {sorted(lengths)}; exact paths need one")
    (length,) = lengths
    base, head, targets, decisions = [], [], [], {}
    device = model.get_output_embeddings().weight.device
    for start in range(0, len(prompts), batch_size):
        rows = [p + c for p, c in zip(prompts[start : start + batch_size], completions[start : start + batch_size])]
        width = max(map(len, rows))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
        kwargs = dict(input_ids=ids, attention_mask=mask, position_ids=position_ids)
        if with_head:
            out = model(**kwargs, output_base_logits=True, output_decisions=True)
            base.append(out.base_logits[:, -length - 1 : -1].float().cpu())
            head.append(out.logits[:, -length - 1 : -1].float().cpu())
            rows_here = ids.shape[0]
            flat = {
                key: value[:, -length - 1 : -1].reshape(rows_here * length, *value.shape[2:])
                for key, value in out.decisions.items()
                if torch.is_tensor(value) and value.dim() >= 2
            }
            for key, value in model.decoding_head.scalar_decisions(flat).items():
                decisions.setdefault(key, []).append(value.reshape(rows_here, length).float().cpu())
        else:
            base.append(model(**kwargs).logits[:, -length - 1 : -1].float().cpu())
        targets.append(ids[:, -length:].cpu())
    return ReferencePaths(
        base_logits=torch.cat(base),
        targets=torch.cat(targets),
        head_logits=torch.cat(head) if with_head else None,
        decisions={k: torch.cat(v) for k, v in decisions.items()} if with_head else None,
    )


def success_probability(sampling_logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """``q`` per problem: the probability that one sample equals the reference, from logits along the path."""
    log_p = torch.log_softmax(sampling_logits.double(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
    return log_p.sum(-1).exp().numpy()


def exact_metrics(q: np.ndarray | Sequence[float], k: int) -> dict[str, np.ndarray]:
    """Per-problem ``mean_accuracy`` (``q``) and ``best@k`` (``1 − (1 − q)^k``) of ``k`` independent samples."""
    q = np.asarray(q, dtype=float)
    return {"mean_accuracy": q, "best@k": 1.0 - (1.0 - q) ** k}


def _warp_grid(slope_bound: float, n_slopes: int, n_breakpoints: int) -> torch.Tensor:
    slopes = torch.exp(torch.linspace(-math.log(slope_bound), math.log(slope_bound), n_slopes, dtype=torch.float64))
    u = torch.linspace(0.0, 1.0, n_breakpoints, dtype=torch.float64)
    s1, s2, uu = torch.meshgrid(slopes, slopes, u, indexing="ij")
    return torch.stack([s1.flatten(), s2.flatten(), uu.flatten()], dim=-1)  # (G, 3)


@dataclass
class OracleWarps:
    """The best warp per position: ``s1``, ``s2``, ``u`` (``b = max − 4·std·u``) arrays of shape `(L,)`, and ``q``."""

    s1: np.ndarray
    s2: np.ndarray
    u: np.ndarray
    q: np.ndarray
    sampling_logits: torch.Tensor


def oracle_position_warps(
    paths: ReferencePaths,
    objective: str = "best@k",
    k: int = 8,
    slope_bound: float = 4.0,
    n_slopes: int = 25,
    n_breakpoints: int = 21,
    rounds: int = 4,
) -> OracleWarps:
    """The best warp per completion position (same for every problem) for ``objective``, by exhaustive grid search.

    Args:
        paths ([`ReferencePaths`]): The base logits along the reference paths.
        objective (`str`, *optional*, defaults to `"best@k"`): ``"best@k"`` or ``"mean_accuracy"``.
        k (`int`, *optional*, defaults to `8`): The ``k`` of best@k.
        slope_bound (`float`, *optional*, defaults to `4.0`): The slopes' bound ``B``.
        n_slopes, n_breakpoints (`int`): Grid points per slope (log-spaced) and for ``u``.
        rounds (`int`, *optional*, defaults to `4`): Coordinate-ascent sweeps over the positions.

    Returns:
        `OracleWarps`.
    """
    if objective not in ("best@k", "mean_accuracy"):
        raise ValueError(f"objective must be 'best@k' or 'mean_accuracy', got {objective!r}")
    logits = paths.base_logits.double()
    n, length, _ = logits.shape
    grid = _warp_grid(slope_bound, n_slopes, n_breakpoints)
    stats = logit_statistics(logits)
    # log p(target) per grid warp, per problem, per position: (G, N, L)
    table = torch.empty(len(grid), n, length, dtype=torch.float64)
    for j in range(length):
        ell = logits[:, j]  # (N, V)
        b = stats.max[:, j][None, :] - 4.0 * stats.std[:, j][None, :] * grid[:, 2:3]  # (G, N)
        warped = warp_logits(ell[None], grid[:, 0:1], grid[:, 1:2], b).double()  # (G, N, V)
        table[:, :, j] = torch.log_softmax(warped, -1).gather(
            -1, paths.targets[None, :, j, None].expand(len(grid), n, 1)
        )[..., 0]
    identity = int(((grid[:, 0] - 1).abs() + (grid[:, 1] - 1).abs()).argmin())
    choice = [identity] * length

    def score(log_q: torch.Tensor) -> torch.Tensor:  # (G, N) → (G,)
        q = log_q.exp()
        return q.mean(-1) if objective == "mean_accuracy" else (1 - (1 - q) ** k).mean(-1)

    for _ in range(rounds):
        for j in range(length):
            rest = sum(table[choice[i], :, i] for i in range(length) if i != j)
            choice[j] = int(score(table[:, :, j] + rest).argmax())
    chosen = grid[choice]
    b = stats.max - 4.0 * stats.std * chosen[:, 2][None, :]
    warped = warp_logits(logits, chosen[:, 0][None, :], chosen[:, 1][None, :], b).float()
    q = sum(table[choice[i], :, i] for i in range(length)).exp().numpy()
    return OracleWarps(
        s1=chosen[:, 0].numpy(), s2=chosen[:, 1].numpy(), u=chosen[:, 2].numpy(), q=q, sampling_logits=warped
    )
