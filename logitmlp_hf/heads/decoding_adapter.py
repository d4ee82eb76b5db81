"""The token-level learned decoding adapter (Su et al., "Learning Adaptive LLM Decoding", arXiv:2603.09065).

A small MLP reads the final hidden state (and, with ``budget_conditioning``, the token budget left) and picks one of
a discrete set of decoding actions for the next token: by default {greedy, T = 0.5, T = 1.0, T = 1.25}.

What follows the source (its project page; the paper's method section was not available to us): a 3-layer MLP on a
frozen LLM, the action set above, the input ``[e_t; b_t]`` with ``b_t = b − t`` the budget left, REINFORCE on
verifiable rewards with an entropy regulariser, and masking positions where the base model's max probability exceeds
0.95. Our own choices, where the source gives no detail:

- **Log-prob of a token.** The action is a latent choice; the token's probability under the adapter is the mixture
  ``p(y) = Σ_a π(a|x) p_a(y)``. Its log-gradient is ``Σ_a P(a|x, y) ∇ log π(a|x)``, the Rao–Blackwellised
  REINFORCE update over actions (the expectation of ``∇ log π(a_t|x_t)`` given the sampled token), so the adapter
  trains with the same trainer, importance ratios and clipping as every other head, needs no record of which action
  was drawn, and sampling from the mixture is exactly "draw an action, then a token". With a one-hot policy the
  mixture *is* that action's decoding.
- **Budget features:** ``(b − t)/b`` (the fraction left), so one adapter serves any ``max_new_tokens``.
- **Masked positions** (base max-prob > ``confidence_mask``) are removed from the loss; decoding still uses the
  adapter there.
- **Widths** 256-256, ReLU; the output starts at zero (a uniform policy over actions), as a fresh REINFORCE policy.
- **Entropy regulariser:** ``entropy_coef · H(π(·|x_t))`` is added to the maximised objective per position.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from torch import nn

from ..features import LogitFeatures, LogitStatistics
from ..modeling import DecodingHeadForCausalLM
from ..sampling_rules import temperature_logits
from .base import Decisions, DecodingContext, DecodingHead
from .configuration import DecodingHeadConfig, check_bool, check_choice, check_list, check_number
from .registry import register_decoding_head


ACTION_SELECTIONS = ("sample", "argmax")
MAX_ACTIONS = 256


@strict
class DecodingAdapterConfig(DecodingHeadConfig):
    r"""
    Configuration of the token-level decoding adapter (see :class:`~logitmlp_hf.DecodingHeadConfig` for the shared
    fields).

    Args:
        action_temperatures (`list[float]`, *optional*, defaults to `[0.0, 0.5, 1.0, 1.25]`):
            The discrete actions, as temperatures; ``0`` is greedy.
        budget_conditioning (`bool`, *optional*, defaults to `False`):
            Also read the fraction of ``max_new_tokens`` left at each position.
        confidence_mask (`float`, *optional*, defaults to `0.95`):
            Positions whose base max probability exceeds this are left out of the training loss (``1`` keeps all).
        entropy_coef (`float`, *optional*, defaults to `0.01`): weight of the action-entropy regulariser.
        action_selection (`str`, *optional*, defaults to `"sample"`):
            ``"sample"`` draws the action from the policy (the distribution training optimises); ``"argmax"``
            takes the most likely action at every token.
    """

    model_type = "decoding_adapter"

    action_temperatures: list[float] | None = None
    budget_conditioning: bool = False
    confidence_mask: float = 0.95
    entropy_coef: float = 0.01
    action_selection: str = "sample"

    def __post_init__(self, **kwargs) -> None:
        if self.action_temperatures is None:
            self.action_temperatures = [0.0, 0.5, 1.0, 1.25]
        self._check_action_temperatures()  # before float(): a string must not become a ValueError of float()
        self.action_temperatures = [float(t) for t in self.action_temperatures]
        super().__post_init__(**kwargs)

    def _check_action_temperatures(self) -> None:
        check_list("action_temperatures", self.action_temperatures, max_length=MAX_ACTIONS)
        for i, t in enumerate(self.action_temperatures):
            check_number(f"action_temperatures[{i}]", t, at_least=0.0, at_most=1e3)  # 0 is greedy

    def validate_architecture(self) -> None:
        """Part of `@strict` validation."""
        super().validate_architecture()
        self._check_action_temperatures()
        check_bool("budget_conditioning", self.budget_conditioning)
        check_number("confidence_mask", self.confidence_mask, above=0.0, at_most=1.0)
        check_number("entropy_coef", self.entropy_coef, at_least=0.0)
        check_choice("action_selection", self.action_selection, ACTION_SELECTIONS)

    @property
    def action_names(self) -> list[str]:
        return ["greedy" if t == 0 else f"T={t:g}" for t in self.action_temperatures]

    @property
    def num_head_parameters(self) -> int:
        d, w, a = (
            self.hidden_size + int(self.budget_conditioning),
            self.head_hidden_size,
            len(self.action_temperatures),
        )
        return d * w + w + w * w + w + w * a + a


class DecodingAdapterHead(DecodingHead):
    r"""
    π(action | h[, budget left]) over a discrete set of temperatures; tokens come from the chosen action's rule.

    Example:

    ```python
    >>> import torch
    >>> from logitmlp_hf import DecodingAdapterConfig, DecodingAdapterHead
    >>> head = DecodingAdapterHead(DecodingAdapterConfig(hidden_size=64, vocab_size=100))
    >>> logits, decisions = head.warp(torch.randn(2, 64), torch.randn(2, 100))
    >>> decisions["action_log_probs"].exp().sum(-1)
    tensor([1.0000, 1.0000])
    ```
    """

    config_class = DecodingAdapterConfig
    weights_name = "decoding_adapter.safetensors"

    def __init__(self, config: DecodingAdapterConfig) -> None:
        super().__init__(config)
        w = config.head_hidden_size
        self.budget_conditioning = config.budget_conditioning
        self.confidence_mask = config.confidence_mask
        self.entropy_coef = config.entropy_coef
        self.action_selection = config.action_selection
        self.action_names = config.action_names
        self.temperature_values = list(config.action_temperatures)
        self.register_buffer(
            "action_temperatures", torch.tensor(config.action_temperatures, dtype=torch.float32), persistent=False
        )
        self.policy = nn.Sequential(
            nn.Linear(config.hidden_size + int(config.budget_conditioning), w),
            nn.ReLU(),
            nn.Linear(w, w),
            nn.ReLU(),
            nn.Linear(w, len(config.action_temperatures)),
        )
        nn.init.zeros_(self.policy[-1].weight)
        nn.init.zeros_(self.policy[-1].bias)

    @property
    def uses_context(self) -> bool:  # type: ignore[override]
        return self.budget_conditioning

    def decide(
        self, hidden_states: torch.Tensor, stats: LogitStatistics, context: DecodingContext | None = None
    ) -> Decisions:
        """``{"action_log_probs"}`` of shape ``(..., num_actions)``."""
        features = hidden_states.to(self.dtype)
        if self.budget_conditioning:
            if context is None or context.remaining_tokens is None or context.budget is None:
                raise ValueError("this adapter is budget-conditioned: it needs the remaining token budget")
            left = (context.remaining_tokens.float() / context.budget.float().clamp_min(1)).clamp(0, 1)
            features = torch.cat((features, left.to(features.device, self.dtype).unsqueeze(-1)), dim=-1)
        return {"action_log_probs": torch.log_softmax(self.policy(features).float(), dim=-1)}

    def _action_log_probs_of_tokens(self, logits: torch.Tensor) -> torch.Tensor:
        """``log p_a(v)`` for every action ``a``: shape ``(..., num_actions, vocab)``."""
        # One pass per action with a scalar temperature: the greedy mask is built only for the greedy action.
        return torch.stack(
            [torch.log_softmax(temperature_logits(logits, t), dim=-1) for t in self.temperature_values], dim=-2
        )

    def policy_logits(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """``log Σ_a π(a) p_a(v)``: the mixture's log-probabilities (already normalised)."""
        return torch.logsumexp(
            decisions["action_log_probs"].unsqueeze(-1) + self._action_log_probs_of_tokens(logits), dim=-2
        )

    def sampling_logits(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """The mixture (``action_selection="sample"``) or each row's most likely action's rule (``"argmax"``)."""
        if self.action_selection == "sample":
            return self.policy_logits(logits, decisions)
        best = decisions["action_log_probs"].argmax(-1)
        return temperature_logits(logits, self.action_temperatures.to(logits.device)[best])

    def loss_mask(self, features: LogitFeatures) -> torch.Tensor | None:
        """Positions whose base max probability ``exp(max ℓ − logsumexp ℓ)`` is at most ``confidence_mask``."""
        if self.confidence_mask >= 1.0:
            return None
        return (features.max - features.lse).exp() <= self.confidence_mask

    def scalar_decisions(self, decisions: Decisions) -> dict[str, torch.Tensor]:
        """Each action's probability per position, as ``p_<action>``."""
        log_pi = decisions["action_log_probs"]
        probs = {f"p_{name}": log_pi[:, i].exp() for i, name in enumerate(self.action_names)}
        return {**super().scalar_decisions(decisions), **probs}

    def regularizer(self, decisions: Decisions) -> torch.Tensor | None:
        """``entropy_coef · H(π)`` per position."""
        if self.entropy_coef == 0:
            return None
        log_pi = decisions["action_log_probs"]
        return -self.entropy_coef * (log_pi.exp() * log_pi).sum(-1)

    def log_values(self, decisions: Decisions, logit_features: torch.Tensor) -> dict[str, torch.Tensor]:
        pi = decisions["action_log_probs"].exp()
        values = {f"adapter/p_{name}": pi[..., i] for i, name in enumerate(self.action_names)}
        values["adapter/action_entropy"] = -(pi * decisions["action_log_probs"]).sum(-1)
        return values


class DecodingAdapterForCausalLM(DecodingHeadForCausalLM):
    r"""
    A frozen causal LM with the token-level decoding adapter: each token is decoded with an action (greedy or a
    temperature) the adapter picks from the hidden state.

    Loads, saves, pushes, generates and trains exactly as :class:`~logitmlp_hf.LogitMLPForCausalLM`; with
    ``budget_conditioning`` ``generate`` feeds it the budget left from ``max_new_tokens``.
    """

    config_class = DecodingAdapterConfig
    head_class = DecodingAdapterHead
    head_attribute = "adapter_head"


register_decoding_head(
    DecodingAdapterForCausalLM,
    card_template="decoding_adapter.md",
    card_title="A **token-level learned decoding adapter**",
)


__all__ = ["DecodingAdapterConfig", "DecodingAdapterForCausalLM", "DecodingAdapterHead"]
