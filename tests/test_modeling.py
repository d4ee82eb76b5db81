"""The wrapper on tiny random models: forward, KV cache, generate() equivalence, freezing."""

import pytest
import torch
from conftest import VOCAB, identity_head, scramble_head, tiny_llama, tiny_qwen3

from logitmlp_hf import LogitMLPForCausalLM, NonFiniteLogitsError


def _wrapped(base=None, scramble=True):
    model = LogitMLPForCausalLM.from_base_model(base if base is not None else tiny_llama())
    if scramble:
        scramble_head(model.logitmlp_head)
    return model.eval()


def _batch(lengths=(7, 4), seed=0):
    """A left-padded batch (pad id 0)."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, width - n :] = torch.randint(3, VOCAB, (n,), generator=gen)
        mask[row, width - n :] = 1
    return ids, mask


@pytest.mark.parametrize("make_base", [tiny_llama, tiny_qwen3])
def test_forward_warps_the_base_logits(make_base):
    model = _wrapped(make_base())
    ids, mask = _batch()
    out = model(ids, attention_mask=mask, output_base_logits=True, output_warp_params=True)
    base_logits = model.get_base_model()(ids, attention_mask=mask).logits
    assert torch.equal(out.base_logits, base_logits)
    assert out.logits.dtype == torch.float32 and out.s1.shape == ids.shape
    expected = torch.where(
        base_logits > out.b[..., None],
        out.s2[..., None] * base_logits + (out.s1 - out.s2)[..., None] * out.b[..., None],
        out.s1[..., None] * base_logits,
    )
    assert torch.allclose(out.logits, expected)
    assert (out.logits.softmax(-1) - base_logits.softmax(-1)).abs().max() > 1e-3  # the scrambled head acts
    with model.disable_head():
        assert torch.equal(model(ids, attention_mask=mask).logits, base_logits)


def test_logits_to_keep_and_incremental_decoding_match_a_full_forward():
    model = _wrapped()
    ids, _ = _batch(lengths=(9,))
    full = model(ids).logits
    last = model(ids, logits_to_keep=1).logits
    assert last.shape == (1, 1, VOCAB) and torch.allclose(last[:, -1], full[:, -1], atol=1e-5)
    # prefix with cache, then one token at a time: same warped logits as the full pass
    out = model(ids[:, :5], use_cache=True)
    steps = [out.logits[:, -1]]
    cache = out.past_key_values
    for t in range(5, 9):
        out = model(ids[:, t : t + 1], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        steps.append(out.logits[:, -1])
    assert torch.allclose(torch.stack(steps[:-1], 1), full[:, 4:8], atol=1e-5)


def test_identity_head_reproduces_base_generate_exactly():
    base = tiny_llama()
    model = LogitMLPForCausalLM.from_base_model(base)
    identity_head(model.logitmlp_head)
    ids, mask = _batch(lengths=(6, 3, 5))
    kwargs = dict(attention_mask=mask, max_new_tokens=12, pad_token_id=0)
    greedy = model.generate(ids, do_sample=False, **kwargs)
    assert torch.equal(greedy, base.generate(ids, do_sample=False, **kwargs))
    for seed in (0, 1):
        torch.manual_seed(seed)
        warped = model.generate(ids, do_sample=True, num_return_sequences=2, **kwargs)
        torch.manual_seed(seed)
        plain = base.generate(ids, do_sample=True, num_return_sequences=2, **kwargs)
        assert torch.equal(warped, plain)


def test_any_head_keeps_greedy_decoding_but_changes_sampling():
    base = tiny_llama()
    model = _wrapped(base)
    ids, mask = _batch(lengths=(6, 3))
    kwargs = dict(attention_mask=mask, max_new_tokens=10, pad_token_id=0)
    assert torch.equal(model.generate(ids, do_sample=False, **kwargs), base.generate(ids, do_sample=False, **kwargs))
    torch.manual_seed(0)
    warped = model.generate(ids, do_sample=True, num_return_sequences=4, **kwargs)
    torch.manual_seed(0)
    plain = base.generate(ids, do_sample=True, num_return_sequences=4, **kwargs)
    assert warped.shape == plain.shape == (8, 16)
    assert not torch.equal(warped, plain)
    with model.disable_head():
        torch.manual_seed(0)
        assert torch.equal(model.generate(ids, do_sample=True, num_return_sequences=4, **kwargs), plain)


def test_generate_scores_are_the_warped_distribution():
    model = _wrapped()
    ids, mask = _batch(lengths=(5, 5))
    out = model.generate(
        ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=3,
        pad_token_id=0,
        output_logits=True,
        return_dict_in_generate=True,
    )
    seq = out.sequences
    full = model(seq[:, :-1], attention_mask=torch.ones_like(seq[:, :-1])).logits
    for step, step_logits in enumerate(out.logits):
        assert torch.allclose(step_logits, full[:, 4 + step], atol=1e-4)


def test_left_padding_does_not_change_a_sequence():
    model = _wrapped()
    ids, mask = _batch(lengths=(8, 3))
    alone = ids[1:, -3:]
    torch.manual_seed(0)
    batched = model(ids, attention_mask=mask).logits[1, -1]
    single = model(alone).logits[0, -1]
    assert torch.allclose(batched, single, atol=1e-4)


def test_base_is_frozen_and_stays_in_eval_mode():
    model = _wrapped()
    model.train()
    assert model.logitmlp_head.training and not model.get_base_model().training
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("logitmlp_head.") for n in trainable)
    ids, _ = _batch(lengths=(6,))
    before = {n: p.clone() for n, p in model.get_base_model().named_parameters()}
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    out = model(ids, labels=ids)
    out.loss.backward()
    optim.step()
    assert all(torch.equal(before[n], p) for n, p in model.get_base_model().named_parameters())
    assert model.logitmlp_head.fc_out.weight.grad is not None


def test_loss_is_on_the_warped_distribution():
    model = _wrapped()
    ids, _ = _batch(lengths=(6,))
    out = model(ids, labels=ids)
    manual = torch.nn.functional.cross_entropy(out.logits[0, :-1], ids[0, 1:])
    assert torch.allclose(out.loss, manual, atol=1e-5)


def test_min_new_tokens_masking_does_not_produce_nan():
    model = _wrapped()
    ids, mask = _batch(lengths=(5,))
    torch.manual_seed(0)
    out = model.generate(
        ids,
        attention_mask=mask,
        do_sample=True,
        min_new_tokens=6,
        max_new_tokens=6,
        pad_token_id=0,
        top_k=20,
        top_p=0.9,
    )
    assert out.shape == (1, 11)


def test_nonfinite_base_logits_raise_a_clear_error():
    model = _wrapped()
    with torch.no_grad():
        model.get_base_model().lm_head.weight[5, 0] = float("nan")
    ids, _ = _batch(lengths=(4,))
    with pytest.raises(NonFiniteLogitsError, match="NaN or \\+inf"):
        model(ids)


def test_print_trainable_parameters(capsys):
    model = _wrapped()
    model.print_trainable_parameters()
    trainable = (48 + 3) * 256 + 256 + 3 * 256 + 3
    assert f"trainable params: {trainable:,d}" in capsys.readouterr().out


@pytest.mark.parametrize("make_base", [tiny_llama, tiny_qwen3])
def test_rollouts_prefill_each_repeated_prompt_once(make_base):
    """Training rollouts (a feature record is open) repeat each prompt in consecutive rows: its prefix is prefilled
    once and the cache shared, and the samples and the recorded features are those of plain generate."""
    model = _wrapped(make_base())
    ids, mask = _batch(lengths=(7, 4, 6))
    ids, mask = ids.repeat_interleave(3, dim=0), mask.repeat_interleave(3, dim=0)  # 3 prompts × 3 rows
    shapes = []
    hook = model.get_base_model().register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    runs = {}
    try:
        for shared in (True, False):
            if not shared:  # plain generate: every row prefilled in full
                model._prefill_repeated_prompts = lambda kwargs: kwargs
            shapes.clear()
            torch.manual_seed(0)
            with model.record_generation_features() as record:
                out = model.generate(
                    input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=6, pad_token_id=0
                )
            completion = out[:, ids.shape[1] :]
            runs[shared] = (completion, *record.completion_features(*completion.shape), list(shapes))
    finally:
        hook.remove()
    (ids_a, hidden_a, feats_a, shapes_a), (ids_b, hidden_b, feats_b, shapes_b) = runs[True], runs[False]
    assert torch.equal(ids_a, ids_b)
    assert torch.allclose(hidden_a, hidden_b, atol=1e-5) and torch.allclose(feats_a, feats_b, atol=1e-4)
    assert shapes_a[:2] == [(3, ids.shape[1] - 1), (9, 1)]  # 3 prompt prefixes once, then one token per row
    assert shapes_b[0] == (9, ids.shape[1])


def test_prompts_without_repeats_are_prefilled_as_usual():
    model = _wrapped()
    ids, mask = _batch(lengths=(7, 4, 6))
    with model.record_generation_features():
        assert model._prefill_repeated_prompts({"input_ids": ids, "attention_mask": mask}) == {
            "input_ids": ids,
            "attention_mask": mask,
        }


@pytest.mark.parametrize("make_base", [tiny_llama, tiny_qwen3])
def test_rows_loop_samples_the_warp_and_records_each_rollouts_features(make_base):
    """The package's decoding loop (rows leave at their end-of-sequence token) under a feature record: the same
    samples as the loop over the wrapper's forward, and each rollout's recorded features are those of one pass of
    the base over it, whichever step it left the batch at."""
    from logitmlp_hf.evaluation.sampler import sample_completions
    from logitmlp_hf.features import cache_features

    model = _wrapped(make_base())
    prompts, per_prompt = [[5, 6, 7, 8, 9], [10, 11, 12]], 4
    settings = dict(
        max_new_tokens=7,
        eos_token_ids=set(range(3, VOCAB, 5)),  # ~1 token in 5 ends a rollout: rows leave at different steps
        pad_token_id=0,
        row_seeds=list(range(100, 108)),
    )
    with model.record_generation_features() as record:
        rows = model.sample_completions(prompts, per_prompt, **settings)
    assert rows == sample_completions(model, prompts, per_prompt, **settings)
    lengths = [len(r) for r in rows]
    assert len(set(lengths)) > 1 and max(lengths) > 1
    hidden, features = record.completion_features(len(rows), max(lengths))
    assert not hidden.is_inference() and torch.isfinite(hidden).all() and torch.isfinite(features).all()
    lm = model.get_base_model()
    for r, completion in enumerate(rows):
        ids = torch.tensor([prompts[r // per_prompt] + completion])
        want_hidden, want_features = cache_features(lm, ids, torch.ones_like(ids), len(completion))
        n = len(completion)
        assert torch.allclose(hidden[r, :n], want_hidden[0], atol=1e-5)
        assert torch.allclose(features[r, :n], want_features[0], atol=1e-4)
        assert torch.equal(hidden[r, n:], hidden[r, n - 1].expand_as(hidden[r, n:]))  # padding: the last entry
    assert record.completion_features(len(rows) - 1, max(lengths)) is None  # another batch: not this record


def test_rows_loop_refuses_heads_that_read_the_token_budget():
    from logitmlp_hf.heads.registry import decoding_head_type

    model = decoding_head_type("decoding_adapter").model_class.from_base_model(tiny_llama(), budget_conditioning=True)
    with pytest.raises(ValueError, match="reads the token budget: sample with generate"):
        model.sample_completions([[5, 6]], 2, max_new_tokens=3, eos_token_ids={1}, pad_token_id=0)
