import itertools
import math

import pytest
import torch

from logitmlp_hf.trainer.advantages import group_mean_advantages, pass_at_k, passk_advantages


def brute_force_passk(rewards: list[int], k: int) -> list[float]:
    """Enumerate every k-subset: each rollout's advantage is the mean subset max over subsets that contain it, minus
    the mean over all subsets, over the Bernoulli std of the subset max."""
    n = len(rewards)
    subsets = list(itertools.combinations(range(n), k))
    rho = sum(max(rewards[i] for i in s) for s in subsets) / len(subsets)
    sigma = math.sqrt(rho * (1 - rho))
    if sigma == 0:
        return [0.0] * n
    out = []
    for i in range(n):
        with_i = [s for s in subsets if i in s]
        out.append((sum(max(rewards[j] for j in s) for s in with_i) / len(with_i) - rho) / sigma)
    return out


def test_reference_example_from_the_notes():
    # INTEGRATION_NOTES quotes "n=8, c=5, k=4: ρ 0.9286, A+ 0.2773, A− −0.1664"; those numbers are for 3 correct
    # and 5 wrong (with 5 correct every 4-subset succeeds and ρ = 1).
    rewards = torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0]], dtype=torch.float32)
    adv = passk_advantages(rewards, k=4)
    assert adv[0, 0].item() == pytest.approx(0.2773, abs=1e-4)
    assert adv[0, -1].item() == pytest.approx(-0.1664, abs=1e-4)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 8])
def test_passk_matches_brute_force_on_every_small_group(n):
    for k in range(1, n + 1):
        for bits in itertools.product([0, 1], repeat=n):
            got = passk_advantages(torch.tensor([bits], dtype=torch.float64), k=k)[0].tolist()
            want = brute_force_passk(list(bits), k)
            assert got == pytest.approx(want, abs=1e-5), (bits, k)


def test_degenerate_groups_get_zero_and_batches_are_independent():
    rewards = torch.tensor([[1.0] * 4, [0.0] * 4, [1, 1, 1, 0], [1, 0, 0, 0]])
    adv = passk_advantages(rewards, k=2)
    assert torch.all(adv[:3] == 0)  # all correct, all wrong, fewer than k wrong
    assert torch.allclose(adv[3], passk_advantages(rewards[3:], k=2)[0])


def test_correctness_threshold_ignores_additive_shaping():
    shaped = torch.tensor([[0.9, 1.0, -0.1, 0.0]])
    assert torch.allclose(passk_advantages(shaped, k=2), passk_advantages(torch.tensor([[1.0, 1, 0, 0]]), k=2))


def test_bad_k():
    with pytest.raises(ValueError, match="1 <= k <= group size"):
        passk_advantages(torch.zeros(1, 4), k=5)


def test_group_mean_advantages():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    none = group_mean_advantages(rewards, "none")
    assert torch.allclose(none, torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.25, 0.25, 0.25, -0.75]]))
    group = group_mean_advantages(rewards, "group")
    assert torch.allclose(group[0], none[0] / (rewards[0].std() + 1e-4))
    with pytest.raises(ValueError):
        group_mean_advantages(rewards, "token")


@pytest.mark.parametrize("n,k", [(8, 1), (8, 4), (16, 8), (5, 5)])
def test_unbiased_pass_at_k_matches_enumeration(n, k):
    for c in range(n + 1):
        bits = [1] * c + [0] * (n - c)
        subsets = list(itertools.combinations(range(n), k))
        exact = sum(max(bits[i] for i in s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
