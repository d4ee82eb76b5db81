"""Where the trainer's per-step metrics go: the logger and the report backends, not stdout.

transformers' ``ProgressCallback`` writes every log dict under the progress bar, and ``PrinterCallback`` (with
``disable_tqdm``) prints it; a GRPO log has ~40 entries, so a run of 50 steps prints pages of dicts. These
replacements keep the progress bar (with the reward and KL as its postfix) and send the whole dict to the
``logitmlp_hf.trainer`` logger at INFO (``-v`` on the CLI, or ``logging.basicConfig(level=logging.INFO)``).
``report_to`` backends and ``trainer.state.log_history`` receive everything as before.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import ProgressCallback, TrainerCallback

from ..progress import progress_bar


logger = logging.getLogger("logitmlp_hf.trainer")

# What the progress bar shows of each log (when present).
_POSTFIX = ("reward", "warp/kl_to_base", "loss")


def _compact(logs: dict[str, Any]) -> dict[str, Any]:
    return {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items() if k != "total_flos"}


class MetricsToProgressBar(ProgressCallback):
    """``ProgressCallback`` whose logs go to the logger and the bar's postfix instead of being written below it, and
    whose training bar is :func:`~logitmlp_hf.progress.progress_bar`'s: redrawn while a long step runs (a first step
    with its rollouts can take half a minute on a CPU) and, off a terminal, written at most every few seconds."""

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102 - see the class docstring
        if state.is_world_process_zero:
            self.training_bar = progress_bar(total=state.max_steps, dynamic_ncols=True)
        self.current_step = 0

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102 - see the class docstring
        if not state.is_world_process_zero or not logs:
            return
        logger.info("step %d: %s", state.global_step, _compact(logs))
        if self.training_bar is not None:
            shown = {k.split("/")[-1]: f"{logs[k]:.3g}" for k in _POSTFIX if isinstance(logs.get(k), (int, float))}
            if shown:
                self.training_bar.set_postfix(shown, refresh=False)


class NoneScalarNoticeFilter(logging.Filter):
    """Drops transformers' TensorBoard notice about a ``None`` metric, and only that notice.

    TRL logs ``None`` for a metric that has no value in a step (e.g. ``clip_ratio/low_min`` when every completion of
    the batch is masked out, as when dynamic sampling found no group with a learning signal). TensorBoard cannot
    plot it, and transformers' callback says so at WARNING for every such key at every step. The value stays
    ``None`` in ``trainer.state.log_history``; any other value of a wrong type is still reported.
    """

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102 - see the class docstring
        return not str(record.msg).startswith('Trainer is attempting to log a value of "None" ')


def quiet_none_scalar_notices() -> None:
    """Install :class:`NoneScalarNoticeFilter` on the logger of transformers' reporting callbacks (once)."""
    target = logging.getLogger("transformers.integrations.integration_utils")
    if not any(isinstance(f, NoneScalarNoticeFilter) for f in target.filters):
        target.addFilter(NoneScalarNoticeFilter())


class MetricsToLogger(TrainerCallback):
    """``PrinterCallback``'s job (``disable_tqdm=True``) done through the logger."""

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102 - see the class docstring
        if state.is_local_process_zero and logs:
            logger.info("step %d: %s", state.global_step, _compact(logs))


__all__ = ["MetricsToLogger", "MetricsToProgressBar", "NoneScalarNoticeFilter", "quiet_none_scalar_notices"]
