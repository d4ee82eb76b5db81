"""Fault injection: a run killed mid-step or mid-checkpoint (dynamic sampling on) resumes to the very trajectory of an
uninterrupted one; incomplete checkpoints are skipped and named; checkpoint heads get the head-repo checks."""

import copy
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from resume_fault_script import run_trainer
from safetensors.torch import load_file, save_file
from test_grpo_trainer import make_trainer, prompt_dependent_reward
from transformers import TrainerCallback

from logitmlp_hf.errors import HeadCheckpointError


TESTS = Path(__file__).resolve().parent
SCRIPT = TESTS / "resume_fault_script.py"
HEAD = "logitmlp_head.safetensors"
LOGGERS = ("logitmlp_hf.trainer.grpo_trainer", "logitmlp_hf.trainer.checkpoints")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The killed children run with one thread; so does this process, so that both compute the same bits (and two
    threads on a shared 2-core machine are far slower for these tiny matrices)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory):
    """Both children start at once and run while this process trains the uninterrupted reference."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    runs = {}
    for where, step in (("mid-step", 3), ("mid-save", 3)):
        root = tmp_path_factory.mktemp(where)
        log = open(root / "child.log", "wb")  # a file, not a pipe: a full pipe would block the child
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(root), where, str(step)], env=env, stdout=log, stderr=log
        )
        runs[where] = (proc, root, log)
    yield runs
    for proc, _, log in runs.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


def _killed(run) -> Path:
    proc, root, log = run
    proc.wait(timeout=300)
    log.flush()
    assert proc.returncode == -signal.SIGKILL, (root / "child.log").read_text()[-3000:]
    return root


def _final_state(trainer) -> dict:
    head = trainer.accelerator.unwrap_model(trainer.model).decoding_head
    return {
        "head": {k: v.detach().clone() for k, v in head.state_dict().items()},
        "optimizer": copy.deepcopy(trainer.optimizer.state_dict()),
        "scheduler": copy.deepcopy(trainer.lr_scheduler.state_dict()),
        "refill": (trainer._refill_generator.get_state(), list(trainer._refill_order)),
        "global_step": trainer.state.global_step,
    }


def _assert_identical(got, expected, where="state"):
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor) and torch.equal(got, expected), f"{where} differs"
    elif isinstance(expected, dict):
        assert got.keys() == expected.keys(), f"{where}: keys {got.keys()} != {expected.keys()}"
        for key in expected:
            _assert_identical(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), f"{where}: length {len(got)} != {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            _assert_identical(g, e, f"{where}[{i}]")
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


class _RefillCounter(TrainerCallback):
    """How many refill prompts were drawn by each save, to check that the kills fall between refills."""

    def __init__(self, trainer):
        self.drawn, self.at_save = 0, {}
        refill = trainer._refill_inputs

        def counting(n_prompts):
            self.drawn += n_prompts
            return refill(n_prompts)

        trainer._refill_inputs = counting

    def on_save(self, args, state, control, **kwargs):
        self.at_save[state.global_step] = self.drawn


@pytest.fixture(scope="module")
def uninterrupted(killed_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    trainer = run_trainer(root)
    counter = _RefillCounter(trainer)
    trainer.add_callback(counter)
    trainer.train()
    # the kills at step 3 test the refill stream only if refills were drawn before checkpoint-2 and after -3
    drawn = counter.at_save
    assert 0 < drawn[2] and drawn[3] < drawn[5], drawn
    return root, _final_state(trainer)


def _resume(root, caplog):
    trainer = run_trainer(root)
    with caplog.at_level(logging.INFO, logger=LOGGERS[0]):
        trainer.train(resume_from_checkpoint=True)
    return _final_state(trainer)


def test_sigkill_mid_step_resumes_to_the_uninterrupted_trajectory(killed_runs, uninterrupted, caplog):
    root = _killed(killed_runs["mid-step"])
    assert (root / "out/checkpoint-3/trainer_state.json").is_file() and not (root / "out/checkpoint-4").exists()
    state = _resume(root, caplog)
    assert f"Resuming from {root / 'out/checkpoint-3'}" in caplog.text
    _assert_identical(state, uninterrupted[1])


def test_sigkill_mid_checkpoint_write_resumes_from_the_one_before(killed_runs, uninterrupted, caplog):
    root = _killed(killed_runs["mid-save"])
    partial = root / "out/checkpoint-3"
    assert (partial / "optimizer.pt").is_file() and not (partial / "trainer_state.json").exists()
    state = _resume(root, caplog)
    assert f"Resuming from {root / 'out/checkpoint-2'}" in caplog.text
    _assert_identical(state, uninterrupted[1])
    assert f"{partial}: incomplete, it lacks trainer_state.json, rng_state.pth, rollout_state.pth" in caplog.text


def test_resume_between_two_generations_replays_trls_rollout_buffer(tmp_path):
    """num_iterations=2: TRL generates every other step and serves the step between from its buffer; a checkpoint
    written between the two must bring the buffer (and TRL's step counter) back."""
    kwargs = dict(reward=prompt_dependent_reward, max_steps=3, save_strategy="steps", save_steps=1, num_iterations=2)
    reference = make_trainer(tmp_path / "a", **kwargs)
    reference.train()
    ckpt = tmp_path / "a/out/checkpoint-1"
    assert torch.load(ckpt / "rollout_state.pth")["buffered_inputs"] is not None
    assert torch.load(tmp_path / "a/out/checkpoint-2/rollout_state.pth")["buffered_inputs"] is None
    shutil.copytree(ckpt, tmp_path / "b/out/checkpoint-1")
    resumed = make_trainer(tmp_path / "b", **kwargs)
    resumed.train(resume_from_checkpoint=True)
    _assert_identical(_final_state(resumed), _final_state(reference))


def _copy_run(uninterrupted, tmp_path, steps=None) -> Path:
    source = uninterrupted[0] / "out"
    for name in os.listdir(source):
        if name.startswith("checkpoint-") and (steps is None or int(name.split("-")[1]) in steps):
            shutil.copytree(source / name, tmp_path / "out" / name)
    return tmp_path


@pytest.mark.parametrize("lost", ["optimizer.pt", "scheduler.pt", "rng_state.pth", "rollout_state.pth"])
def test_a_checkpoint_without_its_training_state_is_skipped_and_named(uninterrupted, tmp_path, caplog, lost):
    root = _copy_run(uninterrupted, tmp_path, steps=(4, 5))
    (root / "out/checkpoint-5" / lost).unlink()
    trainer = run_trainer(root)
    with caplog.at_level(logging.INFO, logger=LOGGERS[0]):
        trainer.train(resume_from_checkpoint=True)
    assert f"checkpoint-5: incomplete, it lacks {lost}" in caplog.text
    assert f"Resuming from {root / 'out/checkpoint-4'}" in caplog.text
    _assert_identical(_final_state(trainer), uninterrupted[1])


def test_resuming_from_an_incomplete_checkpoint_by_path_says_what_is_lost(uninterrupted, tmp_path, caplog):
    root = _copy_run(uninterrupted, tmp_path, steps=(5,))
    (root / "out/checkpoint-5/optimizer.pt").unlink()
    with caplog.at_level(logging.WARNING, logger=LOGGERS[0]):
        run_trainer(root).train(resume_from_checkpoint=str(root / "out/checkpoint-5"))
    assert "checkpoint-5 lacks optimizer.pt: resuming from it anyway" in caplog.text


def _nan(path):
    state = load_file(path)
    state["fc_out.bias"][0] = float("nan")
    save_file(state, path)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _reshape(path):
    state = load_file(path)
    state["fc_out.bias"] = torch.zeros(5)
    save_file(state, path)


@pytest.mark.parametrize(
    "corrupt,match",
    [
        (_nan, r"holds non-finite values in \['fc_out.bias'\]"),
        (_truncate, "is not a readable safetensors file"),
        (_reshape, "does not match its config"),
    ],
)
def test_a_checkpoint_head_gets_the_head_repo_checks(uninterrupted, tmp_path, corrupt, match):
    root = _copy_run(uninterrupted, tmp_path, steps=(5,))
    head = root / "out/checkpoint-5" / HEAD
    corrupt(head)
    with pytest.raises(HeadCheckpointError, match=match) as info:
        run_trainer(root).train(resume_from_checkpoint=True)
    assert f"can't resume from {root / 'out/checkpoint-5'}" in str(info.value) and str(head) in str(info.value)
