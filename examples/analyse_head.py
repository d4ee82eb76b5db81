"""Where does a head change the base distribution? Per-token analysis of a head on its own arithmetic rollouts.

Samples rollouts from the warp, teacher-forces them through base + head and writes the report (KL concentration,
KL by base top-1 probability, effective temperature T*, top-6 candidates at the highest-KL positions, the words
after active positions) as Markdown, HTML and PNGs. `logitmlp analyze` does the same from the command line, also on
saved rollouts (`logitmlp eval --save-rollouts`).

    python examples/analyse_head.py                                   # an untrained head with visible noise
    python examples/analyse_head.py --head outputs/reproduce/heads/pass1 --n-problems 16
"""

import argparse
from pathlib import Path

import torch

from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.analysis.per_token import analyze_rollouts, generate_arithmetic_rollouts
from logitmlp_hf.analysis.report import write_report
from logitmlp_hf.hub.offline_model import load_embedded_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", default=None, help="head repo (dir or Hub id); default: an untrained head")
    parser.add_argument("--n-problems", type=int, default=4)
    parser.add_argument("--n-samples", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/analyse-head"))
    args = parser.parse_args(argv)

    base, tokenizer = load_embedded_model()
    if args.head:
        model = LogitMLPForCausalLM.from_pretrained(args.head, base_model=base)
    else:
        torch.manual_seed(0)
        model = LogitMLPForCausalLM.from_base_model(base, init_std=0.05)  # untrained, but visibly not the identity
    rollouts = generate_arithmetic_rollouts(model, tokenizer, args.n_problems, args.n_samples, args.max_new_tokens)
    analysis = analyze_rollouts(model, tokenizer, rollouts)
    report = write_report(analysis, tokenizer, args.output_dir, title="LogitMLP head analysis")
    summary = analysis.summary()
    print(
        f"{summary['n_tokens']} tokens, {summary['n_active']} active (KL > {summary['active_kl']:g}); "
        f"median T* {summary['effective_temperature']['median']:.3g}; "
        f"half the KL on {summary['concentration']['percent_for_half']:.3g}% of positions"
    )
    print(f"report: {report}")
    return summary


if __name__ == "__main__":
    main()
