"""AutoDeco as its released code has it (``Zacks917/AutoDeco``): checkpoints in its format load and decide as its
heads do, the top-p head reads its inputs, and a user's temperature/top-p *scale* the head's predictions."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_llama
from safetensors.torch import load_file, save_file
from test_modeling import _batch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationConfig, TemperatureLogitsWarper, TopPLogitsWarper

from logitmlp_hf import (
    AutoDecoConfig,
    AutoDecoForCausalLM,
    AutoDecoHead,
    DecodingHeadLogitsProcessor,
    HeadCheckpointError,
    LogitMLPForCausalLM,
)
from logitmlp_hf.hub.head_repo import load_head_config, load_head_state_dict
from logitmlp_hf.sampling_rules import SamplingRule


EXAMPLE_HEAD = Path(__file__).resolve().parents[1] / "examples/results/decoding_policies/heads/autodeco"


# ------------------------------------------------------------------------------- the released heads, replicated
# Written from the released module definitions (model/templlm_auto.py: TempHead, TopPHead and the part of
# AutoDecoModelForCausalLM.forward that runs them), so that checkpoints are made the way the released code makes them.
class ReleasedTopPHead(nn.Module):
    def __init__(self, hidden_size, use_enhanced_features=True):
        super().__init__()
        self.use_enhanced_features = use_enhanced_features
        input_dim = hidden_size + 1 + (4 if use_enhanced_features else 0)
        self.mlp = nn.Sequential(nn.Linear(input_dim, 256), nn.ReLU(), nn.Linear(256, 1), nn.Sigmoid())

    def compute_prob_stats(self, logits):
        probs = torch.softmax(logits, dim=-1)
        max_prob = probs.max(dim=-1, keepdim=True)[0]
        log_probs = torch.log(probs + 1e-8)
        entropy = -(probs * log_probs).sum(dim=-1, keepdim=True)
        prob_var = probs.var(dim=-1, keepdim=True)
        top5_probs, _ = torch.topk(probs, min(5, probs.size(-1)), dim=-1)
        top5_sum = top5_probs.sum(dim=-1, keepdim=True)
        return torch.cat([max_prob, entropy, prob_var, top5_sum], dim=-1)

    def forward(self, hidden_states, temp_logits, unscaled_logits=None):
        if self.use_enhanced_features:
            scaled_logits = unscaled_logits / (temp_logits + 1e-8)
            features = [hidden_states, temp_logits, self.compute_prob_stats(scaled_logits)]
            return self.mlp(torch.cat(features, dim=-1))
        return self.mlp(torch.cat([hidden_states, temp_logits], dim=-1))


class ReleasedTempHead(nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden_size, 256), nn.ReLU(), nn.Linear(256, 1), nn.Sigmoid())

    def forward(self, hidden_states):
        return self.mlp(hidden_states) * 2


class ReleasedHeads(nn.Module):
    def __init__(self, hidden_size, use_enhanced_features=True):
        super().__init__()
        self.temp_head = ReleasedTempHead(hidden_size)
        self.top_p_head = ReleasedTopPHead(hidden_size, use_enhanced_features)

    def forward(self, hidden_states, unscaled_logits):
        temp_logits = self.temp_head(hidden_states)
        top_p_logits = self.top_p_head(hidden_states, temp_logits.detach(), unscaled_logits=unscaled_logits)
        return temp_logits.squeeze(-1), top_p_logits.squeeze(-1)


def released_top_p(logits, p):
    """vLLM's top-p (the released fork samples with it): drop the ascending cumulative mass <= 1 − p, keep the top."""
    sorted_logits, order = logits.sort(dim=-1, descending=False)
    remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= 1 - p.unsqueeze(-1)
    remove[..., -1] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def released_distribution(logits, t_hat, p_hat, user_temperature, user_top_p):
    """The released fork's sampling distribution: T = T̂·T_user, p = clamp(p̂·p_user, 0, 1), one top-p at T."""
    t = t_hat * user_temperature
    p = (p_hat * user_top_p).clamp(0.0, 1.0)
    return released_top_p(logits / t.unsqueeze(-1), p).softmax(dim=-1)


def write_released_checkpoint(path, base_dir, use_enhanced_features=True, filename="autodeco_heads.safetensors"):
    """A head directory as the released code writes it: its config (the base's fields and the head flags) and the
    heads' tensors under ``temp_head.*`` / ``top_p_head.*``; random heads far from "no change"."""
    base_config = json.loads((Path(base_dir) / "config.json").read_text())
    torch.manual_seed(7)
    heads = ReleasedHeads(base_config["hidden_size"], use_enhanced_features)
    with torch.no_grad():  # spread T̂ and p̂ away from "no change"
        for head, bias in ((heads.temp_head, 1.2), (heads.top_p_head, 1.5)):
            head.mlp[2].weight.mul_(4.0)
            head.mlp[2].bias.fill_(bias)
        if use_enhanced_features:  # the variance (< 4e-3 here) weighs as much as the other statistics
            heads.top_p_head.mlp[0].weight[:, base_config["hidden_size"] + 3].mul_(300.0)
    config = {
        **base_config,
        "model_type": "autodeco",
        "architectures": ["AutoDecoModelForCausalLM"],
        "base_model_name_or_path": str(base_dir),
        "base_model_type": base_config["model_type"],
        "enable_temperature_head": True,
        "enable_top_p_head": True,
        "use_enhanced_features": use_enhanced_features,
        "top_p_hidden_size": base_config["hidden_size"],
        "temperature_hidden_size": base_config["hidden_size"],
    }
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    state = {f"temp_head.{k}": v for k, v in heads.temp_head.state_dict().items()}
    state.update({f"top_p_head.{k}": v for k, v in heads.top_p_head.state_dict().items()})
    save_file({k: v.contiguous() for k, v in state.items()}, path / filename, metadata={"format": "pt"})
    return heads.eval()


@pytest.fixture
def peaked_base_dir(tmp_path):
    """A tiny Llama whose next-token distributions range from flat to peaked (max prob 0.004-0.93), saved locally:
    the released top-p head's probability statistics then vary from position to position."""
    base = tiny_llama()
    with torch.no_grad():
        base.lm_head.weight.mul_(30.0)
    base.save_pretrained(tmp_path / "peaked-llama")
    return tmp_path / "peaked-llama"


def _hidden_and_logits(base, ids, mask):
    captured = {}
    handle = base.get_output_embeddings().register_forward_pre_hook(lambda m, args: captured.update(h=args[0]))
    try:
        with torch.no_grad():
            logits = base(ids, attention_mask=mask).logits
    finally:
        handle.remove()
    return captured["h"], logits


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize(
    "use_enhanced_features, filename",
    [(True, "autodeco_heads.safetensors"), (False, "autodeco_heads.safetensors"), (True, "model.safetensors")],
    ids=["d+5", "d+1", "split-file"],
)
def test_released_checkpoint_loads_and_samples_as_the_released_heads(
    tmp_path, peaked_base_dir, use_enhanced_features, filename
):
    replica = write_released_checkpoint(tmp_path / "released", peaked_base_dir, use_enhanced_features, filename)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "released")  # the Auto classes read the released config
    assert isinstance(model, AutoDecoForCausalLM)
    config = model.config
    assert config.top_p_features == ("prob_stats" if use_enhanced_features else "temperature")
    assert (config.sampling_composition, config.head_hidden_size) == ("released", 256)

    base = model.get_base_model()
    ids, mask = _batch(lengths=(7, 5, 7), seed=3)
    out = model(ids, attention_mask=mask, output_decisions=True, output_base_logits=True)
    hidden, logits = _hidden_and_logits(base, ids, mask)
    with torch.no_grad():
        t_hat, p_hat = replica(hidden, logits)
    assert t_hat.min() < 0.7 and t_hat.max() > 1.2 and p_hat.max() - p_hat.min() > 0.2  # far from "no change"
    torch.testing.assert_close(out.decisions["temperature"], t_hat, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.decisions["top_p"], p_hat, atol=1e-6, rtol=0)

    head = model.autodeco_head
    for user_temperature, user_top_p in [(1.0, 1.0), (0.7, 0.9), (1.3, 0.5)]:
        rule = SamplingRule(temperature=user_temperature, top_p=user_top_p)
        ours = head.sampling_logits(logits, head.apply_user_rule(out.decisions, rule)).softmax(-1)
        expected = released_distribution(logits, t_hat, p_hat, user_temperature, user_top_p)
        assert torch.equal(ours > 0, expected > 0)  # the same kept token sets
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


def test_released_checkpoint_errors_name_the_file_and_key(tmp_path, base_dir):
    write_released_checkpoint(tmp_path / "ok", base_dir)
    file = tmp_path / "ok" / "autodeco_heads.safetensors"
    state = load_file(file)

    def variant(name, edit, config_edit=None):
        path = tmp_path / name
        shutil.copytree(tmp_path / "ok", path)
        save_file(edit(dict(state)), path / file.name)
        if config_edit:
            config = json.loads((path / "config.json").read_text())
            (path / "config.json").write_text(json.dumps({**config, **config_edit}))
        return path

    missing = variant("missing", lambda s: {k: v for k, v in s.items() if k != "top_p_head.mlp.2.bias"})
    extra = variant("extra", lambda s: {**s, "top_p_head.mlp.4.weight": torch.zeros(1)})
    narrow = variant("narrow", lambda s: s, {"use_enhanced_features": False})  # d+5 weights, config says d+1
    for path, pattern in [
        (missing, r"missing/autodeco_heads\.safetensors.*no tensor 'top_p_head\.mlp\.2\.bias'"),
        (extra, r"extra/autodeco_heads\.safetensors holds 'top_p_head\.mlp\.4\.weight'"),
        (narrow, r"narrow/autodeco_heads\.safetensors: 'top_p_head\.mlp\.0\.weight' has shape \(256, 53\)"),
    ]:
        config = load_head_config(path)
        with pytest.raises(HeadCheckpointError, match=pattern):
            load_head_state_dict(path, config)
    (tmp_path / "ok" / file.name).unlink()
    with pytest.raises(HeadCheckpointError, match="has none of .*autodeco_heads.safetensors"):
        load_head_state_dict(tmp_path / "ok", load_head_config(tmp_path / "ok"))


def test_configs_saved_before_the_fields_keep_their_behaviour(tmp_path):
    # the committed example head was saved before top_p_features / sampling_composition existed
    assert "top_p_features" not in json.loads((EXAMPLE_HEAD / "config.json").read_text())
    old = load_head_config(EXAMPLE_HEAD)
    assert (old.top_p_features, old.sampling_composition) == ("logit_spread", "sequential")
    state = load_head_state_dict(EXAMPLE_HEAD, old)
    assert state["top_p_head.0.weight"].shape[1] == old.hidden_size + 3
    head = AutoDecoHead(old)
    head.load_state_dict(state)
    assert not head.absorbs_user_rule and not head.reads_logits
    # a new config records both fields, so it reads back as it was written, defaults included
    new = AutoDecoConfig(hidden_size=48, vocab_size=256)
    new.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["top_p_features"], saved["sampling_composition"]) == ("prob_stats", "released")
    assert load_head_config(tmp_path).top_p_features == "prob_stats"


# ----------------------------------------------------------------------------------------------- composition
@pytest.mark.parametrize("seed", range(3))
def test_released_composition_is_the_released_rule(seed):
    gen = torch.Generator().manual_seed(seed)
    head = AutoDecoHead(AutoDecoConfig(hidden_size=8, vocab_size=300))
    logits = torch.randn(64, 300, generator=gen) * 3
    decisions = {
        "temperature": 0.2 + 1.8 * torch.rand(64, generator=gen),
        "top_p": 0.3 + 0.7 * torch.rand(64, generator=gen),
    }
    for user_temperature, user_top_p in [(1.0, 1.0), (0.6, 0.95), (1.0, 0.9), (0.8, 0.7), (1.5, 1.0), (0.0, 0.9)]:
        rule = SamplingRule(temperature=user_temperature, top_p=user_top_p)
        composed = head.apply_user_rule(decisions, rule)
        ours = head.sampling_logits(logits, composed)
        if user_temperature == 0:  # released: the user's temperature 0 is greedy
            assert torch.equal(ours.isfinite().sum(-1), torch.ones(64, dtype=torch.long))
            assert torch.equal(ours.argmax(-1), logits.argmax(-1))
            continue
        expected = released_distribution(logits, decisions["temperature"], decisions["top_p"], *rule_values(rule))
        assert torch.equal(ours.softmax(-1) > 0, expected > 0)
        torch.testing.assert_close(ours.softmax(-1), expected, atol=1e-6, rtol=0)


def rule_values(rule):
    return rule.temperature, rule.top_p


def _scrambled(base, **config):
    model = AutoDecoForCausalLM.from_base_model(base, init_std=0.2, **config)
    with torch.no_grad():
        model.autodeco_head.top_p_head[2].bias.fill_(0.5)  # p̂ around 0.6: the nucleus matters
    return model.eval()


GENERATE = dict(max_new_tokens=6, pad_token_id=0, output_scores=True, output_logits=True, return_dict_in_generate=True)


def test_generate_composes_the_users_settings_through_the_wrapper_and_the_processor():
    base = tiny_llama()
    model = _scrambled(base)
    ids, mask = _batch(lengths=(6, 4, 6))
    sampling = dict(do_sample=True, temperature=0.7, top_p=0.9, top_k=0)
    torch.manual_seed(0)
    via_wrapper = model.generate(ids, attention_mask=mask, **sampling, **GENERATE)
    # the processor takes the user's temperature/top-p itself; generate gets neither
    with DecodingHeadLogitsProcessor(model.autodeco_head, base, config=model.config, temperature=0.7, top_p=0.9) as w:
        torch.manual_seed(0)
        via_processor = base.generate(
            ids, attention_mask=mask, do_sample=True, top_k=0, logits_processor=[w], **GENERATE
        )
    assert torch.equal(via_wrapper.sequences, via_processor.sequences)
    for a, b in zip(via_wrapper.scores, via_processor.scores):
        torch.testing.assert_close(a.softmax(-1), b.softmax(-1), atol=1e-6, rtol=0)

    # the first step's distribution is the released rule on the base logits at the head's decisions
    step = model(ids, attention_mask=mask, output_decisions=True, output_base_logits=True)
    t_hat, p_hat = step.decisions["temperature"][:, -1], step.decisions["top_p"][:, -1]
    expected = released_distribution(step.base_logits[:, -1].float(), t_hat, p_hat, 0.7, 0.9)
    torch.testing.assert_close(via_wrapper.scores[0].softmax(-1), expected, atol=1e-6, rtol=0)

    # a GenerationConfig (TRL's way) gives the same, and is left as it was
    generation_config = GenerationConfig(**sampling)
    torch.manual_seed(0)
    via_config = model.generate(ids, attention_mask=mask, generation_config=generation_config, **GENERATE)
    assert torch.equal(via_config.sequences, via_wrapper.sequences)
    assert (generation_config.temperature, generation_config.top_p) == (0.7, 0.9)

    # sequential: today's rule, the head's T̂ and p̂ first, then generate's warpers on that distribution
    sequential = _scrambled(base, sampling_composition="sequential")
    sequential.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    seq = sequential.generate(ids, attention_mask=mask, **sampling, **GENERATE)
    head_first = sequential.autodeco_head.sampling_logits(
        step.base_logits[:, -1], {"temperature": t_hat, "top_p": p_hat}
    )
    today = TopPLogitsWarper(0.9)(ids, TemperatureLogitsWarper(0.7)(ids, head_first))
    torch.testing.assert_close(seq.scores[0].softmax(-1), today.softmax(-1), atol=1e-6, rtol=0)
    with DecodingHeadLogitsProcessor(sequential.autodeco_head, base, config=sequential.config) as w:
        torch.manual_seed(0)
        seq_processor = base.generate(ids, attention_mask=mask, **sampling, logits_processor=[w], **GENERATE)
    assert torch.equal(seq.sequences, seq_processor.sequences)
    # the two compositions really differ here
    assert not torch.equal(seq.scores[0].isfinite(), via_wrapper.scores[0].isfinite())


def test_greedy_generation_is_the_bases_in_both_modes():
    base = tiny_llama()
    ids, mask = _batch(lengths=(6, 4))
    plain = base.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=6, pad_token_id=0)
    for composition in ("released", "sequential"):
        model = _scrambled(base, sampling_composition=composition)
        out = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=6, pad_token_id=0)
        assert torch.equal(out, plain)


def test_processor_refuses_sampling_settings_for_heads_that_do_not_absorb_them():
    base = tiny_llama()
    for model in (LogitMLPForCausalLM.from_base_model(base), _scrambled(base, sampling_composition="sequential")):
        with pytest.raises(ValueError, match=r"pass \['temperature'\] to generate\(\)"):
            DecodingHeadLogitsProcessor(model.decoding_head, base, temperature=0.7)


def test_vllm_compute_logits_path_reads_the_logits_as_the_wrapper(peaked_base_dir):
    """The function vLLM's compute_logits runs gives the wrapper's logits for a head reading softmax(ℓ/T̂)."""
    from logitmlp_hf.integrations.vllm.model import apply_head

    base = AutoModelForCausalLM.from_pretrained(peaked_base_dir)
    model = _scrambled(base)
    ids, mask = _batch(lengths=(6, 6))
    out = model(ids, attention_mask=mask, output_base_logits=True)
    hidden, logits = _hidden_and_logits(base, ids, mask)
    warped = apply_head(
        model.autodeco_head, hidden.reshape(-1, hidden.shape[-1]), logits.reshape(-1, logits.shape[-1])
    )
    torch.testing.assert_close(warped.reshape(out.logits.shape), out.logits, atol=1e-6, rtol=0)


def test_trainer_refuses_vllm_rollouts_that_cannot_compose_the_temperature(tmp_path):
    from test_grpo_trainer import make_trainer

    with pytest.raises(ValueError, match="composes the sampling temperature/top-p with its own .*temperature=0.7"):
        make_trainer(tmp_path, head_type="autodeco", use_vllm=True, temperature=0.7)


def test_generate_takes_an_explicit_user_rule_without_sampling():
    """What the evaluation does: greedy mode plus its own sampler, the policy's temperature/top-p given as the rule."""
    base = tiny_llama()
    model = _scrambled(base)
    ids, mask = _batch(lengths=(6, 4))
    rule = SamplingRule(temperature=0.6, top_p=0.8)
    out = model.generate(ids, attention_mask=mask, do_sample=False, user_rule=rule, **GENERATE)
    step = model(ids, attention_mask=mask, output_decisions=True, output_base_logits=True)
    t_hat, p_hat = step.decisions["temperature"][:, -1], step.decisions["top_p"][:, -1]
    expected = released_distribution(step.base_logits[:, -1].float(), t_hat, p_hat, 0.6, 0.8)
    torch.testing.assert_close(out.scores[0].softmax(-1), expected, atol=1e-6, rtol=0)
    sequential = _scrambled(base, sampling_composition="sequential")
    with pytest.raises(ValueError, match="does not compose a user_rule"):
        sequential.generate(ids, attention_mask=mask, user_rule=rule, **GENERATE)


def test_evaluation_gives_a_head_policys_temperature_and_top_p_to_a_head_that_composes_them(monkeypatch):
    from conftest import char_tokenizer
    from test_evaluation import stub_dataset

    from logitmlp_hf.evaluation.runner import evaluate

    model = _scrambled(tiny_llama())
    seen = []
    generate = type(model).generate

    def spy(self, *args, **kwargs):
        seen.append((kwargs.get("user_rule"), [type(p).__name__ for p in kwargs["logits_processor"]]))
        return generate(self, *args, **kwargs)

    import logitmlp_hf.evaluation.runner as runner

    own_loop = runner.sample_completions

    def spy_loop(*args, **kwargs):  # the evaluation's own decoding loop (greedy policies take it)
        seen.append((None, [type(p).__name__ for p in kwargs["logits_processor"]]))
        return own_loop(*args, **kwargs)

    monkeypatch.setattr(type(model), "generate", spy)
    monkeypatch.setattr(runner, "sample_completions", spy_loop)
    policies = ["head::temperature=0.5,top_p=0.9,top_k=20", "head::temperature=0"]
    evaluate(model, char_tokenizer(), stub_dataset(2), policies, n_samples=2, max_new_tokens=3, progress=False)
    sampled = [s for s in seen if s[0] is not None]
    greedy = [s for s in seen if s[0] is None]
    assert sampled and all(rule == SamplingRule(0.5, top_p=0.9) for rule, _ in sampled)
    # the rule goes to the head; only the warpers it does not absorb stay
    assert all(names == ["TopKLogitsWarper", "SeededGumbelSampler"] for _, names in sampled)
    assert greedy and all("TemperatureLogitsWarper" not in names for _, names in greedy)


def test_cached_logprobs_of_no_tokens_are_empty_for_a_logits_reading_head():
    from logitmlp_hf.features import Unembedding

    base = tiny_llama()
    head = _scrambled(base).autodeco_head
    stats = head.token_logprobs(
        torch.zeros(2, 0, 48), torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.long), Unembedding.from_model(base)
    )
    assert stats.logprobs.shape == (2, 0) and stats.decisions["temperature"].shape == (2, 0)
