"""`logitmlp eval`, `logitmlp sweep` and `logitmlp reproduce` measure with one set of defaults
(`logitmlp_hf.evaluation.settings`) and print them first."""

from __future__ import annotations

import pytest

from logitmlp_hf.cli import main as cli_main
from logitmlp_hf.cli.main import build_parser, get_commands
from logitmlp_hf.cli.options import evaluation_settings, n_test_problems
from logitmlp_hf.evaluation.settings import DEFAULT_SETTINGS, format_settings
from logitmlp_hf.reproduce.config import ReproduceConfig


def _args(*argv: str):
    return build_parser(get_commands()).parse_args(list(argv))


def test_eval_sweep_and_reproduce_share_their_defaults():
    main_job = ReproduceConfig()
    for command in ("eval", "sweep"):
        args = _args(command)
        if command == "sweep":
            args.temperatures = tuple(args.temperatures)
        settings = evaluation_settings(args)
        assert settings.n_samples == main_job.n_samples
        assert settings.max_new_tokens == main_job.max_new_tokens == 48  # arithmetic's budget, not 512
        assert settings.seed == main_job.seed and settings.batch_size == main_job.eval_batch_size
        assert settings.n_resamples == main_job.n_resamples
        assert n_test_problems(args) == main_job.n_test
    sweep = evaluation_settings(_args("sweep"))
    assert tuple(sweep.temperatures) == main_job.temperatures
    assert sweep.n_validation == main_job.n_validation and sweep.select_by == main_job.select_by
    # long-form datasets get a long budget; an explicit option wins everywhere
    assert evaluation_settings(_args("eval", "--dataset", "gsm8k")).max_new_tokens == 512
    assert n_test_problems(_args("eval", "--dataset", "gsm8k")) is None
    assert evaluation_settings(_args("sweep", "--max-new-tokens", "7", "--dataset", "gsm8k")).max_new_tokens == 7
    assert DEFAULT_SETTINGS.n_test == main_job.n_test


class _Stop(Exception):
    pass


def _stop(*args, **kwargs):
    raise _Stop


@pytest.mark.parametrize(
    "argv, target, expected",
    [
        (["eval"], "logitmlp_hf.cli.eval.load_base", "n_samples=8 max_new_tokens=48 seed=0"),
        (["sweep"], "logitmlp_hf.cli.sweep.load_base", "temperatures=0.1,0.25,0.5,0.75,1 select_by=mean_accuracy"),
        (["reproduce"], "logitmlp_hf.cli.reproduce.reproduce", "n_samples=8 max_new_tokens=48"),
        (["reproduce", "--quick"], "logitmlp_hf.cli.reproduce.reproduce", "n_test=8 n_samples=4 max_new_tokens=24"),
    ],
)
def test_each_command_prints_its_settings_first(argv, target, expected, monkeypatch, capsys):
    monkeypatch.setattr(target, _stop)
    with pytest.raises(_Stop):
        cli_main(argv)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("settings: ") and expected in first, first


def test_format_settings():
    assert format_settings({"a": 1, "t": (0.5, 1.0), "s": "x"}) == "settings: a=1 t=0.5,1 s=x"
    assert format_settings({"seeds": ()}) == "settings: seeds=none"
