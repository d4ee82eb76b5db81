"""Malformed data and arguments (issue #15, class 4): each is refused with one clear error, before any model runs.

Dataset and rollouts files name ``path:line``, the field, the bad value and what is allowed; rollouts record the model
and tokenizer that made them and the analysis checks them; cross-field settings are checked when the config or the
trainer is built.
"""

from __future__ import annotations

import json

import pytest
from conftest import char_tokenizer, tiny_llama
from datasets import Dataset

from logitmlp_hf.errors import DataFileError, MissingFieldError
from logitmlp_hf.evaluation.runner import evaluate, load_eval_dataset
from logitmlp_hf.tasks.data import load_gsm8k_jsonl, load_math_jsonl


def write_lines(path, *lines: str):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


MATH_ROW = json.dumps({"problem": "What is 1 + 1?", "answer": "2"})


# ------------------------------------------------------------------------------------------- dataset files
def test_null_answer_is_refused_not_graded_as_the_string_none(tmp_path):
    path = write_lines(tmp_path / "math.jsonl", MATH_ROW, json.dumps({"problem": "p", "answer": None}))
    for load in (load_math_jsonl, load_eval_dataset):
        with pytest.raises(DataFileError, match=r"math\.jsonl:2: field 'answer' is null; expected") as info:
            load(str(path))
        assert (info.value.line, info.value.field) == (2, "answer")
    gsm8k = write_lines(tmp_path / "gsm8k.jsonl", json.dumps({"question": "q", "answer": None}))
    with pytest.raises(DataFileError, match=r"gsm8k\.jsonl:1: field 'answer' is null"):
        load_gsm8k_jsonl(gsm8k)


@pytest.mark.parametrize(
    "row, match",
    [
        ({"problem": "p", "answer": True}, "field 'answer' is true"),
        ({"problem": "p", "answer": ["2"]}, r"field 'answer' is \[\"2\"\]"),
        ({"problem": "p", "answer": "  "}, "field 'answer' is \"  \""),
        ({"problem": None, "answer": "2"}, "field 'problem' is null; expected a non-empty string"),
        ({"answer": "2"}, "no field 'problem'"),
    ],
)
def test_bad_field_values_name_the_field_and_what_is_allowed(tmp_path, row, match):
    path = write_lines(tmp_path / "math.jsonl", MATH_ROW, MATH_ROW, json.dumps(row))
    with pytest.raises(DataFileError, match=rf"math\.jsonl:3: {match}"):
        load_math_jsonl(path)


def test_missing_field_is_still_a_key_error():
    assert issubclass(MissingFieldError, KeyError) and issubclass(MissingFieldError, DataFileError)
    assert str(MissingFieldError("f.jsonl:1: no field 'x'")) == "f.jsonl:1: no field 'x'"  # not quoted as KeyError


def test_gsm8k_answer_without_a_final_answer_names_the_line(tmp_path):
    good = json.dumps({"question": "q", "answer": "so\n#### 4"})
    path = write_lines(tmp_path / "gsm8k.jsonl", good, json.dumps({"question": "q", "answer": "no marker"}))
    with pytest.raises(DataFileError, match=r"gsm8k\.jsonl:2: field 'answer' has no '#### <answer>' line"):
        load_gsm8k_jsonl(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_jsonl_is_a_clear_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    for load in (load_eval_dataset, load_math_jsonl, load_gsm8k_jsonl):
        with pytest.raises(DataFileError, match=r"empty\.jsonl: no rows"):
            load(str(path))


def test_bad_first_line_is_reported_like_a_bad_third_line(tmp_path):
    for bad_line in (1, 3):
        lines = [MATH_ROW] * 3
        lines[bad_line - 1] = '{"problem": "p", "answer": '
        path = write_lines(tmp_path / f"bad{bad_line}.jsonl", *lines)
        with pytest.raises(DataFileError, match=rf"bad{bad_line}\.jsonl:{bad_line}: not valid JSON"):
            load_eval_dataset(str(path))


@pytest.mark.parametrize("bad_line", [1, 2])
def test_non_object_line_is_refused(tmp_path, bad_line):
    lines = [MATH_ROW, MATH_ROW]
    lines[bad_line - 1] = '["p", "2"]'
    path = write_lines(tmp_path / "list.jsonl", *lines)
    with pytest.raises(DataFileError, match=rf"list\.jsonl:{bad_line}: expected a JSON object .*got an array"):
        load_eval_dataset(str(path))


def test_unknown_format_names_the_line_and_the_fields(tmp_path):
    path = write_lines(tmp_path / "other.jsonl", json.dumps({"text": "hi"}))
    with pytest.raises(DataFileError, match=r"other\.jsonl:1: cannot tell the format from its fields \['text'\]"):
        load_eval_dataset(str(path))


def test_evaluate_refuses_a_dataset_without_reference_answers():
    dataset = Dataset.from_dict({"question": ["a", "b"], "answer": ["1", None]})
    with pytest.raises(ValueError, match="row 1 has no reference answer"):
        evaluate(tiny_llama(), char_tokenizer(), dataset, ["temperature:1.0"], n_samples=1, progress=False)
