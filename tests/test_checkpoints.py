import json

from logitmlp_hf.trainer.checkpoints import last_complete_checkpoint


def _checkpoint(root, step, head=True, state="ok"):
    path = root / f"checkpoint-{step}"
    path.mkdir()
    if head:
        (path / "logitmlp_head.safetensors").write_bytes(b"x")
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
