"""AutoDeco (arXiv:2510.26697): a head that predicts a temperature and a top-p for every token.

What follows the released code (``Zacks917/AutoDeco``, ``model/templlm_auto.py``):

- temperature head ``Linear(d → w) → ReLU → Linear(w → 1) → sigmoid × max_temperature`` (``w = 256``, max 2),
  clamped below at ``min_temperature`` (0.01);
- top-p head ``Linear(d + k → w) → ReLU → Linear(w → 1) → sigmoid`` on ``[h; T̂ (detached); statistics]``;
- the differentiable top-p used for the policy's log-prob: with ``q = softmax(ℓ/T̂)`` sorted in decreasing order and
  ``c`` its *inclusive* cumulative sum, the mask ``m = exp(−α·ReLU(c − p̂))`` (``α = 30``) and
  ``p̃ = q·m / Σ q·m``. ``T̂`` is not detached there, so the temperature head also learns from it.

Where this implementation differs, and why:

- The top-p head's statistics are ``T̂``, ``(max ℓ − mean ℓ)/T̂`` and ``std ℓ/T̂`` (the scaled spread of the
  logits) instead of the code's max-prob / entropy / variance / top-5 mass of ``softmax(ℓ/T̂)``: those need a
  vocabulary pass per token before the head can run, and training here works from cached features (``h`` and the
  logits' max, mean, std), so the head must be computable from them.
- Training is RLVR with :class:`~logitmlp_hf.DecodingHeadGRPOTrainer` (as every head in this package), with the soft
  top-p above as the policy log-prob, not AutoDeco's supervised cross-entropy on reference tokens.
- ``generate()`` samples with the *hard* rule (transformers' ``TopPLogitsWarper`` semantics, per row), as AutoDeco
  does at inference. The relaxation differs from it near the nucleus edge and, because the cumulative sum is
  inclusive, also penalises the top token when its probability alone exceeds ``p̂``; the trainer's importance
  ratios are therefore between relaxed policies, which is what the source trains.
- The heads start near "no change" (``T̂ ≈ 1``, ``p̂ ≈ init_top_p = 0.98``), so RL starts from the base model.
"""

from __future__ import annotations

import math

import torch
from huggingface_hub.dataclasses import strict
from torch import nn

from ..features import LogitStatistics
from ..modeling import DecodingHeadForCausalLM
from ..sampling_rules import apply_sampling_rules
from .base import Decisions, DecodingContext, DecodingHead
from .configuration import DecodingHeadConfig, check_number
from .registry import register_decoding_head


@strict
class AutoDecoConfig(DecodingHeadConfig):
    r"""
    Configuration of an AutoDeco temperature + top-p head (and of the base it sits on; see
    :class:`~logitmlp_hf.DecodingHeadConfig` for the shared fields).

    Args:
        max_temperature (`float`, *optional*, defaults to `2.0`): the temperature is ``sigmoid(·) × max_temperature``.
        min_temperature (`float`, *optional*, defaults to `0.01`): lower clamp of the temperature.
        top_p_steepness (`float`, *optional*, defaults to `30.0`): ``α`` of the soft top-p mask.
        init_top_p (`float`, *optional*, defaults to `0.98`): top-p at initialisation (the output bias).
        init_std (`float`, *optional*, defaults to `2.5e-4`): std of both output layers' initial weights.
    """

    model_type = "autodeco"

    max_temperature: float = 2.0
    min_temperature: float = 0.01
    top_p_steepness: float = 30.0
    init_top_p: float = 0.98
    init_std: float = 2.5e-4

    def validate_architecture(self) -> None:
        """Part of `@strict` validation."""
        super().validate_architecture()
        check_number("max_temperature", self.max_temperature, above=0.0, at_most=1e3)
        check_number("min_temperature", self.min_temperature, above=0.0, below=self.max_temperature)
        check_number("top_p_steepness", self.top_p_steepness, above=0.0, at_most=1e6)
        check_number("init_top_p", self.init_top_p, above=0.0, below=1.0)
        check_number("init_std", self.init_std, at_least=0.0, at_most=1.0)

    @property
    def num_head_parameters(self) -> int:
        d, w = self.hidden_size, self.head_hidden_size
        return (d * w + w + w + 1) + ((d + 3) * w + w + w + 1)


class AutoDecoHead(DecodingHead):
    r"""
    Per-token temperature ``T̂`` and top-p ``p̂`` from the hidden state (see the module docstring).

    Example:

    ```python
    >>> import torch
    >>> from logitmlp_hf import AutoDecoConfig, AutoDecoHead
    >>> head = AutoDecoHead(AutoDecoConfig(hidden_size=64, vocab_size=100))
    >>> logits, decisions = head.warp(torch.randn(2, 64), torch.randn(2, 100))
    >>> sorted(decisions)
    ['temperature', 'top_p']
    ```
    """

    config_class = AutoDecoConfig
    weights_name = "autodeco_head.safetensors"

    def __init__(self, config: AutoDecoConfig) -> None:
        super().__init__(config)
        w = config.head_hidden_size
        self.max_temperature = config.max_temperature
        self.min_temperature = config.min_temperature
        self.steepness = config.top_p_steepness
        self.init_top_p = config.init_top_p
        self.init_std = config.init_std
        self.temperature_head = nn.Sequential(nn.Linear(config.hidden_size, w), nn.ReLU(), nn.Linear(w, 1))
        self.top_p_head = nn.Sequential(nn.Linear(config.hidden_size + 3, w), nn.ReLU(), nn.Linear(w, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default for the first layers; N(0, init_std) output weights with biases giving T̂ = 1 (when
        ``max_temperature = 2``, sigmoid(0)·2) and ``p̂ = init_top_p``."""
        for head in (self.temperature_head, self.top_p_head):
            head[0].reset_parameters()
            nn.init.normal_(head[2].weight, mean=0.0, std=self.init_std)
        t0 = 1.0 / self.max_temperature  # sigmoid(bias) · max = 1
        nn.init.constant_(self.temperature_head[2].bias, math.log(t0 / (1 - t0)) if t0 < 1 else 0.0)
        nn.init.constant_(self.top_p_head[2].bias, math.log(self.init_top_p / (1 - self.init_top_p)))

    def decide(
        self, hidden_states: torch.Tensor, stats: LogitStatistics, context: DecodingContext | None = None
    ) -> Decisions:
        """``{"temperature", "top_p"}`` per position."""
        h = hidden_states.to(self.dtype)
        temperature = (torch.sigmoid(self.temperature_head(h)).squeeze(-1) * self.max_temperature).clamp(
            min=self.min_temperature
        )
        t = temperature.detach().float()
        spread = torch.stack((t, (stats.max - stats.mean) / t, stats.std / t), dim=-1).to(self.dtype)
        top_p = torch.sigmoid(self.top_p_head(torch.cat((h, spread), dim=-1))).squeeze(-1)
        return {"temperature": temperature.float(), "top_p": top_p.float()}

    def sampling_logits(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """``ℓ/T̂`` with hard top-p ``p̂`` per row (transformers' rule)."""
        return apply_sampling_rules(logits, temperature=decisions["temperature"], top_p=decisions["top_p"])

    def policy_logits(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """``ℓ/T̂ − α·ReLU(c − p̂)``: the log of AutoDeco's soft-masked probabilities, up to normalisation."""
        scaled = logits.float() / decisions["temperature"].unsqueeze(-1)
        q = scaled.softmax(dim=-1)
        sorted_q, order = q.sort(dim=-1, descending=True)
        excess = (sorted_q.cumsum(dim=-1) - decisions["top_p"].unsqueeze(-1)).relu()
        penalty = torch.empty_like(excess).scatter_(-1, order, excess)
        return scaled - self.steepness * penalty

    def log_values(self, decisions: Decisions, logit_features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"autodeco/temperature": decisions["temperature"], "autodeco/top_p": decisions["top_p"]}


class AutoDecoForCausalLM(DecodingHeadForCausalLM):
    r"""
    A frozen causal LM with an AutoDeco head: each token is sampled at the head's temperature with the head's top-p.

    Loads, saves, pushes, generates and trains exactly as :class:`~logitmlp_hf.LogitMLPForCausalLM`.

    Example:

    ```python
    >>> from logitmlp_hf import AutoDecoForCausalLM
    >>> model = AutoDecoForCausalLM.from_base_model(base)
    >>> out = model.generate(**inputs, do_sample=True, max_new_tokens=64)
    ```
    """

    config_class = AutoDecoConfig
    head_class = AutoDecoHead
    head_attribute = "autodeco_head"

    def _identity_decisions(self, logits: torch.Tensor) -> Decisions:
        ones = torch.ones(logits.shape[:-1], device=logits.device)
        return {"temperature": ones, "top_p": ones}


register_decoding_head(
    AutoDecoForCausalLM,
    card_template="autodeco_head.md",
    card_title="An **AutoDeco head** (per-token temperature and top-p)",
)


__all__ = ["AutoDecoConfig", "AutoDecoForCausalLM", "AutoDecoHead"]
