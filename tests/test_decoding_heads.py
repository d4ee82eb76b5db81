"""The head interface and the other learned decoding policies: AutoDeco, the token- and sequence-level adapters."""

import json

import numpy as np
import pytest
import torch
from conftest import char_tokenizer, tiny_llama
from datasets import Dataset
from transformers import (
    AutoModelForCausalLM,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from logitmlp_hf import (
    AutoDecoForCausalLM,
    DecodingAdapterForCausalLM,
    DecodingContext,
    HeadCheckpointError,
    LogitMLPForCausalLM,
    LogitMLPGRPOConfig,
    LogitMLPGRPOTrainer,
    SequenceAdapterForCausalLM,
    load_decoding_head_model,
)
from logitmlp_hf.evaluation.runner import evaluate
from logitmlp_hf.features import LogitFeatures, Unembedding, cache_features
from logitmlp_hf.heads.sequence_adapter.strategy_pool import SamplingStrategy
from logitmlp_hf.sampling_rules import (
    apply_sampling_rules,
    min_p_logits,
    temperature_logits,
    top_k_logits,
    top_p_logits,
)
from logitmlp_hf.trainer.sequence_adapter import fit_sequence_adapter, prompt_embeddings


STRATEGIES = [
    {"temperature": 0.0},
    {"temperature": 0.7, "top_p": 0.9},
    {"temperature": 1.2, "top_k": 5, "min_p": 0.05},
]


def _ids(seed=0, rows=2, length=6):
    return torch.randint(3, 200, (rows, length), generator=torch.Generator().manual_seed(seed))


def _one_hot_adapter(base, action, **kwargs):
    model = DecodingAdapterForCausalLM.from_base_model(base, **kwargs)
    with torch.no_grad():
        model.adapter_head.policy[-1].bias.fill_(-1e4)
        model.adapter_head.policy[-1].bias[action] = 1e4
    return model


# ------------------------------------------------------------------------------------------------ sampling rules
@pytest.mark.parametrize("seed", range(3))
def test_per_row_rules_match_transformers_warpers(seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 50, generator=gen) * 3
    ids = torch.zeros(4, 1, dtype=torch.long)
    values = {"t": [0.3, 0.7, 1.0, 1.6], "k": [1, 3, 10, 50], "p": [0.1, 0.5, 0.9, 0.99], "m": [0.0, 0.05, 0.2, 0.9]}
    per_row = {
        "t": temperature_logits(logits, torch.tensor(values["t"])),
        "k": top_k_logits(logits, torch.tensor(values["k"])),
        "p": top_p_logits(logits, torch.tensor(values["p"])),
        "m": min_p_logits(logits, torch.tensor(values["m"])),
    }
    for r in range(4):
        row = logits[r : r + 1]
        expected = {
            "t": TemperatureLogitsWarper(values["t"][r])(ids[:1], row.clone()),
            "k": TopKLogitsWarper(values["k"][r])(ids[:1], row.clone()),
            "p": TopPLogitsWarper(values["p"][r])(ids[:1], row.clone()),
            "m": MinPLogitsWarper(values["m"][r])(ids[:1], row.clone()) if values["m"][r] > 0 else row,
        }
        for name in per_row:
            assert torch.equal(per_row[name][r], expected[name][0]), (name, r)
    greedy = temperature_logits(logits, torch.tensor([0.0, 1.0, 1.0, 1.0]))
    assert torch.isfinite(greedy[0]).sum() == 1 and greedy[0].argmax() == logits[0].argmax()
    assert torch.equal(apply_sampling_rules(logits, 1.0, 0, 1.0, 0.0), logits)  # every rule "off"


# --------------------------------------------------------------------------------------------------- AutoDeco
def test_autodeco_starts_near_the_base_and_samples_with_hard_top_p():
    base = tiny_llama()
    model = AutoDecoForCausalLM.from_base_model(base)
    ids = _ids()
    out = model(ids, output_decisions=True, output_base_logits=True)
    t, p = out.decisions["temperature"], out.decisions["top_p"]
    assert torch.allclose(t, torch.ones_like(t), atol=1e-2) and torch.allclose(p, torch.full_like(p, 0.98), atol=1e-2)
    expected = TopPLogitsWarper(0.5)(ids, out.base_logits[:, -1].float() / 0.8)
    head = model.autodeco_head
    got = head.sampling_logits(
        out.base_logits[:, -1], {"temperature": torch.full((2,), 0.8), "top_p": torch.full((2,), 0.5)}
    )
    assert torch.equal(got, expected)


def test_autodeco_soft_top_p_is_the_source_formula_and_hardens_with_steepness():
    model = AutoDecoForCausalLM.from_base_model(tiny_llama())
    head = model.autodeco_head
    logits = torch.randn(3, 256, generator=torch.Generator().manual_seed(0)) * 4
    decisions = {"temperature": torch.tensor([0.5, 1.0, 1.5]), "top_p": torch.tensor([0.3, 0.8, 0.95])}
    # the released code: p = softmax(l/T); sort desc; c = inclusive cumsum; m = exp(-α relu(c - p̂)); p̃ ∝ p·m
    q = (logits / decisions["temperature"][:, None]).softmax(-1)
    sq, order = q.sort(-1, descending=True)
    mask = torch.exp(-30 * (sq.cumsum(-1) - decisions["top_p"][:, None]).relu())
    soft = torch.zeros_like(q).scatter(-1, order, sq * mask)
    soft = soft / soft.sum(-1, keepdim=True)
    assert torch.allclose(head.policy_logits(logits, decisions).softmax(-1), soft, atol=1e-6)
    head.steepness = 1e4  # nearly hard: the mass left outside the hard nucleus (kept top token aside) vanishes
    hard = head.sampling_logits(logits, decisions).isfinite()
    outside = (head.policy_logits(logits, decisions).softmax(-1) * ~hard).sum(-1)
    assert outside.max() < 1e-3


@pytest.mark.parametrize(
    "layout",
    [
        {},  # released: the top-p head reads softmax(ℓ/T̂) (decided chunk by chunk), TRL's T scales T̂
        {"top_p_features": "logit_spread", "sampling_composition": "sequential"},  # the package's earlier head
    ],
    ids=["released", "sequential"],
)
def test_generic_cached_logprobs_match_direct_autograd(layout):
    base = tiny_llama()
    model = AutoDecoForCausalLM.from_base_model(base, init_std=0.05, **layout)
    ids = _ids(rows=3, length=10)
    mask = torch.ones_like(ids)
    hidden, features = cache_features(base, ids, mask, logits_to_keep=6)
    targets = ids[:, -6:]
    head = model.autodeco_head
    stats = head.token_logprobs(hidden, features, targets, Unembedding.from_model(base), temperature=1.3, chunk_size=5)
    stats.logprobs.sum().backward()
    cached_grads = [p.grad.clone() for p in head.parameters()]
    head.zero_grad()
    logits = base(ids).logits[:, -7:-1]
    from logitmlp_hf.features import logit_statistics

    decisions = head.decide_at(hidden, logits, logit_statistics(logits))
    if layout:  # sequential: TRL's temperature divides the head's policy logits
        policy = head.policy_logits(logits, decisions) / 1.3
    else:  # released: T = T̂·1.3 inside the soft top-p
        t, p = decisions["temperature"] * 1.3, decisions["top_p"]
        q = (logits / t[..., None]).softmax(-1)
        sq, order = q.sort(-1, descending=True)
        mask = torch.exp(-30 * (sq.cumsum(-1) - p[..., None]).relu())
        policy = torch.zeros_like(q).scatter(-1, order, sq * mask).log()
    direct = torch.log_softmax(policy, -1).gather(-1, targets[..., None])[..., 0]
    direct.sum().backward()
    assert torch.allclose(stats.logprobs, direct, atol=1e-5)
    for cached, p in zip(cached_grads, head.parameters()):
        assert torch.allclose(cached, p.grad, atol=1e-5, rtol=1e-4)


# -------------------------------------------------------------------------------------- token-level adapter
@pytest.mark.parametrize("action, temperature", [(0, 0.0), (1, 0.5), (3, 1.25)])
def test_one_hot_adapter_reproduces_its_action_exactly(action, temperature):
    base = tiny_llama()
    model = _one_hot_adapter(base, action)
    ids = _ids()
    out = model(ids, output_base_logits=True)
    # the other actions' weights underflow to exactly 0 (their log-weights are ≈ -2e4, not -inf)
    expected = torch.softmax(temperature_logits(out.base_logits, temperature), -1)
    assert torch.allclose(torch.softmax(out.logits, -1), expected, rtol=1e-5, atol=1e-7)
    kwargs = dict(max_new_tokens=6, pad_token_id=0)
    if temperature == 0.0:  # greedy action: generate == the base's greedy decoding, even when "sampling"
        torch.manual_seed(0)
        got = model.generate(ids, do_sample=True, **kwargs)
        assert torch.equal(got, base.generate(ids, do_sample=False, **kwargs))
    else:  # "argmax" selection applies the action's rule itself (no mixture): bit-identical sampling
        model.adapter_head.action_selection = "argmax"
        torch.manual_seed(0)
        got = model.generate(ids, do_sample=True, **kwargs)
        torch.manual_seed(0)
        assert torch.equal(got, base.generate(ids, do_sample=True, temperature=temperature, **kwargs))


def test_adapter_mixture_argmax_mask_and_entropy():
    base = tiny_llama()
    model = DecodingAdapterForCausalLM.from_base_model(base)
    head = model.adapter_head
    with torch.no_grad():
        head.policy[-1].weight.normal_(0, 0.5)
    logits = base(_ids()).logits[:, -1]
    hidden = torch.randn(2, 48)
    from logitmlp_hf.features import logit_statistics

    decisions = head.decide(hidden, logit_statistics(logits))
    pi = decisions["action_log_probs"].exp()
    mixture = sum(pi[:, i, None] * temperature_logits(logits, t).softmax(-1) for i, t in enumerate([0, 0.5, 1, 1.25]))
    assert torch.allclose(head.policy_logits(logits, decisions).exp(), mixture, atol=1e-6)
    head.action_selection = "argmax"
    best = pi.argmax(-1)
    for r in range(2):
        assert torch.equal(
            head.sampling_logits(logits, decisions)[r], temperature_logits(logits[r], [0, 0.5, 1, 1.25][best[r]])
        )
    features = torch.tensor([[5.0, 0, 1, 5.01], [5.0, 0, 1, 7.0]])  # max prob ≈ 0.99 vs ≈ 0.14
    assert head.loss_mask(LogitFeatures.unpack(features)).tolist() == [False, True]
    entropy = -(pi * pi.log()).sum(-1)
    assert torch.allclose(head.regularizer(decisions), 0.01 * entropy)


def test_budget_conditioned_adapter_sees_the_budget_left_in_generate():
    base = tiny_llama()
    model = DecodingAdapterForCausalLM.from_base_model(base, budget_conditioning=True)
    seen = []
    decide = model.adapter_head.decide

    def spy(hidden, stats, context=None):
        seen.append((context.remaining_tokens.flatten().tolist(), context.budget.flatten().tolist()))
        return decide(hidden, stats, context)

    model.adapter_head.decide = spy
    model.generate(_ids(), do_sample=True, max_new_tokens=4, min_new_tokens=4, pad_token_id=0)
    assert [s[0] for s in seen] == [[4.0, 4.0], [3.0, 3.0], [2.0, 2.0], [1.0, 1.0]]
    assert all(s[1] == [4.0, 4.0] for s in seen)
    with pytest.raises(ValueError, match="token budget"):
        model(_ids())
    ctx = DecodingContext(remaining_tokens=torch.full((2, 6), 3.0), budget=torch.full((2, 6), 8.0))
    assert model(_ids(), decoding_context=ctx).logits.shape == (2, 6, 256)
    with torch.no_grad():  # the budget feature is an input: changing it changes the policy
        model.adapter_head.policy[0].weight[:, -1].fill_(3.0)
        model.adapter_head.policy[-1].weight.normal_(0, 1.0)
    model.adapter_head.decide = decide
    late = DecodingContext(remaining_tokens=torch.full((2, 6), 1.0), budget=torch.full((2, 6), 8.0))
    a = model(_ids(), decoding_context=ctx, output_decisions=True).decisions["action_log_probs"]
    b = model(_ids(), decoding_context=late, output_decisions=True).decisions["action_log_probs"]
    assert not torch.allclose(a, b)


# ------------------------------------------------------------------------------------ sequence-level adapter
def test_sequence_adapter_decides_once_per_sequence_from_the_prompt_and_budget():
    base = tiny_llama()
    model = SequenceAdapterForCausalLM.from_base_model(base, strategies=STRATEGIES, head_hidden_size=16)
    head = model.sequence_head
    with torch.no_grad():
        head.bandit.action_head.weight.normal_(0, 1.0)
        head.bandit.trunk[0].weight[:, -2:].fill_(2.0)  # make the budget features matter
    tokenizer = char_tokenizer()
    data = Dataset.from_dict({"prompt": [[{"role": "user", "content": q}] for q in ["1+1?", "What is 20 + 22?"]]})
    embeddings = prompt_embeddings(base, tokenizer, data)
    seen = []
    decide = head.decide

    def spy(hidden, stats, context=None):
        out = decide(hidden, stats, context)
        seen.append((hidden.reshape(-1, 48).clone(), context.parallel_budget.flatten().tolist(), out["strategy"]))
        return out

    head.decide = spy
    ids = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in data["prompt"]]
    batch = tokenizer(ids, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**batch, do_sample=True, max_new_tokens=5, num_return_sequences=3, pad_token_id=0)
    assert len(seen) == 1, "one decision per sequence, made at the first step"
    hidden, budgets, strategy = seen[0]
    assert budgets == [3.0] * 6
    assert torch.allclose(hidden, embeddings.repeat_interleave(3, 0), atol=1e-4)  # the prompt embedding
    expected = head.bandit(embeddings, torch.tensor([3, 3])).argmax(-1).repeat_interleave(3)
    assert torch.equal(strategy.flatten().long(), expected) and out.shape[0] == 6
    model.generate(**batch, do_sample=True, max_new_tokens=2, parallel_budget=8, pad_token_id=0)
    assert seen[1][1] == [8.0, 8.0]


def test_sequence_adapter_with_one_greedy_strategy_is_the_base_greedy():
    base = tiny_llama()
    model = SequenceAdapterForCausalLM.from_base_model(base, strategies=[{"temperature": 0.0}])
    ids = _ids()
    torch.manual_seed(0)
    got = model.generate(ids, do_sample=True, max_new_tokens=6, pad_token_id=0)
    assert torch.equal(got, base.generate(ids, do_sample=False, max_new_tokens=6, pad_token_id=0))


def test_fit_sequence_adapter_end_to_end():
    base = tiny_llama()
    data = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": f"What is {i} + {i}?"}] for i in range(6)],
            "answer": [str(2 * i) for i in range(6)],
        }
    )
    pool = [SamplingStrategy(0.0), SamplingStrategy(1.0), SamplingStrategy(1.0, top_k=3)]
    fit = fit_sequence_adapter(
        base,
        char_tokenizer(),
        data.select(range(3)),
        data.select(range(3, 6)),
        pool,
        set_size=2,
        budgets=(1, 2),
        n_samples=2,
        max_new_tokens=4,
        bandit_steps=5,
        eval_kwargs={"batch_size": 3, "n_resamples": 10},
    )
    assert 1 <= len(fit.selected) <= 2 and fit.model.config.budgets == [1, 2]
    assert set(fit.summary()) >= {"selected", "coverage_after_each", "bandit_train_values"}
    results = evaluate(
        fit.model,
        char_tokenizer(),
        data.select(range(3)),
        ["head"],
        n_samples=2,
        batch_size=3,
        max_new_tokens=4,
        progress=False,
        n_resamples=10,
    )
    assert len(results["head"].problems) == 3


# ---------------------------------------------------------------------------------------- one Hub format
@pytest.mark.parametrize(
    "cls, kwargs, weights",
    [
        (AutoDecoForCausalLM, {}, "autodeco_head.safetensors"),
        (DecodingAdapterForCausalLM, {"budget_conditioning": True}, "decoding_adapter.safetensors"),
        (SequenceAdapterForCausalLM, {"strategies": STRATEGIES}, "sequence_adapter.safetensors"),
    ],
)
def test_every_head_saves_a_head_only_repo_and_loads_with_auto(tmp_path, cls, kwargs, weights):
    base = tiny_llama()
    base.save_pretrained(tmp_path / "base")
    model = cls.from_base_model(base, **kwargs)
    model.config.base_model_name_or_path = str(tmp_path / "base")
    with torch.no_grad():
        for p in model.decoding_head.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "head", metrics={"best@8": 0.5})
    files = sorted(p.name for p in (tmp_path / "head").iterdir())
    assert files == sorted(["README.md", "config.json", weights])
    card = (tmp_path / "head" / "README.md").read_text()
    assert cls.__name__ in card and "best@8" in card and json.loads((tmp_path / "head" / "config.json").read_text())
    for loaded in (
        AutoModelForCausalLM.from_pretrained(tmp_path / "head"),
        load_decoding_head_model(tmp_path / "head", base_model=base),
    ):
        assert type(loaded) is cls
        for a, b in zip(model.decoding_head.state_dict().values(), loaded.decoding_head.state_dict().values()):
            assert torch.equal(a, b)
    with pytest.raises(HeadCheckpointError, match=f"is a '{model.config.model_type}' decoding head, not a 'logitmlp'"):
        LogitMLPForCausalLM.from_pretrained(tmp_path / "head", base_model=base)


# ------------------------------------------------------------------------------------------------ trainer
def _trainer(tmp_path, **kwargs):
    from test_grpo_trainer import dataset, digit_reward

    args = LogitMLPGRPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=0.05,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        dataloader_num_workers=0,
        use_cpu=True,
        **kwargs,
    )
    return LogitMLPGRPOTrainer(
        model=tiny_llama(),
        reward_funcs=digit_reward,
        args=args,
        train_dataset=dataset(),
        processing_class=char_tokenizer(),
    )


@pytest.mark.parametrize(
    "head_type, head_config, metric",
    [
        ("autodeco", {"init_std": 0.05}, "autodeco/temperature_mean"),
        ("decoding_adapter", {"budget_conditioning": True, "confidence_mask": 0.5}, "adapter/p_greedy_mean"),
    ],
)
def test_trainer_trains_other_heads_only(tmp_path, head_type, head_config, metric):
    trainer = _trainer(tmp_path, head_type=head_type, head_config=json.dumps(head_config))
    assert trainer.model.config.model_type == head_type
    attribute = trainer.model.head_attribute
    before = {n: p.clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert changed and all(n.startswith(attribute + ".") for n in changed)
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert metric in logged and "warp/kl_to_base" in logged
    if head_type == "decoding_adapter":
        assert "head/regularizer" in logged


def test_rows_rollouts_are_refused_for_a_head_that_reads_the_token_budget(tmp_path):
    with pytest.raises(ValueError, match="rollout_sampler='rows' cannot decode .* reads the token budget"):
        _trainer(
            tmp_path,
            head_type="decoding_adapter",
            head_config={"budget_conditioning": True},
            rollout_sampler="rows",
        )
    trainer = _trainer(tmp_path, head_type="decoding_adapter", head_config={"budget_conditioning": True})
    assert trainer._why_not_rows() is not None  # "auto": such a head's rollouts go through generate


def test_adapter_rollouts_mask_confident_positions_and_logprobs_match_forward(tmp_path):
    trainer = _trainer(
        tmp_path, head_type="decoding_adapter", head_config={"confidence_mask": 0.006}, dynamic_sampling=False
    )
    trainer.model.train()
    from test_grpo_trainer import dataset

    batch = trainer._generate_and_score_completions([dataset()[i] for i in range(2) for _ in range(4)])
    features = batch["logitmlp_logit_features"]
    confident = (features[..., 0] - features[..., 3]).exp() > 0.006
    assert confident.any() and not batch["completion_mask"][confident].any()
    assert batch["num_items_in_batch"] == batch["completion_mask"].sum()
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    keep = batch["completion_ids"].shape[1]
    trainer._loss_inputs = batch
    cached, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, keep)
    trainer._loss_inputs = None
    with torch.no_grad():
        # the prompt's padding as in the rollout; completion positions only attend to earlier ones
        full_mask = torch.cat([batch["prompt_mask"], torch.ones_like(batch["completion_ids"])], 1)
        logits = trainer.model(ids, attention_mask=full_mask).logits[:, -keep - 1 : -1]
    full = logits.log_softmax(-1).gather(-1, ids[:, -keep:, None]).squeeze(-1)
    valid = batch["completion_mask"].bool()
    assert valid.any() and torch.allclose(cached[valid], full[valid], atol=1e-5)


def test_trainer_refuses_the_sequence_adapter_and_unknown_heads(tmp_path):
    model = SequenceAdapterForCausalLM.from_base_model(tiny_llama(), strategies=STRATEGIES)
    from test_grpo_trainer import dataset, digit_reward

    with pytest.raises(ValueError, match="fit_sequence_adapter"):
        LogitMLPGRPOTrainer(
            model=model,
            reward_funcs=digit_reward,
            train_dataset=dataset(),
            processing_class=char_tokenizer(),
            args=LogitMLPGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[]),
        )
    with pytest.raises(ValueError, match="head_type must be one of"):
        LogitMLPGRPOConfig(output_dir=str(tmp_path), head_type="sequence_adapter")


# ------------------------------------------------------------------------------------------------ analysis
@pytest.mark.parametrize(
    "cls, keys",
    [
        (AutoDecoForCausalLM, {"temperature", "top_p"}),
        (DecodingAdapterForCausalLM, {"p_greedy", "p_T=0.5", "p_T=1", "p_T=1.25"}),
    ],
)
def test_per_token_analysis_runs_for_other_heads(cls, keys):
    from logitmlp_hf.analysis.per_token import analyze_rollouts

    base = tiny_llama()
    model = cls.from_base_model(base)
    with torch.no_grad():
        for p in model.decoding_head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    rollouts = [
        {"prompt_ids": [5, 6, 7], "completion_ids": [8, 9, 10, 11]},
        {"prompt_ids": [5, 6], "completion_ids": [12, 13]},
    ]
    analysis = analyze_rollouts(model, char_tokenizer(), rollouts, batch_size=2)
    assert len(analysis) == 6 and set(analysis.decisions) == keys
    assert np.isfinite(analysis.kl).all() and (analysis.kl > 0).any() and np.isnan(analysis.s1).all()
    assert set(analysis.summary()["mean_decisions"]) == keys
    with pytest.raises(ValueError, match="once per sequence"):
        analyze_rollouts(SequenceAdapterForCausalLM.from_base_model(base), char_tokenizer(), rollouts)
