import pytest
import torch

from logitmlp_hf import LogitMLPConfig, LogitMLPHead, logit_statistics


@pytest.mark.parametrize("d,w", [(48, 256), (576, 256), (2048, 256), (64, 32)])
def test_parameter_count_formula(d, w):
    config = LogitMLPConfig(hidden_size=d, vocab_size=100, head_hidden_size=w)
    head = LogitMLPHead(config)
    expected = (d + 3) * w + w + 3 * w + 3
    assert sum(p.numel() for p in head.parameters()) == expected == config.num_head_parameters


def test_qwen3_1p7b_head_is_about_0p03_percent():
    config = LogitMLPConfig(hidden_size=2048, vocab_size=151936)
    assert 520_000 < config.num_head_parameters < 530_000
    assert 0.025 < 100 * config.num_head_parameters / 1.72e9 < 0.035


def test_near_identity_init_and_gradient_reaches_first_layer():
    torch.manual_seed(0)
    config = LogitMLPConfig(hidden_size=48, vocab_size=300)
    head = LogitMLPHead(config)
    assert torch.all(head.fc_out.bias == 0)
    assert 0.8 < head.fc_out.weight.std().item() / config.init_std < 1.2  # N(0, init_std), not zeros
    hidden, logits = torch.randn(16, 48), torch.randn(16, 300) * 3
    warped, (s1, s2, b) = head.warp(hidden, logits)
    assert (s1 - 1).abs().max() < 0.05 and (s2 - 1).abs().max() < 0.05
    loss = warped.log_softmax(-1)[:, 0].sum()
    loss.backward()
    assert head.fc_in.weight.grad.abs().sum() > 0 and head.fc_out.weight.grad.abs().sum() > 0


def test_statistics_are_detached_inputs():
    head = LogitMLPHead(LogitMLPConfig(hidden_size=8, vocab_size=20))
    logits = torch.randn(3, 20, requires_grad=True)
    warped, _ = head.warp(torch.randn(3, 8), logits)
    warped.sum().backward()
    # the only path from logits to the output is f(ℓ) itself: ∂f/∂ℓ is s1 or s2, never a term through the stats
    stats = logit_statistics(logits)
    assert not stats.max.requires_grad
    params = head(torch.randn(3, 8), logits)
    assert not any(torch.autograd.grad(params.s1.sum(), logits, allow_unused=True)[0] is not None for _ in [0])


def test_head_rejects_wrong_hidden_size():
    head = LogitMLPHead(LogitMLPConfig(hidden_size=8, vocab_size=20))
    with pytest.raises(ValueError, match="hidden_size=8"):
        head(torch.randn(2, 9), torch.randn(2, 20))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"slope_bound": 1.0}, "slope_bound"),
        ({"breakpoint_scale": 0.0}, "breakpoint_scale"),
        ({"objective": "pass@2"}, "objective"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"pass_k": 0}, "pass_k"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(Exception, match=match):
        LogitMLPConfig(**kwargs)
