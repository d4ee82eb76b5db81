"""One table over several `logitmlp reproduce` output directories (the arithmetic recipe search).

Each directory is one training recipe, run with several training seeds on the same problems and sampling seeds
(``logitmlp reproduce --output-dir DIR ... --training-seeds 1 2``). For each recipe and objective the table gives
every seed's gap to the base's temperature frontier and verdict, the gap pooled over the seeds, and the warp each
head ended with (token means of s1 and s2 over its last three logged training steps).

    python examples/summarize_recipe_search.py outputs/reproduce outputs/lr1e-3 outputs/pass8g16
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from logitmlp_hf.reproduce.config import RunPaths


# config field -> how the table names it
RECIPE_FIELDS = {
    "learning_rate": "lr",
    "num_generations": "rollouts/prompt",
    "prompts_per_step": "prompts/step",
    "slope_bound": "slope bound",
    "train_steps": "steps",
}


def end_shape(training_dir: Path, last: int = 3) -> str:
    """``s1 a–b, s2 c–d`` over the last ``last`` logged steps of one head's training, or ``?`` without logs."""
    path = training_dir / "log_history.json"
    if not path.exists():
        return "?"
    logs = [row for row in json.loads(path.read_text()) if "warp/s1_mean" in row][-last:]
    if not logs:
        return "?"
    s1 = [row["warp/s1_mean"] for row in logs]
    s2 = [row["warp/s2_mean"] for row in logs]
    return f"s1 {min(s1):.2f}–{max(s1):.2f}, s2 {min(s2):.2f}–{max(s2):.2f}"


def _gap(entry: dict) -> str:
    gap = entry["gap"]
    return f"{gap['value']:+.3f} [{gap['ci_low']:+.3f}, {gap['ci_high']:+.3f}] {entry['verdict']}"


def rows(output_dir: Path) -> list[str]:
    results = json.loads((output_dir / "results.json").read_text())
    config = results["config"]
    paths = RunPaths(output_dir)
    recipe = ", ".join(f"{label} {config[field]:g}" for field, label in RECIPE_FIELDS.items())
    lines = []
    for objective, by_seed in results["frontier_by_training_seed"].items():
        seeds = sorted(by_seed, key=int)
        name = objective if objective == "pass1" else f"pass@{config['pass_k']}"
        per_seed = "<br>".join(f"seed {seed}: {_gap(by_seed[seed])}" for seed in seeds)
        shapes = "<br>".join(
            f"seed {seed}: {end_shape(paths.training_run(objective, None if int(seed) == config['seed'] else int(seed)))}"
            for seed in seeds
        )
        pooled = results["frontier"][objective]
        point = pooled["policy_point"]
        lines.append(
            f"| `{output_dir.name}`: {recipe} | {name} | {per_seed} | {point[0]:.3f} / {point[1]:.3f} | "
            f"{_gap(pooled)} | {shapes} |"
        )
    return lines


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    table = [
        "| recipe | objective | gap per training seed [95% paired CI] | pooled mean acc / best@8 | pooled gap | end shape |",
        "|---|---|---|---|---|---|",
    ]
    for output_dir in args.output_dirs:
        table += rows(output_dir)
    print("\n".join(table))
    return table


if __name__ == "__main__":
    main()
