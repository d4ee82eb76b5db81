"""evaluation.evaluate, policy parsing, GLOBAL-T* sweep and the Pareto plot on tiny models."""

from __future__ import annotations

import argparse
import json

import pytest
from conftest import char_tokenizer, tiny_llama
from datasets import Dataset
from transformers import TemperatureLogitsWarper

from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.cli import main as cli_main
from logitmlp_hf.cli.eval import EvalCommand
from logitmlp_hf.evaluation.metrics import MetricValue
from logitmlp_hf.evaluation.policies import DecodingPolicy, parse_policy
from logitmlp_hf.evaluation.results import EvalResults, PolicyResults
from logitmlp_hf.evaluation.runner import evaluate, load_eval_dataset
from logitmlp_hf.evaluation.sweep import global_temperature_sweep, pareto_plot, temperature_policy


ROLLOUT_FIELDS = {"problem_id", "sample", "policy", "prompt_ids", "completion_ids", "completion", "answer", "correct"}
ROLLOUT_FIELDS |= {"model", "tokenizer", "tokenizer_hash"}  # what made the token ids


def stub_dataset(n: int = 5) -> Dataset:
    questions = [f"What is {i} + {i}?" for i in range(n)]
    return Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": q}] for q in questions],
            "answer": [str(2 * i) for i in range(n)],
            "question": questions,
        }
    )


def run(model, policies, **kwargs):
    defaults = dict(n_samples=3, batch_size=2, max_new_tokens=6, progress=False, n_resamples=50)
    return evaluate(model, char_tokenizer(), stub_dataset(), policies, **{**defaults, **kwargs})


def test_parse_policy():
    p = parse_policy("temperature:0.7")
    assert (p.kind, p.temperature, p.name) == ("temperature", 0.7, "temperature:0.7")
    p = parse_policy("temperature:0.6:top_p=0.95,top_k=20,min_p=0.05,name=nucleus")
    assert (p.top_p, p.top_k, p.min_p, p.name) == (0.95, 20, 0.05, "nucleus")
    p = parse_policy("head:outputs/demo-head")
    assert (p.kind, p.head, p.temperature) == ("head", "outputs/demo-head", 1.0)
    assert parse_policy("head:hf://org/head:temperature=0.8").head == "hf://org/head"
    assert parse_policy("head").head is None
    p = parse_policy("baseline:entropy_guided:t_low=0.6,t_high=1.2,window=32")
    assert (p.baseline, p.baseline_kwargs) == ("entropy_guided", {"t_low": 0.6, "t_high": 1.2, "window": 32})
    p = parse_policy("baseline:multi_temperature:temperatures=0.6|1.0|1.4,temperature=1")
    assert p.baseline_kwargs == {"temperatures": [0.6, 1.0, 1.4]} and p.temperature == 1
    for bad in ("greedy:1", "temperature:", "temperature:-1", "temperature:1:foo=2", "baseline:", "temperature:1:x"):
        with pytest.raises(ValueError):
            parse_policy(bad)


def test_evaluate_is_deterministic_and_batch_size_independent(tmp_path):
    model = tiny_llama()
    a = run(model, ["temperature:1.0", "temperature:0.5:top_k=5"], seed=0)
    b = run(model, ["temperature:1.0", "temperature:0.5:top_k=5"], seed=0, batch_size=5)
    c = run(model, ["temperature:1.0"], seed=1)
    samples = lambda r, name: [p["answers"] + p["completion_tokens"] for p in r[name].problems]  # noqa: E731
    for name in a.policies:  # everything but the timings
        assert a[name].problems == b[name].problems and a[name].metrics == b[name].metrics
    assert samples(a, "temperature:1.0") != samples(c, "temperature:1.0")
    metrics = a["temperature:1.0"].metrics
    assert {"best@k", "mean_accuracy", "worst@k", "answer_entropy", "uniq/k", "accuracy_std", "pass@3"} <= set(metrics)


def test_greedy_repeats_one_sample():
    r = run(tiny_llama(), ["temperature:0"])
    for problem in r["temperature:0"].problems:
        assert len(set(map(str, problem["answers"]))) == 1 and len(problem["correct"]) == 3
    assert r["temperature:0"].metrics["uniq/k"].value == pytest.approx(1 / 3)


def test_results_json_and_rollouts(tmp_path):
    model = tiny_llama()
    head_dir = tmp_path / "head"
    LogitMLPForCausalLM.from_base_model(model).save_pretrained(head_dir)
    policies = ["temperature:1.0", f"head:{head_dir}"]
    r = run(model, policies, rollouts_path=tmp_path / "r.jsonl", results_path=tmp_path / "results.json")
    data = json.loads((tmp_path / "results.json").read_text())
    assert set(data) == {"config", "versions", "policies"} and list(data["policies"]) == policies
    assert data["config"]["n_samples"] == 3 and "transformers" in data["versions"]
    problem = data["policies"]["temperature:1.0"]["problems"][0]
    assert {"problem_id", "correct", "answers", "grouped_answers", "reference"} <= set(problem)
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * 5 * 3
    for line in lines:
        assert set(line) == ROLLOUT_FIELDS
        assert isinstance(line["correct"], bool) and all(isinstance(t, int) for t in line["completion_ids"])
        assert line["answer"] is None or isinstance(line["answer"], str)
    assert {(x["policy"], x["problem_id"], x["sample"]) for x in lines} == {
        (p, i, s) for p in policies for i in range(5) for s in range(3)
    }
    reloaded = EvalResults.load(tmp_path / "results.json")
    assert reloaded["temperature:1.0"].metrics == r["temperature:1.0"].metrics


def test_near_identity_head_matches_base_samples(tmp_path):
    """A freshly initialised head barely changes the distribution; with common random numbers most samples agree."""
    model = tiny_llama()
    wrapped = LogitMLPForCausalLM.from_base_model(model)
    with __import__("torch").no_grad():
        wrapped.logitmlp_head.fc_out.weight.zero_()
        wrapped.logitmlp_head.fc_out.bias.zero_()
    r = run(wrapped, ["temperature:1.0", DecodingPolicy(name="own head", kind="head")])
    base = [p["completion_tokens"] for p in r["temperature:1.0"].problems]
    head = [p["completion_tokens"] for p in r["own head"].problems]
    assert base == head


def test_baseline_policy_uses_the_factory(monkeypatch):
    calls = []

    def make_baseline_processor(name, **kwargs):
        calls.append((name, kwargs))
        return TemperatureLogitsWarper(kwargs["t"])

    import logitmlp_hf.evaluation.baselines as baselines

    monkeypatch.setattr(baselines, "make_baseline_processor", make_baseline_processor)
    model = tiny_llama()
    r = run(model, ["baseline:fake:t=0.5", "temperature:0.5", "baseline:multi_temperature:temperatures=0.5"])
    assert calls and calls[0] == ("fake", {"t": 0.5})
    tokens = lambda name: [p["completion_tokens"] + p["answers"] for p in r[name].problems]  # noqa: E731
    assert tokens("baseline:fake:t=0.5") == tokens("temperature:0.5")
    assert tokens("baseline:multi_temperature:temperatures=0.5") == tokens("temperature:0.5")


def fake_results(values: dict[float, tuple[float, float]]) -> EvalResults:
    policies = {}
    for t, (acc, best) in values.items():
        p = temperature_policy(t)
        metrics = {"mean_accuracy": MetricValue(acc, acc, acc), "best@k": MetricValue(best, best, best)}
        policies[p.name] = PolicyResults(p, metrics, [{"correct": [True] * 4}])
    return EvalResults({"n_samples": 4, "n_problems": 1}, policies)


def test_sweep_selects_on_validation_and_reports_on_test(monkeypatch):
    import logitmlp_hf.evaluation.sweep as sweep_module

    val_scores = {0.2: (0.3, 0.4), 0.6: (0.5, 0.6), 1.0: (0.4, 0.9)}
    seen = []

    def fake_evaluate(model, tokenizer, dataset, policies, **kwargs):
        seen.append((dataset, [p.temperature for p in policies]))
        if dataset == "val":
            return fake_results({p.temperature: val_scores[p.temperature] for p in policies})
        return fake_results({p.temperature: (0.1, 0.2) for p in policies})

    monkeypatch.setattr(sweep_module, "evaluate", fake_evaluate)
    s = global_temperature_sweep(None, None, "val", "test", [1.0, 0.2, 0.6])
    assert s.best_temperature == 0.6 and seen[-1] == ("test", [0.6]) and s.best.metrics["mean_accuracy"].value == 0.1
    s = global_temperature_sweep(None, None, "val", "test", [1.0, 0.2, 0.6], selection_metric="best@k")
    assert s.best_temperature == 1.0
    with pytest.raises(ValueError):
        global_temperature_sweep(None, None, "val", "test", [1.0], selection_metric="nope")


def test_sweep_end_to_end_and_pareto_plot(tmp_path):
    model = tiny_llama()
    data = stub_dataset(6)
    s = global_temperature_sweep(
        model,
        char_tokenizer(),
        data.select(range(3)),
        data.select(range(3, 6)),
        [0.5, 1.5],
        sweep_on_test=True,
        n_samples=2,
        max_new_tokens=4,
        progress=False,
        n_resamples=20,
    )
    scores = {t: s.validation[f"T={t:g}"].metrics["mean_accuracy"].value for t in (0.5, 1.5)}
    assert scores[s.best_temperature] == max(scores.values())
    assert set(s.test.policies) == {"T=0.5", "T=1.5"}
    fig = pareto_plot(s, markers={"head": (0.4, 0.7)}, path=tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").stat().st_size > 1000
    assert len(fig.axes) == 1 and "best@2" in fig.axes[0].get_ylabel()
    assert fig.axes[0].get_title().endswith("(test split)")  # sweep and markers on the same problems
    s.test.policies = {name: r for name, r in s.test.policies.items() if name == f"T={s.best_temperature:g}"}
    mixed = pareto_plot(s, markers={"head": (0.4, 0.7)})
    assert "sweep on validation, markers on test" in mixed.axes[0].get_title()
    s.save(tmp_path / "sweep.json")
    assert json.loads((tmp_path / "sweep.json").read_text())["best_temperature"] == s.best_temperature


def test_eval_arguments_and_datasets():
    parser = argparse.ArgumentParser()
    EvalCommand().add_arguments(parser)
    args = parser.parse_args(
        [
            "--policy",
            "temperature:1.0",
            "--policy",
            "head:x",
            "--dataset",
            "gsm8k",
            "--n-samples",
            "4",
            "--save-rollouts",
        ]
    )
    assert args.policies == ["temperature:1.0", "head:x"] and args.save_rollouts and args.n_samples == 4
    assert len(load_eval_dataset("math500", 3)) == 3
    gsm = load_eval_dataset("gsm8k", 2, n_validation=5)
    assert gsm["question"][0] == load_eval_dataset("gsm8k", None, split="validation", n_validation=6)["question"][5]
    test = load_eval_dataset("arithmetic", 10)
    val = load_eval_dataset("arithmetic", 10, split="validation", n_validation=4)
    assert len(val) == 4 and not set(val["question"]) & set(test["question"])
    assert "boxed" not in test["prompt"][0][-1]["content"]


@pytest.mark.slow
def test_run_eval_on_smollm2(tmp_path):
    assert (
        cli_main(
            [
                "eval",
                "--policy",
                "temperature:0.7",
                "--n-problems",
                "4",
                "--n-samples",
                "2",
                "--max-new-tokens",
                "24",
                "--output-dir",
                str(tmp_path),
                "--save-rollouts",
            ]
        )
        == 0
    )
    out = tmp_path
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["n_problems"] == 4
    assert len((out / "rollouts.jsonl").read_text().splitlines()) == 8
