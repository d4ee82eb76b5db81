"""`LogitMLPHead`: the tiny MLP that picks ``(s1, s2, b)`` per token."""

from __future__ import annotations

import torch
from torch import nn

from .configuration_logitmlp import LogitMLPConfig
from .transform import LogitStatistics, WarpParameters, logit_statistics, warp_logits, warp_parameters


class LogitMLPHead(nn.Module):
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

    def __init__(self, config: LogitMLPConfig) -> None:
        super().__init__()
        self.hidden_size = config.hidden_size
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
        if hidden_states.shape[-1] != self.hidden_size:
            raise ValueError(
                f"hidden states have size {hidden_states.shape[-1]} but the head was built for hidden_size="
                f"{self.hidden_size}"
            )
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

    def warp(self, hidden_states: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, WarpParameters]:
        """Warped logits (float32) and the ``(s1, s2, b)`` that produced them."""
        params = self(hidden_states, logits)
        return warp_logits(logits, *params), params
