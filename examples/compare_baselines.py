"""Compare a LogitMLP head with fixed temperatures and the baseline decoders, on the same problems and seeds.

Every policy samples ``--n-samples`` completions for each of ``--n-problems`` held-out arithmetic problems; the
table has the source's Table-1 columns with bootstrap CIs. Baselines are `LogitsProcessor`s from
`logitmlp_hf.evaluation.baselines`, so the same objects work with a plain `model.generate(..., logits_processor=[...])`.

    python examples/compare_baselines.py                                  # a fresh (near-identity) head
    python examples/compare_baselines.py --head outputs/reproduce/heads/passk --n-problems 50 --n-samples 8
"""

import argparse

from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.evaluation.policies import DecodingPolicy, parse_policy
from logitmlp_hf.evaluation.runner import evaluate, load_eval_dataset
from logitmlp_hf.hub.offline_model import load_embedded_model


POLICIES = [
    "temperature:0.4",
    "temperature:1.0",
    "temperature:1.0:top_p=0.9,name=top-p 0.9",  # transformers' own TopPLogitsWarper
    "baseline:entropy_guided:t_low=0.4,t_high=1.0,name=entropy-guided (0.4/1.0)",
    "baseline:annealed:t_start=1.2,t_end=0.3,horizon=32,name=annealed 1.2→0.3",
    "baseline:multi_temperature:temperatures=0.4|0.7|1.0,name=multi-T (0.4/0.7/1.0)",
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", default=None, help="head repo (dir or Hub id); default: a fresh head")
    parser.add_argument("--n-problems", type=int, default=16)
    parser.add_argument("--n-samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    base, tokenizer = load_embedded_model()
    if args.head:
        model = LogitMLPForCausalLM.from_pretrained(args.head, base_model=base)
    else:
        model = LogitMLPForCausalLM.from_base_model(base)
    problems = load_eval_dataset("arithmetic", args.n_problems, arithmetic_seed=args.seed)
    # The model's own head (kind="head", no path), then the base under each baseline policy.
    policies = [DecodingPolicy(name="LogitMLP head", kind="head")] + [parse_policy(p) for p in POLICIES]
    results = evaluate(
        model,
        tokenizer,
        problems,
        policies,
        n_samples=args.n_samples,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        n_resamples=200,
        progress=False,
    )
    print(results.format_table(["best@k", "mean_accuracy", "worst@k", "answer_entropy", "uniq/k"]))
    return results


if __name__ == "__main__":
    main()
