"""`LogitMLPHead`: the tiny MLP that picks ``(s1, s2, b)`` per token."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...features import LogitFeatures, LogitStatistics, logit_statistics
from ...logit_summary import LogitSummaryLayout
from ..base import Decisions, DecodingContext, DecodingHead, HeadTokenStats
from .configuration import LogitMLPConfig
from .logprobs import summary_token_logprobs, warped_token_logprobs
from .transform import WarpParameters, warp_logits, warp_parameters


class LogitMLPHead(DecodingHead):
    r"""
    ``φ([h; max ℓ, mean ℓ, std ℓ]) → (s̃1, s̃2, b̃)``: Linear(d + 3 → w) → ReLU → Linear(w → 3).

    The parameters are kept in float32 whatever the base's dtype (the head is ~0.1% of the model; bf16 would round
    the small output weights of the near-identity init to zero). Inputs are cast to the head's dtype.

    Args:
        config (:class:`LogitMLPConfig`): sizes, bounds and init scale.

    Example:

    ```python
    >>> import torch
    >>> from logitmlp_hf import LogitMLPConfig, LogitMLPHead
    >>> head = LogitMLPHead(LogitMLPConfig(hidden_size=64, vocab_size=100))
    >>> warped, params = head.warp(torch.randn(2, 64), torch.randn(2, 100))
    >>> warped.shape, params.s1.shape
    (torch.Size([2, 100]), torch.Size([2]))
    ```
    """

    config_class = LogitMLPConfig
    weights_name = "logitmlp_head.safetensors"

    def __init__(self, config: LogitMLPConfig) -> None:
        super().__init__(config)
        self.slope_bound = config.slope_bound
        self.breakpoint_scale = config.breakpoint_scale
        self.init_std = config.init_std
        self.fc_in = nn.Linear(config.hidden_size + 3, config.head_hidden_size)
        self.fc_out = nn.Linear(config.head_hidden_size, 3)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Near-identity init: PyTorch's default for the first layer, N(0, init_std) weights and zero bias out."""
        self.fc_in.reset_parameters()
        nn.init.normal_(self.fc_out.weight, mean=0.0, std=self.init_std)
        nn.init.zeros_(self.fc_out.bias)

    def raw_outputs(self, hidden_states: torch.Tensor, stats: LogitStatistics) -> torch.Tensor:
        """``(s̃1, s̃2, b̃)`` of shape ``(..., 3)`` from hidden states ``(..., d)`` and logit statistics."""
        self.check_hidden(hidden_states)
        dtype = self.fc_in.weight.dtype
        features = torch.cat((hidden_states.to(dtype), stats.as_features().to(dtype)), dim=-1)
        return self.fc_out(torch.relu(self.fc_in(features)))

    def forward(
        self, hidden_states: torch.Tensor, logits: torch.Tensor, stats: LogitStatistics | None = None
    ) -> WarpParameters:
        """``(s1, s2, b)`` for each position.

        Args:
            hidden_states (`torch.Tensor` of shape `(..., hidden_size)`): post-final-norm hidden states.
            logits (`torch.Tensor` of shape `(..., vocab_size)`): the base logits at the same positions.
            stats (:class:`LogitStatistics`, *optional*): precomputed statistics of ``logits``.
        """
        if stats is None:
            stats = logit_statistics(logits)
        raw = self.raw_outputs(hidden_states, stats)
        return warp_parameters(raw, stats, self.slope_bound, self.breakpoint_scale)

    def warp(
        self, hidden_states: torch.Tensor, logits: torch.Tensor, context: DecodingContext | None = None
    ) -> tuple[torch.Tensor, WarpParameters]:
        """Warped logits (float32) and the ``(s1, s2, b)`` that produced them."""
        params = self(hidden_states, logits)
        return warp_logits(logits, *params), params

    # ----------------------------------------------------------------------------- the DecodingHead interface
    def decide(
        self, hidden_states: torch.Tensor, stats: LogitStatistics, context: DecodingContext | None = None
    ) -> Decisions:
        """``{"s1", "s2", "b"}`` per position."""
        return warp_parameters(
            self.raw_outputs(hidden_states, stats), stats, self.slope_bound, self.breakpoint_scale
        )._asdict()

    def sampling_logits(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """``f(ℓ) = s1·ℓ + (s2 − s1)·ReLU(ℓ − b)`` (:func:`~logitmlp_hf.heads.logitmlp.transform.warp_logits`)."""
        return warp_logits(logits, decisions["s1"], decisions["s2"], decisions["b"])

    def sampling_logits_(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """The warp written into ``logits`` (float32): one temporary instead of three."""
        return warp_logits(logits, decisions["s1"], decisions["s2"], decisions["b"], inplace=True)

    def log_values(self, decisions: Decisions, features: LogitFeatures) -> dict[str, torch.Tensor]:
        """s1, s2, and the breakpoint as stds below the max (in ``(0, breakpoint_scale)``)."""
        below_max = (features.max - decisions["b"]) / features.std.clamp_min(1e-6)
        return {"warp/s1": decisions["s1"], "warp/s2": decisions["s2"], "warp/b_below_max_in_std": below_max}

    def logit_summary_layout(self, temperature: float = 1.0) -> LogitSummaryLayout | None:
        """The default :class:`~logitmlp_hf.logit_summary.LogitSummaryLayout` when it covers this head's slopes at
        ``temperature`` (``s/T`` within ``[1/10, 10]``) and its breakpoint range; ``None`` otherwise."""
        layout = LogitSummaryLayout()
        low, high = 1.0 / (self.slope_bound * temperature), self.slope_bound / temperature
        return layout if layout.covers(low, high, self.breakpoint_scale) else None

    def token_logprobs(
        self,
        hidden: torch.Tensor,
        logit_features: torch.Tensor,
        targets: torch.Tensor,
        unembedding: Any,
        temperature: float = 1.0,
        chunk_size: int = 128,
        context: DecodingContext | None = None,
        logit_summary: torch.Tensor | None = None,
    ) -> HeadTokenStats:
        """The analytic-gradient path of :func:`~logitmlp_hf.heads.logitmlp.logprobs.warped_token_logprobs` (one
        vocabulary pass per chunk, nothing of size tokens × vocab kept for the backward), or with ``logit_summary``
        :func:`~logitmlp_hf.heads.logitmlp.logprobs.summary_token_logprobs` (no vocabulary pass for certified rows).
        """
        if logit_summary is not None:
            layout = self.logit_summary_layout(temperature)
            if layout is None:
                raise ValueError(
                    f"logit summaries do not cover this head (slope_bound={self.slope_bound} at temperature "
                    f"{temperature}, breakpoint_scale={self.breakpoint_scale}); pass logit_summary=None"
                )
            return summary_token_logprobs(
                self, hidden, logit_features, logit_summary, targets, unembedding, layout, temperature, chunk_size
            )
        return warped_token_logprobs(self, hidden, logit_features, targets, unembedding, temperature, chunk_size)
