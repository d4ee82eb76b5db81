"""Fitting the sequence-level decoding adapter: action-set selection on validation, then the contextual bandit.

The adapter decides once per prompt and is rewarded with the pass@k of a whole group of samples, a bandit problem
rather than a per-token policy gradient, so it has this procedure instead of the GRPO trainer
(:mod:`~logitmlp_hf.heads.sequence_adapter` describes the head itself).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..analysis.per_token import teacher_forcing_batch
from ..evaluation.runner import evaluate, prompt_token_ids
from ..heads.sequence_adapter.contextual_bandit import BanditTrainingLog, evaluate_bandit_policy, train_bandit
from ..heads.sequence_adapter.modeling import SequenceAdapterConfig, SequenceAdapterForCausalLM
from ..heads.sequence_adapter.strategy_pool import SamplingStrategy, greedy_coverage_selection, reward_table
from ..hub.base_loading import base_dimensions, unwrap_causal_lm
from ..modeling import DecodingHeadForCausalLM
from ..progress import progress_bar


logger = logging.getLogger(__name__)


@torch.no_grad()
def prompt_embeddings(
    model: nn.Module, tokenizer: Any, dataset: Any, batch_size: int = 16, progress: bool = True
) -> torch.Tensor:
    """The final hidden state at each prompt's last token, as ``generate``'s first step computes it: left-padded,
    position ids from the attention mask, chat template applied (as :func:`~logitmlp_hf.evaluation.runner.evaluate`).
    ``progress`` shows a tqdm bar (prompts) on stderr."""
    lm = unwrap_causal_lm(model.get_base_model() if isinstance(model, DecodingHeadForCausalLM) else model)
    ids = prompt_token_ids(tokenizer, dataset)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = lm.get_output_embeddings().weight.device
    captured: list[torch.Tensor] = []
    handle = lm.get_output_embeddings().register_forward_pre_hook(lambda m, a: captured.append(a[0][:, -1]))
    bar = progress_bar(total=len(ids), desc="embed prompts", unit="prompt", disable=not progress)
    try:
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            input_ids, mask, position_ids, _, _, _ = teacher_forcing_batch(chunk, [[] for _ in chunk], pad_id)
            lm(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                position_ids=position_ids.to(device),
                logits_to_keep=1,
                use_cache=False,
            )
            bar.update(len(chunk))
    finally:
        handle.remove()
        bar.close()
    return torch.cat(captured).float().cpu()


@dataclass
class SequenceAdapterFit:
    """What :func:`fit_sequence_adapter` did: the selection, the bandit's training log and its values."""

    model: SequenceAdapterForCausalLM
    pool: list[SamplingStrategy]
    selected: list[SamplingStrategy]
    coverage: list[float]
    training_log: BanditTrainingLog
    train_values: dict[str, Any]
    validation_rewards: np.ndarray

    def summary(self) -> dict[str, Any]:
        return {
            "pool": [s.name for s in self.pool],
            "selected": [s.name for s in self.selected],
            "coverage_after_each": self.coverage,
            "bandit_train_values": self.train_values,
            "bandit_final_mean_reward": self.training_log.mean_reward[-1] if self.training_log.mean_reward else None,
        }


def _strategy_rewards(results: Any, budgets: Sequence[int]) -> np.ndarray:
    """``R[n, j, a]``: pass@budgets[j] of each evaluated strategy on each problem."""
    tables = [reward_table(results, k).rewards for k in budgets]
    return np.stack(tables, axis=1)


def fit_sequence_adapter(
    base: nn.Module,
    tokenizer: Any,
    train_dataset: Any,
    validation_dataset: Any,
    pool: Sequence[SamplingStrategy],
    set_size: int = 4,
    budgets: Sequence[int] = (1, 4, 8),
    n_samples: int = 8,
    max_new_tokens: int = 512,
    bandit_steps: int = 500,
    bandit_lr: float = 3e-3,
    entropy_coef: float = 0.01,
    head_hidden_size: int = 128,
    seed: int = 0,
    eval_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> SequenceAdapterFit:
    """Select the action set on ``validation_dataset`` and train the bandit on ``train_dataset``.

    1. Every strategy of ``pool`` is sampled ``n_samples`` times per validation problem
       (:func:`~logitmlp_hf.evaluation.runner.evaluate`); ``R(x, s)`` is its pass@k averaged over ``budgets``.
    2. :func:`~logitmlp_hf.heads.sequence_adapter.strategy_pool.greedy_coverage_selection` picks ``set_size`` strategies.
    3. The selected strategies are sampled on the training problems; their per-problem pass@k at each budget is the
       bandit's environment, and the prompt embeddings its contexts.
    4. :func:`~logitmlp_hf.heads.sequence_adapter.contextual_bandit.train_bandit` trains the bandit from bandit feedback.

    ``progress`` shows tqdm bars with ETAs on stderr for steps 1, 3 and the prompt embeddings (the bandit's
    training takes seconds).

    Returns:
        :class:`SequenceAdapterFit` whose ``model`` is the adapter on ``base`` (save it with ``save_pretrained``).
    """
    budgets = sorted({int(k) for k in budgets})
    if max(budgets) > n_samples:
        raise ValueError(
            f"the largest budget ({max(budgets)}) needs at least that many samples; n_samples={n_samples}"
        )
    kwargs = {
        "n_samples": n_samples,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "progress": progress,
        **(eval_kwargs or {}),
    }
    pool = list(pool)
    policies = [s.to_policy_string() for s in pool]
    validation = evaluate(base, tokenizer, validation_dataset, policies, **kwargs)
    val_rewards = _strategy_rewards(validation, budgets).mean(axis=1)
    selection = greedy_coverage_selection(val_rewards, set_size, names=[s.name for s in pool])
    selected = [pool[i] for i in selection.indices]
    logger.info("selected strategies %s (coverage %s)", selection.names, selection.coverages)

    training = evaluate(base, tokenizer, train_dataset, [s.to_policy_string() for s in selected], **kwargs)
    rewards = torch.tensor(_strategy_rewards(training, budgets), dtype=torch.float32)
    embeddings = prompt_embeddings(base, tokenizer, train_dataset, progress=progress)
    hidden, vocab = base_dimensions(base)
    config = SequenceAdapterConfig(
        hidden_size=hidden,
        vocab_size=vocab,
        head_hidden_size=head_hidden_size,
        strategies=[s.to_dict() for s in selected],
        budgets=budgets,
        objective="pass@k",
        pass_k=max(budgets),
    )
    torch.manual_seed(seed)  # the bandit's initial weights
    model = SequenceAdapterForCausalLM(config, base_model=base)
    bandit = model.decoding_head.bandit
    log = train_bandit(
        bandit, embeddings, budgets, rewards, steps=bandit_steps, lr=bandit_lr, entropy_coef=entropy_coef, seed=seed
    )
    values = evaluate_bandit_policy(bandit, embeddings, budgets, rewards)
    return SequenceAdapterFit(model.eval(), pool, selected, selection.coverages, log, values, val_rewards)


__all__ = ["SequenceAdapterFit", "fit_sequence_adapter", "prompt_embeddings"]
