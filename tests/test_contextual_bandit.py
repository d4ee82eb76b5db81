"""The contextual-bandit strategy selector of logitmlp_hf.heads.sequence_adapter.contextual_bandit on synthetic problems."""

from __future__ import annotations

import pytest
import torch

from logitmlp_hf.heads.sequence_adapter.contextual_bandit import (
    BanditPolicyNet,
    budget_features,
    evaluate_bandit_policy,
    train_bandit,
)


DIM = 8
BUDGETS = [1, 4, 16]
LOW, HIGH = 0.3, 0.9
STEPS = 200  # enough for this problem at lr 2e-2; keeps the test around a second on a busy CPU


def synthetic_problem(num_prompts: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings (offset and scaled like raw hidden states), the deciding feature ``u``, and ``R[n, j, a]``.

    ``u = x0 − x1`` (centred). Action 2 is best when ``u <= 0``; when ``u > 0``, action 0 is best at ``k = 1`` and
    action 1 at larger ``k``. The best action earns 0.9, the others 0.3.
    """
    gen = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(num_prompts, DIM, generator=gen) * 3.0 + 5.0
    u = embeddings[:, 0] - embeddings[:, 1]
    rewards = torch.full((num_prompts, len(BUDGETS), 3), LOW, dtype=torch.float64)
    for j, k in enumerate(BUDGETS):
        best = torch.where(u > 0, torch.tensor(0 if k == 1 else 1), torch.tensor(2))
        rewards[torch.arange(num_prompts), j, best] = HIGH
    return embeddings, u, rewards


def make_net(seed: int = 0, hidden_size: int = 64) -> BanditPolicyNet:
    torch.manual_seed(seed)
    return BanditPolicyNet(DIM, 3, hidden_size=hidden_size)


@pytest.fixture(scope="module")
def trained():
    embeddings, _, rewards = synthetic_problem(256)
    net = make_net(hidden_size=32)
    log = train_bandit(net, embeddings, BUDGETS, rewards, steps=STEPS, lr=2e-2, seed=0)
    return net, log


def test_budget_features():
    torch.testing.assert_close(
        budget_features([1, 4, 16]), torch.tensor([[0.0, 1.0], [2.0, 0.25], [4.0, 0.0625]], dtype=torch.float64)
    )
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="integers >= 1"):
            budget_features(bad)


def test_output_shapes_and_dtype():
    net = make_net(hidden_size=16)
    x = torch.randn(5, DIM)
    assert net(x, 4).shape == (5, 3)
    scores, value = net(x, [1, 2, 4, 8, 16], return_value=True)
    assert scores.shape == (5, 3) and value.shape == (5,)
    assert net.action_logits(x[0], 4).shape == (3,)
    assert net.action_logits(x, 4).shape == (5, 3)
    # half-precision embeddings (as a bf16 base would give) are cast to the net's float32
    logits = net(x.to(torch.bfloat16), 4)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, net(x.to(torch.bfloat16).float(), 4))
    assert net.choose(x[0], 4).shape == () and net.choose(x, 4).shape == (5,)
    assert net.choose(x, 4).dtype == torch.long
    rebuilt = BanditPolicyNet(**net.config)
    rebuilt.load_state_dict(net.state_dict())
    torch.testing.assert_close(rebuilt(x, 4), net(x, 4))


def test_sampled_choice_is_reproducible_with_a_generator():
    net = make_net(hidden_size=16)
    x = torch.randn(64, DIM)
    a = net.choose(x, 2, greedy=False, generator=torch.Generator().manual_seed(3))
    b = net.choose(x, 2, greedy=False, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert set(a.tolist()) == {0, 1, 2}  # a fresh net is close to uniform


def test_training_reaches_the_oracle_and_beats_the_best_fixed_action(trained):
    net, log = trained
    embeddings, _, rewards = synthetic_problem(256)
    report = evaluate_bandit_policy(net, embeddings, BUDGETS, rewards)
    assert report["oracle_value"] == pytest.approx(HIGH)
    assert report["best_fixed_action"] == 2
    assert report["best_fixed_value"] < 0.7
    assert report["policy_value"] >= HIGH - 0.03
    assert report["policy_value"] > report["best_fixed_value"] + 0.2
    assert log.greedy_value == pytest.approx(report["policy_value"])
    # sampled rewards rise from about the uniform policy's value to about the oracle's
    assert sum(log.mean_reward[:10]) / 10 < 0.65
    assert sum(log.mean_reward[-30:]) / 30 > 0.85
    assert len(log.mean_reward) == len(log.entropy) == STEPS
    # it generalises to unseen prompts
    held_out, _, held_out_rewards = synthetic_problem(256, seed=1)
    generalisation = evaluate_bandit_policy(net, held_out, BUDGETS, held_out_rewards)
    assert generalisation["policy_value"] >= HIGH - 0.04
    assert generalisation["policy_value"] > generalisation["best_fixed_value"] + 0.2
    assert set(generalisation["per_budget"]) == set(BUDGETS)
    assert sum(generalisation["action_counts"]) == 256 * len(BUDGETS)


def test_budget_features_change_the_choice(trained):
    net, _ = trained
    held_out, u, _ = synthetic_problem(256, seed=2)
    clear = held_out[u > 1.0]  # away from the decision boundary
    assert len(clear) > 50
    small_k, large_k = net.choose(clear, 1), net.choose(clear, 16)
    assert (small_k == 0).float().mean() > 0.95
    assert (large_k == 1).float().mean() > 0.95
    # and the same embedding changes action with k alone
    assert net.choose(clear[0], 1).item() == 0 and net.choose(clear[0], 16).item() == 1


def test_training_is_deterministic_given_the_seed():
    embeddings, _, rewards = synthetic_problem(64)
    logs, states = [], []
    for _ in range(2):
        net = make_net(seed=5, hidden_size=16)
        logs.append(train_bandit(net, embeddings, BUDGETS, rewards, steps=30, batch_size=16, seed=7, epsilon=0.1))
        states.append(net.state_dict())
    assert logs[0] == logs[1]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key])
    other = train_bandit(
        make_net(seed=5, hidden_size=16), embeddings, BUDGETS, rewards, steps=30, batch_size=16, seed=8
    )
    assert other.mean_reward != logs[0].mean_reward


def test_only_the_sampled_action_is_queried():
    embeddings, _, rewards = synthetic_problem(64)
    queries = []

    def environment(prompt, budget, action):
        queries.append((prompt.clone(), budget.clone(), action.clone()))
        return rewards[prompt, budget, action]

    table_log = train_bandit(make_net(hidden_size=16), embeddings, BUDGETS, rewards, steps=20, batch_size=8, seed=1)
    fn_log = train_bandit(make_net(hidden_size=16), embeddings, BUDGETS, environment, steps=20, batch_size=8, seed=1)
    assert fn_log == table_log  # the table is only ever read at the sampled actions
    assert len(queries) == 21  # one query per step, plus one for the final greedy value (every context once)
    assert all(len(q[2]) == 8 for q in queries[:-1])
    assert len(queries[-1][2]) == 64 * len(BUDGETS)


def test_mean_baseline_and_epsilon_exploration_also_learn():
    embeddings, _, rewards = synthetic_problem(128)
    net = make_net(hidden_size=32)
    log = train_bandit(net, embeddings, BUDGETS, rewards, steps=STEPS, lr=2e-2, baseline="mean", epsilon=0.2, seed=0)
    assert log.greedy_value >= HIGH - 0.05
    assert min(log.entropy) > 0


def test_bad_inputs_raise():
    embeddings, _, rewards = synthetic_problem(16)
    net = make_net(hidden_size=8)
    with pytest.raises(ValueError, match="num_prompts, num_budgets, num_actions"):
        train_bandit(net, embeddings[:10], BUDGETS, rewards, steps=1)
    with pytest.raises(ValueError, match="num_prompts, num_budgets, num_actions"):
        train_bandit(net, embeddings, BUDGETS[:2], rewards, steps=1)
    with pytest.raises(ValueError, match="num_prompts, num_budgets, num_actions"):
        train_bandit(net, embeddings, BUDGETS, rewards[..., :2], steps=1)
    with pytest.raises(ValueError, match=r"shape \(batch, 8\)"):
        train_bandit(net, embeddings[:, :4], BUDGETS, rewards[..., :2], steps=1)
    with pytest.raises(ValueError, match="integers >= 1"):
        train_bandit(net, embeddings, [0, 4, 16], rewards, steps=1)
    with pytest.raises(ValueError, match="epsilon"):
        train_bandit(net, embeddings, BUDGETS, rewards, steps=1, epsilon=1.0)
    with pytest.raises(ValueError, match="baseline"):
        train_bandit(net, embeddings, BUDGETS, rewards, steps=1, baseline="none")
    with pytest.raises(ValueError, match="integers >= 1"):
        net.choose(embeddings[0], 0)
    with pytest.raises(ValueError, match="budgets for"):
        net(embeddings, [1, 2])
    with pytest.raises(ValueError, match="action names"):
        BanditPolicyNet(DIM, 3, action_names=["a"])
    with pytest.raises(ValueError, match="num_prompts, num_budgets, num_actions"):
        evaluate_bandit_policy(net, embeddings, BUDGETS, rewards[:3])
    with pytest.raises(TypeError, match="full reward table"):
        evaluate_bandit_policy(net, embeddings, BUDGETS, lambda p, b, a: rewards[p, b, a])
