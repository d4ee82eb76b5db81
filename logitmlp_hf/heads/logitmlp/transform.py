"""The LogitMLP transform as pure tensor functions.

Every integration (the transformers wrapper, the `LogitsProcessor`, the trainer's log-probs, vLLM) is a thin
adapter over these functions and :func:`~logitmlp_hf.features.logit_statistics` (max / mean / std of the logits over
their finite entries), so the maths lives in exactly one place:

1. :func:`warp_parameters` — the head's raw outputs ``(s̃1, s̃2, b̃)`` mapped to the bounded slopes and breakpoint
   ``s_i = exp(log(bound)·(2σ(s̃_i) − 1))`` and ``b = max − scale·std·σ(b̃)``.
2. :func:`warp_logits` — ``f(ℓ) = s1·ℓ + (s2 − s1)·ReLU(ℓ − b)``, applied element-wise.

All functions accept any leading shape (``(vocab,)``, ``(batch, vocab)``, ``(batch, positions, vocab)``, ...);
the statistics and warp parameters have the logits' shape without the last dimension.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ...features import LogitStatistics, warp_kl  # noqa: F401  (warp_kl: re-exported, its old home)


class WarpParameters(NamedTuple):
    """Slopes below (``s1``) and above (``s2``) the breakpoint ``b``; each has the logits' leading shape."""

    s1: torch.Tensor
    s2: torch.Tensor
    b: torch.Tensor


def warp_parameters(
    raw: torch.Tensor,
    stats: LogitStatistics,
    slope_bound: float = 4.0,
    breakpoint_scale: float = 4.0,
) -> WarpParameters:
    """Map the head's raw outputs to ``(s1, s2, b)`` with the bounded parameterisation.

    ``s_i = exp(log(slope_bound) · (2σ(s̃_i) − 1))`` lies in ``(1/slope_bound, slope_bound)``, symmetric around 1 in
    log space (``2σ(x) − 1 = tanh(x/2)``, used here for accuracy near 0), and
    ``b = max − breakpoint_scale · std · σ(b̃)`` lies in ``(max − scale·std, max)``.

    Args:
        raw (`torch.Tensor` of shape `(..., 3)`): ``(s̃1, s̃2, b̃)``.
        stats (:class:`LogitStatistics`): statistics of the logits being warped.
        slope_bound (`float`, *optional*, defaults to `4.0`): the slopes' bound; must be > 1.
        breakpoint_scale (`float`, *optional*, defaults to `4.0`): how many stds below the max ``b`` may go.
    """
    raw = raw.float()
    log_slopes = math.log(slope_bound) * torch.tanh(0.5 * raw[..., :2])
    slopes = log_slopes.exp()
    b = stats.max - breakpoint_scale * stats.std * torch.sigmoid(raw[..., 2])
    return WarpParameters(slopes[..., 0], slopes[..., 1], b)


def warp_logits(
    logits: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, b: torch.Tensor, inplace: bool = False
) -> torch.Tensor:
    """``f(ℓ) = s1·ℓ + (s2 − s1)·ReLU(ℓ − b)``, element-wise, in float32.

    Evaluated from its two linear pieces, ``s1·ℓ`` (below the breakpoint) and ``s2·ℓ + (s1 − s2)·b`` (above it), as
    their maximum where ``s2 ≥ s1`` and their minimum where ``s2 < s1``. This is the same function, but (i) each piece
    is a composition of monotone roundings and so is their max/min, so in floating point two logits can tie but never
    swap (the literal form adds an increasing and a decreasing term when ``s2 < s1``, and rounding can swap
    neighbours), and (ii) equal slopes give exactly ``s·ℓ``: temperature and the identity are bit-exact.
    ``-inf`` stays ``-inf``. The result is float32 even for bf16/fp16 logits: slopes up to 4 would otherwise overflow
    fp16 and round away the small differences that the policy ratio in training depends on.

    Args:
        logits (`torch.Tensor` of shape `(..., vocab_size)`).
        s1, s2, b (`torch.Tensor` of shape `(...)` or scalars): per-row slopes and breakpoint.
        inplace (`bool`, *optional*, defaults to `False`): write the result into ``logits`` when they are float32
            (into their float32 copy otherwise) instead of a new tensor; no autograd through ``logits``. For
            inference hot paths that own their logits (vLLM's ``compute_logits``).
    """
    x = logits.float()
    # Per-row parameters broadcast over the vocabulary dimension; scalars broadcast as they are.
    s1, s2, b = (torch.as_tensor(v, dtype=torch.float32, device=x.device) for v in (s1, s2, b))
    s1, s2, b = (v.unsqueeze(-1) if v.dim() else v for v in (s1, s2, b))
    # With sign = +1 where s2 ≥ s1 (f is convex: the larger branch) and −1 elsewhere (concave: the smaller one),
    # f = sign·max(sign·s1·ℓ, sign·(s2·ℓ + (s1 − s2)·b)); the sign flips are exact. Four vectorised passes and no
    # comparison mask: 3 ms instead of 7.5 ms for 64 × 49,152 on CPU.
    sign = torch.where(s2 >= s1, 1.0, -1.0)
    upper = torch.addcmul(sign * (s1 - s2) * b, x, sign * s2)
    if inplace:
        return torch.maximum(x.mul_(sign * s1), upper, out=x).mul_(sign)
    return torch.maximum(x * (sign * s1), upper).mul_(sign)
