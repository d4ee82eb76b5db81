"""Finding a checkpoint that is safe to resume from.

A checkpoint is *complete* when it holds every file a resume reads, not only the weights: a directory without
``optimizer.pt`` would restart Adam's moments, one without ``scheduler.pt`` the learning-rate schedule, one without
the RNG state the sampling stream, all silently (Trainer skips what it does not find). Which files those are depends on
the run: Trainer writes ``rng_state.pth`` in a single process but ``rng_state_{rank}.pth`` with several, and
``scaler.pt`` only when it has a gradient scaler (fp16). :func:`resume_files` lists them;
:class:`~logitmlp_hf.DecodingHeadGRPOTrainer` adds its own per-process rollout state.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence

# The names transformers' Trainer writes, from Trainer itself (re-exported for this module's callers).
from transformers.trainer import OPTIMIZER_NAME, SCALER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME

from ..heads.registry import decoding_head_type, registered_head_types


logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def per_process_names(stem: str, world_size: int, suffix: str = ".pth") -> list[str]:
    """Trainer's naming of per-process files: ``rng_state.pth`` alone, ``rng_state_{rank}.pth`` with several."""
    if world_size <= 1:
        return [f"{stem}{suffix}"]
    return [f"{stem}_{rank}{suffix}" for rank in range(world_size)]


def resume_files(world_size: int = 1, scaler: bool = False) -> list[str]:
    """The files besides the weights that Trainer reads back to resume exactly where a checkpoint was written.

    Args:
        world_size: processes of the run that resumes (Trainer reads ``rng_state_{rank}.pth`` for each when > 1).
        scaler: whether the run has a gradient scaler (fp16 mixed precision), saved as ``scaler.pt``.
    """
    names = [TRAINER_STATE_NAME, OPTIMIZER_NAME, SCHEDULER_NAME]
    if scaler:
        names.append(SCALER_NAME)
    return names + per_process_names("rng_state", world_size)


def _weights_names(weights_name: str | None) -> list[str]:
    if weights_name is not None:
        return [weights_name]
    return sorted({decoding_head_type(name).weights_name for name in registered_head_types()})


def missing_checkpoint_files(
    path: str | os.PathLike, weights_name: str | None = None, required: Sequence[str] | None = None
) -> list[str]:
    """What ``path`` lacks to be resumed from: missing file names, ``"trainer_state.json (unreadable)"`` if that file
    (written last by Trainer) does not parse. Empty for a complete checkpoint.

    Args:
        weights_name: the weights file it must hold; by default any registered head type's.
        required: the other files it must hold; by default :func:`resume_files` of a single-process run.
    """
    required = resume_files() if required is None else required
    missing = []
    weights = _weights_names(weights_name)
    if not any(os.path.isfile(os.path.join(path, name)) for name in weights):
        missing.append(" or ".join(weights))
    missing += [name for name in required if not os.path.isfile(os.path.join(path, name))]
    state = os.path.join(path, TRAINER_STATE_NAME)
    if TRAINER_STATE_NAME in required and os.path.isfile(state):
        try:
            with open(state, encoding="utf-8") as f:
                json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            missing.append(f"{TRAINER_STATE_NAME} (unreadable)")
    return missing


def is_complete_checkpoint(
    path: str | os.PathLike, weights_name: str | None = None, required: Sequence[str] | None = None
) -> bool:
    """Whether ``path`` holds every file a resume needs (see :func:`missing_checkpoint_files`): a run killed while
    saving leaves a directory without some of them, and Trainer writes ``trainer_state.json`` last."""
    return not missing_checkpoint_files(path, weights_name, required)


def last_complete_checkpoint(
    output_dir: str | os.PathLike, weights_name: str | None = None, required: Sequence[str] | None = None
) -> str | None:
    """The highest-step complete ``checkpoint-N`` directory of ``output_dir``; each newer incomplete one is skipped
    with a warning that names the files it lacks.

    Args:
        weights_name: the weights file a complete checkpoint must hold: any registered head type's by default, e.g.
            ``"adapter_model.safetensors"`` for a PEFT run of TRL's own trainer.
        required: the other files it must hold; by default :func:`resume_files` of a single-process run (pass
            ``resume_files(world_size)`` for a multi-process one).
    """
    if not os.path.isdir(output_dir):
        return None
    steps = sorted((int(m.group(1)), name) for name in os.listdir(output_dir) if (m := _CHECKPOINT.match(name)))
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        if not os.path.isdir(path):
            continue
        missing = missing_checkpoint_files(path, weights_name, required)
        if not missing:
            return path
        logger.warning(
            "Skipping %s: incomplete, it lacks %s (the run probably stopped while saving it)", path, ", ".join(missing)
        )
    return None
