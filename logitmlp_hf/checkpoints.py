"""Finding a checkpoint that is safe to resume from."""

from __future__ import annotations

import json
import logging
import os
import re

from .head_repo import HEAD_WEIGHTS_NAME

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE_NAME = "trainer_state.json"


def is_complete_checkpoint(path: str | os.PathLike, weights_name: str = HEAD_WEIGHTS_NAME) -> bool:
    """A checkpoint is complete when its weights file (a head's by default) exists and ``trainer_state.json``
    (written last by Trainer) parses: a run killed while saving leaves a directory without one of them."""
    state = os.path.join(path, TRAINER_STATE_NAME)
    if not (os.path.isfile(os.path.join(path, weights_name)) and os.path.isfile(state)):
        return False
    try:
        with open(state, encoding="utf-8") as f:
            json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return True


def last_complete_checkpoint(output_dir: str | os.PathLike, weights_name: str = HEAD_WEIGHTS_NAME) -> str | None:
    """The highest-step complete ``checkpoint-N`` directory of ``output_dir``, skipping (and naming) broken ones.

    ``weights_name`` is the file a complete checkpoint must hold: the head's by default, e.g.
    ``"adapter_model.safetensors"`` for a PEFT run of TRL's own trainer."""
    if not os.path.isdir(output_dir):
        return None
    steps = sorted(
        (int(m.group(1)), name) for name in os.listdir(output_dir) if (m := _CHECKPOINT.match(name))
    )
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        if is_complete_checkpoint(path, weights_name):
            return path
        logger.warning("Skipping %s: incomplete (the run probably stopped while saving it)", path)
    return None
