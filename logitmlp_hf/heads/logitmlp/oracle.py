"""The oracle: the best LogitMLP warp per completion position, by exhaustive search on reference paths.

On a task with one right completion (see :mod:`logitmlp_hf.evaluation.exact`), the chance that a sample is right is
the product of the right tokens' probabilities along the reference path, so the best warp of the family
``softmax(s1·ℓ + (s2 − s1)·ReLU(ℓ − b))`` with the head's own bounds (``s_i ∈ [1/B, B]``,
``b = max − 4·std·u``, ``u ∈ [0, 1]``) can be searched exactly: on a grid, one warp per *position* (shared by all
problems, as a head that could tell positions apart but not problems would choose), by coordinate ascent over
positions on the mean of the objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...features import logit_statistics
from .transform import warp_logits


__all__ = ["OracleWarps", "oracle_position_warps"]


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
    base_logits: torch.Tensor,
    targets: torch.Tensor,
    objective: str = "best@k",
    k: int = 8,
    slope_bound: float = 4.0,
    n_slopes: int = 25,
    n_breakpoints: int = 21,
    rounds: int = 4,
) -> OracleWarps:
    """The best warp per completion position (same for every problem) for ``objective``, by exhaustive grid search.

    Args:
        base_logits (`torch.Tensor` of shape `(N, L, V)`): The base logits along the reference paths
            ([`~logitmlp_hf.evaluation.exact.ReferencePaths`]).
        targets (`torch.Tensor` of shape `(N, L)`): The right token at each position.
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
    logits = base_logits.double()
    n, length, _ = logits.shape
    grid = _warp_grid(slope_bound, n_slopes, n_breakpoints)
    stats = logit_statistics(logits)
    # log p(target) per grid warp, per problem, per position: (G, N, L)
    table = torch.empty(len(grid), n, length, dtype=torch.float64)
    for j in range(length):
        ell = logits[:, j]  # (N, V)
        b = stats.max[:, j][None, :] - 4.0 * stats.std[:, j][None, :] * grid[:, 2:3]  # (G, N)
        warped = warp_logits(ell[None], grid[:, 0:1], grid[:, 1:2], b).double()  # (G, N, V)
        table[:, :, j] = torch.log_softmax(warped, -1).gather(-1, targets[None, :, j, None].expand(len(grid), n, 1))[
            ..., 0
        ]
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
