"""Two runs of the main job on the same problems and seeds, row by row: does a change of settings move the tables?

For every policy both runs evaluated (the GLOBAL-T* sweep on validation and test, the heads, the heads of further
training seeds), each metric's value in run A and in run B, their paired difference (B − A) with a 95% bootstrap CI
over problems (the same problems and sample seeds in both runs, so the difference is paired), and whether B's value
lies inside A's own CI (the table's CI). Then the verdicts the report draws from the tables: the selected T* and
each head type's frontier verdict.

    python benchmarks/compare_runs.py outputs/reproduce-fp32 outputs/reproduce-bf16

Made for the bf16 check of the evaluation (``--eval-dtype``): the heads and the samples' seeds are the same, only the
base's dtype differs. Ends with ``RESULT compare_rows=…``, ``RESULT compare_rows_outside_ci=…`` (rows whose B value
lies outside A's CI), ``RESULT compare_max_abs_diff=…`` and ``RESULT compare_verdicts_equal=…`` (1 or 0).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from logitmlp_hf.evaluation.metrics import paired_difference


METRICS = ("mean_accuracy", "best@k")


def _policies(run: Path) -> dict[str, dict]:
    """``split/policy`` → the policy's results (metrics and per-problem samples)."""
    found: dict[str, dict] = {}
    sweep = json.loads((run / "sweep" / "sweep.json").read_text(encoding="utf-8"))
    for split in ("validation", "test"):
        for name, policy in (sweep.get(split) or {}).get("policies", {}).items():
            found[f"sweep {split} / {name}"] = policy
    for path in sorted((run / "eval").glob("*.json")):
        for name, policy in json.loads(path.read_text(encoding="utf-8"))["policies"].items():
            found[f"test / {name}"] = policy
    return found


def _correct(policy: dict, problems: list[int]) -> list[list[bool]]:
    by_id = {problem["problem_id"]: problem["correct"] for problem in policy["problems"]}
    return [by_id[p] for p in problems]


def _verdicts(run: Path) -> dict[str, str]:
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    verdicts = {"GLOBAL-T*": str(results["global_t_star"])}
    for head, frontier in results.get("frontier", {}).items():
        verdicts[f"frontier {head}"] = str(frontier.get("verdict"))
    for head, seeds in results.get("frontier_by_training_seed", {}).items():
        for seed, frontier in seeds.items():
            verdicts[f"frontier {head} seed {seed}"] = str(frontier.get("verdict"))
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path, help="the reference run's output directory")
    parser.add_argument("run_b", type=Path, help="the run to compare with it")
    parser.add_argument("--n-resamples", type=int, default=2000)
    args = parser.parse_args()

    a, b = _policies(args.run_a), _policies(args.run_b)
    shared = [name for name in a if name in b]
    print(f"{'policy':<44} {'metric':<13} {'A':>6} {'A CI':>15} {'B':>6} {'B − A [95% CI]':>26} in A's CI")
    outside, largest = 0, 0.0
    for name in shared:
        for metric in METRICS:
            problems = sorted(
                {p["problem_id"] for p in a[name]["problems"]} & {p["problem_id"] for p in b[name]["problems"]}
            )
            diff = paired_difference(
                _correct(b[name], problems), _correct(a[name], problems), metric, n_resamples=args.n_resamples
            )
            low, high = diff.ci_low, diff.ci_high
            table_a = a[name]["metrics"][metric]
            value_b = b[name]["metrics"][metric]["value"]
            inside = table_a["ci_low"] <= value_b <= table_a["ci_high"]
            outside += not inside
            largest = max(largest, abs(value_b - table_a["value"]))
            print(
                f"{name:<44} {metric:<13} {table_a['value']:>6.3f} "
                f"[{table_a['ci_low']:.3f}, {table_a['ci_high']:.3f}] {value_b:>6.3f} "
                f"{value_b - table_a['value']:>+8.3f} [{low:+.3f}, {high:+.3f}] {'yes' if inside else 'NO'}"
            )
    verdicts_a, verdicts_b = _verdicts(args.run_a), _verdicts(args.run_b)
    equal = all(verdicts_a.get(k) == verdicts_b.get(k) for k in verdicts_a)
    for key in verdicts_a:
        print(f"{key}: A {verdicts_a[key]}, B {verdicts_b.get(key)}")
    print(f"RESULT compare_rows={2 * len(shared)}")
    print(f"RESULT compare_rows_outside_ci={outside}")
    print(f"RESULT compare_max_abs_diff={largest:.4f}")
    print(f"RESULT compare_verdicts_equal={int(equal)}")


if __name__ == "__main__":
    main()
