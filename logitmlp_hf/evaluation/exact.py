"""Exact success probabilities on tasks with one right completion.

When a problem has exactly one right completion ``a_1 … a_L`` (end-of-sequence included), the probability that one
sample is right is ``q = Π_t p(a_t | prompt, a_<t)``: the product of the sampling distribution's probabilities
along the *reference path*. Every per-problem metric of ``k`` independent samples then follows without sampling
noise: mean accuracy ``q`` and best@k ``1 − (1 − q)^k``. This holds for any policy that reshapes each next-token
distribution from the model's state on that path: a temperature, a static rule, a per-token head.

It does not apply to tasks with many right completions (free-form reasoning): use sampled evaluation there.

The best warp of the LogitMLP family per position (the oracle) is searched on these paths by
[`~logitmlp_hf.heads.logitmlp.oracle.oracle_position_warps`].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


__all__ = [
    "ReferencePaths",
    "exact_metrics",
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
