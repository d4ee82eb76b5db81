"""The LogitsProcessor path (a plain base model's generate) against the wrapper path."""

import pytest
import torch
from conftest import scramble_head, tiny_llama
from test_modeling import _batch
from transformers import LogitsProcessorList, TopKLogitsWarper

from logitmlp_hf import LogitMLPForCausalLM, LogitMLPLogitsProcessor


def _pair():
    base = tiny_llama()
    model = LogitMLPForCausalLM.from_base_model(base)
    scramble_head(model.logitmlp_head)
    return base, model.eval()


def test_processor_and_wrapper_give_the_same_next_token_distribution():
    base, model = _pair()
    ids, mask = _batch(lengths=(6, 4, 6))
    kwargs = dict(
        attention_mask=mask,
        max_new_tokens=8,
        pad_token_id=0,
        output_logits=True,
        output_scores=True,
        return_dict_in_generate=True,
    )
    torch.manual_seed(0)
    via_wrapper = model.generate(ids, do_sample=True, num_return_sequences=2, **kwargs)
    with LogitMLPLogitsProcessor(model.logitmlp_head, base, config=model.config) as warp:
        torch.manual_seed(0)
        via_processor = base.generate(ids, do_sample=True, num_return_sequences=2, logits_processor=[warp], **kwargs)
    assert torch.equal(via_wrapper.sequences, via_processor.sequences)
    for wrapped, processed in zip(via_wrapper.scores, via_processor.scores):
        assert torch.allclose(wrapped.log_softmax(-1), processed.log_softmax(-1), atol=1e-5)
    # the processor really acted: its scores differ from the raw base logits
    assert not torch.allclose(via_processor.scores[0], via_processor.logits[0], atol=1e-3)


def test_processor_composes_with_transformers_warpers():
    base, model = _pair()
    ids, mask = _batch(lengths=(5,))
    with LogitMLPLogitsProcessor(model.logitmlp_head, base) as warp:
        out = base.generate(
            ids,
            attention_mask=mask,
            do_sample=True,
            top_k=5,
            temperature=0.7,
            max_new_tokens=6,
            pad_token_id=0,
            logits_processor=[warp],
            output_scores=True,
            return_dict_in_generate=True,
        )
    for scores in out.scores:  # top-k ran after the warp: exactly 5 finite candidates
        assert int(torch.isfinite(scores).sum()) == 5
    # and by hand: warp then TopK equals the generate scores at step 0
    with LogitMLPLogitsProcessor(model.logitmlp_head, base) as warp:
        logits = base(ids, attention_mask=mask).logits[:, -1]
        chain = LogitsProcessorList([warp, TopKLogitsWarper(5)])
        assert torch.isfinite(chain(ids, logits)).sum() == 5


def test_processor_handles_neg_inf_from_earlier_processors():
    base, model = _pair()
    ids, mask = _batch(lengths=(5,))
    with LogitMLPLogitsProcessor(model.logitmlp_head, base) as warp:
        torch.manual_seed(0)
        out = base.generate(
            ids,
            attention_mask=mask,
            do_sample=True,
            min_new_tokens=4,
            max_new_tokens=4,
            pad_token_id=0,
            logits_processor=[warp],
        )
    assert out.shape == (1, 9)


def test_processor_errors_are_specific():
    base, model = _pair()
    warp = LogitMLPLogitsProcessor(model.logitmlp_head, base)
    with pytest.raises(RuntimeError, match="saw no hidden state"):
        warp(torch.zeros(1, 3, dtype=torch.long), torch.randn(1, 256))
    warp.remove()
    ids, _ = _batch(lengths=(4,))
    with pytest.raises(RuntimeError, match="saw no hidden state"):  # removed: no longer hooked
        base.generate(ids, max_new_tokens=2, logits_processor=[warp], pad_token_id=0)
    other = tiny_llama(hidden_size=32)
    from logitmlp_hf import IncompatibleBaseModelError

    with pytest.raises(IncompatibleBaseModelError, match="hidden size 32 \\(head expects 48\\)"):
        LogitMLPLogitsProcessor(model.logitmlp_head, other, config=model.config)


def _scrambled(base, model_class, seed=3):
    """A head of ``model_class`` on ``base`` with large random weights (far from the identity)."""
    from logitmlp_hf import AutoDecoForCausalLM

    model = model_class.from_base_model(base, **({"init_top_p": 0.6} if model_class is AutoDecoForCausalLM else {}))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.decoding_head.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.eval()


def _head_types():
    # (the token-level adapter is left out: its decisions read only h and its logits are already log-probs, so the
    # two paths agreed in beam search before the processor handled it)
    from logitmlp_hf import AutoDecoForCausalLM

    return [LogitMLPForCausalLM, AutoDecoForCausalLM]


@pytest.mark.parametrize("model_class", _head_types(), ids=lambda c: c.__name__)
def test_beam_search_through_the_processor_ranks_beams_as_the_wrapper(model_class):
    """transformers hands processors log-softmaxed scores in beam search; the processor restores the logits for the
    head and returns log-probs, so both paths keep the same beams with the same scores."""
    base = tiny_llama()
    model = _scrambled(base, model_class)
    ids, mask = _batch(lengths=(6, 4, 6))
    kwargs = dict(
        attention_mask=mask,
        max_new_tokens=8,
        pad_token_id=0,
        num_beams=4,
        num_return_sequences=2,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
    )
    via_wrapper = model.generate(ids, **kwargs)
    with LogitMLPLogitsProcessor(model.decoding_head, base, config=model.config) as warp:
        via_processor = base.generate(ids, logits_processor=[warp], **kwargs)
    assert torch.equal(via_wrapper.sequences, via_processor.sequences)
    torch.testing.assert_close(via_wrapper.sequences_scores, via_processor.sequences_scores)
    for wrapped, processed in zip(via_wrapper.scores, via_processor.scores):
        torch.testing.assert_close(wrapped, processed)
    plain = base.generate(ids, **kwargs)  # the head really changed the search
    assert not torch.equal(plain.sequences, via_processor.sequences)


def test_processor_restores_logits_from_log_probs_exactly():
    """One step by hand: given log_softmax(logits) the head sees the logits themselves, and returns log-probs."""
    base, model = _pair()
    ids, mask = _batch(lengths=(5, 5))
    with LogitMLPLogitsProcessor(model.logitmlp_head, base) as warp:
        logits = base(ids, attention_mask=mask).logits[:, -1].float()
        from_logits = warp(ids, logits.clone())
        base(ids, attention_mask=mask)
        from_log_probs = warp(ids, torch.log_softmax(logits, dim=-1))
    torch.testing.assert_close(from_log_probs, torch.log_softmax(from_logits, dim=-1), rtol=0, atol=1e-6)
    assert torch.allclose(from_log_probs.logsumexp(-1), torch.zeros(2), atol=1e-5)
