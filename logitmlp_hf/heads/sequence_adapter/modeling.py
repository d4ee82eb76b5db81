"""The sequence-level learned decoding adapter (Su et al., "Learning Adaptive LLM Decoding", arXiv:2603.09065).

Per prompt, a contextual bandit picks *one* sampling strategy (temperature × top-k × top-p × min-p) from the prompt
embedding and the parallel budget ``k``, and every token of every one of the ``k`` samples is decoded with it. The
action set is chosen by greedy coverage selection over a candidate pool on a validation split
(:mod:`~logitmlp_hf.heads.sequence_adapter.strategy_pool`); the bandit is :class:`~logitmlp_hf.heads.sequence_adapter.contextual_bandit.BanditPolicyNet`, trained
with REINFORCE + entropy bonus from bandit feedback (:func:`~logitmlp_hf.heads.sequence_adapter.contextual_bandit.train_bandit`).

Our choices where the source gives no detail: the prompt embedding is the base's final (post-norm) hidden state at
the prompt's last token — exactly what the head sees at ``generate``'s first step, so no extra forward pass is
needed at inference; the coverage objective on the validation split is pass@k averaged over the training budgets;
at inference the adapter takes the highest-scoring strategy (``action_selection="argmax"``).

Why it does not train with :class:`~logitmlp_hf.DecodingHeadGRPOTrainer` (it is fitted by
:func:`~logitmlp_hf.trainer.sequence_adapter.fit_sequence_adapter`): its decision is made once per prompt and its
reward is the pass@k of a whole group of samples, which is a bandit problem, not a per-token policy gradient. It uses
the same rollouts/evaluation (:func:`~logitmlp_hf.evaluation.runner.evaluate`), the same Hub format and the same
``generate()``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from huggingface_hub.dataclasses import strict

from ...errors import InvalidHeadConfigError
from ...features import LogitStatistics
from ...modeling import DecodingHeadForCausalLM
from ...sampling_rules import apply_sampling_rules
from ..base import Decisions, DecodingContext, DecodingHead
from ..configuration import DecodingHeadConfig, check_choice, check_int, check_list
from .contextual_bandit import BanditPolicyNet
from .strategy_pool import SamplingStrategy


logger = logging.getLogger(__name__)

ACTION_SELECTIONS = ("argmax", "sample")
MAX_STRATEGIES = 1024


@strict
class SequenceAdapterConfig(DecodingHeadConfig):
    r"""
    Configuration of the sequence-level decoding adapter (see :class:`~logitmlp_hf.DecodingHeadConfig` for the
    shared fields; ``head_hidden_size`` is the bandit's hidden width).

    Args:
        strategies (`list[dict]`, *optional*): the action set, each a :class:`SamplingStrategy` as a dict
            (default: the single strategy T = 1).
        budgets (`list[int]`, *optional*): the parallel budgets ``k`` the bandit was trained for.
        action_selection (`str`, *optional*, defaults to `"argmax"`): ``"argmax"`` or ``"sample"`` (draw the
            strategy from the bandit's softmax).
    """

    model_type = "sequence_adapter"

    strategies: list[dict] | None = None
    budgets: list[int] | None = None
    action_selection: str = "argmax"
    head_hidden_size: int = 128

    def __post_init__(self, **kwargs) -> None:
        if self.strategies is None:
            self.strategies = [SamplingStrategy().to_dict()]
        self.strategies = [s.to_dict() for s in self._checked_strategies()]
        super().__post_init__(**kwargs)

    def _checked_strategies(self) -> list[SamplingStrategy]:
        check_list("strategies", self.strategies, max_length=MAX_STRATEGIES)
        strategies = []
        for i, s in enumerate(self.strategies):
            try:
                if not isinstance(s, Mapping):
                    raise TypeError("not a mapping")
                strategies.append(SamplingStrategy.from_dict(s))
            except (TypeError, ValueError) as err:
                raise InvalidHeadConfigError(
                    f"strategies[{i}]", s, f"a sampling strategy {{temperature, top_k, top_p, min_p}} ({err})"
                ) from err
        return strategies

    def validate_architecture(self) -> None:
        """Part of `@strict` validation."""
        super().validate_architecture()
        self._checked_strategies()
        check_list("budgets", self.budgets, optional=True)
        for i, k in enumerate(self.budgets or ()):
            check_int(f"budgets[{i}]", k, 1)
        check_choice("action_selection", self.action_selection, ACTION_SELECTIONS)

    @property
    def sampling_strategies(self) -> list[SamplingStrategy]:
        return [SamplingStrategy.from_dict(s) for s in self.strategies]

    @property
    def num_head_parameters(self) -> int:
        d, w, a = self.hidden_size, self.head_hidden_size, len(self.strategies)
        return (d + 2) * w + w + w * a + a + w + 1


class SequenceAdapterHead(DecodingHead):
    """One strategy per sequence from ``(prompt embedding, k)``; every token then follows that strategy's rules."""

    config_class = SequenceAdapterConfig
    weights_name = "sequence_adapter.safetensors"
    per_token = False
    uses_context = True

    def __init__(self, config: SequenceAdapterConfig) -> None:
        super().__init__(config)
        strategies = config.sampling_strategies
        self.strategies = strategies
        self.action_selection = config.action_selection
        self.bandit = BanditPolicyNet(
            config.hidden_size, len(strategies), config.head_hidden_size, [s.name for s in strategies]
        )
        # "Off" values make each rule a no-op for strategies that do not use it (see sampling_rules).
        rules = {
            "temperature": [s.temperature for s in strategies],
            "top_k": [s.top_k or 0 for s in strategies],
            "top_p": [1.0 if s.top_p is None else s.top_p for s in strategies],
            "min_p": [s.min_p or 0.0 for s in strategies],
        }
        for name, values in rules.items():
            dtype = torch.long if name == "top_k" else torch.float32
            self.register_buffer(f"rule_{name}", torch.tensor(values, dtype=dtype), persistent=False)
        # Rules no strategy uses are skipped: each would cost a full-vocabulary sort or softmax per token.
        self.used_rules = [
            name
            for name, used in (
                ("temperature", True),
                ("top_k", any(s.top_k for s in strategies)),
                ("top_p", any(s.top_p is not None for s in strategies)),
                ("min_p", any(s.min_p for s in strategies)),
            )
            if used
        ]

    def decide(
        self, hidden_states: torch.Tensor, stats: LogitStatistics, context: DecodingContext | None = None
    ) -> Decisions:
        """``{"strategy", "strategy_log_probs"}``; ``k`` is the context's ``parallel_budget`` (1 when absent)."""
        lead = hidden_states.shape[:-1]
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        if context is not None and context.parallel_budget is not None:
            k = context.parallel_budget.reshape(-1).round().long().clamp(min=1).cpu()
        else:
            k = torch.ones(flat.shape[0], dtype=torch.long)
        log_probs = torch.log_softmax(self.bandit(flat, k).float(), dim=-1)
        if self.action_selection == "argmax":
            strategy = log_probs.argmax(-1)
        else:
            strategy = torch.multinomial(log_probs.exp().detach(), 1).squeeze(-1)
        return {
            "strategy": strategy.reshape(lead).float(),
            "strategy_log_probs": log_probs.reshape(*lead, -1),
        }

    def sampling_logits(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """Each row's strategy: temperature (0 = greedy), then top-k, top-p and min-p, as transformers applies them."""
        index = decisions["strategy"].long().to(self.rule_temperature.device)
        rules = {name: getattr(self, f"rule_{name}")[index].to(logits.device) for name in self.used_rules}
        return apply_sampling_rules(logits, **rules)


class SequenceAdapterForCausalLM(DecodingHeadForCausalLM):
    r"""
    A frozen causal LM with the sequence-level decoding adapter: each prompt is decoded with the strategy the bandit
    picks for it and the parallel budget (``num_return_sequences``, or ``parallel_budget=k`` passed to
    ``generate`` when the ``k`` samples are separate rows).

    Loads, saves and pushes as every head; built and trained with :func:`~logitmlp_hf.trainer.sequence_adapter.fit_sequence_adapter`.
    """

    config_class = SequenceAdapterConfig
    head_class = SequenceAdapterHead
    head_attribute = "sequence_head"


__all__ = ["SequenceAdapterConfig", "SequenceAdapterForCausalLM", "SequenceAdapterHead"]
