"""Launched by tests/test_recipes.py with `accelerate launch --cpu --num_processes 2`: train a head for two steps on a
tiny model and dump each rank's head, so the test can check DDP kept the replicas identical."""

import json
import os
import sys

import torch
from conftest import char_tokenizer, tiny_llama
from datasets import Dataset
from safetensors.torch import save_file

from logitmlp_hf import LogitMLPGRPOConfig, LogitMLPGRPOTrainer


def reward(completions, **kwargs):
    return [float(any(ch.isdigit() for ch in (c if isinstance(c, str) else c[-1]["content"]))) for c in completions]


def main(out: str) -> None:
    prompts = [[{"role": "user", "content": f"Say {i}"}] for i in range(32)]
    # The ranks hold different numbers of completion tokens, as real rollouts do (EOS at different steps): every
    # collective must then still exchange equal shapes (gloo aborts otherwise).
    rank_env = int(os.environ.get("RANK", "0"))
    args = LogitMLPGRPOConfig(
        output_dir=out,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8 - 2 * rank_env,
        dynamic_sampling=True,
        dynamic_sampling_extra_prompts=1,
        max_steps=2,
        learning_rate=0.05,
        report_to=[],
        save_strategy="no",
        head_init_std=0.02,
        seed=0,
        logging_steps=1,
        use_cpu=True,
    )
    trainer = LogitMLPGRPOTrainer(
        tiny_llama(),
        reward,
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=char_tokenizer(),
    )
    initial = {k: v.clone() for k, v in trainer.model.logitmlp_head.state_dict().items()}
    trainer.train()
    rank = trainer.accelerator.process_index
    head = trainer.accelerator.unwrap_model(trainer.model).logitmlp_head.state_dict()
    changed = any(not torch.equal(head[k], initial[k]) for k in head)
    save_file(
        {k: v.contiguous() for k, v in head.items()},
        f"{out}/head_rank{rank}.safetensors",
        metadata={
            "changed": str(changed),
            "world_size": str(trainer.accelerator.num_processes),
            # what every rank logged: the warp's metrics are over all ranks' tokens, so the ranks must agree
            "warp_logs": json.dumps(
                [{k: v for k, v in log.items() if k.startswith("warp/")} for log in trainer.state.log_history]
            ),
        },
    )
    # As the recipe does: a gloo group left to interpreter teardown can abort a rank (SIGABRT) after training.
    trainer.end()


if __name__ == "__main__":
    main(sys.argv[1])
