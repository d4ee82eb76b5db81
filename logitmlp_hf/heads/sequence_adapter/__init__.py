"""The sequence-level learned decoding adapter: one sampling strategy per prompt, chosen by a contextual bandit.

- :mod:`.modeling` — its config, head and wrapper;
- :mod:`.strategy_pool` — the candidate strategies, reward tables and greedy coverage selection;
- :mod:`.contextual_bandit` — the bandit policy and its REINFORCE training.

It is fitted by :func:`~logitmlp_hf.trainer.sequence_adapter.fit_sequence_adapter`, not by the GRPO trainer.
"""

from ..registry import register_decoding_head
from .modeling import SequenceAdapterConfig, SequenceAdapterForCausalLM, SequenceAdapterHead


register_decoding_head(
    SequenceAdapterForCausalLM,
    card_template="sequence_adapter.md",
    card_title="A **sequence-level learned decoding adapter**",
    trainable=False,
)

__all__ = ["SequenceAdapterConfig", "SequenceAdapterForCausalLM", "SequenceAdapterHead"]
