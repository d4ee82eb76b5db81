"""Malformed data and arguments (issue #15, class 4): each is refused with one clear error, before any model runs.

Dataset and rollouts files name ``path:line``, the field, the bad value and what is allowed; rollouts record the model
and tokenizer that made them and the analysis checks them; cross-field settings are checked when the config or the
trainer is built.
"""

from __future__ import annotations

import argparse
import json
import logging

import pytest
import torch
from conftest import VOCAB, char_tokenizer, tiny_llama
from datasets import Dataset

from logitmlp_hf import LogitMLPForCausalLM, LogitMLPGRPOConfig, LogitMLPGRPOTrainer
from logitmlp_hf.analysis.per_token import analyze_rollouts, load_rollouts
from logitmlp_hf.cli.analyze import AnalyzeCommand
from logitmlp_hf.errors import DataFileError, MissingFieldError, RolloutsMismatchError
from logitmlp_hf.evaluation.runner import evaluate, load_eval_dataset
from logitmlp_hf.tasks.data import load_gsm8k_jsonl, load_math_jsonl


def write_lines(path, *lines: str):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


MATH_ROW = json.dumps({"problem": "What is 1 + 1?", "answer": "2"})


# ------------------------------------------------------------------------------------------- dataset files
def test_null_answer_is_refused_not_graded_as_the_string_none(tmp_path):
    path = write_lines(tmp_path / "math.jsonl", MATH_ROW, json.dumps({"problem": "p", "answer": None}))
    for load in (load_math_jsonl, load_eval_dataset):
        with pytest.raises(DataFileError, match=r"math\.jsonl:2: field 'answer' is null; expected") as info:
            load(str(path))
        assert (info.value.line, info.value.field) == (2, "answer")
    gsm8k = write_lines(tmp_path / "gsm8k.jsonl", json.dumps({"question": "q", "answer": None}))
    with pytest.raises(DataFileError, match=r"gsm8k\.jsonl:1: field 'answer' is null"):
        load_gsm8k_jsonl(gsm8k)


@pytest.mark.parametrize(
    "row, match",
    [
        ({"problem": "p", "answer": True}, "field 'answer' is true"),
        ({"problem": "p", "answer": ["2"]}, r"field 'answer' is \[\"2\"\]"),
        ({"problem": "p", "answer": "  "}, "field 'answer' is \"  \""),
        ({"problem": None, "answer": "2"}, "field 'problem' is null; expected a non-empty string"),
        ({"answer": "2"}, "no field 'problem'"),
    ],
)
def test_bad_field_values_name_the_field_and_what_is_allowed(tmp_path, row, match):
    path = write_lines(tmp_path / "math.jsonl", MATH_ROW, MATH_ROW, json.dumps(row))
    with pytest.raises(DataFileError, match=rf"math\.jsonl:3: {match}"):
        load_math_jsonl(path)


def test_missing_field_is_still_a_key_error():
    assert issubclass(MissingFieldError, KeyError) and issubclass(MissingFieldError, DataFileError)
    assert str(MissingFieldError("f.jsonl:1: no field 'x'")) == "f.jsonl:1: no field 'x'"  # not quoted as KeyError


def test_gsm8k_answer_without_a_final_answer_names_the_line(tmp_path):
    good = json.dumps({"question": "q", "answer": "so\n#### 4"})
    path = write_lines(tmp_path / "gsm8k.jsonl", good, json.dumps({"question": "q", "answer": "no marker"}))
    with pytest.raises(DataFileError, match=r"gsm8k\.jsonl:2: field 'answer' has no '#### <answer>' line"):
        load_gsm8k_jsonl(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_jsonl_is_a_clear_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    for load in (load_eval_dataset, load_math_jsonl, load_gsm8k_jsonl):
        with pytest.raises(DataFileError, match=r"empty\.jsonl: no rows"):
            load(str(path))


def test_bad_first_line_is_reported_like_a_bad_third_line(tmp_path):
    for bad_line in (1, 3):
        lines = [MATH_ROW] * 3
        lines[bad_line - 1] = '{"problem": "p", "answer": '
        path = write_lines(tmp_path / f"bad{bad_line}.jsonl", *lines)
        with pytest.raises(DataFileError, match=rf"bad{bad_line}\.jsonl:{bad_line}: not valid JSON"):
            load_eval_dataset(str(path))


@pytest.mark.parametrize("bad_line", [1, 2])
def test_non_object_line_is_refused(tmp_path, bad_line):
    lines = [MATH_ROW, MATH_ROW]
    lines[bad_line - 1] = '["p", "2"]'
    path = write_lines(tmp_path / "list.jsonl", *lines)
    with pytest.raises(DataFileError, match=rf"list\.jsonl:{bad_line}: expected a JSON object .*got an array"):
        load_eval_dataset(str(path))


def test_unknown_format_names_the_line_and_the_fields(tmp_path):
    path = write_lines(tmp_path / "other.jsonl", json.dumps({"text": "hi"}))
    with pytest.raises(DataFileError, match=r"other\.jsonl:1: cannot tell the format from its fields \['text'\]"):
        load_eval_dataset(str(path))


def test_evaluate_refuses_a_dataset_without_reference_answers():
    dataset = Dataset.from_dict({"question": ["a", "b"], "answer": ["1", None]})
    with pytest.raises(ValueError, match="row 1 has no reference answer"):
        evaluate(tiny_llama(), char_tokenizer(), dataset, ["temperature:1.0"], n_samples=1, progress=False)


# ---------------------------------------------------------------------------------------------- rollouts
def rollout(prompt_ids=[5, 6, 7], completion_ids=[8, 9], **extra) -> str:  # noqa: B006 (never mutated)
    return json.dumps({"prompt_ids": prompt_ids, "completion_ids": completion_ids, **extra})


@pytest.mark.parametrize(
    "field, ids, shown",
    [
        ("completion_ids", [8, "9"], '"9"'),
        ("completion_ids", [8, 9.5], "9.5"),
        ("prompt_ids", [True, 5], "true"),
        ("prompt_ids", [5, -1], "-1"),
        ("completion_ids", "89", '"89"'),
        ("prompt_ids", [], r"\[\]"),
    ],
)
def test_load_rollouts_refuses_bad_token_ids_with_file_and_line(tmp_path, field, ids, shown):
    path = write_lines(tmp_path / "r.jsonl", rollout(), "", rollout(**{field: ids}))
    with pytest.raises(DataFileError, match=rf"r\.jsonl:3: field '{field}' .*{shown}.*; expected") as info:
        load_rollouts(path)
    assert (info.value.line, info.value.field) == (3, field)


def test_analyze_refuses_token_ids_outside_the_vocabulary_with_file_and_line(tmp_path):
    path = write_lines(tmp_path / "r.jsonl", rollout(), rollout(completion_ids=[8, VOCAB]))
    model = LogitMLPForCausalLM.from_base_model(tiny_llama()).eval()
    with pytest.raises(DataFileError, match=rf"r\.jsonl:2: field 'completion_ids' holds token id {VOCAB}, outside"):
        analyze_rollouts(model, char_tokenizer(), load_rollouts(path))
    in_memory = [json.loads(rollout()), json.loads(rollout(prompt_ids=[VOCAB + 5]))]
    with pytest.raises(DataFileError, match=rf"rollout 1: field 'prompt_ids' holds token id {VOCAB + 5}"):
        analyze_rollouts(model, char_tokenizer(), in_memory)


@pytest.mark.parametrize("content", ["", "\n \n"])
def test_empty_rollouts_file_is_a_clear_error(tmp_path, content):
    (tmp_path / "r.jsonl").write_text(content)
    with pytest.raises(DataFileError, match=r"r\.jsonl: no rollouts"):
        load_rollouts(tmp_path / "r.jsonl")


def test_rollouts_file_lines_must_be_objects_with_both_id_lists(tmp_path):
    write_lines(tmp_path / "r.jsonl", rollout(), "[1, 2]")
    with pytest.raises(DataFileError, match=r"r\.jsonl:2: expected a JSON object"):
        load_rollouts(tmp_path / "r.jsonl")
    write_lines(tmp_path / "r.jsonl", "{oops")
    with pytest.raises(DataFileError, match=r"r\.jsonl:1: not valid JSON"):
        load_rollouts(tmp_path / "r.jsonl")


@pytest.fixture(scope="module")
def eval_rollouts(tmp_path_factory):
    """Rollouts written by `evaluate` from a tiny model named tiny/llama-a."""
    model = tiny_llama()
    model.name_or_path = "tiny/llama-a"
    questions = ["What is 1 + 1?", "What is 2 + 2?"]
    dataset = Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": q}] for q in questions], "answer": ["2", "4"], "question": questions}
    )
    path = tmp_path_factory.mktemp("eval") / "rollouts.jsonl"
    evaluate(model, char_tokenizer(), dataset, ["temperature:1.0"], n_samples=2, max_new_tokens=4, progress=False,
             n_resamples=10, rollouts_path=path)  # fmt: skip
    return path


def head_on(name: str) -> LogitMLPForCausalLM:
    base = tiny_llama(seed=1)
    base.name_or_path = name
    return LogitMLPForCausalLM.from_base_model(base).eval()


def test_rollouts_record_the_model_and_tokenizer_that_made_them(eval_rollouts):
    rows = load_rollouts(eval_rollouts)
    assert {r["model"] for r in rows} == {"tiny/llama-a"}
    assert len({r["tokenizer_hash"] for r in rows}) == 1 and rows[0]["tokenizer_hash"].startswith("sha256:")
    assert all("tokenizer" in r for r in rows)


def test_analyze_refuses_rollouts_of_another_model_or_tokenizer(eval_rollouts, caplog, tmp_path):
    rows, tokenizer = load_rollouts(eval_rollouts), char_tokenizer()
    with pytest.raises(RolloutsMismatchError, match=r"rollouts\.jsonl:1: .*model 'tiny/llama-a'.*'tiny/llama-b'"):
        analyze_rollouts(head_on("tiny/llama-b"), tokenizer, rows)
    assert len(analyze_rollouts(head_on("tiny/llama-b"), tokenizer, rows, allow_other_model=True)) > 0
    assert len(analyze_rollouts(head_on("tiny/llama-a"), tokenizer, rows)) > 0  # the same model, another copy

    other_tokenizer = char_tokenizer()
    other_tokenizer.add_tokens(["<extra>"])
    with pytest.raises(RolloutsMismatchError, match="tokenizer"):
        analyze_rollouts(head_on("tiny/llama-a"), other_tokenizer, rows)

    # files written before rollouts recorded their source still load and analyse, with a warning
    old = [json.dumps({k: v for k, v in r.items() if k not in ("model", "tokenizer", "tokenizer_hash")}) for r in rows]
    write_lines(tmp_path / "old.jsonl", *old)
    with caplog.at_level(logging.WARNING):
        assert len(analyze_rollouts(head_on("tiny/llama-b"), tokenizer, load_rollouts(tmp_path / "old.jsonl"))) > 0
    assert "rollouts of" in caplog.text and "old.jsonl do not record the model" in caplog.text


def analyze_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    AnalyzeCommand().add_arguments(parser)
    return parser.parse_args(list(argv))


def test_analyze_cli_checks_the_rollouts_file_before_loading_any_model(tmp_path):
    (tmp_path / "r.jsonl").write_text("")
    args = analyze_args("--rollouts", str(tmp_path / "r.jsonl"), "--base-model", str(tmp_path / "no-such-model"))
    with pytest.raises(DataFileError, match="no rollouts"):
        AnalyzeCommand().run(args)
    write_lines(tmp_path / "r.jsonl", rollout(completion_ids=[]))
    with pytest.raises(DataFileError, match="no completion tokens"):
        AnalyzeCommand().run(args)


def test_analyze_cli_refuses_another_models_rollouts_unless_told(tmp_path, monkeypatch, eval_rollouts):
    base_dir = tmp_path / "tiny-base"
    tiny_llama().save_pretrained(base_dir)
    char_tokenizer().save_pretrained(base_dir)
    monkeypatch.setattr("logitmlp_hf.cli.analyze.write_report", lambda *a, **k: tmp_path / "report.md")
    argv = ["--rollouts", str(eval_rollouts), "--base-model", str(base_dir), "--output-dir", str(tmp_path / "out")]
    with pytest.raises(RolloutsMismatchError, match="--allow-other-model"):
        AnalyzeCommand().run(analyze_args(*argv))
    assert AnalyzeCommand().run(analyze_args(*argv, "--allow-other-model")) == 0


# ------------------------------------------------------------------------------------- config and trainer
def grpo_config(tmp_path, **kwargs) -> LogitMLPGRPOConfig:
    defaults = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=2,
                    max_completion_length=4, report_to=[], use_cpu=True, save_strategy="no")  # fmt: skip
    return LogitMLPGRPOConfig(**{**defaults, **kwargs})


def test_pass1_default_pass_k_accepts_two_generations(tmp_path):
    assert grpo_config(tmp_path, num_generations=2).objective == "pass@1"
    with pytest.raises(ValueError, match="pass_k=4 must be between 1 and num_generations=2"):
        grpo_config(tmp_path, num_generations=2, objective="pass@k")


def test_pass_k_is_checked_against_num_generations_eval(tmp_path):
    with pytest.raises(ValueError, match="pass_k=4 .*num_generations_eval=2"):
        grpo_config(tmp_path, num_generations=4, num_generations_eval=2, objective="pass@k", pass_k=4)
    grpo_config(
        tmp_path,
        num_generations=8,
        per_device_train_batch_size=8,
        num_generations_eval=4,
        objective="pass@k",
        pass_k=4,
    )


def test_pass_k_equal_to_the_group_size_is_refused(tmp_path):
    # k = group size makes every pass@k advantage 0 (see trainer.advantages): a run that could never learn.
    from logitmlp_hf.trainer.advantages import passk_advantages

    rewards = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    assert passk_advantages(rewards, k=4).abs().max() == 0
    assert passk_advantages(rewards, k=3).abs().max() > 0
    with pytest.raises(ValueError, match="pass_k=4 equals num_generations=4"):
        grpo_config(tmp_path, num_generations=4, objective="pass@k", pass_k=4)
    grpo_config(tmp_path, num_generations=4, num_generations_eval=2, objective="pass@1")  # logged pass@k clamps


@pytest.mark.parametrize("n_prompts, match", [(0, "train_dataset is empty"), (3, "has 3 prompts, fewer than")])
def test_empty_or_too_small_training_dataset_is_refused_at_construction(tmp_path, n_prompts, match):
    # 8 rollouts per step / 2 generations = 4 prompts per generation batch
    prompts = [[{"role": "user", "content": f"Say {i}"}] for i in range(n_prompts)]
    with pytest.raises(ValueError, match=match):
        LogitMLPGRPOTrainer(
            model=tiny_llama(),
            reward_funcs=lambda completions, **kw: [0.0] * len(completions),
            args=grpo_config(tmp_path, per_device_train_batch_size=8),
            train_dataset=Dataset.from_dict({"prompt": prompts}),
            processing_class=char_tokenizer(),
        )
