"""Datasets: seeded arithmetic problems, MATH-500 / GSM8K jsonl loaders and the DAPO-Math-17k format (local only)."""

from __future__ import annotations

import ast
import json
import operator
import os
from fractions import Fraction
from pathlib import Path

import pytest
from datasets import Dataset

from logitmlp_hf.tasks import data
from logitmlp_hf.tasks.data import (
    BOXED_INSTRUCTION,
    ArithmeticTaskConfig,
    build_prompt,
    gsm8k_final_answer,
    load_dapo_math,
    load_gsm8k_jsonl,
    load_math_jsonl,
    make_arithmetic_dataset,
    make_arithmetic_splits,
)


SHARED_DATA = Path(os.environ.get("LOGITMLP_SHARED_DATA", "/work/shared/data"))
COLUMNS = ["prompt", "answer", "question"]


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} not available (set LOGITMLP_SHARED_DATA)")
    return path


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def exact_value(expression: str) -> Fraction:
    """Evaluate an arithmetic expression exactly, independently of the generator (via Python's own parser)."""

    def ev(node):
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        raise AssertionError(f"unexpected syntax in {expression!r}")

    return ev(ast.parse(expression, mode="eval").body)


def expression_of(question: str) -> str:
    assert question.startswith("What is ") and question.endswith("?"), question
    return question[len("What is ") : -1]


# --------------------------------------------------------------------------------------------------------------------
# Arithmetic
# --------------------------------------------------------------------------------------------------------------------


def test_arithmetic_dataset_format():
    ds = make_arithmetic_dataset(ArithmeticTaskConfig(seed=0, n_problems=20))
    assert isinstance(ds, Dataset)
    assert ds.column_names == COLUMNS
    assert len(ds) == 20
    row = ds[0]
    assert row["prompt"] == [{"role": "user", "content": row["question"]}]
    assert row["question"].startswith("What is ") and " + " in row["question"]
    assert row["answer"] == str(int(row["answer"]))


def test_arithmetic_is_deterministic_and_seeded():
    config = ArithmeticTaskConfig(seed=3, n_problems=50, operations=("+", "-", "*"))
    assert make_arithmetic_dataset(config).to_list() == make_arithmetic_dataset(config).to_list()
    other = make_arithmetic_dataset(ArithmeticTaskConfig(seed=4, n_problems=50, operations=("+", "-", "*")))
    assert other["question"] != make_arithmetic_dataset(config)["question"]


@pytest.mark.parametrize(
    "config",
    [
        ArithmeticTaskConfig(seed=0, n_problems=200),
        ArithmeticTaskConfig(seed=1, n_problems=200, operations=("+", "-", "*", "/"), n_operands=3),
        ArithmeticTaskConfig(
            seed=2, n_problems=200, operations=("-", "/"), min_operand=-9, max_operand=9, allow_negative_results=True
        ),
        ArithmeticTaskConfig(seed=3, n_problems=100, operations=("*",), min_operand=10, max_operand=99, n_operands=4),
    ],
)
def test_arithmetic_answers_are_correct(config):
    ds = make_arithmetic_dataset(config)
    assert len(set(ds["question"])) == len(ds) == config.n_problems  # distinct
    for question, answer in zip(ds["question"], ds["answer"]):
        expression = expression_of(question)
        value = exact_value(expression)
        assert value.denominator == 1, question  # divisions are exact
        assert value == int(answer), question
        if not config.allow_negative_results:
            assert int(answer) >= 0, question
        tokens = expression.replace("(", " ").replace(")", " ").split()
        operands = [int(t) for t in tokens if t not in "+-*/"]
        assert len(operands) == config.n_operands
        assert all(config.min_operand <= v <= config.max_operand for v in operands)
        assert {t for t in tokens if t in ("+", "-", "*", "/")} <= set(config.operations)


def test_arithmetic_negative_results_only_when_allowed():
    config = {"n_problems": 200, "operations": ("-",), "min_operand": 0, "max_operand": 20}
    assert all(int(a) >= 0 for a in make_arithmetic_dataset(ArithmeticTaskConfig(**config))["answer"])
    with_neg = make_arithmetic_dataset(ArithmeticTaskConfig(allow_negative_results=True, **config))
    assert any(int(a) < 0 for a in with_neg["answer"])


def test_arithmetic_splits_are_disjoint_and_stable():
    config = ArithmeticTaskConfig(seed=7)
    train, test = make_arithmetic_splits(config, n_train=300, n_test=100)
    assert len(train) == 300 and len(test) == 100
    assert train.column_names == test.column_names == COLUMNS
    assert not set(train["question"]) & set(test["question"])
    # The test set does not move when only the training size changes.
    assert make_arithmetic_splits(config, n_train=50, n_test=100)[1]["question"] == test["question"]
    # Nearly the whole space (441 sums of 0..20): still disjoint, still distinct.
    tight_train, tight_test = make_arithmetic_splits(ArithmeticTaskConfig(seed=1), n_train=340, n_test=100)
    assert len(set(tight_train["question"]) | set(tight_test["question"])) == 440


def test_arithmetic_config_validation():
    with pytest.raises(ValueError):
        ArithmeticTaskConfig(operations=("^",))
    with pytest.raises(ValueError):
        ArithmeticTaskConfig(min_operand=5, max_operand=1)
    with pytest.raises(ValueError):
        ArithmeticTaskConfig(n_operands=1)
    with pytest.raises(ValueError, match="at most 441"):
        make_arithmetic_dataset(ArithmeticTaskConfig(n_problems=442))
    assert ArithmeticTaskConfig(operations=["+", "*"]).operations == ("+", "*")  # lists (YAML, CLI) are accepted


def test_prompt_options():
    ds = make_arithmetic_dataset(
        ArithmeticTaskConfig(n_problems=2), system_prompt="You are a calculator.", instruction=BOXED_INSTRUCTION
    )
    prompt = ds[0]["prompt"]
    assert prompt[0] == {"role": "system", "content": "You are a calculator."}
    assert prompt[1]["role"] == "user"
    assert prompt[1]["content"] == f"{ds[0]['question']}\n\n{BOXED_INSTRUCTION}"
    assert build_prompt("Q") == [{"role": "user", "content": "Q"}]


# --------------------------------------------------------------------------------------------------------------------
# jsonl loaders
# --------------------------------------------------------------------------------------------------------------------


def test_load_math500_shared_file():
    path = shared_file("math500_test.jsonl")
    ds = load_math_jsonl(path, limit=5, extra_columns=("level", "subject"))
    assert ds.column_names == COLUMNS + ["level", "subject"]
    assert len(ds) == 5
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert ds[0]["question"] == first["problem"]
    assert ds[0]["answer"] == first["answer"] == r"\left( 3, \frac{\pi}{2} \right)"
    assert ds[0]["prompt"] == [{"role": "user", "content": first["problem"]}]
    assert len(load_math_jsonl(path)) == 500


def test_load_gsm8k_shared_file():
    path = shared_file("gsm8k_test.jsonl")
    ds = load_gsm8k_jsonl(path, limit=4, instruction=BOXED_INSTRUCTION)
    assert ds.column_names == COLUMNS
    assert ds["answer"] == ["18", "3", "70000", "540"]
    assert ds[0]["question"].startswith("Janet")
    assert ds[0]["prompt"][0]["content"].endswith(BOXED_INSTRUCTION)


def test_gsm8k_answer_parsing(tmp_path):
    assert gsm8k_final_answer("He has 2 + 3 = <<2+3=5>>5\n#### 1,234") == "1234"
    assert gsm8k_final_answer("#### -7 ") == "-7"
    assert gsm8k_final_answer("#### $5") == "5"
    with pytest.raises(ValueError):
        gsm8k_final_answer("no marker")
    path = tmp_path / "gsm.jsonl"
    rows = [{"question": "q1", "answer": "a\n#### 1,000,000"}, {"question": "q2", "answer": "#### 3"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")  # trailing blank line
    assert load_gsm8k_jsonl(path)["answer"] == ["1000000", "3"]


def test_jsonl_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "p", "answer": "1"}\n{not json\n', encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_math_jsonl(bad)
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"question": "p"}\n', encoding="utf-8")
    with pytest.raises(KeyError, match="problem"):
        load_math_jsonl(missing)


# --------------------------------------------------------------------------------------------------------------------
# DAPO-Math-17k format (local files only: the tests never touch the Hub)
# --------------------------------------------------------------------------------------------------------------------

DAPO_PREFIX = (
    "Solve the following math problem step by step. The last line of your response should be of the form "
    "Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n"
)
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'


def dapo_row(problem: str, answer: str, index: str) -> dict:
    return {
        "data_source": "math_dapo",
        "prompt": [{"content": DAPO_PREFIX + problem + DAPO_SUFFIX, "role": "user"}],
        "ability": "MATH",
        "reward_model": {"ground_truth": answer, "style": "rule-lighteval/MATH_v2"},
        "extra_info": {"index": index},
    }


@pytest.fixture
def dapo_rows():
    problems = [("Find $x$ if $2x = 10$.", "5"), ("Compute $3^4$.", "81"), ("How many primes are below 10?", "4")]
    rows = [dapo_row(p, a, f"id-{i}") for i, (p, a) in enumerate(problems)]
    return rows + [dapo_row(*problems[0], "id-0"), dapo_row(*problems[2], "id-2")]  # the Hub copy repeats problems


@pytest.fixture
def dapo_jsonl(tmp_path, dapo_rows):
    path = tmp_path / "dapo.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in dapo_rows), encoding="utf-8")
    return path


def test_load_dapo_jsonl(dapo_jsonl, tmp_path):
    ds = load_dapo_math(dapo_jsonl, instruction=BOXED_INSTRUCTION, cache_dir=str(tmp_path / "cache"))
    assert ds.column_names == COLUMNS
    assert ds["question"] == ["Find $x$ if $2x = 10$.", "Compute $3^4$.", "How many primes are below 10?"]
    assert ds["answer"] == ["5", "81", "4"]
    assert ds[1]["prompt"] == [{"role": "user", "content": f"Compute $3^4$.\n\n{BOXED_INSTRUCTION}"}]


def test_load_dapo_options(dapo_jsonl, tmp_path):
    kwargs = {"cache_dir": str(tmp_path / "cache")}
    assert len(load_dapo_math(dapo_jsonl, deduplicate=False, **kwargs)) == 5
    assert len(load_dapo_math(dapo_jsonl, limit=2, **kwargs)) == 2
    original = load_dapo_math(dapo_jsonl, keep_original_prompt=True, **kwargs)
    assert original[0]["prompt"][0]["content"].startswith("Solve the following math problem")
    assert original[0]["question"] == "Find $x$ if $2x = 10$."


def test_load_dapo_parquet(tmp_path, dapo_rows):
    path = tmp_path / "dapo.parquet"
    Dataset.from_list(dapo_rows).to_parquet(str(path))
    ds = load_dapo_math(path, cache_dir=str(tmp_path / "cache"))
    assert ds["answer"] == ["5", "81", "4"]
    assert ds[2]["prompt"] == [{"role": "user", "content": "How many primes are below 10?"}]


def test_load_dapo_hub_id_goes_to_load_dataset(monkeypatch, dapo_rows):
    # The Hub path is exercised without the Hub: load_dataset is replaced by a stub returning an in-memory copy.
    calls = []

    def fake_load_dataset(name, **kwargs):
        calls.append((name, kwargs))
        return Dataset.from_list(dapo_rows)

    monkeypatch.setattr(data, "load_dataset", fake_load_dataset)
    ds = load_dapo_math("BytedTsinghua-SIA/DAPO-Math-17k", split="train", revision="main")
    assert calls == [("BytedTsinghua-SIA/DAPO-Math-17k", {"split": "train", "revision": "main"})]
    assert ds["answer"] == ["5", "81", "4"]


def test_load_dapo_rejects_other_formats(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text('{"problem": "p", "answer": "1"}\n', encoding="utf-8")
    with pytest.raises(KeyError, match="DAPO"):
        load_dapo_math(path, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="Unsupported"):
        (tmp_path / "x.csv").write_text("a\n1\n")
        load_dapo_math(tmp_path / "x.csv")


def test_datasets_feed_the_reward(dapo_jsonl, tmp_path):
    # End to end: loader columns are exactly what MathVerifyReward reads, in TRL's calling convention.
    from logitmlp_hf.tasks.rewards import MathVerifyReward

    ds = make_arithmetic_dataset(ArithmeticTaskConfig(n_problems=4))
    reward = MathVerifyReward()
    completions = [[{"role": "assistant", "content": rf"\boxed{{{a}}}"}] for a in ds["answer"]]
    columns = {k: ds[k] for k in ds.column_names if k != "prompt"}
    assert reward(prompts=ds["prompt"], completions=completions, **columns) == [1.0] * 4


def test_arithmetic_splits_allow_an_empty_side():
    train, test = make_arithmetic_splits(ArithmeticTaskConfig(seed=3), n_train=0, n_test=5)
    assert len(train) == 0 and len(test) == 5
    train, test = make_arithmetic_splits(ArithmeticTaskConfig(seed=3), n_train=4, n_test=0)
    assert len(train) == 4 and len(test) == 0
