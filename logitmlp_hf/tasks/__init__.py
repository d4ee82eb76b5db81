"""Verifiable tasks: problem sets and their rewards.

- :mod:`.data` — the arithmetic task (generated offline), MATH-500 / GSM8K / DAPO-Math loaders, prompts;
- :mod:`.rewards` — answer extraction and math-verify grading with a time limit (:class:`MathVerifyReward`);
- :mod:`.benchmark_data` — the vendored MATH-500 and GSM8K test sets.
"""
