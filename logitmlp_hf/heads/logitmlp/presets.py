"""Named members of the warp family: what fixed decoding rules look like as ``(s1, s2, b)``.

These are for documentation, tests and analysis (e.g. "which temperature is this head closest to?"), not for
decoding in production: transformers' own `TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper` and
`MinPLogitsWarper` do that.

- Temperature ``T`` is exact: ``s1 = s2 = 1/T`` (the breakpoint is irrelevant).
- Top-k, top-p and min-p are limits. Put ``b`` at the edge of the kept set, keep the head's slope ``s2 = 1`` (the
  kept tokens' relative probabilities are untouched) and make the *tail slope* ``s1`` large: relative to the
  breakpoint a tail token moves to ``s1·(ℓ − b)``, so as ``s1 → ∞`` (tail temperature → 0) its probability
  vanishes and softmax(f(ℓ)) becomes exactly the truncated, renormalised base distribution. A trained head's slopes
  are bounded (``s1 < 4`` by default) and its breakpoint lies in ``(max − 4·std, max)``, so it can only approximate
  these rules; :func:`preset_parameters` takes the slope as an argument so tests can show the convergence.
"""

from __future__ import annotations

import math

import torch

from .transform import WarpParameters, warp_logits


PRESETS = ("temperature", "top_k", "top_p", "min_p")


def _between_kept_and_dropped(kept_min: torch.Tensor, dropped_max: torch.Tensor) -> torch.Tensor:
    # A breakpoint strictly between the smallest kept and the largest dropped logit keeps every kept token above it
    # (slope 1) and every dropped one below it (steep tail slope), whatever ties the vocabulary has.
    return torch.where(torch.isfinite(dropped_max), 0.5 * (kept_min + dropped_max), kept_min - 1.0)


def preset_parameters(name: str, logits: torch.Tensor, value: float, tail_slope: float = 4.0) -> WarpParameters:
    """``(s1, s2, b)`` for the named fixed rule at every row of ``logits``.

    Args:
        name (`str`): one of ``"temperature"``, ``"top_k"``, ``"top_p"``, ``"min_p"``.
        logits (`torch.Tensor` of shape `(..., vocab_size)`): the base logits the rule is applied to.
        value (`float`): ``T``, ``k``, ``p`` or ``min_p``.
        tail_slope (`float`, *optional*, defaults to `4.0`):
            ``s1`` for the truncation rules. 4 is the largest a default head can produce; the exact rule is the
            limit ``tail_slope → ∞``.
    """
    x = logits.detach().float()
    lead = x.shape[:-1]
    one = torch.ones(lead, dtype=torch.float32, device=x.device)
    if name == "temperature":
        if value <= 0:
            raise ValueError(f"temperature must be > 0, got {value}")
        return WarpParameters(one / value, one / value, x.amax(-1))
    if name == "top_k":
        k = int(value)
        if not 1 <= k <= x.shape[-1]:
            raise ValueError(f"top_k must be in [1, {x.shape[-1]}], got {value}")
        top = torch.topk(x, min(k + 1, x.shape[-1]), dim=-1).values
        dropped = top[..., k] if k < x.shape[-1] else torch.full(lead, float("-inf"), device=x.device)
        b = _between_kept_and_dropped(top[..., k - 1], dropped)
    elif name == "top_p":
        if not 0 < value <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {value}")
        sorted_logits = torch.sort(x, dim=-1, descending=True).values
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Keep the smallest prefix whose mass reaches p (the top token is always kept), as TopPLogitsWarper does.
        n_keep = ((cumulative - sorted_logits.softmax(-1)) < value).sum(-1).clamp_min(1)
        kept_min = sorted_logits.gather(-1, (n_keep - 1).unsqueeze(-1)).squeeze(-1)
        padded = torch.cat([sorted_logits, torch.full_like(sorted_logits[..., :1], float("-inf"))], dim=-1)
        dropped = padded.gather(-1, n_keep.unsqueeze(-1)).squeeze(-1)
        b = _between_kept_and_dropped(kept_min, dropped)
    elif name == "min_p":
        if not 0 < value <= 1:
            raise ValueError(f"min_p must be in (0, 1], got {value}")
        # p_i ≥ min_p · p_max  ⇔  ℓ_i ≥ max + log(min_p)
        b = x.amax(-1) + math.log(value)
    else:
        raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
    return WarpParameters(torch.full_like(one, tail_slope), one, b)


def apply_preset(name: str, logits: torch.Tensor, value: float, tail_slope: float = 4.0) -> torch.Tensor:
    """Warped logits for the named rule; see :func:`preset_parameters`."""
    return warp_logits(logits, *preset_parameters(name, logits, value, tail_slope))
