"""Launched by tests/test_resume_faults.py: train a head with dynamic sampling on, saving every step, and SIGKILL this
very process at a chosen point, deterministically (no timer races):

- ``mid-step N``: inside a reward call of step N + 1 (a dynamic-sampling refill round), after checkpoint-N is complete;
- ``mid-save N``: while checkpoint-N is being written, after the head, optimizer and scheduler files but before the
  RNG state, the rollout state and ``trainer_state.json``.

The test resumes the run with ``train(resume_from_checkpoint=True)`` and compares it with an uninterrupted one.
"""

import os
import signal
import sys
from pathlib import Path

import torch
from conftest import char_tokenizer, tiny_llama
from test_grpo_trainer import config, dataset, prompt_dependent_reward

from logitmlp_hf import DecodingHeadGRPOTrainer


# 4 prompts, 2 per step: an epoch every 2 steps, so resuming also exercises the sampler's later epochs. Half the
# prompts get a constant reward, so most steps drop groups and draw refills.
MAX_STEPS = 5
N_PROMPTS = 4
SETTINGS = dict(
    max_steps=MAX_STEPS,
    save_strategy="steps",
    save_steps=1,
    max_dynamic_sampling_rounds=2,
    dynamic_sampling=True,
    logging_steps=100,
    disable_tqdm=True,
)


def run_trainer(out_dir, reward=prompt_dependent_reward) -> DecodingHeadGRPOTrainer:
    """The trainer every run of the fault tests uses: output in ``out_dir/out``."""
    return DecodingHeadGRPOTrainer(
        model=tiny_llama(),
        reward_funcs=reward,
        args=config(Path(out_dir), **SETTINGS),
        train_dataset=dataset(N_PROMPTS),
        processing_class=char_tokenizer(),
    )


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main(out_dir: str, where: str, step: int) -> None:
    torch.set_num_threads(1)  # as in the test process: the same kernels, bit for bit
    trainer = None
    calls = 0

    def reward(completions, **kwargs):
        nonlocal calls
        if where == "mid-step" and trainer.state.global_step == step:
            calls += 1
            if calls == 2:  # the first refill round of step + 1
                _die()
        return prompt_dependent_reward(completions, **kwargs)

    reward.__name__ = "prompt_dependent_reward"
    trainer = run_trainer(out_dir, reward)
    save = trainer._save_optimizer_and_scheduler

    def save_then_die(output_dir):
        save(output_dir)
        if where == "mid-save" and trainer.state.global_step == step:
            _die()

    trainer._save_optimizer_and_scheduler = save_then_die
    trainer.train()
    raise SystemExit(f"not killed: {where} {step} never happened")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
