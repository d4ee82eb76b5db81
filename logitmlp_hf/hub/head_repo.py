"""The head-only repo format: ``config.json`` + the head's safetensors file + ``README.md``.

The weights file is named by the head type (``logitmlp_head.safetensors`` for LogitMLP, ``<type>_head.safetensors``
for the others); ``config.json``'s ``model_type`` says which head type a repo holds. A head type may also read
another code base's files (``DecodingHead.converted_weights_names``, e.g. the released AutoDeco code's
``autodeco_heads.safetensors``): when its own file is absent, the first of those present is read and converted on
load (``DecodingHead.convert_state_dict``), then checked like a native file.

A head repo never holds the base model's weights (it names the base in its config instead, like a PEFT adapter),
and never holds a pickle: weights are read and written with safetensors only. Files are located with transformers'
own ``cached_file``, so a local directory, a Hub repo id, a revision, a cache dir and offline mode all behave as they
do for any transformers checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers.utils import cached_file

from ..errors import HeadCheckpointError, InvalidHeadConfigError
from ..heads.base import DecodingHead
from ..heads.configuration import DecodingHeadConfig
from ..heads.registry import find_decoding_head_type, registered_head_types


# The LogitMLP head's file; other head types name theirs (`DecodingHead.weights_name`).
CONFIG_NAME = "config.json"
# Arguments that locate files (passed to `cached_file`), as opposed to ones that configure the base model's load.
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder", "token")


def split_hub_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``from_pretrained`` kwargs into (file-locating kwargs, everything else)."""
    hub = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
    rest = {k: v for k, v in kwargs.items() if k not in HUB_KWARGS}
    return hub, rest


def _locate(
    name_or_path: str | os.PathLike, filename: str, hub_kwargs: dict[str, Any], required: bool = True
) -> str | None:
    name = str(name_or_path)
    if (os.path.isabs(name) or name.startswith((".", "~"))) and not os.path.exists(os.path.expanduser(name)):
        raise HeadCheckpointError(f"{name!r} does not exist (it is neither a local directory nor a Hub repo id)")
    try:
        path = cached_file(str(name_or_path), filename, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    except OSError as err:  # unknown repo, no network, gated repo: keep transformers' explanation
        raise HeadCheckpointError(f"could not read {filename!r} of head {str(name_or_path)!r}: {err}") from err
    if path is None and not required:
        return None
    if path is None:
        present = sorted(os.listdir(name_or_path)) if os.path.isdir(name_or_path) else None
        hint = f" (the directory holds {present})" if present is not None else ""
        if filename.endswith(".safetensors") and present and any(f.endswith((".bin", ".pt", ".pth")) for f in present):
            hint += "; pickled weights are never loaded, re-save the head with safetensors"
        raise HeadCheckpointError(
            f"{str(name_or_path)!r} has no {filename!r}: it is not a decoding head repo of this type{hint}"
        )
    return path


def load_head_config(
    name_or_path: str | os.PathLike, config_class: type[DecodingHeadConfig] | None = None, **hub_kwargs: Any
) -> DecodingHeadConfig:
    """Read and validate a head repo's ``config.json``.

    Args:
        name_or_path: directory or Hub id of the head repo.
        config_class: the config class expected (e.g. ``LogitMLPConfig``); ``None`` accepts any registered head
            type and returns its config class.

    Raises:
        HeadCheckpointError: the file is missing or unreadable, or it describes another kind of model.
        InvalidHeadConfigError: a field has the wrong type, is out of its range or is not finite (checked before
            anything is built from the config).
    """
    path = _locate(name_or_path, CONFIG_NAME, hub_kwargs)
    try:
        with open(path, encoding="utf-8") as f:
            config_dict = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise HeadCheckpointError(f"{path} is not readable JSON: {err}") from err
    model_type = config_dict.get("model_type") if isinstance(config_dict, dict) else None
    head_type = find_decoding_head_type(model_type)
    head_class = None if head_type is None else head_type.head_class
    if config_class is not None and model_type != config_class.model_type:
        kind = f"a {model_type!r} decoding head" if head_class is not None else f"a {model_type!r} checkpoint"
        raise HeadCheckpointError(
            f"{str(name_or_path)!r} is {kind}, not a {config_class.model_type!r} head. "
            + (
                "Load it with AutoModelForCausalLM or load_decoding_head_model."
                if head_class is not None
                else "To put a head on it, pass it as the base: LogitMLPForCausalLM.from_pretrained(head, base_model=...)"
            )
        )
    if head_class is None:
        raise HeadCheckpointError(
            f"{str(name_or_path)!r} is a {model_type!r} checkpoint, not a decoding head (known head types: "
            f"{registered_head_types()}). To put a head on it, pass it as the base: "
            "LogitMLPForCausalLM.from_pretrained(head, base_model=...)"
        )
    try:
        return head_class.config_class.from_dict(config_dict)
    except InvalidHeadConfigError as err:  # a field of the wrong type, out of range or not finite: say which file
        raise InvalidHeadConfigError(err.field, err.value, err.allowed, source=path) from None
    except Exception as err:  # strict-dataclass validation errors name the offending field
        raise HeadCheckpointError(f"invalid {model_type} config in {path}: {err}") from err


def load_head_state_dict(
    name_or_path: str | os.PathLike,
    config: DecodingHeadConfig,
    head_class: type[DecodingHead] | None = None,
    **hub_kwargs: Any,
) -> dict[str, torch.Tensor]:
    """Read the head's safetensors file and check every tensor against ``config``.

    Args:
        head_class: the head type to check against (default: the one ``config.model_type`` names).

    Raises:
        HeadCheckpointError: the file is missing or corrupt, or its tensors do not match the config (names, shapes,
            a floating-point dtype, finite values).
    """
    if head_class is None:
        head_type = find_decoding_head_type(config.model_type)
        head_class = None if head_type is None else head_type.head_class
    if head_class is None:
        raise HeadCheckpointError(f"unknown decoding head type {config.model_type!r}")
    converted = head_class.converted_weights_names
    path = _locate(name_or_path, head_class.weights_name, hub_kwargs, required=not converted)
    if path is None:  # not this package's file: another code base's, converted on load
        for filename in converted:
            path = _locate(name_or_path, filename, hub_kwargs, required=False)
            if path is not None:
                state = head_class.convert_state_dict(
                    _read_prefixed(path, head_class.converted_key_prefixes), config, path
                )
                break
        else:
            raise HeadCheckpointError(
                f"{str(name_or_path)!r} has none of {[head_class.weights_name, *converted]}: it is not a "
                f"{config.model_type!r} head repo"
                + (f" (the directory holds {sorted(os.listdir(name_or_path))})" if os.path.isdir(name_or_path) else "")
            )
    else:
        try:
            state = load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise HeadCheckpointError(
                f"{path} is not a readable safetensors file ({err}); the download may be "
                "truncated: delete it and load again"
            ) from err
    # Shapes from the config alone (the head is not built), so a config claiming a huge head allocates nothing.
    expected = head_class.expected_state_shapes(config)
    found = {name: tuple(t.shape) for name, t in state.items()}
    if found != expected:
        raise HeadCheckpointError(
            f"{path} does not match its config (hidden_size={config.hidden_size}, "
            f"head_hidden_size={config.head_hidden_size}): expected tensors {expected}, found {found}"
        )
    # load_state_dict would silently cast integer or boolean tensors into the head's float parameters.
    not_float = {name: str(t.dtype).removeprefix("torch.") for name, t in state.items() if not t.is_floating_point()}
    if not_float:
        raise HeadCheckpointError(
            f"{path} holds non-floating-point tensors {not_float}; a head's weights are floating point "
            "(float32, bfloat16, float16 or float64)"
        )
    bad = [name for name, t in state.items() if not torch.isfinite(t).all()]
    if bad:
        raise HeadCheckpointError(f"{path} holds non-finite values in {bad}")
    return state


def _read_prefixed(path: str, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file whose names start with one of ``prefixes`` (others are never read)."""
    try:
        with safe_open(path, framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys() if key.startswith(prefixes)}
    except (SafetensorError, OSError, ValueError) as err:
        raise HeadCheckpointError(
            f"{path} is not a readable safetensors file ({err}); the download may be truncated: delete it and load again"
        ) from err


def save_head(
    save_directory: str | os.PathLike, config: DecodingHeadConfig, head: DecodingHead, card_text: str | None
) -> list[Path]:
    """Write a head-only repo and return the paths written."""
    out = Path(save_directory)
    if out.is_file():
        raise ValueError(f"save_directory {out} is a file, expected a directory")
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    # contiguous CPU copies: safetensors refuses shared or strided storage
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in head.state_dict().items()}
    save_file(tensors, out / head.weights_name, metadata={"format": "pt"})
    written = [out / CONFIG_NAME, out / head.weights_name]
    if card_text is not None:
        (out / "README.md").write_text(card_text, encoding="utf-8")
        written.append(out / "README.md")
    return written
