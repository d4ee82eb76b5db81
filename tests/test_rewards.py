"""Answer extraction, math-verify matching, and the TRL reward: correctness, robustness, time bounds, threads."""

from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logitmlp_hf.tasks import rewards
from logitmlp_hf.tasks.rewards import MatchOutcome, MathVerifyReward, answers_match, check_answer, extract_answer


# 50 nested parentheses: math-verify's LaTeX parser needs seconds for this (measured ~5 s), a natural slow input.
SLOW_TO_PARSE = r"\boxed{" + "(" * 50 + "1" + ")" * 50 + "}"

# An interrupt that lands inside a gc callback (hypothesis installs one) is reported as "unraisable" and dropped;
# the timer re-fires until the computation stops, which is the point, so the report is expected noise.
allow_dropped_interrupts = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _run_in_thread(fn):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


# --------------------------------------------------------------------------------------------------------------------
# extract_answer
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so the answer is $\boxed{42}$.", "42"),
        (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}"),  # nested braces kept whole
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped (set) braces do not close the group
        (r"first \boxed{1}, then \boxed{2}", "2"),  # the last one
        (r"\boxed{7} and then a cut-off \boxed{\frac{1}{", "7"),  # an unclosed last box falls back to a closed one
        (r"\fbox{5}", "5"),
        (r"\boxed 5$", "5"),
        (r"\boxed{} and 3", "3"),  # an empty box is no answer; fall back to the last number
        (r"The answer is \boxed{x^2 + 1}, not 5", "x^2 + 1"),  # a box wins over a later number
        ("There are 3 apples and 4 pears, 7 in total.", "7"),
        ("The answer is 42.", "42"),  # sentence period is not a decimal point
        ("It costs 3.75 dollars", "3.75"),
        ("x = -5", "-5"),
        ("$-12$", "-12"),
        ("−7", "-7"),  # Unicode minus
        ("10-3", "3"),  # a binary minus is not a sign
        ("He paid $1,234,567 in total", "1234567"),  # thousands separators removed
        ("about 1,234.5 m", "1234.5"),
        ("the points (1,2)", "2"),  # not a thousands separator
        ("a ratio of 3/4", "3/4"),
        ("a ratio of 3 / 4", "3/4"),
        (r"so $x = \frac{1}{2}$", r"\frac{1}{2}"),
        (r"so $x = -\dfrac{3}{4}$", r"-\frac{3}{4}"),
        ("version 2.0.1", "2.0"),  # never starts inside another number
        ("no numbers here", None),
        ("", None),
        (r"\boxed{", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_on_non_strings():
    assert extract_answer(None) is None
    assert extract_answer(42) is None


def test_extract_answer_is_linear_on_adversarial_inputs():
    # A quadratic brace scan or number regex would take minutes on these.
    start = time.monotonic()
    assert extract_answer(r"\boxed{" * 20_000 + "3") == "3"
    assert extract_answer("2.0." + "1" * 100_000) == "2.0"
    assert extract_answer("1" + ",234" * 20_000 + "5") == "2345"
    assert extract_answer("1/" * 20_000) == "1/1"
    assert time.monotonic() - start < 1.0


@given(st.integers(min_value=-(10**12), max_value=10**12))
@settings(max_examples=50, deadline=None)
def test_extract_answer_reads_any_integer_with_separators(n):
    assert extract_answer(f"So the total is {n:,}.") == str(n)
    assert extract_answer(f"So the total is {n}") == str(n)


@given(st.text(max_size=300))
@settings(max_examples=100, deadline=None)
def test_extract_answer_never_raises(text):
    result = extract_answer(text)
    assert result is None or isinstance(result, str)


# --------------------------------------------------------------------------------------------------------------------
# answers_match / check_answer
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("29", "29"),
        ("29.0", "29"),
        (r"\boxed{29}", "29"),
        ("$29$", "29"),
        ("The answer is 29.", "29"),
        ("There are 1,234 of them", "1234"),
        ("0.5", r"\frac{1}{2}"),
        (r"\frac{1}{2}", "0.5"),
        (r"\boxed{\dfrac{1}{2}}", "1/2"),
        ("3/4", r"\frac{3}{4}"),
        (r"\boxed{-5}", "-5"),
        (r"\pi", r"\pi"),  # a bare answer is graded whole ...
        ("x^2", "x^2"),  # ... not by its last number (2)
        ("10-3", "7"),
        ("−7", "-7"),
        (r"\text{Evelyn}", r"\text{Evelyn}"),  # LaTeX text is not prose
        (r"\$32,\!348", "32348"),
        (r"\begin{pmatrix} -1/3 \\ 2/3 \end{pmatrix}", r"\begin{pmatrix} -1/3 \\ 2/3 \end{pmatrix}"),
        (r"$\frac{\pi}{2}$", r"\frac{\pi}{2}"),
        (r"the answer is $\pi$", r"\pi"),
        (r"\boxed{\left(3, \frac{\pi}{2}\right)}", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"),
        (r"\boxed{10\%}", "0.1"),
    ],
)
def test_answers_match(prediction, reference):
    assert answers_match(prediction, reference)


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("30", "29"),
        (r"\boxed{29.5}", "29"),
        (r"\boxed{\frac{1}{3}}", "0.5"),
        (r"\boxed{(3, \pi)}", r"\left( 3, \frac{\pi}{2} \right)"),
        ("I don't know", "29"),
        ("", "29"),
    ],
)
def test_answers_do_not_match(prediction, reference):
    assert not answers_match(prediction, reference)


def test_check_answer_outcomes():
    assert check_answer(r"\boxed{4}", "4") is MatchOutcome.CORRECT
    assert check_answer(r"\boxed{5}", "4") is MatchOutcome.WRONG
    assert check_answer("word " * 100, "4") is MatchOutcome.NO_ANSWER
    assert check_answer("nothing", "4") is MatchOutcome.NO_ANSWER  # prose is not read as n*o*t*h*i*n*g
    assert check_answer(r"\boxed{}", "4") is MatchOutcome.NO_ANSWER
    assert check_answer(r"\boxed{4}", "") is MatchOutcome.REFERENCE_ERROR
    assert check_answer(r"\boxed{" + "1" * 2000 + "}", "4") is MatchOutcome.TOO_LARGE
    # Power towers would hold the GIL for minutes inside CPython's big-integer code; they are rejected unevaluated.
    start = time.monotonic()
    assert check_answer(r"\boxed{9^{9^{9^{9}}}}", "1") is MatchOutcome.TOO_LARGE
    assert check_answer(r"\boxed{10^{10^{10}}}", "1") is MatchOutcome.TOO_LARGE
    assert check_answer(r"\boxed{(10^{6})!}", "1") is MatchOutcome.TOO_LARGE
    assert time.monotonic() - start < 1.0
    # ... while ordinary big numbers are fine.
    assert check_answer(r"\boxed{2^{100}}", str(2**100)) is MatchOutcome.CORRECT


@allow_dropped_interrupts
@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_slow_input_times_out(where):
    def run():
        start = time.monotonic()
        outcome = check_answer(SLOW_TO_PARSE, "1", timeout_seconds=0.3)
        return outcome, time.monotonic() - start

    outcome, elapsed = run() if where == "main thread" else _run_in_thread(run)
    assert outcome is MatchOutcome.TIMEOUT
    assert elapsed < 1.5


@allow_dropped_interrupts
def test_interrupted_thread_gets_no_stray_interrupt_later():
    # The watchdog re-fires until disarmed; once a call has returned, nothing may reach the thread any more.
    def run():
        def busy():
            while True:
                pass

        with pytest.raises(TimeoutError):
            rewards._call_with_timeout(busy, 0.1)
        deadline = time.monotonic() + 0.6  # longer than the watchdog's re-fire interval
        n = 0
        while time.monotonic() < deadline:
            n += 1
        return n

    assert _run_in_thread(run) > 0
    assert rewards._call_with_timeout(lambda: 7, 0.1) == 7  # and the main-thread (signal) path still works


# --------------------------------------------------------------------------------------------------------------------
# MathVerifyReward
# --------------------------------------------------------------------------------------------------------------------


def trl_kwargs(references, **extra):
    """The keyword arguments TRL 1.16's ``_calculate_rewards`` passes besides prompts/completions."""
    return {
        "completion_ids": [[1, 2, 3]] * len(references),
        "answer": list(references),
        "question": ["q"] * len(references),
        "trainer_state": None,
        "log_extra": lambda column, values: None,
        "log_metric": lambda name, value: None,
        **extra,
    }


def test_reward_scores_strings_and_counts():
    reward = MathVerifyReward()
    completions = [r"... so \boxed{4}", "The answer is 4.", r"\boxed{5}", "no idea at all " * 20, r"\boxed{}"]
    out = reward(prompts=["What is 2 + 2?"] * 5, completions=completions, **trl_kwargs(["4"] * 5))
    assert out == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert all(isinstance(r, float) for r in out)
    stats = reward.stats()
    assert stats["n_calls"] == 1
    assert stats["n_completions"] == 5
    assert stats["n_correct"] == 2
    assert stats["n_no_answer"] == 2
    assert stats["n_timeouts"] == stats["n_parse_errors"] == 0
    reward.reset_stats()
    assert reward.stats()["n_completions"] == 0


def test_reward_conversational_completions():
    reward = MathVerifyReward()
    prompts = [[{"role": "user", "content": "What is 14 + 15?"}]] * 3
    completions = [
        [{"role": "assistant", "content": r"14 + 15 = \boxed{29}"}],
        [{"role": "assistant", "content": "It is 28."}],
        [{"role": "assistant", "content": [{"type": "text", "text": r"\boxed{29}"}]}],  # content parts
    ]
    assert reward(prompts=prompts, completions=completions, **trl_kwargs(["29"] * 3)) == [1.0, 0.0, 1.0]


def test_reward_name_and_protocol_details():
    reward = MathVerifyReward()
    # TRL names a reward function getattr(f, "__name__", type(f).__name__) in its logs.
    assert getattr(reward, "__name__", type(reward).__name__) == "math_verify_reward"
    assert MathVerifyReward(name="acc").__name__ == "acc"

    logged = {}
    reward(
        prompts=["p"] * 2,
        completions=[r"\boxed{1}", "nothing"],
        **trl_kwargs(["1", "1"], log_metric=lambda name, value: logged.__setitem__(name, value)),
    )
    assert logged["math_verify_reward/no_answer_frac"] == 0.5
    assert logged["math_verify_reward/timeouts_frac"] == 0.0


def test_reward_custom_column_and_configuration_errors():
    reward = MathVerifyReward(answer_column="solution")
    assert reward(prompts=["p"], completions=[r"\boxed{3}"], solution=["3"]) == [1.0]
    with pytest.raises(KeyError, match="solution"):
        reward(prompts=["p"], completions=[r"\boxed{3}"], answer=["3"])
    with pytest.raises(ValueError):
        reward(prompts=["p"], completions=[r"\boxed{3}"], solution=["3", "4"])
    with pytest.raises(ValueError):
        MathVerifyReward(timeout_seconds=0)


def test_reward_never_raises_on_garbage():
    reward = MathVerifyReward(timeout_seconds=1.0)
    garbage = [
        "1" * 100_000,  # one 100k-digit number
        "x" * 100_000,
        " ".join(str(i) for i in range(20_000)),
        r"\boxed{" * 5_000,  # unbalanced braces
        "}" * 5_000 + r"\boxed{{{",
        r"\boxed{" + "{" * 5_000 + "1" + "}" * 5_000 + "}",  # deeply nested
        r"\boxed{" + r"\frac{1}{" * 60 + "2" + "}" * 60 + "}",
        r"\boxed{" + r"\sqrt{" * 80 + "2" + "}" * 80 + "}",
        r"\boxed{\left( \right] \begin{matrix} & \\ \end{pmatrix}}",
        "$" * 10_000,
        "\\" * 10_001,
        "\x00\x01\\boxed{\x00}",
        r"\boxed{😀}",
        r"\boxed{9^{9^{9^{9}}}}",
        None,
        42,
        [],
        [{"role": "assistant"}],
    ]
    out = reward(prompts=[""] * len(garbage), completions=garbage, answer=["1"] * len(garbage))
    assert len(out) == len(garbage)
    assert all(r in (0.0, 1.0) for r in out)
    assert reward.stats()["n_completions"] == len(garbage)


@given(st.text(max_size=200), st.sampled_from(["4", r"\frac{1}{2}", r"\pi", "x^2"]))
@settings(max_examples=25, deadline=None)
def test_reward_never_raises_on_random_text(text, reference):
    reward = MathVerifyReward(timeout_seconds=0.5)
    assert reward(prompts=[""], completions=[text], answer=[reference])[0] in (0.0, 1.0)


def test_reward_bad_references_score_zero():
    reward = MathVerifyReward()
    assert reward(prompts=["p"] * 2, completions=[r"\boxed{1}"] * 2, answer=[None, "  "]) == [0.0, 0.0]
    assert reward.stats()["n_reference_errors"] == 2


@allow_dropped_interrupts
def test_reward_timeout_counts_natural_slow_input():
    reward = MathVerifyReward(timeout_seconds=0.3)
    assert reward(prompts=["p"], completions=[SLOW_TO_PARSE], answer=["1"]) == [0.0]
    assert reward.stats()["n_timeouts"] == 1


@allow_dropped_interrupts
@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_reward_timeout_with_slow_verify(monkeypatch, where):
    def slow_verify(*args, **kwargs):
        # Short sleeps in a loop: interruptible both by a signal and by an asynchronous exception (which is only
        # delivered between bytecodes, never during one long sleep).
        end = time.monotonic() + 30
        while time.monotonic() < end:
            time.sleep(0.005)
        return True

    monkeypatch.setattr(rewards, "verify", slow_verify)
    reward = MathVerifyReward(timeout_seconds=0.2)

    def run():
        return reward(prompts=["p"], completions=[r"\boxed{3}"], answer=["3"])

    start = time.monotonic()
    assert (run() if where == "main thread" else _run_in_thread(run)) == [0.0]
    assert time.monotonic() - start < 2.0
    assert reward.stats()["n_timeouts"] == 1


def test_reward_concurrent_calls_match_sequential():
    items = []
    for i in range(200):
        kind = i % 5
        if kind == 0:
            items.append((rf"so \boxed{{{i}}}", str(i)))  # correct
        elif kind == 1:
            items.append((f"The answer is {i + 1}.", str(i)))  # wrong
        elif kind == 2:
            items.append((r"\boxed{\frac{1}{2}}", "0.5"))  # correct
        elif kind == 3:
            items.append(("no answer here, sorry " * 20, str(i)))  # no answer
        else:
            items.append(([{"role": "assistant", "content": rf"$\boxed{{{i}.0}}$"}], str(i)))  # correct
    sequential = [MathVerifyReward().score(c, r)[0] for c, r in items]

    reward = MathVerifyReward()
    batches = [items[i : i + 5] for i in range(0, len(items), 5)]

    def score_batch(batch):
        completions, references = zip(*batch)
        return reward(prompts=[""] * len(batch), completions=list(completions), answer=list(references))

    with ThreadPoolExecutor(8) as pool:
        concurrent = [r for batch_result in pool.map(score_batch, batches) for r in batch_result]

    assert concurrent == sequential
    assert sum(concurrent) == 120
    stats = reward.stats()
    assert stats["n_calls"] == len(batches)
    assert stats["n_completions"] == 200
    assert stats["n_correct"] == 120
    assert stats["n_no_answer"] == 40
    assert stats["n_timeouts"] == stats["n_parse_errors"] == 0


def test_reward_pickles():
    reward = MathVerifyReward(answer_column="gt", timeout_seconds=2.0)
    reward(prompts=["p"], completions=[r"\boxed{1}"], gt=["1"])
    clone = pickle.loads(pickle.dumps(reward))
    assert clone.__name__ == "math_verify_reward"
    assert clone.stats() == reward.stats()
    assert clone(prompts=["p"], completions=[r"\boxed{2}"], gt=["2"]) == [1.0]
    assert isinstance(clone._lock, type(threading.Lock()))
