import pytest
import torch
from transformers import MinPLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from logitmlp_hf import apply_preset, preset_parameters


def _tv(p, q):
    return 0.5 * (p - q).abs().sum(-1).max().item()


def test_temperature_preset_is_exact():
    logits = torch.randn(3, 200) * 4
    for temperature in (0.3, 1.0, 1.7):
        warped = apply_preset("temperature", logits, temperature)
        assert torch.allclose(warped.softmax(-1), (logits / temperature).softmax(-1), atol=1e-6)


@pytest.mark.parametrize(
    "name,value,warper",
    [
        ("top_k", 5, TopKLogitsWarper(top_k=5)),
        ("top_p", 0.8, TopPLogitsWarper(top_p=0.8)),
        ("min_p", 0.1, MinPLogitsWarper(min_p=0.1)),
    ],
)
def test_truncation_presets_converge_to_transformers_warpers(name, value, warper):
    torch.manual_seed(0)
    logits = torch.randn(6, 300) * 3
    target = warper(torch.zeros(6, 1, dtype=torch.long), logits.clone()).softmax(-1)
    slopes = (1.0, 4.0, 1000.0)
    distances = [_tv(apply_preset(name, logits, value, tail_slope=s).softmax(-1), target) for s in slopes]
    assert distances[0] > distances[1] > distances[2]  # monotone approach as the tail gets steeper
    assert distances[2] < 1e-3  # the limit is the exact rule (float32 limits how steep a slope stays accurate)
    assert distances[1] < distances[0] / 2  # the bounded (slope 4) member is already a useful approximation


def test_truncation_presets_keep_the_kept_set_relative_probabilities():
    logits = torch.randn(2, 100)
    warped = apply_preset("top_k", logits, 10, tail_slope=4.0)
    top = logits.topk(10, -1).indices
    p_base = logits.softmax(-1).gather(-1, top)
    p_warp = warped.softmax(-1).gather(-1, top)
    assert torch.allclose(p_warp / p_warp.sum(-1, keepdim=True), p_base / p_base.sum(-1, keepdim=True), atol=1e-6)


def test_bad_preset_arguments():
    logits = torch.randn(2, 10)
    with pytest.raises(ValueError, match="unknown preset"):
        preset_parameters("typical", logits, 0.5)
    with pytest.raises(ValueError, match="top_k"):
        preset_parameters("top_k", logits, 11)
    with pytest.raises(ValueError, match="temperature"):
        preset_parameters("temperature", logits, 0.0)
