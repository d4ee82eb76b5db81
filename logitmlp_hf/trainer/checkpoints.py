"""Finding a checkpoint that is safe to resume from."""

from __future__ import annotations

import json
import logging
import os
import re

from ..heads.registry import decoding_head_type, registered_head_types


logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE_NAME = "trainer_state.json"


def _weights_names(weights_name: str | None) -> list[str]:
    if weights_name is not None:
        return [weights_name]
    return sorted({decoding_head_type(name).weights_name for name in registered_head_types()})


def is_complete_checkpoint(path: str | os.PathLike, weights_name: str | None = None) -> bool:
    """A checkpoint is complete when its weights file exists and ``trainer_state.json`` (written last by Trainer)
    parses: a run killed while saving leaves a directory without one of them.

    ``weights_name`` is the file a complete checkpoint must hold; by default any registered head type's."""
    state = os.path.join(path, TRAINER_STATE_NAME)
    has_weights = any(os.path.isfile(os.path.join(path, name)) for name in _weights_names(weights_name))
    if not (has_weights and os.path.isfile(state)):
        return False
    try:
        with open(state, encoding="utf-8") as f:
            json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return True


def last_complete_checkpoint(output_dir: str | os.PathLike, weights_name: str | None = None) -> str | None:
    """The highest-step complete ``checkpoint-N`` directory of ``output_dir``, skipping (and naming) broken ones.

    ``weights_name`` is the file a complete checkpoint must hold: any registered head type's by default, e.g.
    ``"adapter_model.safetensors"`` for a PEFT run of TRL's own trainer."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted((int(m.group(1)), name) for name in os.listdir(output_dir) if (m := _CHECKPOINT.match(name)))
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        if is_complete_checkpoint(path, weights_name):
            return path
        logger.warning("Skipping %s: incomplete (the run probably stopped while saving it)", path)
    return None
