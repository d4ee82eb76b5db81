"""The controlled task's results page: heads vs oracle vs the whole temperature frontier."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.exact import exact_metrics
from ..evaluation.frontier import FrontierGap, frontier_gap, frontier_gap_from_values
from ..evaluation.metrics import MetricValue, paired_difference, per_problem_metrics
from ..evaluation.results import EvalResults, PolicyResults
from ..tasks.branching import BRANCHING_POSITION_TYPES
from .report import frontier_result_line, machine_description, machine_line


__all__ = ["write_branching_results"]


def _correct(result: PolicyResults) -> list[list[bool]]:
    return [p["correct"] for p in result.problems]


def _fmt(gap: FrontierGap) -> str:
    return f"{gap.gap.value:+.3f} [{gap.gap.ci_low:+.3f}, {gap.gap.ci_high:+.3f}] **{gap.verdict}**"


def _diff(d: MetricValue | None) -> str:
    return "—" if d is None else f"{d.value:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"


def _by_type(t: np.ndarray) -> dict[str, float]:
    """Median effective temperature per position type (the end-of-answer position is left out)."""
    out = {}
    for kind in dict.fromkeys(BRANCHING_POSITION_TYPES):
        cols = [i for i, k in enumerate(BRANCHING_POSITION_TYPES) if k == kind]
        out[kind] = float(np.median(t[:, cols]))
    return out


def _plot(path: Path, sweep_points, static_points, head_points, oracle_points, k: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs, ys, ts = zip(*sweep_points)
    ax.plot(xs, ys, "o-", color="0.3", label="base, temperature grid (frontier)")
    for x, y, t in sweep_points:
        ax.annotate(f"{t:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7, color="0.3")
    for name, (x, y) in static_points.items():
        ax.plot(x, y, "s", color="tab:gray", alpha=0.6)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(3, -9), fontsize=7, color="tab:gray")
    colors = {}
    for name, (x, y) in head_points.items():
        recipe = name.split("/")[0]
        color = colors.setdefault(recipe, f"C{len(colors)}")
        ax.plot(x, y, "^", color=color, label=recipe if recipe not in ax.get_legend_handles_labels()[1] else None)
    for name, (x, y) in oracle_points.items():
        ax.plot(x, y, "*", markersize=12, color="gold", markeredgecolor="k", label=f"oracle ({name})")
    ax.set_xlabel("mean accuracy (best@1)")
    ax.set_ylabel(f"best@{k}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_branching_results(
    root: Path,
    config: Any,
    task: Any,
    *,
    sweep: EvalResults,
    exact_temperatures: dict[float, np.ndarray],
    heads: dict[str, dict[str, Any]],
    oracles: dict[str, dict[str, Any]],
    base_fit: dict[str, float] | None,
    timings: dict[str, float],
) -> Path:
    """Write ``results.json``, ``frontier.png`` and ``results.md`` for the controlled task; return ``results.md``."""
    k = config.n_samples
    n_res = config.n_resamples
    temps = sorted(exact_temperatures)
    sweep_correct = {t: _correct(sweep[f"T={t:g}"]) for t in temps}

    def axes(metrics: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The frontier's two axes, per problem: (mean accuracy, best@k)."""
        return metrics["mean_accuracy"], metrics["best@k"]

    sampled_sweep = [axes(per_problem_metrics(sweep_correct[t])) for t in temps]
    exact_sweep = [axes(exact_metrics(exact_temperatures[t], k)) for t in temps]

    def point(correct) -> tuple[float, float]:
        m = per_problem_metrics(correct)
        return float(m["mean_accuracy"].mean()), float(m["best@k"].mean())

    sweep_points = [(*point(sweep_correct[t]), t) for t in temps]
    static = {name: r for name, r in sweep.policies.items() if not name.startswith("T=")}
    static_gaps = {
        name: frontier_gap(_correct(r), sweep_correct, n_resamples=n_res, seed=config.seed)
        for name, r in static.items()
    }

    # The strongest static rule (by sampled best@k): a learned warp should be compared with it too.
    best_static = max(static, key=lambda n: point(_correct(static[n]))[1]) if static else None

    def vs_static(correct) -> Any:
        if best_static is None:
            return None
        return paired_difference(correct, _correct(static[best_static]), "best@k", n_resamples=n_res, seed=config.seed)

    rows: dict[str, dict[str, Any]] = {}
    by_recipe: dict[str, list[str]] = defaultdict(list)
    for name, head in heads.items():
        correct = _correct(head["sampled"])
        ex = exact_metrics(head["q"], k)
        rows[name] = {
            "recipe": head["recipe"],
            "seed": head["seed"],
            "sampled_point": point(correct),
            "exact_point": (float(ex["mean_accuracy"].mean()), float(ex["best@k"].mean())),
            "sampled_gap": frontier_gap(correct, sweep_correct, n_resamples=n_res, seed=config.seed),
            "exact_gap": frontier_gap_from_values(
                (ex["mean_accuracy"], ex["best@k"]), exact_sweep, n_resamples=n_res, seed=config.seed
            ),
            "effective_temperature": _by_type(head["effective_temperature"]),
            "decisions": head["decisions"],
            "best@k_vs_best_static_rule": vs_static(correct),
            "_correct": correct,
        }
        by_recipe[head["recipe"]["name"]].append(name)

    pooled = {}
    for recipe, names in by_recipe.items():
        pm = [per_problem_metrics(rows[n]["_correct"]) for n in names]
        pooled[recipe] = {
            "gap": frontier_gap_from_values(
                [axes(m) for m in pm],
                sampled_sweep,
                n_resamples=n_res,
                seed=config.seed,
            ),
            "seed_gaps": [rows[n]["sampled_gap"].gap.value for n in names],
            "seeds_beyond": sum(rows[n]["sampled_gap"].verdict == "beyond" for n in names),
            "n_seeds": len(names),
            "accuracy": [rows[n]["sampled_point"][0] for n in names],
            "seeds_above_best_static_rule": sum(
                rows[n]["best@k_vs_best_static_rule"] is not None and rows[n]["best@k_vs_best_static_rule"].ci_low > 0
                for n in names
            ),
            "best@k": [rows[n]["sampled_point"][1] for n in names],
        }

    oracle_rows = {}
    for name, oracle in oracles.items():
        ex = exact_metrics(oracle["q"], k)
        oracle_rows[name] = {
            "exact_point": (float(ex["mean_accuracy"].mean()), float(ex["best@k"].mean())),
            "exact_gap": frontier_gap_from_values(
                (ex["mean_accuracy"], ex["best@k"]), exact_sweep, n_resamples=n_res, seed=config.seed
            ),
            "s1": oracle["s1"],
            "s2": oracle["s2"],
            "u": oracle["u"],
            "effective_temperature": _by_type(oracle["effective_temperature"]),
        }

    plot = _plot(
        root / "frontier.png",
        sweep_points,
        {n: point(_correct(r)) for n, r in static.items()},
        {n: r["sampled_point"] for n, r in rows.items()},
        {n: r["exact_point"] for n, r in oracle_rows.items() if n.startswith("best@k")},
        k,
    )

    # ------------------------------------------------------------------ verdict
    recipes_beyond = [
        r for r, p in pooled.items() if p["seeds_beyond"] == p["n_seeds"] and p["gap"].verdict == "beyond"
    ]
    n_seeds = len(config.training_seeds)
    if recipes_beyond:
        title = (
            f"Controlled task: {len(recipes_beyond)} of {len(pooled)} recipes train heads beyond the whole temperature "
            f"frontier in every one of {n_seeds} training seeds"
        )
    else:
        title = "Controlled task: no recipe trains a head beyond the temperature frontier in every training seed"

    payload = {
        "title": title,
        "config": {k_: v for k_, v in vars(config).items()},
        "task": task.to_dict(),
        "base_fit": base_fit,
        "sweep": {
            f"{t:g}": {"sampled": point(sweep_correct[t]), "exact": [float(a.mean()), float(b.mean())]}
            for t, (a, b) in zip(temps, exact_sweep)
        },
        "static_rules": {
            n: {"point": point(_correct(r)), "gap": g.to_dict()}
            for n, r, g in ((n, static[n], static_gaps[n]) for n in static)
        },
        "heads": {
            n: {
                key: (value.to_dict() if isinstance(value, (FrontierGap, MetricValue)) else value)
                for key, value in r.items()
                if not key.startswith("_")
            }
            for n, r in rows.items()
        },
        "pooled": {r: {**p, "gap": p["gap"].to_dict()} for r, p in pooled.items()},
        "oracles": {n: {**o, "exact_gap": o["exact_gap"].to_dict()} for n, o in oracle_rows.items()},
        "timings": timings,
        "machine": machine_description(),
    }
    (root / "results.json").write_text(json.dumps(payload, indent=1, default=float), encoding="utf-8")

    lines = [f"# {title}", ""]
    lines += [
        "Produced by `logitmlp reproduce --task branching` (see `config.json` for the exact settings). The task, the",
        "base model and the oracle are described in `logitmlp_hf/tasks/branching.py` and in the package README.",
        "",
        "**Task.** Three answer digits: position 0 needs *exploration* (the right digit is one of three candidates, "
        "chosen per problem and invisible in the prompt; the base ranks a decoy above them), positions 1-2 need "
        f"*precision* (the base gives the right digit {task.precision_prob:.2f} and leaks the rest to three wrong "
        f"ones). Base probabilities: decoy {task.decoy_prob:.2f}, each candidate {task.candidate_prob:.2f}. "
        "The base is a 2-layer Llama fitted in code to these distributions"
        + (
            f" (KL(target ‖ base) per position: mean {base_fit['kl_mean']:.4f}, max {base_fit['kl_max']:.4f} nats)."
            if base_fit
            else "."
        ),
        "",
        f"**Evaluation.** {config.n_test} test problems (prompts disjoint from the {config.n_train} training problems), "
        f"{k} samples per problem, the same sampling seeds for every policy (seed {config.seed}); CIs are 95% paired "
        f"bootstrap intervals over problems ({n_res} resamples). *Sampled* metrics come from those samples; *exact* "
        "metrics use the probability q that one sample is right, computed along the reference path (the task has one "
        f"right completion), so mean accuracy = q and best@{k} = 1 − (1 − q)^{k}, without sampling noise.",
        "",
        "## Definitions",
        "",
        "- **best@k** — share of problems with at least one right answer among k samples; **best@1** = **mean "
        "accuracy** — share of right samples; **worst@k** — share of problems with all k right; **uniq/k** — distinct "
        "final answers per problem / k; **answer entropy** — entropy (nats) of the final answers of a problem; "
        "**accuracy std** — per-problem std of correctness.",
        "- **GLOBAL-T\\*** — the single temperature a sweep picks for the whole model. **Token T_eff** — the "
        "temperature whose tempered base distribution is closest in KL to the head's warp at one token (the "
        "per-token *effective* temperature). Two different things; the page uses the two names.",
        f"- **Frontier gap** — best@{k} of a policy minus the best best@{k} the temperature grid reaches at the "
        "policy's own mean accuracy (grid points, and straight segments between neighbouring temperatures; above the "
        "grid's most accurate point the frontier is extended flat, which can only hurt the policy). **beyond** = the "
        "paired CI is above 0, **inside** = below 0, **on** = contains 0.",
        "",
        "## The temperature frontier",
        "",
        "| T | mean acc (sampled) | best@k (sampled) | mean acc (exact) | best@k (exact) |",
        "|---|---|---|---|---|",
    ]
    for (a, b, t), (ea, eb) in zip(sweep_points, exact_sweep):
        lines.append(f"| {t:g} | {a:.3f} | {b:.3f} | {ea.mean():.3f} | {eb.mean():.3f} |")
    best_t = max(sweep_points, key=lambda p: p[1])
    acc_t = max(sweep_points, key=lambda p: p[0])
    lines += [
        "",
        f"GLOBAL-T\\* by best@{k} (sampled): T = {best_t[2]:g} ({best_t[1]:.3f}); by mean accuracy: T = {acc_t[2]:g} "
        f"({acc_t[0]:.3f}). The heads are compared with the whole curve, not with these points.",
        "",
        "Static rules at T = 1 (same samples' seeds), against the same frontier:",
        "",
        "| rule | mean acc | best@k | frontier gap |",
        "|---|---|---|---|",
    ]
    for name, r in static.items():
        a, b = point(_correct(r))
        lines.append(f"| {name} | {a:.3f} | {b:.3f} | {_fmt(static_gaps[name])} |")
    lines += [
        "",
        "## Oracle: the best warp per position in the head's family (exhaustive grid search, exact)",
        "",
        "| objective, slope bound | mean acc | best@k | gap (exact) | (s1, s2, u) per position | T_eff exploration / precision |",
        "|---|---|---|---|---|---|",
    ]
    for name, o in oracle_rows.items():
        warps = "; ".join(f"({a:.2f}, {b:.2f}, {c:.2f})" for a, b, c in zip(o["s1"], o["s2"], o["u"]))
        te = o["effective_temperature"]
        lines.append(
            f"| {name} | {o['exact_point'][0]:.3f} | {o['exact_point'][1]:.3f} | {_fmt(o['exact_gap'])} | {warps} | "
            f"{te['exploration']:.2f} / {te['precision']:.2f} |"
        )
    lines += [
        "",
        "## Heads (every recipe and training seed that was run)",
        "",
        f"| recipe / seed | mean acc | best@k | gap (sampled) | gap (exact) | best@k − {best_static} | "
        "T_eff exploration / precision | mean s1 / s2 at exploration |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        te = r["effective_temperature"]
        d = r["decisions"]
        s = f"{d['s1'][0]:.2f} / {d['s2'][0]:.2f}" if "s1" in d and "s2" in d else "—"
        lines.append(
            f"| {name} | {r['sampled_point'][0]:.3f} | {r['sampled_point'][1]:.3f} | {_fmt(r['sampled_gap'])} | "
            f"{_fmt(r['exact_gap'])} | {_diff(r['best@k_vs_best_static_rule'])} | "
            f"{te['exploration']:.2f} / {te['precision']:.2f} | {s} |"
        )
    lines += [
        "",
        "## Recipes across training seeds (sampled metrics)",
        "",
        f"| recipe | settings | seeds beyond | seeds above {best_static} | mean acc (mean ± sd) | best@k (mean ± sd) | "
        "pooled gap |",
        "|---|---|---|---|---|---|---|",
    ]
    for recipe, p in pooled.items():
        r0 = rows[by_recipe[recipe][0]]["recipe"]
        settings = (
            f"{r0['objective']}"
            + (f" k={r0['pass_k']}" if r0["objective"] == "pass@k" else "")
            + f", lr {r0['learning_rate']:g}, {r0['train_steps']} steps, {r0['prompts_per_step']}×{r0['num_generations']}"
            f" rollouts/step, B={r0['slope_bound']:g}"
        )
        acc, bk = np.asarray(p["accuracy"]), np.asarray(p["best@k"])
        lines.append(
            f"| {recipe} | {settings} | {p['seeds_beyond']}/{p['n_seeds']} | "
            f"{p['seeds_above_best_static_rule']}/{p['n_seeds']} | {acc.mean():.3f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.3f} | "
            f"{bk.mean():.3f} ± {bk.std(ddof=1) if len(bk) > 1 else 0:.3f} | {_fmt(p['gap'])} |"
        )
    lines += ["", f"![frontier]({plot.name})", "", "## Results", "", "```"]
    for recipe, p in pooled.items():
        lines.append(frontier_result_line("branching", recipe, p["gap"]))
    lines += ["```", "", "Stage timings (s): " + ", ".join(f"{k_} {v:.0f}" for k_, v in timings.items()), ""]
    machine = payload["machine"]
    lines.append(f"Machine: {machine_line(machine)}.")
    path = root / "results.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
