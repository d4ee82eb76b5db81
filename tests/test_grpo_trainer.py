"""LogitMLPGRPOTrainer on a tiny model: head-only updates, objectives, dynamic sampling, checkpoints, Hub, logging."""

import importlib.util
import json
import logging
import os

import pytest
import torch
from conftest import char_tokenizer, tiny_llama
from datasets import Dataset
from safetensors.torch import load_file

from logitmlp_hf import LogitMLPForCausalLM, LogitMLPGRPOConfig, LogitMLPGRPOTrainer
from logitmlp_hf.trainer.advantages import passk_advantages


G = 4


def _text(message):
    return message if isinstance(message, str) else message[-1]["content"]


def digit_reward(completions, **kwargs):
    """1 if the completion contains a digit: random tiny models do so about half the time."""
    return [float(any(ch.isdigit() for ch in _text(c))) for c in completions]


def prompt_dependent_reward(completions, prompts, **kwargs):
    """Constant 0 for prompts mentioning 'zero' (a group with no signal), the digit reward otherwise."""
    text = [_text(p) for p in prompts]
    return [0.0 if "zero" in t else r for t, r in zip(text, digit_reward(completions))]


def dataset(n=16):
    words = ["zero" if i % 2 else "one" for i in range(n)]
    return Dataset.from_dict({"prompt": [[{"role": "user", "content": f"Say {w} {i}"}] for i, w in enumerate(words)]})


def config(tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_generations=G,
        max_completion_length=8,
        max_steps=2,
        learning_rate=0.05,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=0,
        head_init_std=0.02,
        dataloader_num_workers=0,
        use_cpu=True,
    )
    defaults.update(kwargs)
    return LogitMLPGRPOConfig(**defaults)


def make_trainer(tmp_path, reward=digit_reward, model=None, **kwargs):
    return LogitMLPGRPOTrainer(
        model=model if model is not None else tiny_llama(),
        reward_funcs=reward,
        args=config(tmp_path, **kwargs),
        train_dataset=dataset(),
        processing_class=char_tokenizer(),
    )


def test_only_the_head_changes(tmp_path):
    trainer = make_trainer(tmp_path)
    before = {n: p.clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    for name, param in trainer.model.named_parameters():
        if name.startswith("logitmlp_head."):
            assert not torch.equal(param, before[name]), f"{name} did not change"
        else:
            assert torch.equal(param, before[name]), f"frozen {name} changed"
    assert "forward" not in trainer.model.__dict__  # TRL's fused (unwarped) LM-head forward was removed


def test_head_options_reach_the_new_head(tmp_path):
    trainer = make_trainer(tmp_path, head_slope_bound=10.0, head_hidden_size=32)
    head = trainer.model.logitmlp_head
    assert trainer.model.config.slope_bound == 10.0 and head.slope_bound == 10.0
    assert head.fc_in.out_features == 32 and trainer.model.config.init_std == 0.02


def test_log_history_has_the_promised_metrics(tmp_path):
    # tensorboard writes under output_dir/runs/ by default (transformers 5 reads TENSORBOARD_LOGGING_DIR, no arg)
    trainer = make_trainer(tmp_path, num_iterations=2, report_to=["tensorboard"])
    trainer.train()
    logged = {k for entry in trainer.state.log_history for k in entry}
    for key in [
        "reward",
        "pass@4",
        "pass@1",
        "warp/kl_to_base",
        "warp/s1_mean",
        "warp/s1_std",
        "warp/s2_mean",
        "warp/b_below_max_in_std_mean",
        "entropy",
        "clip_ratio/region_mean",
        "dynamic_sampling/dropped_group_frac",
        "dynamic_sampling/extra_rounds",
    ]:
        assert key in logged, key
    assert any(f.startswith("events.out.tfevents") for _, _, files in os.walk(tmp_path / "out") for f in files)


@pytest.mark.parametrize("sampler", ["rows", "generate"])
@pytest.mark.parametrize("num_iterations", [1, 2])  # 2: TRL also asks for old log-probs at rollout time
def test_rollouts_are_sampled_from_the_warp_and_updates_use_the_cache(tmp_path, num_iterations, sampler):
    trainer = make_trainer(tmp_path, dynamic_sampling=False, num_iterations=num_iterations, rollout_sampler=sampler)
    trainer.model.train()

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the features should come from generate(), not from another pass of the base")

    trainer._features_for = no_second_pass
    batch = trainer._generate_and_score_completions([dataset()[i] for i in range(2) for _ in range(G)])
    assert ("old_per_token_logps" in batch) == (num_iterations == 2)
    assert batch["logitmlp_hidden"].shape[:2] == batch["completion_ids"].shape
    assert batch["logitmlp_logit_features"].shape[-1] == 4
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    keep = batch["completion_ids"].shape[1]
    trainer._loss_inputs = batch
    cached, entropy, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, ids, mask, keep, compute_entropy=True
    )
    trainer._loss_inputs = None
    with torch.no_grad():
        logits = trainer.model(ids, attention_mask=mask).logits[:, -keep - 1 : -1]
    full = logits.log_softmax(-1).gather(-1, ids[:, -keep:, None]).squeeze(-1)
    valid = batch["completion_mask"].bool()
    assert torch.allclose(cached[valid], full[valid], atol=1e-5)
    assert torch.all(cached[~valid] == 0) and torch.isfinite(entropy).all()
    if sampler == "rows":  # rollouts left the batch at different steps, and their features still line up
        assert len(set(batch["completion_mask"].sum(1).tolist())) > 1


def test_passk_objective_replaces_the_advantages(tmp_path):
    trainer = make_trainer(tmp_path, objective="pass@k", pass_k=2, dynamic_sampling=False)
    trainer.model.train()
    batch = trainer._generate_and_score_completions([dataset()[i] for i in range(2) for _ in range(G)])
    expected = passk_advantages(batch["logitmlp_rewards"].view(-1, G), k=2).view(-1)
    assert torch.allclose(batch["advantages"], expected)
    assert trainer.model.config.objective == "pass@k" and trainer.model.config.pass_k == 2


def test_dynamic_sampling_refills_groups_without_signal(tmp_path):
    trainer = make_trainer(tmp_path, reward=prompt_dependent_reward, max_dynamic_sampling_rounds=4)
    trainer.model.train()
    rows = [dataset()[i] for i in range(2) for _ in range(G)]  # prompt 1 says "zero": its group has no signal
    batch = trainer._generate_and_score_completions(rows)
    assert batch["completion_ids"].shape[0] == 2 * G
    dropped = trainer._metrics["train"]["dynamic_sampling/dropped_group_frac"][-1]
    assert dropped >= 0.5
    groups = batch["logitmlp_rewards"].view(-1, G)
    filled = batch["completion_mask"].view(2, G, -1).sum((1, 2)) > 0
    assert all(g.max() > g.min() for g, f in zip(groups, filled) if f)  # every group kept for the loss has signal
    assert batch["num_items_in_batch"] == batch["completion_mask"].sum()


@pytest.mark.parametrize("sampler", ["rows", "generate"])
def test_extra_prompts_fill_the_batch_in_the_same_generate_call(tmp_path, sampler):
    trainer = make_trainer(
        tmp_path,
        reward=prompt_dependent_reward,
        max_dynamic_sampling_rounds=0,
        dynamic_sampling_extra_prompts=6,
        rollout_sampler=sampler,
    )
    trainer.model.train()
    # The refill order draws the candidates; make them all "one" prompts, so at least one of the six has signal.
    trainer._refill_order = [i for i in range(16) if i % 2 == 0][::-1] * 2
    calls = []
    if sampler == "generate":
        generate = trainer.model.generate
        trainer.model.generate = lambda *a, **kw: calls.append(kw["input_ids"].shape[0]) or generate(*a, **kw)
    else:
        sample = trainer.model.sample_completions
        trainer.model.sample_completions = lambda p, n, **kw: calls.append(len(p) * n) or sample(p, n, **kw)
    rows = [dataset()[i] for i in (1, 3) for _ in range(G)]  # both prompts say "zero": no signal in either group
    batch = trainer._generate_and_score_completions(rows)
    assert calls == [(2 + 6) * G]  # the candidates rode in the batch's own call
    assert batch["completion_ids"].shape[0] == 2 * G
    assert trainer._metrics["train"]["dynamic_sampling/dropped_group_frac"][-1] == 1.0
    assert trainer._metrics["train"]["dynamic_sampling/extra_rounds"][-1] == 0
    groups = batch["logitmlp_rewards"].view(-1, G)
    filled = batch["completion_mask"].view(2, G, -1).sum((1, 2)) > 0
    assert filled.any()  # replaced by candidates, with no extra round
    assert all(g.max() > g.min() for g, f in zip(groups, filled) if f)
    prompts = [trainer._tokenizer.decode(ids[m.bool()]) for ids, m in zip(batch["prompt_ids"], batch["prompt_mask"])]
    assert all("zero" not in p for p, f in zip(prompts[::G], filled) if f)


def test_extra_prompts_need_dynamic_sampling(tmp_path):
    with pytest.raises(ValueError, match="dynamic_sampling_extra_prompts=2 needs dynamic_sampling=True"):
        config(tmp_path, dynamic_sampling=False, dynamic_sampling_extra_prompts=2)
    with pytest.raises(ValueError, match="dynamic_sampling_extra_prompts must be >= 0"):
        config(tmp_path, dynamic_sampling_extra_prompts=-1)


def test_same_seed_trains_the_same_head(tmp_path):
    # torch seeds its global RNG differently in every process; a new head used to be drawn from it before any
    # seeding, so two same-seed runs started from different heads (their rewards then diverged at step 2).
    heads, logs = [], []
    for process_seed in (1, 2):
        model = tiny_llama()  # the same frozen base both times
        torch.manual_seed(process_seed)  # the global RNG state a fresh process would start the trainer with
        trainer = make_trainer(
            tmp_path / str(process_seed),
            reward=prompt_dependent_reward,
            model=model,
            max_steps=2,
            max_dynamic_sampling_rounds=2,
        )
        initial = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        trainer.train()
        heads.append({n: p.detach().clone() for n, p in trainer.model.named_parameters() if n in initial})
        logs.append(trainer.state.log_history)
    assert any(not torch.equal(heads[-1][n], initial[n]) for n in initial)  # it trained
    assert any(entry.get("dynamic_sampling/extra_rounds", 0) > 0 for entry in logs[0])  # refills were drawn
    for name in heads[0]:
        assert torch.equal(heads[0][name], heads[1][name]), name


def test_new_head_does_not_depend_on_what_loading_the_base_draws(tmp_path, monkeypatch):
    # The embedded model's first load on a machine converts it, initialising a model (random draws); the head must be
    # seeded after that, or a fresh machine's first run starts from another head than every later run.
    from logitmlp_hf.trainer import grpo_trainer

    def load_drawing(name, **kwargs):
        torch.rand(1000)  # what a conversion's random init consumes
        return tiny_llama()

    monkeypatch.setattr(grpo_trainer, "load_base_model", load_drawing)
    heads = []
    for model in (tiny_llama(), "base-that-converts-on-first-load"):
        trainer = make_trainer(tmp_path / str(len(heads)), model=model)
        heads.append({n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad})
    assert heads[0] and heads[0].keys() == heads[1].keys()
    for name in heads[0]:
        assert torch.equal(heads[0][name], heads[1][name]), name


def test_all_groups_filtered_is_bounded_and_loud(tmp_path, caplog):
    trainer = make_trainer(
        tmp_path, reward=lambda completions, **kw: [0.0] * len(completions), max_dynamic_sampling_rounds=2
    )
    trainer.model.train()
    with caplog.at_level(logging.WARNING, logger="logitmlp_hf.trainer.grpo_trainer"):
        batch = trainer._generate_and_score_completions([dataset()[i] for i in range(2) for _ in range(G)])
    assert "no learning signal" in caplog.text
    assert trainer._metrics["train"]["dynamic_sampling/extra_rounds"][-1] == 2
    assert batch["completion_mask"].sum() == 0 and batch["num_items_in_batch"] == 0
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which this test bypasses
    loss = trainer._compute_loss(trainer.model, batch)
    assert torch.isfinite(loss) and loss == 0


def test_a_raising_reward_function_gives_a_clear_error(tmp_path):
    def broken(completions, **kwargs):
        raise KeyError("answer")

    trainer = make_trainer(tmp_path, reward=broken)
    with pytest.raises(RuntimeError, match="reward function \\(broken\\) raised"):
        trainer.train()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"beta": 0.1}, "beta must be 0"),
        ({"gradient_checkpointing": True}, "gradient_checkpointing"),
        ({"pass_k": 5, "objective": "pass@k"}, "pass_k=5"),
        ({"pass_k": 0}, "pass_k must be at least 1"),
        ({"objective": "pass@2"}, "objective"),
        ({"use_vllm": True, "vllm_enable_sleep_mode": True}, "sleep mode"),
        ({"rollout_sampler": "vllm"}, "rollout_sampler must be one of \\('auto', 'rows', 'generate'\\)"),
    ],
)
def test_config_refuses_what_cannot_apply(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        config(tmp_path, **kwargs)


def test_trainer_refuses_peft_config(tmp_path):
    from peft import LoraConfig

    with pytest.raises(ValueError, match="trains only the head"):
        LogitMLPGRPOTrainer(
            tiny_llama(),
            digit_reward,
            args=config(tmp_path),
            train_dataset=dataset(),
            processing_class=char_tokenizer(),
            peft_config=LoraConfig(),
        )


def test_signature_is_grpo_trainers():
    """Same parameters, order and defaults as TRL's GRPOTrainer, so TRL-style positional calls bind the same."""
    import inspect

    from trl import GRPOTrainer

    def params(cls):
        return [(p.name, p.kind, p.default) for p in inspect.signature(cls.__init__).parameters.values()]

    assert params(LogitMLPGRPOTrainer) == params(GRPOTrainer)


def test_trl_style_positional_call_and_default_reward_funcs(tmp_path):
    from transformers import TrainerCallback

    class Marker(TrainerCallback):
        pass

    marker = Marker()
    # GRPOTrainer's order: model, reward_funcs, args, train_dataset, eval_dataset, processing_class,
    # reward_processing_classes, callbacks
    trainer = LogitMLPGRPOTrainer(
        tiny_llama(), digit_reward, config(tmp_path), dataset(), None, char_tokenizer(), None, [marker]
    )
    assert marker in trainer.callback_handler.callbacks
    # reward_funcs defaults to None as in TRL, which then wants its environment to score (not a missing-argument error)
    with pytest.raises(ValueError, match="No reward source provided"):
        LogitMLPGRPOTrainer(
            tiny_llama(), args=config(tmp_path), train_dataset=dataset(), processing_class=char_tokenizer()
        )


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_use_vllm_without_vllm_says_what_to_install(tmp_path):
    with pytest.raises(ImportError, match=r"logitmlp-hf\[vllm\]"):
        make_trainer(tmp_path, use_vllm=True)


def test_head_on_a_lora_base_leaves_the_adapter_untouched(tmp_path):
    from peft import LoraConfig, get_peft_model

    base_dir = tmp_path / "base"
    tiny_llama().save_pretrained(base_dir)
    from transformers import AutoModelForCausalLM

    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False),
    )
    lora.save_pretrained(tmp_path / "lora")
    trainer = make_trainer(tmp_path, model=str(tmp_path / "lora"))
    base = trainer.model.get_base_model()
    before = {n: p.clone() for n, p in base.named_parameters() if "lora_" in n}
    assert before
    trainer.train()
    assert all(torch.equal(p, before[n]) for n, p in base.named_parameters() if "lora_" in n)
    assert trainer.model.config.base_adapter_name_or_path == str(tmp_path / "lora")
    assert trainer.model.config.base_model_name_or_path == str(base_dir)


def test_checkpoints_hold_the_head_and_training_resumes(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=2, save_strategy="steps", save_steps=1)
    trainer.train()
    ckpt = tmp_path / "out" / "checkpoint-2"
    files = set(os.listdir(ckpt))
    assert {"logitmlp_head.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= files
    assert any(f.startswith("rng_state") for f in files)
    assert "model.safetensors" not in files  # no copy of the base
    assert os.path.getsize(ckpt / "logitmlp_head.safetensors") < 200_000

    resumed = make_trainer(tmp_path, max_steps=3, save_strategy="steps", save_steps=1)
    loaded = {}
    original = resumed._load_from_checkpoint

    def spy(path, model=None):
        original(path, model)
        loaded.update({k: v.clone() for k, v in resumed.model.logitmlp_head.state_dict().items()})

    resumed._load_from_checkpoint = spy
    steps_run = []
    step = resumed.training_step
    resumed.training_step = lambda *a, **k: steps_run.append(1) or step(*a, **k)
    resumed.train(resume_from_checkpoint=str(ckpt))
    saved = load_file(ckpt / "logitmlp_head.safetensors")
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert resumed.state.global_step == 3
    assert len(steps_run) == 1  # only step 3 ran after resuming (gradient_accumulation_steps=1)


def test_saved_head_reloads_with_its_card(tmp_path):
    trainer = make_trainer(tmp_path, objective="pass@k", pass_k=2)
    trainer.train()
    trainer.save_model()
    trainer.create_model_card()
    out = tmp_path / "out"
    card = (out / "README.md").read_text()
    assert "pass@k (analytical pass@k advantage, k = 2)" in card and "objective: pass@k" in card
    # training logs are not results: the card says the head is unevaluated instead of tabulating the last reward
    assert "Not evaluated yet" in card and "| reward |" not in card and "trained_steps: 2" in card
    reloaded = LogitMLPForCausalLM.from_pretrained(out, base_model=tiny_llama())
    assert torch.equal(reloaded.logitmlp_head.fc_out.weight, trainer.model.logitmlp_head.fc_out.weight)


def test_head_repo_holds_config_weights_and_card_only_and_checkpoints_stay_apart(tmp_path):
    trainer = make_trainer(tmp_path, save_strategy="steps", save_steps=1, save_total_limit=1)
    trainer.train()
    head = tmp_path / "head"
    trainer.save_model(str(head))
    assert sorted(os.listdir(head)) == ["README.md", "config.json", "logitmlp_head.safetensors"]
    checkpoints = sorted((tmp_path / "out").glob("checkpoint-*"))
    assert [c.name for c in checkpoints] == ["checkpoint-2"]
    files = set(os.listdir(checkpoints[0]))
    # the resume state lives in the checkpoint, beside the same head files; no tokenizer or pickled args anywhere
    assert {"config.json", "logitmlp_head.safetensors", "optimizer.pt", "trainer_state.json"} <= files
    assert not files & {"tokenizer.json", "tokenizer_config.json", "training_args.bin"}
    assert not {"tokenizer.json", "training_args.bin"} & set(os.listdir(tmp_path / "out"))
    # special-token ids came from the base, so Trainer had nothing to align (and nothing to warn about)
    config = json.loads((head / "config.json").read_text())
    assert config["eos_token_id"] == trainer.model.get_base_model().config.eos_token_id


def test_training_is_quiet_about_third_party_deprecations(tmp_path, recwarn):
    trainer = make_trainer(tmp_path, report_to=["tensorboard"], use_cpu=False)
    trainer.train()
    noisy = [str(w.message) for w in recwarn if "checkpointing" in str(w.message) or "pin_memory" in str(w.message)]
    # transformers' gradient_checkpointing alias, TRL's is_gradient_checkpointing read, torch's pin_memory on a CPU
    assert noisy == [], noisy
    notice = logging.getLogger("transformers.integrations.integration_utils")
    record = notice.makeRecord(notice.name, logging.WARNING, __file__, 1, "x", None, None)
    none_notice = (
        'Trainer is attempting to log a value of "None" of type <class \'NoneType\'> for key "k" as a scalar.'
    )
    assert not notice.filters[0].filter(logging.makeLogRecord({"msg": none_notice}))
    assert notice.filters[0].filter(record)  # any other notice still goes through


def test_overlong_shaping_adds_trls_soft_punishment(tmp_path):
    trainer = make_trainer(tmp_path, overlong_buffer_length=4, reward_weights=[2.0], dynamic_sampling=False)
    assert trainer.reward_func_names[-1] == "soft_overlong_punishment_reward"
    assert trainer.reward_weights.tolist() == [2.0, 1.0]
    trainer.model.train()
    batch = trainer._generate_and_score_completions([dataset()[i] for i in range(2) for _ in range(G)])
    lengths = batch["completion_mask"].sum(1)
    digits = torch.tensor(
        digit_reward([trainer.processing_class.decode(c[:n]) for c, n in zip(batch["completion_ids"], lengths)])
    )
    penalty = torch.where(lengths <= 4, 0.0, (4 - lengths).float() / 4)  # max_completion_length 8, buffer 4
    assert torch.allclose(batch["logitmlp_rewards"], 2.0 * digits + penalty)


def test_evaluation_runs_on_the_warp_and_logs_eval_metrics(tmp_path):
    trainer = make_trainer(tmp_path, per_device_eval_batch_size=8, num_generations_eval=4)
    metrics = trainer.evaluate(eval_dataset=dataset(8))
    assert "eval_pass@4" in metrics and "eval_warp/kl_to_base" in metrics and "eval_loss" in metrics


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_step_metrics_go_to_the_logger_not_stdout(tmp_path, capsys, caplog, disable_tqdm):
    with caplog.at_level(logging.INFO, logger="logitmlp_hf.trainer"):
        trainer = make_trainer(tmp_path / "quiet", disable_tqdm=disable_tqdm)
        trainer.train()
    out = capsys.readouterr().out
    assert "'loss'" not in out and "'reward'" not in out
    assert any("step 1:" in r.getMessage() and "reward" in r.getMessage() for r in caplog.records)
    assert any("reward" in entry for entry in trainer.state.log_history)  # report backends get everything

    loud = make_trainer(tmp_path / "loud", disable_tqdm=disable_tqdm, print_metrics=True)
    loud.train()
    captured = capsys.readouterr()
    assert "'reward'" in captured.out + captured.err


def test_resuming_a_finished_run_does_not_train_further(tmp_path):
    # Trainer skips the trained batches and then runs one more step before its max_steps check; a finished run
    # resumed (e.g. the main job rerun after its last stage) must come back as the same head at the same step.
    first = make_trainer(tmp_path, max_steps=2, save_strategy="steps", save_steps=1)
    first.train()
    finished = {n: p.detach().clone() for n, p in first.model.decoding_head.named_parameters()}
    again = make_trainer(tmp_path, max_steps=2, save_strategy="steps", save_steps=1)
    again.train(resume_from_checkpoint=True)
    assert again.state.global_step == 2
    assert not (tmp_path / "out" / "checkpoint-3").exists()
    for name, param in again.model.decoding_head.named_parameters():
        assert torch.equal(param, finished[name]), name


def test_rows_loop_prefills_each_group_once_and_other_layouts_row_by_row():
    from logitmlp_hf.trainer.grpo_trainer import _runs_of_equal_prompts

    assert _runs_of_equal_prompts([[1, 2], [1, 2], [3], [3]]) == ([[1, 2], [3]], 2)
    # unequal runs (e.g. a multi-turn continuation): every row is its own prompt
    assert _runs_of_equal_prompts([[1, 2], [1, 2], [3]]) == ([[1, 2], [1, 2], [3]], 1)
    assert _runs_of_equal_prompts([[1], [2], [1]]) == ([[1], [2], [1]], 1)
