"""Plots and a readable report for a :class:`~logitmlp_hf.analysis.per_token.TokenAnalysis`.

:func:`write_report` writes five PNGs (matplotlib, Agg backend, so it runs headless), ``report.md`` (images
referenced by relative path, for a repo or a model card), ``report.html`` (the same content with the images embedded
as base64, a single file that opens anywhere), ``summary.json`` and ``viewer.html``, the interactive per-token page of
:mod:`logitmlp_hf.analysis.viewer` that both reports link. Each plot is also a function taking the arrays,
so notebooks can draw them on their own axes.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib


matplotlib.use("Agg")  # headless: the CLI runs on servers without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .per_token import (
    T_MAX,
    T_MIN,
    TokenAnalysis,
    following_words,
    kl_by_top1_bin,
    kl_concentration,
    lorenz_curve,
    top_kl_positions,
)
from .viewer import DEFAULT_MAX_ROLLOUTS, DEFAULT_TOP_K, VIEWER_FILE, write_viewer


logger = logging.getLogger(__name__)

__all__ = [
    "plot_kl_by_bin",
    "plot_kl_sorted",
    "plot_lorenz",
    "plot_t_star_histogram",
    "plot_word_cloud",
    "write_report",
]

KL_FLOOR = 1e-12  # log axes cannot show 0; KLs below this are drawn at the floor
DPI = 120


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_kl_sorted(kl: np.ndarray, path: str | Path, active_kl: float = 0.01, zero_threshold: float = 1e-5) -> Path:
    """KL(warp‖base) per position, sorted from largest to smallest (log-log), annotated with its concentration.

    Args:
        kl (`np.ndarray`): KL per position.
        path (`str` or `Path`): PNG to write.
        active_kl (`float`, *optional*, defaults to `0.01`): drawn as the "active" threshold.
        zero_threshold (`float`, *optional*, defaults to `1e-5`): drawn as the "untouched" threshold.
    """
    kl = np.asarray(kl, dtype=np.float64)
    conc = kl_concentration(kl, zero_threshold=zero_threshold)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    if kl.size:
        ranks = np.arange(1, kl.size + 1)
        ax.plot(ranks, np.clip(np.sort(kl)[::-1], KL_FLOOR, None), color="C0", lw=1.8)
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axhline(active_kl, color="C3", ls="--", lw=1, label=f"active: KL > {active_kl:g}")
    ax.axhline(zero_threshold, color="grey", ls=":", lw=1, label=f"untouched: KL < {zero_threshold:g}")
    ax.set_xlabel("position rank (largest KL first)")
    ax.set_ylabel("KL(warp ‖ base) [nats]")
    ax.set_title(f"Per-position KL, {conc['n_positions']:,} completion tokens")
    lines = [f"top {x}% of positions: {100 * s:.1f}% of KL" for x, s in conc["top_share"].items()]
    lines.append(f"half the KL on {conc['percent_for_half']:.3g}% of positions")
    lines.append(f"{100 * conc['fraction_below']:.1f}% of positions below {zero_threshold:g}")
    ax.text(
        0.02,
        0.03,
        "\n".join(lines),
        transform=ax.transAxes,
        fontsize=9,
        va="bottom",
        bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"},
    )
    ax.legend(loc="upper right", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    return _save(fig, Path(path))


def plot_kl_by_bin(bins: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Mean and 95th-percentile KL per base top-1 probability bin (the output of :func:`kl_by_top1_bin`)."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    x = np.arange(len(bins))
    mean = np.array([b["mean"] for b in bins], dtype=np.float64)
    p95 = np.array([b["p95"] for b in bins], dtype=np.float64)
    width = 0.4
    ax.bar(x - width / 2, np.nan_to_num(np.clip(mean, KL_FLOOR, None), nan=0.0), width, label="mean", color="C0")
    ax.bar(
        x + width / 2, np.nan_to_num(np.clip(p95, KL_FLOOR, None), nan=0.0), width, label="95th percentile", color="C1"
    )
    ax.set_yscale("log")
    top = np.nanmax(np.concatenate([mean, p95, [KL_FLOOR]]))
    for xi, b in zip(x, bins):
        ax.text(xi, top * 1.6, f"n={b['count']:,}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(top=top * 8)
    ax.set_xticks(x, [b["label"] for b in bins], rotation=20)
    ax.set_xlabel("base top-1 probability")
    ax.set_ylabel("KL(warp ‖ base) [nats]")
    ax.set_title("Where the head acts: KL by base confidence")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(True, axis="y", which="major", alpha=0.3)
    return _save(fig, Path(path))


def plot_t_star_histogram(t_star: np.ndarray, path: str | Path, active_kl: float = 0.01) -> Path:
    """Histogram of the effective temperature ``T*`` over active positions (log-spaced bins over [0.05, 20])."""
    t = np.asarray(t_star, dtype=np.float64)
    t = t[np.isfinite(t)]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    edges = np.geomspace(T_MIN, T_MAX, 41)
    if t.size:
        ax.hist(np.clip(t, T_MIN, T_MAX), bins=edges, color="C2", edgecolor="white")
        ax.axvline(float(np.median(t)), color="k", ls="--", lw=1, label=f"median {np.median(t):.3g}")
    else:
        ax.text(
            0.5,
            0.5,
            f"no active positions (KL > {active_kl:g})",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=12,
        )
    ax.axvline(1.0, color="C3", lw=1, label="T = 1 (the base)")
    ax.set_xscale("log")
    ax.set_xlim(T_MIN, T_MAX)
    ax.set_xlabel("effective temperature T* (closest tempered base in KL)")
    ax.set_ylabel("active positions")
    ax.set_title(f"Effective per-token temperature, {t.size:,} active positions (KL > {active_kl:g})")
    ax.legend(fontsize=9)
    return _save(fig, Path(path))


def plot_lorenz(kl: np.ndarray, path: str | Path) -> Path:
    """Concentration curve: share of the total KL held by the top fraction of positions (log x-axis)."""
    x, share = lorenz_curve(kl)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    n = max(1, np.asarray(kl).size)
    ax.plot(np.clip(x, 1.0 / n / 2, None) * 100, share * 100, color="C4", lw=2, label="KL(warp ‖ base)")
    ax.plot(
        np.geomspace(1.0 / n / 2, 1, 200) * 100,
        np.geomspace(1.0 / n / 2, 1, 200) * 100,
        color="grey",
        ls=":",
        label="uniform (every position equal)",
    )
    ax.axhline(50, color="grey", lw=0.8, alpha=0.5)
    ax.set_xscale("log")
    ax.set_xlim(100.0 / n / 2, 100)
    ax.set_ylim(0, 101)
    ax.set_xlabel("top % of positions (largest KL first)")
    ax.set_ylabel("% of total KL")
    ax.set_title("Concentration of the head's action")
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    return _save(fig, Path(path))


def plot_word_cloud(
    table: Sequence[dict[str, Any]], path: str | Path, max_words: int = 60, title: str | None = None
) -> Path:
    """Word-cloud-style plot: the words of :func:`following_words`, font size ∝ frequency, on a grid.

    The most frequent words take the grid cells nearest the centre; a long word's font is shrunk to fit its
    cell so that words never overlap. Colour encodes the active rate (how often the word is active when it occurs).
    """
    words = list(table)[:max_words]
    fig, ax = plt.subplots(figsize=(11, 6.5))
    ax.set_axis_off()
    ax.set_title(title or "Words right after active positions (size ∝ frequency, colour = active rate)")
    if not words:
        ax.text(0.5, 0.5, "no active positions", ha="center", va="center", fontsize=14)
        return _save(fig, Path(path))
    n_cols = max(1, min(6, math.ceil(math.sqrt(len(words) * 1.6))))
    n_rows = math.ceil(len(words) / n_cols)
    # Cells ordered by distance from the centre, so the big words sit together in the middle.
    cells = sorted(
        ((r, c) for r in range(n_rows) for c in range(n_cols)),
        key=lambda rc: (
            ((rc[0] - (n_rows - 1) / 2) / max(n_rows, 1)) ** 2 + ((rc[1] - (n_cols - 1) / 2) / max(n_cols, 1)) ** 2
        ),
    )
    fmax = max(w["count"] for w in words)
    cell_w_pt = 11 * 72 / n_cols * 0.92
    cell_h_pt = 6.0 * 72 / n_rows * 0.85
    cmap = plt.get_cmap("viridis")
    for w, (r, c) in zip(words, cells):
        size = 9 + 39 * w["count"] / fmax
        label = w["word"] if len(w["word"]) <= 24 else w["word"][:23] + "…"
        # ~0.6 em per character: shrink long words to their cell, and any word to the row height.
        size = min(size, cell_w_pt / (0.62 * max(1, len(label))), cell_h_pt)
        ax.text(
            (c + 0.5) / n_cols,
            1 - (r + 0.5) / n_rows,
            label,
            ha="center",
            va="center",
            fontsize=size,
            color=cmap(float(w.get("active_rate", 1.0))),
            fontweight="bold",
        )
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0.0, 1.0))
    fig.colorbar(sm, ax=ax, fraction=0.025, pad=0.01, label="active rate of the word")
    return _save(fig, Path(path))


# ------------------------------------------------------------------------------------------------ the report
def _show_token(text: str) -> str:
    """Whitespace made visible, so ' the' and 'the' and '\\n' differ in a table."""
    return text.replace("\n", "↵").replace("\t", "⇥").replace(" ", "␣") if text else "∅"


def _fmt(x: Any, spec: str = ".3g") -> str:
    if isinstance(x, float):
        return "–" if math.isnan(x) else format(x, spec)
    return str(x)


def _blocks(
    analysis: TokenAnalysis,
    tokenizer,
    top_positions: int,
    top_words: int,
    title: str,
    source: str | None,
    viewer: bool = False,
) -> list[tuple]:
    """The report as renderer-neutral blocks: ("h1"|"h2"|"h3"|"p", text), ("table", header, rows), ("img", key, alt),
    ("link", text, relative href, text after it)."""
    summary = analysis.summary()
    conc = summary["concentration"]
    t_sum = summary["effective_temperature"]
    n_correct = sum(bool(r.get("correct")) for r in analysis.rollouts)
    blocks: list[tuple] = [("h1", title)]
    blocks.append(
        (
            "p",
            (f"Rollouts: {source}. " if source else "")
            + f"{summary['n_rollouts']:,} rollouts ({n_correct:,} marked correct), {summary['n_tokens']:,} "
            f"completion tokens teacher-forced through base + head. A position is *active* when "
            f"KL(warp‖base) > {analysis.active_kl:g} nats; {summary['n_active']:,} are.",
        )
    )
    if viewer:
        blocks.append(
            (
                "link",
                "Interactive per-token viewer",
                VIEWER_FILE,
                ": every completion token coloured by KL(warp‖base) or T*, with its candidates and the head's "
                "decisions on hover or click.",
            )
        )
    blocks.append(("h2", "1. How concentrated is the head's action?"))
    blocks.append(
        (
            "p",
            f"Mean KL {_fmt(conc['mean_kl'])} nats per position. Half of the total KL sits on "
            f"{_fmt(conc['percent_for_half'])}% of positions; {_fmt(100 * conc['fraction_below'], '.1f')}% "
            f"of positions have KL below {conc['zero_threshold']:g}.",
        )
    )
    blocks.append(
        (
            "table",
            ["top % of positions", "share of total KL"],
            [[f"{x}%", f"{_fmt(100 * s, '.1f')}%"] for x, s in conc["top_share"].items()],
        )
    )
    blocks.append(("img", "kl_sorted", "KL per position, sorted"))
    blocks.append(("img", "lorenz", "Concentration curve"))
    blocks.append(("h2", "2. KL by base top-1 probability"))
    blocks.append(
        (
            "table",
            ["base top-1", "positions", "mean KL", "p95 KL"],
            [[b["label"], f"{b['count']:,}", _fmt(b["mean"]), _fmt(b["p95"])] for b in summary["kl_by_top1_bin"]],
        )
    )
    blocks.append(("img", "kl_by_bin", "KL by base top-1 bin"))
    blocks.append(("h2", "3. Effective per-token temperature T*"))
    blocks.append(
        (
            "p",
            "At each active position, T* is the single temperature whose tempered base distribution "
            "softmax(ℓ/T) is closest in KL to the warp (searched over [0.05, 20]). "
            f"{t_sum['n_active']:,} active positions: median {_fmt(t_sum['median'])}, quartiles "
            f"{_fmt(t_sum['q25'])}–{_fmt(t_sum['q75'])}; {_fmt(100 * t_sum['fraction_below_1'], '.1f')}% "
            f"cool (T* < 1), {_fmt(100 * t_sum['fraction_above_1'], '.1f')}% heat (T* > 1).",
        )
    )
    blocks.append(("img", "t_star", "Histogram of T*"))
    blocks.append(("h2", f"4. Top-6 candidates at the {top_positions} highest-KL positions"))
    blocks.append(
        (
            "p",
            "The warp is strictly increasing, so base and warp rank the candidates identically; what "
            "changes is how the probability is spread. b is given as (max ℓ − b)/std ℓ. "
            "Tokens: ␣ = space, ↵ = newline.",
        )
    )
    for rank, row in enumerate(top_kl_positions(analysis, tokenizer, n=top_positions), 1):
        blocks.append(
            (
                "h3",
                f"#{rank}: rollout {row['rollout']} (problem {row['problem_id']}), token {row['position']}"
                f" — KL {_fmt(row['kl'])}, s1 = {row['s1']:.3f}, s2 = {row['s2']:.3f}, "
                f"b = max − {row['b_rel']:.2f}σ, base top-1 {row['base_top1']:.3f}, T* = {_fmt(row['t_star'])}",
            )
        )
        blocks.append(("p", f"…{_show_token(row['context'])} ⟶ sampled {_show_token(row['token'])}"))
        blocks.append(
            (
                "table",
                ["candidate", "base p", "warp p", "change"],
                [
                    [
                        _show_token(c["token"]),
                        f"{c['base_prob']:.4f}",
                        f"{c['warp_prob']:.4f}",
                        f"{c['warp_prob'] - c['base_prob']:+.4f}",
                    ]
                    for c in row["candidates"]
                ],
            )
        )
    blocks.append(("h2", "5. Words right after active positions"))
    words = following_words(analysis.words, analysis.active, top=top_words)
    blocks.append(("img", "words", "Words after active positions"))
    blocks.append(
        (
            "table",
            ["word", "count", "share of active", "active rate"],
            [
                [_show_token(w["word"]), str(w["count"]), f"{100 * w['share']:.1f}%", f"{100 * w['active_rate']:.1f}%"]
                for w in words
            ],
        )
    )
    return blocks


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _render_markdown(blocks: list[tuple], images: dict[str, str]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines) if rows else "*(none)*")
        elif kind == "img":
            out.append(f"![{block[2]}]({images[block[1]]})")
        elif kind == "link":
            out.append(f"[{block[1]}]({block[2]}){block[3]}")
    return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 980px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 3px 9px; text-align: left; }
th { background: #f3f3f3; }
td { font-family: ui-monospace, Menlo, Consolas, monospace; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
h3 { font-size: 1.0em; margin-top: 1.6em; }
"""


def _render_html(blocks: list[tuple], image_paths: dict[str, Path]) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(blocks[0][1])}</title><style>{_CSS}</style></head><body>",
    ]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3", "p"):
            out.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "table":
            header, rows = block[1], block[2]
            if not rows:
                out.append("<p><em>(none)</em></p>")
                continue
            out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
            out.append("</table>")
        elif kind == "link":
            out.append(f'<p><a href="{html.escape(block[2])}">{html.escape(block[1])}</a>{html.escape(block[3])}</p>')
        elif kind == "img":
            # Embedded, not linked: the HTML file alone is the whole report (mail it, open it from anywhere).
            data = base64.b64encode(image_paths[block[1]].read_bytes()).decode("ascii")
            out.append(f'<img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}">')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _json_safe(value: Any) -> Any:
    """NaN (an empty bin, no active position) as ``null``: strict JSON readers reject ``NaN``."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_report(
    analysis: TokenAnalysis,
    tokenizer,
    output_dir: str | Path,
    top_positions: int = 12,
    top_words: int = 60,
    title: str = "LogitMLP analysis",
    source: str | None = None,
    viewer_rollouts: int | None = DEFAULT_MAX_ROLLOUTS,
    viewer_top_k: int = DEFAULT_TOP_K,
) -> Path:
    """Write the plots, ``report.md``, ``report.html``, ``summary.json`` and ``viewer.html`` to ``output_dir``.

    Args:
        analysis (:class:`~logitmlp_hf.analysis.per_token.TokenAnalysis`): from :func:`~logitmlp_hf.analysis.per_token.analyze_rollouts`.
        tokenizer: decodes the candidate tokens.
        output_dir (`str` or `Path`): created if missing.
        top_positions (`int`, *optional*, defaults to `12`): highest-KL positions in the candidates table.
        top_words (`int`, *optional*, defaults to `60`): words in the following-words plot and table.
        title (`str`, *optional*): the report's heading.
        source (`str`, *optional*): where the rollouts came from, shown in the report.
        viewer_rollouts (`int`, *optional*, defaults to `64`): rollouts shown in the interactive viewer
            (:func:`~logitmlp_hf.analysis.viewer.write_viewer`, the first ones); `None` writes no viewer.
        viewer_top_k (`int`, *optional*, defaults to `5`): candidates per token in the viewer (at most 6).

    Returns:
        `Path`: the Markdown report (``report.html`` and ``viewer.html`` sit next to it).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    words = following_words(analysis.words, analysis.active, top=top_words)
    paths = {
        "kl_sorted": plot_kl_sorted(analysis.kl, output_dir / "kl_sorted.png", analysis.active_kl),
        "lorenz": plot_lorenz(analysis.kl, output_dir / "kl_concentration.png"),
        "kl_by_bin": plot_kl_by_bin(kl_by_top1_bin(analysis.kl, analysis.base_top1), output_dir / "kl_by_top1.png"),
        "t_star": plot_t_star_histogram(analysis.t_star, output_dir / "t_star_hist.png", analysis.active_kl),
        "words": plot_word_cloud(words, output_dir / "following_words.png", max_words=top_words),
    }
    if viewer_rollouts is not None:
        write_viewer(
            analysis,
            tokenizer,
            output_dir / VIEWER_FILE,
            max_rollouts=viewer_rollouts,
            top_k=viewer_top_k,
            title=f"{title}: per-token viewer",
            source=source,
        )
    blocks = _blocks(analysis, tokenizer, top_positions, top_words, title, source, viewer=viewer_rollouts is not None)
    md_path = output_dir / "report.md"
    md_path.write_text(_render_markdown(blocks, {k: p.name for k, p in paths.items()}), encoding="utf-8")
    (output_dir / "report.html").write_text(_render_html(blocks, paths), encoding="utf-8")
    summary = analysis.summary()
    summary["top_positions"] = top_kl_positions(analysis, tokenizer, n=top_positions)
    summary["following_words"] = words
    (output_dir / "summary.json").write_text(
        json.dumps(_json_safe(summary), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    logger.info("wrote %s, report.html and %d plots to %s", md_path.name, len(paths), output_dir)
    return md_path
