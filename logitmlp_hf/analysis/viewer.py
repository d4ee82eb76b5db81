"""An interactive, self-contained HTML page of a :class:`~logitmlp_hf.analysis.per_token.TokenAnalysis`.

:func:`write_viewer` writes ``viewer.html``: the analysed completions, every token coloured by KL(warp‖base), by the
effective temperature T* or by one of the head's own decisions, and, for the token under the pointer (or the one
clicked), the base's top-k candidates with their base and warped probabilities and the head's decisions there
(``s1, s2, b`` for LogitMLP, whatever :meth:`~logitmlp_hf.heads.base.DecodingHead.scalar_decisions` gives for other
head types). It is the view that explains *where* a head acts.

The page is one file with no external resources (its Content-Security-Policy forbids any network access): the data
is embedded as JSON in a ``<script type="application/json">`` block (``<``, ``>`` and ``&`` escaped as ``\\u003c``…,
so no token text can close it), and the inline script only ever inserts text with ``textContent``. To keep the page
small only the top ``top_k`` candidates are kept, probabilities are stored as integers in millionths (shown to
4 decimals) and other numbers to 6 significant digits, and at most ``max_rollouts`` rollouts are shown (the first
ones in the analysis, never a selection by KL).

:func:`viewer_data` builds the embedded data (a JSON-serialisable dict) and :func:`render_viewer` the page from it,
so other tools can embed or post-process either.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .per_token import N_CANDIDATES, TokenAnalysis


logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_ROLLOUTS",
    "DEFAULT_TOP_K",
    "VIEWER_FILE",
    "render_viewer",
    "token_pieces",
    "viewer_data",
    "write_viewer",
]

VIEWER_FILE = "viewer.html"
"""The page's name next to an analysis report (``write_report`` writes it; reports link it by this name)."""
DEFAULT_MAX_ROLLOUTS = 64
DEFAULT_TOP_K = 5
PROB_SCALE = 1_000_000  # probabilities travel as integers in millionths: a third of the bytes of 6-digit floats
PROMPT_TAIL_CHARS = 240


def _decode(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def token_pieces(tokenizer, token_ids: Sequence[int]) -> list[str]:
    """The text each token adds to the decoded completion, so that the pieces concatenate to the decoded text.

    Decoding tokens one at a time is wrong for two common tokenizer kinds: SentencePiece drops a word's leading
    space when it starts the decoded text, and byte-level BPE splits a multi-byte character over several tokens
    (each decoded alone as U+FFFD). So each piece is the difference between decoding a short window of the previous
    tokens with and without the token (the incremental decoding of text-generation servers); a token that ends in
    the middle of a character gets ``""`` and the token completing it carries the whole character.

    Args:
        tokenizer: a transformers tokenizer.
        token_ids (`Sequence[int]`): one completion's token ids.

    Returns:
        `list[str]`: one piece per token (``""`` for a token whose text is carried by a later one).
    """
    ids = [int(i) for i in token_ids]
    pieces = []
    prefix_start, read_start = 0, 0  # the window: the last emitted chunk, decoded for context
    for t in range(len(ids)):
        prefix = _decode(tokenizer, ids[prefix_start:read_start])
        text = _decode(tokenizer, ids[prefix_start : t + 1])
        if len(text) > len(prefix) and not text.endswith("\ufffd") and text.startswith(prefix):
            pieces.append(text[len(prefix) :])
            prefix_start, read_start = read_start, t + 1
        elif t - read_start >= 3:  # not a character still being completed (at most 4 bytes): give up and emit
            pieces.append(text[len(prefix) :] if text.startswith(prefix) else _decode(tokenizer, ids[t : t + 1]))
            prefix_start, read_start = read_start, t + 1
        else:
            pieces.append("")
    if read_start < len(ids):  # the completion ends inside a character (a length cut): its last token shows the rest
        prefix = _decode(tokenizer, ids[prefix_start:read_start])
        text = _decode(tokenizer, ids[prefix_start:])
        pieces[-1] = text[len(prefix) :] if text.startswith(prefix) else _decode(tokenizer, ids[-1:])
    return pieces


def _number(value: float, digits: int = 6) -> float | None:
    """A float rounded to ``digits`` significant digits (page size), ``None`` for NaN (JSON has no NaN)."""
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _numbers(values: np.ndarray, digits: int = 6) -> list:
    return [_number(v, digits) for v in np.asarray(values).tolist()]


def _probabilities(values: np.ndarray) -> list:
    """Probabilities as integers in millionths (:data:`PROB_SCALE`), ``None`` for NaN."""
    return [None if not math.isfinite(v) else round(v * PROB_SCALE) for v in np.asarray(values, np.float64).tolist()]


def viewer_data(
    analysis: TokenAnalysis,
    tokenizer,
    max_rollouts: int = DEFAULT_MAX_ROLLOUTS,
    top_k: int = DEFAULT_TOP_K,
    title: str = "Per-token viewer",
    source: str | None = None,
) -> dict[str, Any]:
    """The data embedded in the viewer page, as a JSON-serialisable dict.

    Args:
        analysis (:class:`~logitmlp_hf.analysis.per_token.TokenAnalysis`): from
            :func:`~logitmlp_hf.analysis.per_token.analyze_rollouts`, any per-token head type.
        tokenizer: the tokenizer of the analysed model (decodes the completions, prompts and candidates).
        max_rollouts (`int`, *optional*, defaults to `64`): show the first ``max_rollouts`` analysed rollouts.
        top_k (`int`, *optional*, defaults to `5`): candidates per token, at most the 6 the analysis keeps.
        title (`str`, *optional*): the page's heading.
        source (`str`, *optional*): where the rollouts came from, shown under the heading.

    Returns:
        `dict`: ``title``, ``source``, ``active_kl``, ``prob_scale``, ``top_k``, ``decision_keys``, ``n_rollouts_total``,
        ``n_tokens_total``, ``candidate_ids`` / ``candidate_text`` (the candidates' token ids and decoded text,
        referenced by index) and ``rollouts``: per rollout ``index``, ``problem_id``, ``sample``, ``correct``,
        ``answer``, ``prompt`` (its last characters), and per token ``text`` (see :func:`token_pieces`),
        ``token_id``, ``kl``, ``t_star`` (``None`` where inactive), ``top1``, ``decisions`` (``{key: [...]}``),
        ``b_rel`` (LogitMLP only), ``candidates`` (indices into ``candidate_text``), ``base_probs``,
        ``warp_probs``; ``special`` lists the positions of special tokens. Probabilities (``top1``, ``base_probs``,
        ``warp_probs``) are integers in units of ``1 / prob_scale``; other numbers are rounded to 6 significant
        digits; NaN is ``None``.

    Raises:
        `ValueError`: ``max_rollouts`` below 1 or ``top_k`` outside ``[1, 6]``.
    """
    if max_rollouts < 1:
        raise ValueError(f"max_rollouts must be at least 1, got {max_rollouts}")
    if not 1 <= top_k <= N_CANDIDATES:
        raise ValueError(f"top_k must be in [1, {N_CANDIDATES}] (the candidates the analysis keeps), got {top_k}")
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    analysed = np.unique(analysis.rollout_index)  # sorted: the first rollouts, never picked by KL
    shown = analysed[:max_rollouts]
    has_b_rel = bool(np.isfinite(analysis.b_rel).any()) if len(analysis) else False
    candidate_index: dict[int, int] = {}
    rollouts = []
    for r in shown.tolist():
        rows = np.flatnonzero(analysis.rollout_index == r)
        rows = rows[np.argsort(analysis.position[rows], kind="stable")]
        row = analysis.rollouts[r] if r < len(analysis.rollouts) else {}
        ids = analysis.token_id[rows].tolist()
        top_ids = analysis.top_ids[rows, :top_k]
        for t in np.unique(top_ids).tolist():
            candidate_index.setdefault(int(t), len(candidate_index))
        prompt = tokenizer.decode(list(row.get("prompt_ids", [])), skip_special_tokens=True)
        entry = {
            "index": int(r),
            "problem_id": row.get("problem_id"),
            "sample": row.get("sample"),
            "correct": row.get("correct"),
            "answer": None if row.get("answer") is None else str(row.get("answer")),
            "prompt": prompt[-PROMPT_TAIL_CHARS:],
            "prompt_truncated": len(prompt) > PROMPT_TAIL_CHARS,
            "text": token_pieces(tokenizer, ids),
            "token_id": ids,
            "special": [i for i, t in enumerate(ids) if t in special],
            "kl": _numbers(np.clip(analysis.kl[rows], 0.0, None)),  # round-off can make a KL of ~0 negative
            "t_star": _numbers(analysis.t_star[rows]),
            "top1": _probabilities(analysis.base_top1[rows]),
            "decisions": {k: _numbers(v[rows]) for k, v in analysis.decisions.items()},
            "candidates": [[candidate_index[int(t)] for t in row_ids] for row_ids in top_ids.tolist()],
            "base_probs": [_probabilities(p) for p in analysis.top_base_probs[rows, :top_k]],
            "warp_probs": [_probabilities(p) for p in analysis.top_warp_probs[rows, :top_k]],
        }
        if has_b_rel:
            entry["b_rel"] = _numbers(analysis.b_rel[rows])
        rollouts.append(entry)
    candidate_ids = list(candidate_index)
    return {
        "title": title,
        "source": source,
        "active_kl": float(analysis.active_kl),
        "prob_scale": PROB_SCALE,
        "top_k": top_k,
        "decision_keys": list(analysis.decisions),
        "n_rollouts_total": int(analysed.size),
        "n_tokens_total": len(analysis),
        "candidate_ids": candidate_ids,
        "candidate_text": [_decode(tokenizer, [t]) for t in candidate_ids],
        "rollouts": rollouts,
    }


def _script_json(data: dict[str, Any]) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` only ever appear inside JSON strings, where
    their ``\\uXXXX`` escapes mean the same, so no token text can close the element or open a comment."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_viewer(data: dict[str, Any]) -> str:
    """The viewer page for :func:`viewer_data`'s output, as one HTML string (no external resources)."""
    return (
        _PAGE.replace("__TITLE__", html.escape(str(data.get("title", "Per-token viewer"))))
        .replace("__CSS__", _CSS)
        .replace("__SCRIPT__", _SCRIPT)
        .replace("__DATA__", _script_json(data))
    )


def write_viewer(
    analysis: TokenAnalysis,
    tokenizer,
    path: str | Path,
    max_rollouts: int = DEFAULT_MAX_ROLLOUTS,
    top_k: int = DEFAULT_TOP_K,
    title: str = "Per-token viewer",
    source: str | None = None,
) -> Path:
    """Write the interactive per-token viewer page (one self-contained HTML file).

    Args:
        analysis (:class:`~logitmlp_hf.analysis.per_token.TokenAnalysis`): the analysis to show.
        tokenizer: the analysed model's tokenizer.
        path (`str` or `Path`): the ``.html`` file to write (its folder is created if missing).
        max_rollouts (`int`, *optional*, defaults to `64`): show the first ``max_rollouts`` rollouts.
        top_k (`int`, *optional*, defaults to `5`): candidates per token (at most 6).
        title (`str`, *optional*): the page's heading.
        source (`str`, *optional*): where the rollouts came from.

    Returns:
        `Path`: the page.
    """
    data = viewer_data(analysis, tokenizer, max_rollouts=max_rollouts, top_k=top_k, title=title, source=source)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_viewer(data), encoding="utf-8")
    logger.info(
        "wrote %s (%d of %d rollouts, %.0f kB)",
        path,
        len(data["rollouts"]),
        data["n_rollouts_total"],
        path.stat().st_size / 1e3,
    )
    return path


# ------------------------------------------------------------------------------------------------ the page
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>__CSS__</style>
</head><body>
<header>
<h1 id="title"></h1>
<p id="meta"></p>
</header>
<div id="controls">
<label>Rollout <select id="rollout-select"></select></label>
<button id="prev-rollout" type="button" title="previous rollout">&#9664;</button>
<button id="next-rollout" type="button" title="next rollout">&#9654;</button>
<label>Colour by <select id="color-by"></select></label>
</div>
<div id="legend"><div id="legend-title"></div><div id="legend-bar"></div><div id="legend-ticks"></div>
<div id="legend-note"></div></div>
<main>
<section id="text-pane">
<div id="rollout-info"></div>
<div id="prompt"></div>
<div id="tokens"></div>
<p class="hint">Hover a token to see its candidates; click to pin it; &larr; / &rarr; move the pinned token.
Whitespace in tables: &#9251; space, &#8629; newline, &#8677; tab, &#8709; empty.</p>
</section>
<aside id="detail">
<p id="detail-hint">Hover or click a token.</p>
<div id="detail-body" hidden>
<h2 id="detail-title"></h2>
<table id="stats-table"></table>
<h3>Head decisions</h3>
<table id="decision-table"></table>
<h3 id="candidate-heading"></h3>
<table id="candidate-table"></table>
<p id="candidate-note"></p>
</div>
</aside>
</main>
<script type="application/json" id="viewer-data">__DATA__</script>
<script>__SCRIPT__</script>
</body></html>
"""

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.2em 1.5em; color: #222; }
h1 { font-size: 1.35em; margin: 0 0 0.2em; }
#meta { color: #555; margin: 0 0 0.8em; font-size: 0.92em; }
#controls { display: flex; gap: 0.8em; align-items: center; flex-wrap: wrap; margin-bottom: 0.6em; }
#controls select { max-width: 34em; }
#legend { margin-bottom: 0.8em; font-size: 0.85em; max-width: 560px; }
#legend-title { font-weight: 600; margin-bottom: 2px; }
#legend-bar { height: 14px; border: 1px solid #bbb; border-radius: 2px; }
#legend-ticks { position: relative; height: 1.3em; }
#legend-ticks span { position: absolute; transform: translateX(-50%); white-space: nowrap; color: #444; }
#legend-note { color: #666; }
main { display: flex; gap: 1.5em; align-items: flex-start; }
#text-pane { flex: 1 1 auto; min-width: 0; }
#rollout-info { font-size: 0.9em; color: #444; margin-bottom: 0.4em; }
#prompt { white-space: pre-wrap; color: #888; font-family: ui-monospace, Menlo, Consolas, monospace;
          font-size: 0.85em; border-left: 3px solid #ddd; padding-left: 0.6em; margin-bottom: 0.6em; }
#tokens { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, Menlo, Consolas, monospace;
          font-size: 0.98em; line-height: 1.85; border: 1px solid #e3e3e3; border-radius: 4px; padding: 0.6em; }
.tok { cursor: pointer; border-radius: 2px; padding: 1px 0; }
.tok:hover { outline: 1px solid #555; }
.tok.selected { outline: 2px solid #000; }
.tok.special { color: #777; font-style: italic; }
.tok.empty { color: #aaa; }
.hint { color: #777; font-size: 0.82em; }
#detail { flex: 0 0 390px; position: sticky; top: 0.8em; border: 1px solid #ddd; border-radius: 4px;
          padding: 0.6em 0.9em; background: #fcfcfc; max-height: 95vh; overflow-y: auto; }
#detail h2 { font-size: 1.0em; margin: 0.2em 0 0.5em; word-break: break-all; }
#detail h3 { font-size: 0.92em; margin: 0.9em 0 0.3em; }
#detail table { border-collapse: collapse; font-size: 0.88em; width: 100%; }
#detail th, #detail td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
#detail th { background: #f0f0f0; font-weight: 600; }
#detail td.num { text-align: right; font-family: ui-monospace, Menlo, Consolas, monospace; }
#detail td.token { font-family: ui-monospace, Menlo, Consolas, monospace; white-space: pre; }
#candidate-table tr.sampled td { font-weight: 700; }
#candidate-note { color: #666; font-size: 0.82em; }
"""

_SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("viewer-data").textContent);
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
// Whitespace made visible, so " the", "the" and "\n" differ in a table.
function visible(s) {
  if (s === "") return "\u2205";
  return s.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/ /g, "\u2423");
}
const isNum = (x) => x !== null && x !== undefined && Number.isFinite(x);
const prob = (p) => (isNum(p) ? p / DATA.prob_scale : null); // probabilities travel as integers
const fmtProb = (p) => (isNum(p) ? p.toFixed(4) : "\u2013");
const fmt = (x, digits) => (isNum(x) ? x.toPrecision(digits) : "\u2013");

// ------------------------------------------------------------------------------------------- colour scales
const SEQUENTIAL = [[255, 255, 255], [255, 237, 160], [254, 178, 76], [240, 110, 70]];
const DIVERGING = [[103, 150, 230], [190, 212, 245], [255, 255, 255], [250, 195, 170], [235, 105, 80]];
const DECISION = [[237, 248, 233], [186, 228, 179], [116, 196, 160], [80, 170, 190]];
function ramp(stops, f) {
  f = Math.min(1, Math.max(0, f));
  const x = f * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), u = x - i;
  const c = stops[i].map((v, j) => Math.round(v + (stops[i + 1][j] - v) * u));
  return "rgb(" + c.join(", ") + ")";
}
const gradient = (stops) =>
  "linear-gradient(to right, " + stops.map((_, i) => ramp(stops, i / (stops.length - 1))).join(", ") + ")";

function modeValues(r, mode) {
  if (mode === "kl") return r.kl;
  if (mode === "t_star") return r.t_star;
  return r.decisions[mode.slice(4)];
}
function finiteValues(mode) {
  const out = [];
  for (const r of DATA.rollouts) for (const v of modeValues(r, mode) || []) if (isNum(v)) out.push(v);
  return out;
}
function maxOf(a, start) { let m = start; for (const v of a) if (v > m) m = v; return m; }
function minOf(a, start) { let m = start; for (const v of a) if (v < m) m = v; return m; }

function makeScale(mode) {
  const act = DATA.active_kl;
  if (mode === "kl") {
    // log scale from active_kl/100 (below: not coloured) to the largest KL shown
    const lo = act / 100, hi = maxOf(finiteValues("kl"), act * 10);
    const span = Math.log10(hi) - Math.log10(lo);
    const pos = (v) => (Math.log10(v) - Math.log10(lo)) / span;
    return {
      title: "KL(warp \u2016 base) per token, nats (log scale)",
      stops: SEQUENTIAL,
      color: (v) => (isNum(v) && v >= lo ? ramp(SEQUENTIAL, pos(v)) : ""),
      ticks: [[0, lo], [pos(act), act], [1, hi]].map(([p, v]) => [p, v.toPrecision(2) + (v === act ? " (active)" : "")]),
      note: "Uncoloured: KL < " + lo.toPrecision(2) + " (the head leaves the base as it is).",
    };
  }
  if (mode === "t_star") {
    // log scale symmetric around T* = 1: blue cools (sharper than the base), red heats (flatter)
    const t = finiteValues("t_star");
    const r = Math.max(1.5, maxOf(t.map((v) => Math.max(v, 1 / v)), 1));
    const pos = (v) => 0.5 + Math.log(v) / (2 * Math.log(r));
    return {
      title: "Effective temperature T* (the tempered base closest to the warp; log scale)",
      stops: DIVERGING,
      color: (v) => (isNum(v) ? ramp(DIVERGING, pos(v)) : ""),
      ticks: [[0, (1 / r).toPrecision(2) + " cooler"], [0.5, "1"], [1, r.toPrecision(2) + " hotter"]],
      note: "Uncoloured: inactive positions (KL \u2264 " + act + "), where T* is not computed.",
    };
  }
  const key = mode.slice(4), v = finiteValues(mode);
  const lo = minOf(v, Infinity), hi = maxOf(v, -Infinity);
  const pos = (x) => (hi > lo ? (x - lo) / (hi - lo) : 0.5);
  return {
    title: "Head decision " + key + " (linear scale over the shown tokens)",
    stops: DECISION,
    color: (x) => (isNum(x) ? ramp(DECISION, pos(x)) : ""),
    ticks: v.length ? [[0, lo.toPrecision(3)], [1, hi.toPrecision(3)]] : [],
    note: v.length ? "" : "No values for this decision.",
  };
}

// ------------------------------------------------------------------------------------------- state, rendering
const state = { rollout: 0, selected: null, mode: "kl", scale: null };

function showLegend() {
  const s = state.scale;
  $("legend-title").textContent = s.title;
  $("legend-bar").style.background = gradient(s.stops);
  const ticks = $("legend-ticks");
  ticks.replaceChildren();
  for (const [p, label] of s.ticks) {
    const t = el("span", label);
    t.style.left = (100 * Math.min(1, Math.max(0, p))).toFixed(1) + "%";
    if (p <= 0.02) t.style.transform = "none";
    if (p >= 0.98) t.style.transform = "translateX(-100%)";
    ticks.appendChild(t);
  }
  $("legend-note").textContent = s.note;
}

function applyColors() {
  const r = DATA.rollouts[state.rollout];
  const values = modeValues(r, state.mode) || [];
  for (const span of $("tokens").children) {
    span.style.backgroundColor = state.scale.color(values[Number(span.dataset.i)]);
  }
}

function setMode(mode) {
  state.mode = mode;
  state.scale = makeScale(mode);
  showLegend();
  if (DATA.rollouts.length) applyColors();
}

function renderRollout(index) {
  state.rollout = index;
  state.selected = null;
  $("rollout-select").value = String(index);
  const r = DATA.rollouts[index];
  const info = ["rollout " + r.index];
  if (r.problem_id !== null && r.problem_id !== undefined) info.push("problem " + r.problem_id);
  if (r.sample !== null && r.sample !== undefined) info.push("sample " + r.sample);
  if (r.correct !== null && r.correct !== undefined) info.push(r.correct ? "correct" : "incorrect");
  if (r.answer !== null) info.push("answer " + r.answer);
  const active = r.kl.filter((v) => v > DATA.active_kl).length;
  info.push(r.kl.length + " tokens, " + active + " active (KL > " + DATA.active_kl + ")");
  $("rollout-info").textContent = info.join(" \u00b7 ");
  $("prompt").textContent = (r.prompt_truncated ? "\u2026" : "") + r.prompt;
  const box = $("tokens");
  box.replaceChildren();
  const special = new Set(r.special);
  r.text.forEach((text, i) => {
    const span = el("span");
    span.className = "tok";
    span.dataset.i = String(i);
    if (text === "") {
      span.textContent = "\u00b7"; // carried by a later token (a character split over tokens)
      span.classList.add("empty");
    } else if (/^\s+$/.test(text) && !text.includes("\n")) {
      span.textContent = text; // plain spaces stay spaces, still clickable
    } else {
      span.textContent = text.replace(/\n/g, "\u21b5\n");
    }
    if (special.has(i)) span.classList.add("special");
    box.appendChild(span);
  });
  applyColors();
  // start on the rollout's highest-KL token: the place to look first
  let best = 0;
  r.kl.forEach((v, i) => { if (isNum(v) && v > (r.kl[best] ?? -1)) best = i; });
  if (r.text.length) select(best); else showDetail(null);
}

function select(i) {
  const box = $("tokens");
  if (state.selected !== null && box.children[state.selected]) box.children[state.selected].classList.remove("selected");
  state.selected = i;
  box.children[i].classList.add("selected");
  showDetail(i);
}

function row(cells, header) {
  const tr = el("tr");
  for (const [text, cls] of cells) tr.appendChild(el(header ? "th" : "td", text, cls));
  return tr;
}

function showDetail(i) {
  if (i === null) {
    $("detail-body").hidden = true;
    $("detail-hint").hidden = false;
    return;
  }
  const r = DATA.rollouts[state.rollout];
  $("detail-hint").hidden = true;
  $("detail-body").hidden = false;
  $("detail-body").dataset.token = String(i);
  $("detail-title").textContent =
    "Token " + i + " of rollout " + r.index + ": \u201c" + visible(r.text[i]) + "\u201d (id " + r.token_id[i] + ")";

  const stats = $("stats-table");
  stats.replaceChildren();
  const statRows = [
    ["kl", "KL(warp \u2016 base)", fmt(r.kl[i], 4) + " nats"],
    ["t_star", "effective temperature T*", isNum(r.t_star[i]) ? fmt(r.t_star[i], 4) : "\u2013 (inactive)"],
    ["top1", "base top-1 probability", fmtProb(prob(r.top1[i]))],
  ];
  for (const [key, name, value] of statRows) {
    const tr = row([[name], [value, "num"]]);
    tr.dataset.key = key;
    stats.appendChild(tr);
  }

  const dec = $("decision-table");
  dec.replaceChildren();
  for (const key of DATA.decision_keys) {
    const tr = row([[key], [fmt(r.decisions[key][i], 4), "num"]]);
    tr.dataset.key = key;
    dec.appendChild(tr);
  }
  if (r.b_rel) {
    const tr = row([["b as (max \u2113 \u2212 b) / std \u2113"], [fmt(r.b_rel[i], 4), "num"]]);
    tr.dataset.key = "b_rel";
    dec.appendChild(tr);
  }
  if (!DATA.decision_keys.length) dec.appendChild(row([["(this head records no per-token decisions)"]]));

  $("candidate-heading").textContent = "Top-" + DATA.top_k + " candidates of the base, under base and warp";
  const cand = $("candidate-table");
  cand.replaceChildren();
  cand.appendChild(row([["#"], ["token"], ["base p"], ["warp p"], ["\u0394"]], true));
  let sampledShown = false;
  r.candidates[i].forEach((c, k) => {
    const pb = prob(r.base_probs[i][k]), pw = prob(r.warp_probs[i][k]);
    const delta = isNum(pb) && isNum(pw) ? (pw - pb >= 0 ? "+" : "\u2212") + Math.abs(pw - pb).toFixed(4) : "\u2013";
    const tr = row([
      [String(k + 1), "num"], [visible(DATA.candidate_text[c]), "token"],
      [fmtProb(pb), "num prob base"], [fmtProb(pw), "num prob warp"], [delta, "num"],
    ]);
    tr.dataset.tokenId = String(DATA.candidate_ids[c]);
    // probability bars behind the numbers: grey for the base, orange for the warp
    tr.children[2].style.background = bar(pb, "#cfd8e3");
    tr.children[3].style.background = bar(pw, "#fdd0a2");
    if (DATA.candidate_ids[c] === r.token_id[i]) {
      tr.className = "sampled";
      tr.title = "the sampled token";
      sampledShown = true;
    }
    cand.appendChild(tr);
  });
  $("candidate-note").textContent =
    (sampledShown ? "Bold: the sampled token. " : "The sampled token is not among them. ") +
    "The base's top candidates (every built-in per-token head keeps the base's order of the logits).";
}

function bar(p, colour) {
  if (!isNum(p)) return "";
  const w = (100 * Math.min(1, Math.max(0, p))).toFixed(1);
  return "linear-gradient(to right, " + colour + " " + w + "%, transparent " + w + "%)";
}

// ------------------------------------------------------------------------------------------- set-up
function init() {
  $("title").textContent = DATA.title;
  const meta = [];
  if (DATA.source) meta.push("Rollouts: " + DATA.source);
  meta.push(
    "showing " + DATA.rollouts.length + " of " + DATA.n_rollouts_total + " analysed rollouts" +
      (DATA.rollouts.length < DATA.n_rollouts_total ? " (the first ones)" : "") +
      ", " + DATA.n_tokens_total + " completion tokens in all"
  );
  $("meta").textContent = meta.join(" \u00b7 ");

  const modes = $("color-by");
  modes.appendChild(new Option("KL(warp \u2016 base)", "kl"));
  modes.appendChild(new Option("effective temperature T*", "t_star"));
  for (const key of DATA.decision_keys) modes.appendChild(new Option("decision: " + key, "dec:" + key));
  modes.addEventListener("change", () => setMode(modes.value));
  setMode("kl");

  const pick = $("rollout-select");
  DATA.rollouts.forEach((r, i) => {
    const parts = ["#" + r.index];
    if (r.problem_id !== null && r.problem_id !== undefined) parts.push("problem " + r.problem_id);
    if (r.sample !== null && r.sample !== undefined) parts.push("sample " + r.sample);
    if (r.correct !== null && r.correct !== undefined) parts.push(r.correct ? "\u2713" : "\u2717");
    const kl = r.kl.reduce((a, v) => a + (isNum(v) ? v : 0), 0) / Math.max(1, r.kl.length);
    parts.push(r.kl.length + " tokens", "mean KL " + kl.toPrecision(2));
    pick.appendChild(new Option(parts.join(" \u00b7 "), String(i)));
  });
  pick.addEventListener("change", () => renderRollout(Number(pick.value)));
  const step = (d) => {
    if (DATA.rollouts.length) renderRollout((state.rollout + d + DATA.rollouts.length) % DATA.rollouts.length);
  };
  $("prev-rollout").addEventListener("click", () => step(-1));
  $("next-rollout").addEventListener("click", () => step(1));

  const box = $("tokens");
  const tokenOf = (e) => (e.target.classList && e.target.classList.contains("tok") ? Number(e.target.dataset.i) : null);
  box.addEventListener("click", (e) => { const i = tokenOf(e); if (i !== null) select(i); });
  box.addEventListener("mouseover", (e) => { const i = tokenOf(e); if (i !== null) showDetail(i); });
  box.addEventListener("mouseleave", () => showDetail(state.selected));
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || state.selected === null) return;
    const n = DATA.rollouts[state.rollout].text.length;
    if (e.key === "ArrowRight" && state.selected + 1 < n) select(state.selected + 1);
    else if (e.key === "ArrowLeft" && state.selected > 0) select(state.selected - 1);
    else return;
    box.children[state.selected].scrollIntoView({ block: "nearest" });
    e.preventDefault();
  });

  if (DATA.rollouts.length) renderRollout(0);
  else $("rollout-info").textContent = "No analysed tokens.";
  document.body.dataset.ready = "1";
}
init();
"""
