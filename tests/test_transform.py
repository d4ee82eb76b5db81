import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from logitmlp_hf import NonFiniteLogitsError, logit_statistics, warp_logits, warp_parameters


finite = st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False, width=32)
slope = st.floats(min_value=0.25, max_value=4.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=2, max_size=64), slope, slope, finite)
def test_warp_preserves_every_pairwise_order(values, s1, s2, b):
    logits = torch.tensor(values)
    warped = warp_logits(logits, torch.tensor(s1), torch.tensor(s2), torch.tensor(b))
    i, j = torch.meshgrid(torch.arange(len(values)), torch.arange(len(values)), indexing="ij")
    below = logits[i] < logits[j]
    # float32 resolution at this scale: logits closer than this may tie after scaling, never more
    resolution = 1e-6 * 8 * (1 + logits.abs().max() + abs(b))
    resolvable = (logits[j] - logits[i]) > resolution
    assert torch.equal(below & resolvable, (warped[i] < warped[j]) & resolvable)
    assert not (below & (warped[i] - warped[j] > resolution)).any()
    assert warped[logits.argmax()] == warped.max()  # the base's argmax stays an argmax


@settings(max_examples=200, deadline=None)
@given(slope, slope, finite)
def test_warp_is_continuous_at_the_breakpoint(s1, s2, b):
    eps = 1e-3
    points = torch.tensor([b - eps, b, b + eps], dtype=torch.float64)
    f = s1 * points + (s2 - s1) * torch.relu(points - b)  # the spec in float64
    warped = warp_logits(points.float(), torch.tensor(s1), torch.tensor(s2), torch.tensor(b))
    assert abs(float(warped[1]) - s1 * b) <= 1e-4 * max(1.0, abs(s1 * b))
    assert torch.allclose(warped.double(), f, rtol=1e-5, atol=1e-4)
    assert abs(float(warped[2] - warped[0])) <= 2 * eps * max(s1, s2) + 1e-4


def test_equal_slopes_are_exactly_temperature():
    logits = torch.randn(4, 100) * 5
    for temperature in (0.25, 0.7, 1.0, 2.0, 4.0):
        s = torch.full((4,), 1 / temperature)
        b = torch.randn(4)
        warped = warp_logits(logits, s, s, b)
        assert torch.allclose(warped.softmax(-1), (logits / temperature).softmax(-1), atol=1e-6)


def test_unit_slopes_are_the_identity_bit_for_bit():
    logits = torch.randn(3, 5, 77)
    ones = torch.ones(3, 5)
    assert torch.equal(warp_logits(logits, ones, ones, torch.randn(3, 5)), logits)


def test_statistics_ignore_neg_inf_and_warp_keeps_it():
    logits = torch.randn(2, 50)
    masked = logits.clone()
    masked[0, :10] = float("-inf")
    stats = logit_statistics(masked)
    assert torch.allclose(stats.max[0], logits[0, 10:].max())
    assert torch.allclose(stats.mean[0], logits[0, 10:].mean())
    assert torch.allclose(stats.std[0], logits[0, 10:].std(correction=0))
    assert torch.allclose(stats.mean[1], logits[1].mean())
    warped = warp_logits(masked, torch.tensor([0.5, 3.0]), torch.tensor([3.0, 0.5]), stats.max - stats.std)
    assert torch.isneginf(warped[0, :10]).all()
    assert torch.isfinite(warped[0, 10:]).all() and torch.isfinite(warped[1]).all()
    assert not torch.isnan(warped.softmax(-1)).any()


def test_statistics_are_float32_and_detached_for_half_precision_inputs():
    logits = (torch.randn(2, 3, 4000) * 8).requires_grad_()
    for dtype in (torch.bfloat16, torch.float16):
        half = logits.to(dtype)
        stats = logit_statistics(half)
        reference = half.float()
        assert stats.mean.dtype == torch.float32 and not stats.mean.requires_grad
        assert torch.allclose(stats.mean, reference.mean(-1), atol=1e-5)
        assert torch.allclose(stats.std, reference.std(-1, correction=0), atol=1e-4)


def test_fp16_logits_near_the_fp16_limit_do_not_overflow():
    logits = torch.full((1, 8), 60000.0, dtype=torch.float16)
    logits[0, 0] = 65000.0
    warped = warp_logits(logits, torch.tensor([4.0]), torch.tensor([4.0]), torch.tensor([0.0]))
    assert warped.dtype == torch.float32 and torch.isfinite(warped).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_pos_inf_logits_raise_a_clear_error(bad):
    logits = torch.randn(3, 20)
    logits[1, 4] = bad
    with pytest.raises(NonFiniteLogitsError, match="1 of 3 logit rows"):
        logit_statistics(logits)


def test_all_masked_row_raises():
    logits = torch.full((1, 20), float("-inf"))
    with pytest.raises(NonFiniteLogitsError):
        logit_statistics(logits)


def test_warp_parameters_bounds_and_zero_point():
    stats = logit_statistics(torch.randn(1000, 30) * 3)
    raw = torch.randn(1000, 3) * 20
    s1, s2, b = warp_parameters(raw, stats, slope_bound=4.0, breakpoint_scale=4.0)
    for s in (s1, s2):
        assert (s >= 0.25).all() and (s <= 4.0).all()
    assert (b <= stats.max).all() and (b >= stats.max - 4 * stats.std).all()
    s1, s2, b = warp_parameters(torch.zeros(1000, 3), stats)
    assert torch.equal(s1, torch.ones(1000)) and torch.equal(s2, torch.ones(1000))
    assert torch.allclose(b, stats.max - 2 * stats.std)
    # the formula exactly as specified: s = exp(log 4 · (2σ(x) − 1))
    x = torch.linspace(-6, 6, 25)
    s, _, _ = warp_parameters(torch.stack([x, x, x], -1), logit_statistics(torch.randn(25, 10)))
    assert torch.allclose(s, torch.exp(math.log(4) * (2 * torch.sigmoid(x) - 1)), atol=1e-6)


def test_any_leading_shape():
    for shape in [(50,), (3, 50), (2, 3, 50), (2, 2, 2, 50)]:
        logits = torch.randn(shape)
        stats = logit_statistics(logits)
        assert stats.max.shape == shape[:-1]
        params = warp_parameters(torch.randn(*shape[:-1], 3), stats)
        assert warp_logits(logits, *params).shape == shape


def test_unmasked_fast_path_agrees_with_the_masked_computation():
    logits = torch.randn(4, 7, 3000) * 6
    fast = logit_statistics(logits)
    masked = logits.clone()
    masked[..., -1] = float("-inf")  # forces the masked path; compare on the same finite entries
    slow = logit_statistics(masked)
    reference = logit_statistics(logits[..., :-1])
    for a, b in zip(slow, reference):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(fast.mean, logits.mean(-1), atol=1e-5)
    assert torch.allclose(fast.std, logits.std(-1, correction=0), atol=1e-5)


def test_in_place_warp_equals_the_warp_and_reuses_float32_storage():
    logits = torch.randn(5, 300) * 4
    logits[0, :7] = float("-inf")
    s1, s2 = torch.tensor([0.3, 2.0, 1.0, 4.0, 0.5]), torch.tensor([3.0, 0.4, 1.0, 0.25, 0.5])
    b = logits.amax(-1) - 2.0
    expected = warp_logits(logits, s1, s2, b)
    work = logits.clone()
    out = warp_logits(work, s1, s2, b, inplace=True)
    assert out.data_ptr() == work.data_ptr() and torch.equal(out, expected)
    half = logits.half()
    assert torch.equal(warp_logits(half, s1, s2, b, inplace=True), warp_logits(half, s1, s2, b))
