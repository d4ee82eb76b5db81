"""Advantage estimators over groups of rollouts of the same prompt.

Rewards arrive as a ``(num_groups, group_size)`` tensor (TRL lays a prompt's completions out contiguously).

- :func:`group_mean_advantages` — pass@1 / DAPO: ``r − mean(group)``, optionally divided by the group's (or the
  batch's) std, as TRL's ``scale_rewards`` does.
- :func:`passk_advantages` — the analytical pass@k advantage of Chen et al. 2025 ("Pass@k Training for Adaptively
  Balancing Exploration and Exploitation of Large Reasoning Models", arXiv:2508.10751; reference implementation
  RUCAIBox/Passk_Training ``code/passk_adv.py``). The group's objective is pass@k, the expected max reward of a random
  k-subset; a rollout's advantage is the mean group reward of the k-subsets that contain it minus the mean over all
  k-subsets, divided by the Bernoulli std of the subset max. With ``n`` rollouts of which ``c`` are correct::

      ρ   = 1 − C(n−c, k) / C(n, k)                          (pass@k of the group)
      σ   = sqrt(ρ (1 − ρ))
      A⁺  = (1 − ρ) / (σ + ε)                                (a correct rollout: every subset with it succeeds)
      A⁻  = (1 − ρ − C(n−c−1, k−1) / C(n−1, k−1)) / (σ + ε)  (an incorrect one)

  Groups that are all correct, all wrong, or have fewer than ``k`` wrong rollouts (every subset succeeds) get 0.
"""

from __future__ import annotations

import math

import torch


def group_mean_advantages(rewards: torch.Tensor, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """``r − mean`` per group, divided by the group std (``"group"``), the batch std (``"batch"``) or nothing.

    Args:
        rewards (`torch.Tensor` of shape `(num_groups, group_size)`).
        scale (`str`, *optional*, defaults to `"group"`): ``"group"``, ``"batch"`` or ``"none"`` (TRL's
            ``scale_rewards`` values; DAPO and Dr. GRPO argue for ``"none"`` or ``"batch"``).
    """
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale == "group":
        return centred / (rewards.std(dim=1, keepdim=True) + eps)
    if scale == "batch":
        return centred / (rewards.std() + eps)
    if scale == "none":
        return centred
    raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")


def _comb_ratio(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """``C(a, k) / C(b, k)`` for integer tensors ``a ≤ b``, as a product (no huge factorials); 0 where ``a < k``."""
    ratio = torch.ones_like(a, dtype=torch.float64)
    for j in range(k):
        ratio = ratio * (a - j).clamp_min(0).double() / (b - j).double()
    return torch.where(a >= k, ratio, torch.zeros_like(ratio))


def passk_advantages(rewards: torch.Tensor, k: int, correct_threshold: float = 0.5, eps: float = 1e-6) -> torch.Tensor:
    """The analytical pass@k advantage for each rollout (see the module docstring).

    Args:
        rewards (`torch.Tensor` of shape `(num_groups, group_size)`):
            A rollout counts as correct when its reward is ``>= correct_threshold`` (so additive shaping such as an
            overlong penalty does not change correctness).
        k (`int`): the k of pass@k, ``1 <= k <= group_size``. ``k = 1`` reduces to a group-mean baseline scaled by
            the Bernoulli std.
    """
    n = rewards.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= group size; got k={k}, group size {n}")
    correct = rewards >= correct_threshold
    c = correct.sum(dim=1, keepdim=True)
    n_t = torch.full_like(c, n)
    wrong = n_t - c
    rho = 1.0 - _comb_ratio(wrong, n_t, k)
    sigma = (rho * (1.0 - rho)).sqrt()
    if k == 1:
        all_fail_with_i = torch.ones_like(rho)  # a 1-subset containing a wrong rollout always fails
    else:
        all_fail_with_i = _comb_ratio((wrong - 1).clamp_min(0), n_t - 1, k - 1)
    a_pos = (1.0 - rho) / (sigma + eps)
    a_neg = (1.0 - rho - all_fail_with_i) / (sigma + eps)
    adv = torch.where(correct, a_pos, a_neg)
    degenerate = (c == 0) | (c == n) | (wrong < k)
    return torch.where(degenerate, torch.zeros_like(adv), adv).to(rewards.dtype)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate from ``n`` samples with ``c`` correct (Chen et al. 2021), in product form."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - j) / (n - j) for j in range(k))
