"""Long library work shows a tqdm bar with an ETA on stderr (also when stderr is not a terminal), can be switched
off, and prints nothing to stdout."""

from __future__ import annotations

import re
import sys
import time

from conftest import char_tokenizer, tiny_llama
from test_analysis import _model, _rollouts
from test_evaluation import stub_dataset

from logitmlp_hf.analysis.per_token import analyze_rollouts
from logitmlp_hf.evaluation.runner import evaluate
from logitmlp_hf.progress import NON_TTY_MININTERVAL, progress_bar
from logitmlp_hf.trainer.sequence_adapter import prompt_embeddings


# tqdm's final state: "<desc>: 100%|█████| n/n [elapsed<remaining, rate]"
def _final_bar(desc: str, n: int) -> re.Pattern:
    return re.compile(rf"{desc}: 100%\|[^|]*\| {n}/{n} \[\d\d:\d\d<\d\d:\d\d")


def test_analysis_shows_its_bar_on_stderr_only(capsys):
    tokenizer = char_tokenizer()
    rollouts = _rollouts(tokenizer)
    analyze_rollouts(_model(), tokenizer, rollouts, batch_size=2)
    out, err = capsys.readouterr()
    assert out == ""
    assert _final_bar("analyze", len(rollouts)).search(err), err
    analyze_rollouts(_model(), tokenizer, rollouts, batch_size=2, progress=False)
    assert capsys.readouterr() == ("", "")


def test_evaluation_and_prompt_embeddings_show_their_bars(capsys):
    evaluate(tiny_llama(), char_tokenizer(), stub_dataset(4), ["temperature:1.0"], n_samples=2, max_new_tokens=3)
    prompt_embeddings(tiny_llama(), char_tokenizer(), stub_dataset(3), batch_size=2)
    out, err = capsys.readouterr()
    assert out == ""
    assert _final_bar("evaluate", 4).search(err) and _final_bar("embed prompts", 3).search(err), err


def test_bar_off_a_terminal_writes_a_state_at_most_every_few_seconds(capsys):
    assert not sys.stderr.isatty()  # captured: like a log file or CI
    with progress_bar(total=3, desc="x") as bar:
        assert bar.mininterval == NON_TTY_MININTERVAL <= 30
        for _ in range(3):
            bar.update()
    assert _final_bar("x", 3).search(capsys.readouterr().err)


def test_bar_off_a_terminal_is_redrawn_while_a_unit_of_work_runs_long(capsys):
    """A batch longer than the interval must not leave the log silent: the bar is redrawn with the time elapsed."""
    with progress_bar(total=2, desc="slow", mininterval=0.2) as bar:
        bar.update()
        capsys.readouterr()
        time.sleep(1.0)  # one unit of work 5 intervals long
        during = capsys.readouterr().err
        bar.update()
    assert during.count("slow:  50%") >= 2, during
    time.sleep(0.5)  # closed: the heartbeat has stopped
    after_close = capsys.readouterr().err
    time.sleep(0.5)
    assert capsys.readouterr().err == "", after_close


def test_an_abandoned_bar_stops_redrawing(capsys):
    """A bar never closed (an exception left it) is garbage-collected: its heartbeat must not write forever."""
    import gc

    bar = progress_bar(total=2, desc="left", mininterval=0.1)
    bar.update()
    del bar
    gc.collect()
    time.sleep(0.3)
    capsys.readouterr()
    time.sleep(0.5)
    assert "left" not in capsys.readouterr().err


def test_training_bar_is_redrawn_while_a_step_runs(capsys, monkeypatch):
    """The trainer's bar is the package's: a first step with its rollouts (~30 s on a CPU) does not leave it silent."""
    from transformers import TrainerState

    from logitmlp_hf.trainer.callbacks import MetricsToProgressBar

    monkeypatch.setattr("logitmlp_hf.progress.NON_TTY_MININTERVAL", 0.1)
    callback = MetricsToProgressBar()
    state = TrainerState(max_steps=3, is_world_process_zero=True)
    callback.on_train_begin(None, state, None)
    capsys.readouterr()
    time.sleep(0.6)  # a step in progress: no update
    assert capsys.readouterr().err.count("0/3") >= 2
    callback.training_bar.close()


def test_pytest_itself_says_which_long_test_is_running(tmp_path):
    """The README's `python -m pytest -q` prints a dot per finished test; a long test must not leave it silent."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_long.py").write_text(
        "import time\n\ndef test_long():\n    print('captured, not shown')\n    time.sleep(3.5)\n\ndef test_short():\n    pass\n"
    )
    env = {**os.environ, "LOGITMLP_TEST_HEARTBEAT_S": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    beats = re.findall(r"still running \S*test_long\.py::test_long \((\d+) s\)", run.stdout)
    seconds = [int(s) for s in beats]
    assert len(seconds) >= 2 and seconds == sorted(set(seconds)) and seconds[0] >= 1, run.stdout
    assert "test_short" not in run.stdout and "captured, not shown" not in run.stdout
