"""The interactive per-token viewer (`logitmlp_hf.analysis.viewer`): its embedded data, its escaping, and the page
itself in a real headless browser (Debian's ``chromium`` + ``chromium-driver``, driven by selenium).

The browser tests skip when the system browser is missing, except in CI (``CI`` or ``LOGITMLP_REQUIRE_BROWSER``
set, as ``.ci/run`` does), where a missing browser fails the run instead of silently testing nothing.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import char_tokenizer, scramble_head, tiny_llama

from logitmlp_hf import DecodingAdapterForCausalLM, LogitMLPForCausalLM
from logitmlp_hf.analysis.per_token import analyze_rollouts
from logitmlp_hf.analysis.report import write_report
from logitmlp_hf.analysis.viewer import render_viewer, token_pieces, viewer_data, write_viewer


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Tokens whose text could break an HTML page that embedded it carelessly.
NASTY_TOKENS = ["</script>", "<!--", "\n", "&amp;", '"q"', "<b>x</b>"]
TEXTS = [
    ("What is 3 + 4?", "3 + 4 = 7. The answer is 7."),
    ("What is 12 + 30?", "42"),
    ("Add 5 and 6.", "5 + 6 is 11, so the sum is 11 and that is final."),
    ("Say it.", "a </script> b<!--\n&amp; \"q\" <b>x</b> 's'"),
    ("Compute 9 + 9.", "Nine plus nine: 18"),
]
NASTY_ROLLOUT = 3


def _tokenizer():
    """The character tokenizer plus multi-character tokens holding HTML syntax and a newline."""
    tokenizer = char_tokenizer()
    tokenizer.add_tokens(NASTY_TOKENS)
    return tokenizer


def _rollouts(tokenizer) -> list[dict]:
    rows = []
    for i, (prompt, completion) in enumerate(TEXTS):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(
            {
                "problem_id": i,
                "sample": 0,
                "prompt_ids": tokenizer(text, add_special_tokens=False)["input_ids"],
                "completion_ids": completion_ids,
                "answer": None,
                "correct": i % 2 == 0,
            }
        )
    return rows


@pytest.fixture(scope="module")
def analysed():
    """A LogitMLP head far from the identity on a tiny Llama, analysed on the rollouts above."""
    tokenizer = _tokenizer()
    model = LogitMLPForCausalLM.from_base_model(tiny_llama(0))
    scramble_head(model.logitmlp_head, seed=1)
    return analyze_rollouts(model.eval(), tokenizer, _rollouts(tokenizer), batch_size=2), tokenizer


def _embedded_json(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', page, re.S)
    assert match, "no data block in the page"
    return json.loads(match.group(1))


def _rows_of(analysis, r: int) -> np.ndarray:
    rows = np.flatnonzero(analysis.rollout_index == r)
    return rows[np.argsort(analysis.position[rows], kind="stable")]


# ------------------------------------------------------------------------------------------------ no browser
def test_viewer_data_holds_the_analysis_numbers_and_text(analysed):
    analysis, tokenizer = analysed
    data = viewer_data(analysis, tokenizer, top_k=5, title="t", source="s")
    assert data["decision_keys"] == ["s1", "s2", "b"]
    assert data["n_rollouts_total"] == len(TEXTS) and data["n_tokens_total"] == len(analysis)
    assert [r["index"] for r in data["rollouts"]] == list(range(len(TEXTS)))
    for entry in data["rollouts"]:
        r = entry["index"]
        rows = _rows_of(analysis, r)
        ids = analysis.rollouts[r]["completion_ids"]
        # the pieces rebuild the decoded completion exactly (the nasty tokens included)
        assert "".join(entry["text"]) == tokenizer.decode(ids, skip_special_tokens=False)
        assert entry["token_id"] == ids
        assert entry["special"] == [len(ids) - 1]  # the EOS
        np.testing.assert_allclose(entry["kl"], np.clip(analysis.kl[rows], 0, None), rtol=1e-5, atol=1e-12)
        for key in ("s1", "s2", "b"):
            np.testing.assert_allclose(entry["decisions"][key], analysis.decisions[key][rows], rtol=1e-5)
        np.testing.assert_allclose(entry["b_rel"], analysis.b_rel[rows], rtol=1e-5)
        t_star = analysis.t_star[rows]
        assert [v is None for v in entry["t_star"]] == np.isnan(t_star).tolist()
        np.testing.assert_allclose([v for v in entry["t_star"] if v is not None], t_star[~np.isnan(t_star)], rtol=1e-5)
        cand_ids = [[data["candidate_ids"][c] for c in row] for row in entry["candidates"]]
        assert cand_ids == analysis.top_ids[rows, :5].tolist()
        scale = data["prob_scale"]
        for key, probs in (("base_probs", analysis.top_base_probs), ("warp_probs", analysis.top_warp_probs)):
            assert all(type(p) is int for row in entry[key] for p in row)
            np.testing.assert_allclose(np.array(entry[key]) / scale, probs[rows, :5], rtol=0, atol=0.5 / scale)
        np.testing.assert_allclose(np.array(entry["top1"]) / scale, analysis.base_top1[rows], rtol=0, atol=0.5 / scale)
    assert data["candidate_text"] == [tokenizer.decode([t]) for t in data["candidate_ids"]]
    assert (analysis.kl > analysis.active_kl).any() and (analysis.kl <= analysis.active_kl).any()  # both colours


def test_page_embeds_the_data_safely_and_loads_nothing(analysed, tmp_path):
    analysis, tokenizer = analysed
    path = write_viewer(analysis, tokenizer, tmp_path / "sub" / "viewer.html", title='a <title> & "quotes"')
    page = path.read_text(encoding="utf-8")
    data = viewer_data(analysis, tokenizer, title='a <title> & "quotes"')
    assert render_viewer(data) == page
    assert _embedded_json(page) == json.loads(json.dumps(data))  # the block parses back to the data, exactly
    nasty = _embedded_json(page)["rollouts"][NASTY_ROLLOUT]["text"]
    assert all(token in nasty for token in NASTY_TOKENS)
    # only the page's own two script elements close, no token opens a comment or a tag
    assert page.count("</script>") == 2 and "<!--" not in page and "<b>" not in page
    assert "<title>a &lt;title&gt; &amp; &quot;quotes&quot;</title>" in page
    # self-contained: a CSP that forbids loading anything, and no URL to load
    assert "default-src 'none'" in page and not re.search(r"https?://", page)
    assert path.stat().st_size < 200_000


def test_viewer_caps_rollouts_and_checks_its_arguments(analysed):
    analysis, tokenizer = analysed
    data = viewer_data(analysis, tokenizer, max_rollouts=2, top_k=3)
    assert [r["index"] for r in data["rollouts"]] == [0, 1] and data["n_rollouts_total"] == len(TEXTS)
    assert all(len(c) == 3 for r in data["rollouts"] for c in r["candidates"])
    with pytest.raises(ValueError, match=r"top_k must be in \[1, 6\]"):
        viewer_data(analysis, tokenizer, top_k=7)
    with pytest.raises(ValueError, match="max_rollouts must be at least 1"):
        viewer_data(analysis, tokenizer, max_rollouts=0)


def test_viewer_of_an_empty_analysis_says_so(tmp_path):
    tokenizer = _tokenizer()
    model = LogitMLPForCausalLM.from_base_model(tiny_llama(0)).eval()
    empty = analyze_rollouts(model, tokenizer, [{"prompt_ids": [5, 6], "completion_ids": []}])
    data = _embedded_json(write_viewer(empty, tokenizer, tmp_path / "v.html").read_text(encoding="utf-8"))
    assert data["rollouts"] == [] and data["n_tokens_total"] == 0


def test_analyze_cli_viewer_option():
    import argparse

    from logitmlp_hf.cli.analyze import AnalyzeCommand

    parser = argparse.ArgumentParser()
    AnalyzeCommand().add_arguments(parser)
    assert parser.parse_args([]).viewer_rollouts == 64
    assert parser.parse_args(["--viewer-rollouts", "3"]).viewer_rollouts == 3
    for bad in ("0", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--viewer-rollouts", bad])


def test_token_pieces_keep_split_characters_whole():
    """Byte-level BPE splits 'é' and '€' over 2 and 3 tokens, each decoded alone as U+FFFD."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE({c: i for i, c in enumerate(alphabet)}, []))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    ids = tokenizer("aé € b", add_special_tokens=False)["input_ids"]
    assert "\ufffd" in tokenizer.decode(ids[1:2])
    assert token_pieces(tokenizer, ids) == ["a", "", "é", " ", "", "", "€", " ", "b"]
    # a completion cut inside a character still shows every byte it has (as U+FFFD, like the decoded text)
    assert token_pieces(tokenizer, ids[:5]) == ["a", "", "é", " ", "\ufffd"]
    assert "".join(token_pieces(tokenizer, ids[:6])) == tokenizer.decode(ids[:6])


def test_viewer_for_another_head_type_shows_its_own_decisions(tmp_path):
    tokenizer = _tokenizer()
    model = DecodingAdapterForCausalLM.from_base_model(tiny_llama(0))
    with torch.no_grad():
        for p in model.decoding_head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    analysis = analyze_rollouts(model.eval(), tokenizer, _rollouts(tokenizer)[:2])
    data = _embedded_json(write_viewer(analysis, tokenizer, tmp_path / "v.html").read_text(encoding="utf-8"))
    assert data["decision_keys"] == list(analysis.decisions) and data["decision_keys"]
    assert all(k.startswith("p_") for k in data["decision_keys"])
    assert "b_rel" not in data["rollouts"][0]  # no breakpoint outside LogitMLP


def test_write_report_writes_and_links_the_viewer(analysed, tmp_path):
    analysis, tokenizer = analysed
    write_report(analysis, tokenizer, tmp_path / "out", top_positions=2, viewer_rollouts=3)
    assert len(_embedded_json((tmp_path / "out" / "viewer.html").read_text(encoding="utf-8"))["rollouts"]) == 3
    assert "](viewer.html)" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert '<a href="viewer.html">' in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    write_report(analysis, tokenizer, tmp_path / "none", top_positions=2, viewer_rollouts=None)
    assert not (tmp_path / "none" / "viewer.html").exists()
    assert "viewer.html" not in (tmp_path / "none" / "report.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ in a browser
@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through the system chromedriver; selenium-manager (which downloads drivers) is
    made to fail, so a test that passes never reached for the network."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.selenium_manager import SeleniumManager
    except ImportError:
        missing.append("selenium (the [test] extra)")
    if missing:
        reason = (
            f"the viewer's browser tests need {', '.join(missing)} (Debian: apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI") or os.environ.get("LOGITMLP_REQUIRE_BROWSER"):
            pytest.fail(f"{reason}; CI / LOGITMLP_REQUIRE_BROWSER is set, so they must run here")
        pytest.skip(reason)

    def no_download(*args, **kwargs):
        raise AssertionError("selenium tried Selenium Manager (a driver download); the Service path must be used")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.TemporaryDirectory(prefix="viewer-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile.name}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeleniumManager, "binary_paths", no_download)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


def _open(driver, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def _visible(text: str) -> str:
    """The page's convention for whitespace in tables."""
    return text.replace("\n", "↵").replace("\t", "⇥").replace(" ", "␣") if text else "∅"


def _table(driver, table_id: str) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.getElementById(arguments[0]).rows].map(r => [...r.cells].map(c => c.textContent))",
        table_id,
    )


def _close(shown: str, value: float, decimals: int | None = None, digits: int | None = None) -> bool:
    """``shown`` is ``value`` to the page's precision: half a unit of the last shown digit, plus the data's own
    rounding (probabilities in millionths, other numbers to 6 significant digits)."""
    number = float(shown.split()[0].replace("−", "-"))
    if decimals is not None:
        unit = 10.0**-decimals
    else:
        unit = 10.0 ** (math.floor(math.log10(abs(value))) - digits + 1) if value else 10.0**-digits
    return abs(number - value) <= 0.5 * unit + 1e-6 * max(1.0, abs(value))


def _colours(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#tokens .tok')].map(s => getComputedStyle(s).backgroundColor)"
    )


def test_viewer_in_headless_chromium(analysed, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    analysis, tokenizer = analysed
    path = write_viewer(analysis, tokenizer, tmp_path / "viewer.html", top_k=5, title="tiny head")
    _open(browser, path)
    assert browser.find_element(By.ID, "title").text == "tiny head"

    # pick rollout 2 and click its second-highest-KL token (the page pre-selects the highest)
    r = 2
    Select(browser.find_element(By.ID, "rollout-select")).select_by_value(str(r))
    rows = _rows_of(analysis, r)
    spans = browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")
    assert len(spans) == rows.size
    j = int(np.argsort(-analysis.kl[rows], kind="stable")[1])
    spans[j].click()
    assert browser.find_element(By.ID, "detail-body").get_attribute("data-token") == str(j)
    assert "selected" in spans[j].get_attribute("class").split()
    i = int(rows[j])  # the analysis row of the clicked token

    # the candidate table: the base's top-5 tokens with their base and warped probabilities
    table = _table(browser, "candidate-table")
    assert table[0] == ["#", "token", "base p", "warp p", "Δ"]
    assert len(table) == 1 + 5
    for k, (rank, token, base_p, warp_p, _) in enumerate(table[1:]):
        assert rank == str(k + 1)
        assert token == _visible(tokenizer.decode([int(analysis.top_ids[i, k])]))
        assert _close(base_p, float(analysis.top_base_probs[i, k]), decimals=4), (base_p, analysis.top_base_probs[i])
        assert _close(warp_p, float(analysis.top_warp_probs[i, k]), decimals=4), (warp_p, analysis.top_warp_probs[i])
    # the head's decisions there
    decisions = {row[0]: row[1] for row in _table(browser, "decision-table")}
    for key in ("s1", "s2", "b"):
        assert _close(decisions[key], float(analysis.decisions[key][i]), digits=4), (key, decisions[key])
    assert _close(decisions["b as (max ℓ − b) / std ℓ"], float(analysis.b_rel[i]), digits=4)
    stats = {row[0]: row[1] for row in _table(browser, "stats-table")}
    assert _close(stats["KL(warp ‖ base)"], float(analysis.kl[i]), digits=4)
    assert _close(stats["base top-1 probability"], float(analysis.base_top1[i]), decimals=4)
    if math.isnan(analysis.t_star[i]):
        assert stats["effective temperature T*"].startswith("–")
    else:
        assert _close(stats["effective temperature T*"], float(analysis.t_star[i]), digits=4)

    # hover shows another token; leaving the text brings back the pinned one
    other = (j + 1) % len(spans)
    ActionChains(browser).move_to_element(spans[other]).perform()
    assert browser.find_element(By.ID, "detail-body").get_attribute("data-token") == str(other)
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "title")).perform()
    assert browser.find_element(By.ID, "detail-body").get_attribute("data-token") == str(j)

    # colours: KL colours exactly the tokens above the scale's floor; T* only the active ones, differently
    transparent = "rgba(0, 0, 0, 0)"
    by_kl = _colours(browser)
    floor = analysis.active_kl / 100
    assert [c != transparent for c in by_kl] == (analysis.kl[rows] >= floor).tolist()
    assert browser.find_element(By.ID, "legend-title").text.startswith("KL")
    Select(browser.find_element(By.ID, "color-by")).select_by_value("t_star")
    by_t = _colours(browser)
    assert [c != transparent for c in by_t] == np.isfinite(analysis.t_star[rows]).tolist()
    assert by_t != by_kl
    assert browser.find_element(By.ID, "legend-title").text.startswith("Effective temperature")
    Select(browser.find_element(By.ID, "color-by")).select_by_value("dec:s1")
    assert all(c != transparent for c in _colours(browser)) and _colours(browser) != by_t

    # token text with HTML syntax is shown as text, nothing is injected
    Select(browser.find_element(By.ID, "rollout-select")).select_by_value(str(NASTY_ROLLOUT))
    texts = browser.execute_script("return [...document.querySelectorAll('#tokens .tok')].map(s => s.textContent)")
    for token in NASTY_TOKENS:
        assert token.replace("\n", "↵\n") in texts
    assert browser.execute_script("return document.querySelectorAll('#tokens *:not(.tok)').length") == 0
    assert browser.execute_script("return document.scripts.length") == 2

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_viewer_in_headless_chromium_for_another_head_type(browser, tmp_path):
    from selenium.webdriver.common.by import By

    tokenizer = _tokenizer()
    model = DecodingAdapterForCausalLM.from_base_model(tiny_llama(0))
    with torch.no_grad():
        for p in model.decoding_head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    analysis = analyze_rollouts(model.eval(), tokenizer, _rollouts(tokenizer)[:1])
    _open(browser, write_viewer(analysis, tokenizer, tmp_path / "v.html"))
    browser.find_elements(By.CSS_SELECTOR, "#tokens .tok")[0].click()
    decisions = {row[0]: row[1] for row in _table(browser, "decision-table")}
    assert set(decisions) == set(analysis.decisions)
    for key, shown in decisions.items():
        assert _close(shown, float(analysis.decisions[key][0]), digits=4), (key, shown)
    options = browser.execute_script("return [...document.getElementById('color-by').options].map(o => o.value)")
    assert options == ["kl", "t_star"] + [f"dec:{k}" for k in analysis.decisions]
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_results_page_links_the_viewers_that_exist(tmp_path):
    """The main job's results.md links each head's viewer.html, and no page that a run did not write."""
    from test_reproduce import _policy

    from logitmlp_hf.evaluation.results import EvalResults
    from logitmlp_hf.evaluation.sweep import SweepResults, temperature_policy
    from logitmlp_hf.reproduce.config import ReproduceConfig, RunPaths
    from logitmlp_hf.reproduce.report import HEAD_POLICY_NAMES, write_results

    correct, answers = [[True, False]] * 4, [["1", "2"]] * 4
    test = {temperature_policy(1.0).name: _policy("T=1", correct, answers)}
    sweep = SweepResults([1.0], "mean_accuracy", 1.0, EvalResults({}, dict(test)), EvalResults({}, dict(test)))
    heads = EvalResults(
        {},
        {
            HEAD_POLICY_NAMES[k]: _policy(HEAD_POLICY_NAMES[k], correct, answers, kind="head")
            for k in HEAD_POLICY_NAMES
        },
    )
    config = ReproduceConfig(output_dir=str(tmp_path), n_test=4, n_samples=2, temperatures=[1.0], n_resamples=50)
    paths = RunPaths(tmp_path)

    def links() -> list[str]:
        md = write_results(config, paths, sweep, heads, None, {}).read_text(encoding="utf-8")
        return re.findall(r"\]\((analysis/[^)]*viewer\.html)\)", md)

    assert links() == []
    (paths.analysis / "passk").mkdir(parents=True)
    (paths.analysis / "passk" / "viewer.html").write_text("<!DOCTYPE html>", encoding="utf-8")
    assert links() == ["analysis/passk/viewer.html"]
    (paths.analysis / "pass1").mkdir(parents=True)
    (paths.analysis / "pass1" / "viewer.html").write_text("<!DOCTYPE html>", encoding="utf-8")
    assert links() == ["analysis/pass1/viewer.html", "analysis/passk/viewer.html"]
    assert "analysis/pass1/viewer.html" in (tmp_path / "results.txt").read_text(encoding="utf-8")


def test_viewer_of_an_empty_analysis_in_headless_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By

    tokenizer = _tokenizer()
    model = LogitMLPForCausalLM.from_base_model(tiny_llama(0)).eval()
    empty = analyze_rollouts(model, tokenizer, [{"prompt_ids": [5, 6], "completion_ids": []}])
    _open(browser, write_viewer(empty, tokenizer, tmp_path / "v.html"))
    assert browser.find_element(By.ID, "rollout-info").text == "No analysed tokens."
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
