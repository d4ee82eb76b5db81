import json

import pytest

from logitmlp_hf.trainer.checkpoints import (
    is_complete_checkpoint,
    last_complete_checkpoint,
    missing_checkpoint_files,
    resume_files,
)


def _checkpoint(root, step, head=True, state="ok", skip=()):
    path = root / f"checkpoint-{step}"
    path.mkdir()
    if head:
        (path / "logitmlp_head.safetensors").write_bytes(b"x")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        if name not in skip:
            (path / name).write_bytes(b"x")
    if state == "ok":
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    elif state == "truncated":
        (path / "trainer_state.json").write_text('{"global_st')
    return path


def test_newest_complete_checkpoint_wins_and_broken_ones_are_skipped(tmp_path, caplog):
    _checkpoint(tmp_path, 2)
    good = _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 12, state="truncated")  # killed while writing trainer_state.json
    _checkpoint(tmp_path, 14, state=None)  # killed before trainer_state.json
    _checkpoint(tmp_path, 16, head=False)  # killed before the head was written
    (tmp_path / "checkpoint-x").mkdir()
    assert last_complete_checkpoint(tmp_path) == str(good)
    assert "checkpoint-16" in caplog.text and "checkpoint-12" in caplog.text
    assert "trainer_state.json (unreadable)" in caplog.text


@pytest.mark.parametrize("lost", ["optimizer.pt", "scheduler.pt", "rng_state.pth"])
def test_a_checkpoint_without_the_training_state_is_incomplete_and_named(tmp_path, caplog, lost):
    """Trainer resumes from such a directory without a word: Adam's moments, the LR schedule or the RNG restart."""
    good = _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4, skip=(lost,))
    assert last_complete_checkpoint(tmp_path) == str(good)
    assert f"checkpoint-4: incomplete, it lacks {lost}" in caplog.text


def test_required_files_follow_the_run(tmp_path):
    assert resume_files() == ["trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth"]
    assert resume_files(world_size=2, scaler=True)[-3:] == ["scaler.pt", "rng_state_0.pth", "rng_state_1.pth"]
    path = _checkpoint(tmp_path, 2)  # written by a single process
    assert is_complete_checkpoint(path)
    assert missing_checkpoint_files(path, required=resume_files(world_size=2)) == [
        "rng_state_0.pth",
        "rng_state_1.pth",
    ]
    assert missing_checkpoint_files(path, required=[*resume_files(), "rollout_state.pth"]) == ["rollout_state.pth"]


def test_no_checkpoint(tmp_path):
    assert last_complete_checkpoint(tmp_path) is None
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_other_weights_files_for_other_trainers(tmp_path):
    """A PEFT run of TRL's own trainer writes adapter weights, not a head: the same rule, another file."""
    adapter = _checkpoint(tmp_path, 4, head=False)
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    _checkpoint(tmp_path, 6)  # a head checkpoint is not an adapter checkpoint
    assert last_complete_checkpoint(tmp_path, "adapter_model.safetensors") == str(adapter)
    assert last_complete_checkpoint(tmp_path).endswith("checkpoint-6")
