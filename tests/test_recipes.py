"""The launchable recipes: multi-process CPU training, kill-and-resume of the real script, Hub pushes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import char_tokenizer, tiny_llama
from hub_server import local_hub  # noqa: F401  (fixture)
from safetensors import safe_open
from safetensors.torch import load_file

from logitmlp_hf.trainer.checkpoints import last_complete_checkpoint


ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "trainers" / "train_logitmlp_grpo.py"
TESTS = Path(__file__).resolve().parent


def _env():
    env = dict(os.environ, PYTHONPATH=f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", HF_HUB_OFFLINE="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


@pytest.mark.slow
def test_two_cpu_processes_keep_identical_heads(tmp_path):
    """Two CPU processes (gloo DDP) through the repo's accelerate config: the head's gradients must be all-reduced,
    so both replicas end identical although each rank trained on different prompts, with dynamic sampling and with
    different numbers of completion tokens per rank (the warp metrics are then gathered over both: equal logs)."""
    import socket

    with socket.socket() as s:  # a free port: the default 29500 may still be held by another run's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ROOT / "trainers" / "accelerate_configs" / "cpu_2proc.yaml"),
        "--main_process_port",
        str(port),
        str(TESTS / "ddp_head_sync_script.py"),
        str(tmp_path),
    ]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    heads = [load_file(tmp_path / f"head_rank{r}.safetensors") for r in (0, 1)]
    logs = []
    for rank in (0, 1):
        with safe_open(tmp_path / f"head_rank{rank}.safetensors", "pt") as f:
            metadata = f.metadata()
        assert {k: metadata[k] for k in ("changed", "world_size")} == {"changed": "True", "world_size": "2"}
        logs.append(json.loads(metadata["warp_logs"]))
    assert any("warp/kl_to_base" in log for log in logs[0]), logs[0]
    assert logs[0] == logs[1]
    for key in heads[0]:
        assert torch.equal(heads[0][key], heads[1][key]), f"{key} differs between ranks: gradients were not synced"


def _tiny_model_dir(tmp_path):
    path = tmp_path / "tiny"
    tiny_llama().save_pretrained(path)
    char_tokenizer().save_pretrained(path)
    return path


def _script_cmd(model_dir, out, max_steps, *extra):
    return [
        sys.executable,
        str(SCRIPT),
        "--model_name_or_path",
        str(model_dir),
        "--output_dir",
        str(out),
        "--max_steps",
        str(max_steps),
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--logging_steps",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--num_generations",
        "4",
        "--max_completion_length",
        "8",
        "--n_train_problems",
        "64",
        "--report_to",
        "none",
        "--use_cpu",
        "true",
        "--head_init_std",
        "0.02",
        "--learning_rate",
        "0.05",
        "--seed",
        "0",
        *extra,
    ]


@pytest.mark.slow
def test_killed_run_loses_at_most_the_steps_since_its_last_checkpoint(tmp_path):
    model_dir, out = _tiny_model_dir(tmp_path), tmp_path / "run"
    proc = subprocess.Popen(
        _script_cmd(model_dir, out, 1000),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.time() + 300
    try:
        while last_complete_checkpoint(out) is None or not last_complete_checkpoint(out).endswith("-4"):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "no checkpoint-4 within 300 s"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no clean shutdown: as if the machine died
        proc.wait()
    last = last_complete_checkpoint(out)
    step = int(last.rsplit("-", 1)[1])
    assert step >= 4
    saved_head = load_file(Path(last) / "logitmlp_head.safetensors")

    resumed = subprocess.run(
        _script_cmd(model_dir, out, step + 2, "--resume_from_checkpoint", "true"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = last_complete_checkpoint(out)
    assert final.endswith(f"checkpoint-{step + 2}")
    import json

    state = json.loads((Path(final) / "trainer_state.json").read_text())
    assert state["global_step"] == step + 2
    # the resumed run continued from the saved head, not a fresh one: its first logged step is step + 1
    steps = [e["step"] for e in state["log_history"] if "loss" in e]
    assert steps[-2:] == [step + 1, step + 2] and steps.count(step + 1) == 1
    # and from the saved optimizer: AdamW's step count continues (a fresh optimizer would be at 2). The random tiny
    # model never answers correctly, so the head itself may legitimately not move in these two steps.
    optimizer = torch.load(Path(final) / "optimizer.pt", weights_only=True)
    assert {int(state["step"]) for state in optimizer["state"].values()} == {step + 2}
    assert saved_head.keys() == load_file(Path(final) / "logitmlp_head.safetensors").keys()


def test_trainer_pushes_head_only_repos_with_run_card(tmp_path, local_hub):  # noqa: F811
    from datasets import Dataset

    from logitmlp_hf import LogitMLPGRPOConfig, LogitMLPGRPOTrainer

    prompts = [[{"role": "user", "content": f"Say {i}"}] for i in range(16)]
    args = LogitMLPGRPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=0.05,
        report_to=[],
        save_strategy="steps",
        save_steps=1,
        head_init_std=0.02,
        push_to_hub=True,
        hub_model_id="user/tiny-head",
        hub_strategy="every_save",
        objective="pass@k",
        pass_k=2,
        use_cpu=True,
    )
    trainer = LogitMLPGRPOTrainer(
        tiny_llama(),
        lambda completions, **kw: [float(i % 2) for i in range(len(completions))],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=char_tokenizer(),
    )
    trainer.train()
    assert any(m == "POST" and "commit" in p for m, p in local_hub.requests)  # checkpoint pushes happened
    trainer.push_to_hub()
    files = local_hub.files("user/tiny-head")
    assert sorted(files) == ["README.md", "config.json", "logitmlp_head.safetensors"]
    card = files["README.md"].decode()
    assert (
        "objective: pass@k" in card
        and "pass_k: 2" in card
        and "trained_steps: 2" in card
        and "Not evaluated yet" in card
    )
    from safetensors.torch import load as load_bytes

    pushed = load_bytes(files["logitmlp_head.safetensors"])
    assert torch.equal(pushed["fc_out.weight"], trainer.model.logitmlp_head.fc_out.weight.detach())


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "trainers" / "configs").glob("*.yaml")))
def test_every_recipe_parses_into_the_trainer_config(recipe, tmp_path, monkeypatch):
    """Each YAML recipe is valid for the script's TrlParser (a misspelt key fails here, not on a rented GPU)."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import train_logitmlp_grpo

    argv = ["--config", str(ROOT / "trainers" / "configs" / recipe), "--output_dir", str(tmp_path)]
    if "qwen3" in recipe and not torch.cuda.is_available():
        argv += ["--bf16", "false"]  # the GPU recipes ask for bf16, which this CPU cannot honour
    _, args = train_logitmlp_grpo.make_parser().parse_args_and_config(argv)
    if "qwen3" in recipe:  # the GPU recipes roll out with vLLM, the head synced into colocated engines
        assert args.use_vllm and args.vllm_mode == "colocate" and not args.vllm_enable_sleep_mode
        assert args.vllm_max_model_length >= args.max_completion_length
    else:
        assert not args.use_vllm
