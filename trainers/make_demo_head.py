"""Train the LogitMLP head that ships in the package for `logitmlp demo` (``logitmlp_hf/hub/demo_head/``).

    python trainers/make_demo_head.py                       # train, then package (~9 CPU-minutes on one thread)
    python trainers/make_demo_head.py --from_run DIR        # package the final checkpoint of a finished run

The recipe is ``trainers/configs/smollm2_arith_passk.yaml`` unchanged (the embedded SmolLM2-135M-Instruct, pass@4 with
the analytical advantage, 25 steps of 2 prompts x 8 rollouts on the arithmetic training problems, seed 0), with
TensorBoard logging off: the same run as

    python trainers/train_logitmlp_grpo.py --config trainers/configs/smollm2_arith_passk.yaml --report_to none

The final head is written to the package as a head-only repo (config, weights, card); its card records the recipe's
settings, the seed, the steps trained and this command. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from train_logitmlp_grpo import main, make_parser

from logitmlp_hf import load_decoding_head_model
from logitmlp_hf.hub.model_card import write_head_card
from logitmlp_hf.hub.offline_model import EMBEDDED_MODEL_ID, demo_head_dir
from logitmlp_hf.trainer.grpo_trainer import training_config_yaml


RECIPE = Path(__file__).parent / "configs" / "smollm2_arith_passk.yaml"
COMMAND = "python trainers/make_demo_head.py"


def recipe_arguments(output_dir: str):
    """(script args, training args) of the recipe, TensorBoard off, writing to ``output_dir``."""
    return make_parser().parse_args_and_config(
        ["--config", str(RECIPE), "--output_dir", output_dir, "--report_to", "none"]
    )


def package(checkpoint: Path, training_args, head_dir: Path) -> Path:
    """Write the head of ``checkpoint`` to ``head_dir`` as a head-only repo with its card."""
    steps = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
    if steps != training_args.max_steps:
        raise SystemExit(f"{checkpoint} is at step {steps}, not the recipe's last step {training_args.max_steps}")
    model = load_decoding_head_model(str(checkpoint), base_model=EMBEDDED_MODEL_ID)
    model.save_pretrained(head_dir)
    settings = training_config_yaml(training_args, steps)
    settings += yaml.safe_dump({"recipe": f"trainers/configs/{RECIPE.name}", "command": COMMAND})
    write_head_card(head_dir, sum(p.numel() for p in model.get_base_model().parameters()), training_config=settings)
    return head_dir


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/demo-head-training", help="the training run's folder")
    parser.add_argument("--from_run", type=Path, default=None, help="package this finished run instead of training")
    parser.add_argument("--head_dir", type=Path, default=demo_head_dir(), help="where the head repo goes")
    args = parser.parse_args()
    run_dir = args.from_run or Path(args.output_dir)
    script_args, training_args = recipe_arguments(str(run_dir))
    if args.from_run is None:
        main(script_args, training_args)  # the recipe saves a checkpoint at its last step
    final = run_dir / f"checkpoint-{training_args.max_steps}"
    print(f"Demo head written to {package(final, training_args, args.head_dir)}")
