"""A contextual bandit that picks one decoding strategy per prompt, given the prompt and the parallel budget ``k``.

This is the sequence-level learned decoding adapter of Su et al. ("Learning Adaptive LLM Decoding"). The context is
the base model's final hidden state at the last prompt token (a vector of size ``d``) and the number ``k`` of samples
that will be drawn for the prompt; the actions are a small set of fixed strategies (chosen by
[`~logitmlp_hf.heads.sequence_adapter.strategy_pool.greedy_coverage_selection`]); the reward of an action is its pass@k on the prompt.

[`BanditPolicyNet`] scores the actions with a small MLP; [`train_bandit`] trains it with REINFORCE from *bandit
feedback*: per context only the reward of the sampled action is observed. When a full reward table ``R[n, j, a]``
(prompt × budget × action, e.g. from [`~logitmlp_hf.heads.sequence_adapter.strategy_pool.reward_table`] at each budget) is available it is
used purely as the environment that answers those queries. With the full table in hand, a full-information
alternative would be to regress all of ``R[n, j, :]`` (or a softmax cross-entropy to its argmax) directly; the bandit
formulation is kept because it is what runs online, where each prompt is decoded with one strategy only, and a
callable environment (e.g. one that samples from the model) plugs in unchanged. [`evaluate_bandit_policy`] compares
the greedy policy with the best fixed action and the per-context oracle.

No transformers dependency: everything here works on tensors of embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn


__all__ = [
    "BUDGET_FEATURES",
    "BanditPolicyNet",
    "BanditTrainingLog",
    "budget_features",
    "evaluate_bandit_policy",
    "train_bandit",
]

BUDGET_FEATURES = ("log2_k", "inv_k")

RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _as_budgets(k: int | Sequence[int] | torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """``k`` as a float64 tensor of shape ``(batch,)`` (broadcast from a scalar), validated to be integers ``>= 1``."""
    budgets = torch.as_tensor(k, dtype=torch.float64).reshape(-1)
    if budgets.numel() == 0:
        raise ValueError("no budget given")
    if not torch.isfinite(budgets).all() or (budgets < 1).any() or (budgets != budgets.round()).any():
        raise ValueError(f"budgets k must be integers >= 1, got {budgets.tolist()}")
    if batch is not None:
        if budgets.numel() == 1:
            budgets = budgets.expand(batch)
        elif budgets.numel() != batch:
            raise ValueError(f"got {budgets.numel()} budgets for {batch} embeddings")
    return budgets


def budget_features(k: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The budget features ``[log2(k), 1/k]`` of shape ``(batch, 2)``.

    pass@k of a prompt with per-sample success rate ``p`` is ``1 − (1 − p)^k``: it moves by similar amounts when
    ``k`` doubles, so ``log2 k`` spreads the usual budgets (1, 2, 4, …, 64) evenly and lets the MLP interpolate between
    them. ``1/k`` is bounded and separates the small budgets sharply (k = 1 vs 2 is where strategies differ most:
    pass@1 rewards exploitation, larger ``k`` rewards diversity).
    """
    budgets = _as_budgets(k)
    return torch.stack([torch.log2(budgets), 1.0 / budgets], dim=-1)


class BanditPolicyNet(nn.Module):
    """MLP from ``[embedding; log2 k; 1/k]`` to one score per action (logits of the sampling policy).

    Embeddings are standardised with stored per-dimension statistics before the MLP (buffers, identity until
    [`fit_normalization`] is called, which [`train_bandit`] does by default): LLM final hidden states have a few
    dimensions with huge activations that would otherwise dominate the first layer. A scalar value head on the same
    hidden layer serves as the per-context REINFORCE baseline.

    Args:
        embedding_dim (`int`): Size ``d`` of the prompt embedding.
        num_actions (`int`): Number of strategies to choose among.
        hidden_size (`int`, *optional*, defaults to `128`): Width of the hidden layer.
        action_names (`Sequence[str]`, *optional*): Names of the actions (e.g. strategy names), kept for reporting.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_actions: int,
        hidden_size: int = 128,
        action_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if embedding_dim < 1 or num_actions < 1 or hidden_size < 1:
            raise ValueError(
                f"embedding_dim, num_actions and hidden_size must be >= 1, got {embedding_dim}, {num_actions}, "
                f"{hidden_size}"
            )
        if action_names is not None and len(action_names) != num_actions:
            raise ValueError(f"got {len(action_names)} action names for {num_actions} actions")
        self.embedding_dim = embedding_dim
        self.num_actions = num_actions
        self.hidden_size = hidden_size
        self.action_names = list(action_names) if action_names is not None else None
        self.register_buffer("embedding_mean", torch.zeros(embedding_dim))
        self.register_buffer("embedding_scale", torch.ones(embedding_dim))
        self.trunk = nn.Sequential(nn.Linear(embedding_dim + len(BUDGET_FEATURES), hidden_size), nn.ReLU())
        self.action_head = nn.Linear(hidden_size, num_actions)
        self.value_head = nn.Linear(hidden_size, 1)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments, to rebuild the net before loading a ``state_dict``."""
        return {
            "embedding_dim": self.embedding_dim,
            "num_actions": self.num_actions,
            "hidden_size": self.hidden_size,
            "action_names": self.action_names,
        }

    @torch.no_grad()
    def fit_normalization(self, embeddings: torch.Tensor, eps: float = 1e-6) -> None:
        """Set the standardisation statistics to the per-dimension mean and std of ``embeddings`` ``(N, d)``."""
        x = self._check_embeddings(embeddings).to(torch.float64)
        self.embedding_mean.copy_(x.mean(dim=0))
        std = x.std(dim=0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(x[0])
        self.embedding_scale.copy_(std.clamp_min(eps))

    def _check_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(embeddings)
        if x.ndim != 2 or x.shape[-1] != self.embedding_dim:
            raise ValueError(f"embeddings must have shape (batch, {self.embedding_dim}), got {tuple(x.shape)}")
        return x

    def _hidden(self, embeddings: torch.Tensor, k: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        x = self._check_embeddings(embeddings)
        param = self.action_head.weight
        # Embeddings often arrive in the base model's bf16/fp16; the net computes in its own (float32) dtype.
        x = (x.to(device=param.device, dtype=param.dtype) - self.embedding_mean.to(param.dtype)) / (
            self.embedding_scale.to(param.dtype)
        )
        feats = budget_features(_as_budgets(k, x.shape[0])).to(device=param.device, dtype=param.dtype)
        return self.trunk(torch.cat([x, feats], dim=-1))

    def forward(
        self, embeddings: torch.Tensor, k: int | Sequence[int] | torch.Tensor, return_value: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Action scores ``(batch, num_actions)`` for 2-d ``embeddings`` and ``k`` (a scalar or one per row).

        With ``return_value=True`` also the value head's baseline estimate, shape ``(batch,)``.
        """
        hidden = self._hidden(embeddings, k)
        scores = self.action_head(hidden)
        if return_value:
            return scores, self.value_head(hidden).squeeze(-1)
        return scores

    def action_logits(self, embedding: torch.Tensor, k: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Action scores: one embedding ``(d,)`` → ``(num_actions,)``; a batch ``(B, d)`` → ``(B, num_actions)``."""
        embedding = torch.as_tensor(embedding)
        if embedding.ndim == 1:
            return self(embedding[None], k)[0]
        return self(embedding, k)

    @torch.no_grad()
    def choose(
        self,
        embedding: torch.Tensor,
        k: int | Sequence[int] | torch.Tensor,
        greedy: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The chosen action index: the argmax of the scores, or a sample from their softmax (``greedy=False``).

        Returns a 0-d long tensor for one embedding ``(d,)``, shape ``(B,)`` for a batch. Sampling happens on the CPU
        with ``generator`` (a CPU generator), so results do not depend on the device.
        """
        logits = self.action_logits(embedding, k)
        flat = logits.reshape(-1, self.num_actions)
        if greedy:
            actions = flat.argmax(dim=-1)
        else:
            probs = torch.softmax(flat.float().cpu(), dim=-1)
            actions = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)
        return actions.reshape(logits.shape[:-1])


# --------------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class BanditTrainingLog:
    """What [`train_bandit`] observed.

    Args:
        mean_reward (`list[float]`): Per step, the mean reward of the actions sampled in that step's minibatch.
        entropy (`list[float]`): Per step, the mean entropy (nats) of the policy on the minibatch.
        greedy_value (`float`): Mean reward of the final greedy policy over every ``(prompt, budget)`` context.
    """

    mean_reward: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    greedy_value: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_problem(
    net: BanditPolicyNet, embeddings: torch.Tensor, budgets: Sequence[int], rewards: torch.Tensor | RewardFn
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | RewardFn]:
    x = net._check_embeddings(embeddings)
    if x.shape[0] == 0:
        raise ValueError("embeddings is empty")
    ks = _as_budgets(list(budgets))
    if callable(rewards) and not isinstance(rewards, torch.Tensor):
        return x, ks, rewards
    table = torch.as_tensor(rewards, dtype=torch.float64)
    expected = (x.shape[0], ks.numel(), net.num_actions)
    if tuple(table.shape) != expected:
        raise ValueError(
            f"rewards must have shape (num_prompts, num_budgets, num_actions) = {expected}, got {tuple(table.shape)}"
        )
    if not torch.isfinite(table).all():
        raise ValueError("rewards must be finite")
    return x, ks, table


def _query(
    rewards: torch.Tensor | RewardFn, prompt: torch.Tensor, budget: torch.Tensor, action: torch.Tensor
) -> torch.Tensor:
    """The environment: the rewards of ``action`` in contexts ``(prompt, budget)``, nothing about other actions."""
    if isinstance(rewards, torch.Tensor):
        return rewards[prompt, budget, action]
    out = torch.as_tensor(rewards(prompt, budget, action), dtype=torch.float64).reshape(-1)
    if out.numel() != prompt.numel():
        raise ValueError(f"the reward function returned {out.numel()} rewards for {prompt.numel()} queries")
    return out


def _all_contexts(num_prompts: int, num_budgets: int) -> tuple[torch.Tensor, torch.Tensor]:
    prompt = torch.arange(num_prompts).repeat_interleave(num_budgets)
    budget = torch.arange(num_budgets).repeat(num_prompts)
    return prompt, budget


@torch.no_grad()
def _greedy_actions(
    net: BanditPolicyNet, x: torch.Tensor, ks: torch.Tensor, prompt: torch.Tensor, budget: torch.Tensor
) -> torch.Tensor:
    return net(x[prompt], ks[budget]).argmax(dim=-1).cpu()


def train_bandit(
    net: BanditPolicyNet,
    embeddings: torch.Tensor,
    budgets: Sequence[int],
    rewards: torch.Tensor | RewardFn,
    *,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 3e-3,
    epsilon: float = 0.0,
    entropy_coef: float = 0.01,
    baseline: str = "value",
    value_coef: float = 0.5,
    baseline_momentum: float = 0.9,
    normalize_inputs: bool = True,
    seed: int = 0,
) -> BanditTrainingLog:
    """Train ``net`` in place with REINFORCE from bandit feedback.

    Each step draws ``batch_size`` contexts (a prompt and a budget, uniformly), samples one action per context from
    the behaviour policy ``μ = (1 − ε) softmax(scores) + ε/A`` (``epsilon=0``: pure softmax exploration; ``ε > 0``
    guarantees every action keeps being tried), observes **only that action's reward**, and takes an Adam step on

        − mean[ (π(a)/μ(a)) · (r − b) · log π(a) ] − entropy_coef · mean H(π) (+ value_coef · mean (V − r)²)

    The importance weight ``π/μ`` (no gradient, at most ``1/(1 − ε)``) keeps the gradient that of the softmax policy
    even though actions come from the ε-mixture. The baseline ``b`` is the net's value head ``V(context)``
    (``baseline="value"``, trained jointly by regression on the observed rewards) or a running mean of the rewards
    (``baseline="mean"``); either is action-independent, so it only reduces variance.

    Args:
        net ([`BanditPolicyNet`]): The policy; trained in place (also its input normalisation, if enabled).
        embeddings (`torch.Tensor`): Prompt embeddings, shape ``(N, d)``.
        budgets (`Sequence[int]`): The ``K`` budgets ``k`` a context can have.
        rewards (`torch.Tensor` or callable): The environment. Either a table ``R`` of shape ``(N, K, A)``, with
            ``R[n, j, a]`` the reward (pass@``budgets[j]``) of action ``a`` on prompt ``n``, used only to answer
            queries for sampled actions; or ``rewards(prompt_idx, budget_idx, actions) -> (B,)`` (long tensors of
            shape ``(B,)``), which may be stochastic.
        steps (`int`, *optional*, defaults to `1000`): Optimisation steps.
        batch_size (`int`, *optional*, defaults to `64`): Contexts per step.
        lr (`float`, *optional*, defaults to `3e-3`): Adam learning rate.
        epsilon (`float`, *optional*, defaults to `0.0`): Uniform exploration mixed into the softmax, in ``[0, 1)``.
        entropy_coef (`float`, *optional*, defaults to `0.01`): Weight of the entropy bonus.
        baseline (`str`, *optional*, defaults to `"value"`): ``"value"`` or ``"mean"``.
        value_coef (`float`, *optional*, defaults to `0.5`): Weight of the value head's squared error.
        baseline_momentum (`float`, *optional*, defaults to `0.9`): Decay of the running mean (``"mean"``).
        normalize_inputs (`bool`, *optional*, defaults to `True`): Fit the net's embedding standardisation to
            ``embeddings`` first.
        seed (`int`, *optional*, defaults to `0`): Seed of the context and action sampling; with the same initial
            net, the same seed gives the same training on the CPU. The global RNG is not used.

    Returns:
        [`BanditTrainingLog`].
    """
    x, ks, env = _check_problem(net, embeddings, budgets, rewards)
    if steps < 0 or batch_size < 1:
        raise ValueError(f"need steps >= 0 and batch_size >= 1, got {steps}, {batch_size}")
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    if baseline not in ("value", "mean"):
        raise ValueError(f"baseline must be 'value' or 'mean', got {baseline!r}")
    if normalize_inputs:
        net.fit_normalization(x)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    device = net.action_head.weight.device
    num_prompts, num_budgets, num_actions = x.shape[0], ks.numel(), net.num_actions
    running_mean: float | None = None
    log = BanditTrainingLog()
    net.train()
    for _ in range(steps):
        prompt = torch.randint(num_prompts, (batch_size,), generator=generator)
        budget = torch.randint(num_budgets, (batch_size,), generator=generator)
        scores, value = net(x[prompt], ks[budget], return_value=True)
        log_pi = torch.log_softmax(scores.float(), dim=-1)
        pi = log_pi.exp()
        behaviour = ((1.0 - epsilon) * pi + epsilon / num_actions).detach().cpu()
        action = torch.multinomial(behaviour, 1, generator=generator).squeeze(-1)
        observed = _query(env, prompt, budget, action)
        reward = observed.to(device=device, dtype=log_pi.dtype)

        index = action.to(device)[:, None]
        log_pi_a = log_pi.gather(1, index).squeeze(1)
        weight = (pi.gather(1, index) / behaviour.to(device).gather(1, index)).squeeze(1).detach()
        if baseline == "value":
            b = value.detach().float()
        else:
            b = torch.full_like(reward, 0.0 if running_mean is None else running_mean)
        entropy = -(pi * log_pi).sum(dim=-1).mean()
        loss = -(weight * (reward - b) * log_pi_a).mean() - entropy_coef * entropy
        if baseline == "value":
            loss = loss + value_coef * (value.float() - reward).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        batch_mean = float(observed.mean())
        if baseline == "mean":
            # Seeded with the first batch's mean rather than 0, so that later baselines are not biased low.
            if running_mean is None:
                running_mean = batch_mean
            else:
                running_mean = baseline_momentum * running_mean + (1.0 - baseline_momentum) * batch_mean
        log.mean_reward.append(batch_mean)
        log.entropy.append(float(entropy.detach()))
    net.eval()
    prompt, budget = _all_contexts(num_prompts, num_budgets)
    log.greedy_value = float(_query(env, prompt, budget, _greedy_actions(net, x, ks, prompt, budget)).mean())
    return log


def evaluate_bandit_policy(
    net: BanditPolicyNet, embeddings: torch.Tensor, budgets: Sequence[int], rewards: torch.Tensor
) -> dict[str, Any]:
    """Value of the net's greedy policy next to the best fixed action and the per-context oracle.

    Values are mean rewards over all ``N × K`` contexts ``(prompt, budget)``, weighted uniformly. The gap between
    ``best_fixed_value`` and ``oracle_value`` is what any per-prompt selector over these actions can gain; the policy
    should land in between.

    Args:
        net ([`BanditPolicyNet`]): The policy.
        embeddings (`torch.Tensor`): Shape ``(N, d)``.
        budgets (`Sequence[int]`): The ``K`` budgets.
        rewards (`torch.Tensor`): ``R`` of shape ``(N, K, A)`` (full information is needed for the oracle).

    Returns:
        `dict`: ``policy_value``, ``best_fixed_value``, ``best_fixed_action`` (index), ``oracle_value``,
        ``action_counts`` (how often the policy picks each action), and ``per_budget``: for each ``k``, the same
        three values with the best fixed action chosen for that budget alone.
    """
    if callable(rewards) and not isinstance(rewards, torch.Tensor):
        raise TypeError("evaluate_bandit_policy needs the full reward table (N, K, A), not a reward function")
    x, ks, table = _check_problem(net, embeddings, budgets, rewards)
    was_training = net.training
    net.eval()
    prompt, budget = _all_contexts(x.shape[0], ks.numel())
    actions = _greedy_actions(net, x, ks, prompt, budget).reshape(x.shape[0], ks.numel())
    net.train(was_training)
    chosen = table.gather(2, actions[..., None]).squeeze(-1)  # (N, K)
    mean_per_action = table.mean(dim=(0, 1))
    best_fixed = int(mean_per_action.argmax())
    per_budget = {}
    for j, k in enumerate(ks.long().tolist()):
        per_action = table[:, j].mean(dim=0)
        per_budget[k] = {
            "policy_value": float(chosen[:, j].mean()),
            "best_fixed_value": float(per_action.max()),
            "best_fixed_action": int(per_action.argmax()),
            "oracle_value": float(table[:, j].max(dim=-1).values.mean()),
        }
    return {
        "policy_value": float(chosen.mean()),
        "best_fixed_value": float(mean_per_action[best_fixed]),
        "best_fixed_action": best_fixed,
        "oracle_value": float(table.max(dim=-1).values.mean()),
        "action_counts": torch.bincount(actions.reshape(-1), minlength=net.num_actions).tolist(),
        "per_budget": per_budget,
    }
