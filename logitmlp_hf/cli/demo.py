"""``logitmlp demo``: a LogitMLP head on the embedded SmolLM2, base vs warped samples, and where the head acts.

Runs offline. The head is the trained one shipped in the package (:func:`~logitmlp_hf.hub.offline_model.demo_head_dir`)
unless ``--head`` names another or ``--fresh`` asks for an untrained one. For each arithmetic prompt it samples from the base and from the warp with the same seed, then
teacher-forces the warped sample through the wrapper to show, at the positions where the warp differs most from the
base (largest KL(warp‖base)), the token, the head's ``(s1, s2, b)`` and the base's top-1 probability. The head is
written to ``--output-dir`` as a head-only repo (config, safetensors, model card).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..features import warp_kl
from ..heads.registry import decoding_head_type
from ..hub.offline_model import demo_head_dir, load_embedded_model
from ..modeling import DecodingHeadForCausalLM, load_decoding_head_model
from .base import Command


logger = logging.getLogger(__name__)

DEFAULT_PROMPTS = ("What is 14 + 15?", "What is 7 + 18?", "What is 13 + 6?")


@dataclass
class PositionReport:
    """What the warp did at one generated position."""

    position: int
    token: str
    kl: float
    s1: float
    s2: float
    b_below_max: float
    base_top1: float


def _sample(model: DecodingHeadForCausalLM, inputs: dict, seed: int, max_new_tokens: int, pad: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.generate(**inputs, do_sample=True, temperature=1.0, max_new_tokens=max_new_tokens, pad_token_id=pad)


def analyse_sequence(
    model: DecodingHeadForCausalLM, tokenizer, sequence: torch.Tensor, prompt_len: int, top: int
) -> tuple[list[PositionReport], float]:
    """Teacher-force ``sequence`` and report the ``top`` generated positions with the largest KL(warp‖base)."""
    ids = sequence.unsqueeze(0)
    with torch.no_grad():
        out = model(ids, output_base_logits=True, output_warp_params=True)
    # logits at t predict token t+1: positions prompt_len-1 … end-1 produced the generated tokens
    span = slice(prompt_len - 1, ids.shape[1] - 1)
    kl = warp_kl(out.logits[0, span], out.base_logits[0, span])
    base_probs = out.base_logits[0, span].float().softmax(-1)
    row_max = out.base_logits[0, span].float().amax(-1)
    order = torch.argsort(kl, descending=True)[:top]
    reports = [
        PositionReport(
            position=int(i),
            token=tokenizer.decode(ids[0, prompt_len + int(i)]),
            kl=float(kl[i]),
            s1=float(out.s1[0, span][i]),
            s2=float(out.s2[0, span][i]),
            b_below_max=float(row_max[i] - out.b[0, span][i]),
            base_top1=float(base_probs[i].max()),
        )
        for i in order
    ]
    return reports, float(kl.mean())


class DemoCommand(Command):
    def __init__(self) -> None:
        super().__init__(
            "demo",
            "a head on the embedded SmolLM2: base vs warped samples and per-token (s1, s2, b)",
            "For each prompt, samples from the base and from the head (by default the trained demo head shipped in\n"
            "the package) with the same seed, then shows the generated positions where the head changes the\n"
            "distribution most (KL(warp || base)) with its (s1, s2, b) there. The head is written to --output-dir\n"
            "as a head-only repo.",
        )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--head",
            default=None,
            help="head repo (dir or Hub id) to load; default: the trained pass@4 head shipped in the package "
            "(trainers/make_demo_head.py; its card has the settings)",
        )
        parser.add_argument("--fresh", action="store_true", help="show a fresh, untrained head instead")
        parser.add_argument(
            "--init-std",
            type=float,
            default=None,
            help="with --fresh: std of the head's output layer (default: the config's 2.5e-4, i.e. near identity; "
            "e.g. 0.05 shows a visibly active untrained head)",
        )
        parser.add_argument("--prompts", nargs="+", default=list(DEFAULT_PROMPTS), help="questions to answer")
        parser.add_argument("--max-new-tokens", type=int, default=40, help="completion length limit")
        parser.add_argument("--top-positions", type=int, default=4, help="positions to show per prompt")
        parser.add_argument("--seed", type=int, default=0, help="sampling seed (the same for base and head)")
        parser.add_argument(
            "--output-dir", type=Path, default=Path("outputs/demo-head"), help="where the head repo is written"
        )

    def run(self, args: argparse.Namespace) -> int:
        if args.head and args.fresh:
            raise SystemExit("give --head or --fresh, not both")
        if args.init_std is not None and not args.fresh:
            raise SystemExit("--init-std sets up a fresh head: add --fresh")
        print("Loading the embedded SmolLM2-135M-Instruct (first run converts it from GGUF, ~15 s) ...", flush=True)
        base, tokenizer = load_embedded_model()
        if not args.fresh:
            head = args.head or str(demo_head_dir())
            model = load_decoding_head_model(head, base_model=base)
            if not hasattr(model.config, "slope_bound"):
                raise SystemExit(
                    f"{head} is a {model.config.model_type!r} head; the demo shows LogitMLP heads' (s1, s2, b)"
                )
            origin = (
                f"head loaded from {args.head}"
                if args.head
                else f"the demo head shipped in the package ({model.config.objective}, trained by "
                f"trainers/make_demo_head.py; settings in {Path(head) / 'README.md'})"
            )
        else:
            torch.manual_seed(args.seed)
            kwargs = {} if args.init_std is None else {"init_std": args.init_std}
            model = decoding_head_type("logitmlp").model_class.from_base_model(base, **kwargs)
            origin = f"fresh head (init_std={model.config.init_std}; untrained, so the warp is close to the identity)"
        model.eval()
        trainable, total = model.get_nb_trainable_parameters()
        print(f"{origin}\nhead parameters: {trainable:,} ({100 * trainable / total:.3f}% of {total:,})\n")

        pad = tokenizer.pad_token_id
        for prompt in args.prompts:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            inputs = tokenizer(text, return_tensors="pt")
            prompt_len = inputs["input_ids"].shape[1]
            with model.disable_head():
                base_seq = _sample(model, inputs, args.seed, args.max_new_tokens, pad)[0]
            warp_seq = _sample(model, inputs, args.seed, args.max_new_tokens, pad)[0]
            print(f"=== {prompt}")
            print(
                f"  base   (T=1, seed {args.seed}): {tokenizer.decode(base_seq[prompt_len:], skip_special_tokens=True)!r}"
            )
            print(
                f"  warped (T=1, seed {args.seed}): {tokenizer.decode(warp_seq[prompt_len:], skip_special_tokens=True)!r}"
            )
            reports, mean_kl = analyse_sequence(model, tokenizer, warp_seq, prompt_len, args.top_positions)
            print(f"  mean KL(warp‖base) over the warped sample: {mean_kl:.2e} nats; most-changed positions:")
            print(f"  {'pos':>4} {'token':>12} {'KL':>9} {'s1':>6} {'s2':>6} {'max-b':>6} {'base p1':>8}")
            for r in reports:
                print(
                    f"  {r.position:>4} {r.token!r:>12} {r.kl:>9.2e} {r.s1:>6.3f} {r.s2:>6.3f} "
                    f"{r.b_below_max:>6.2f} {r.base_top1:>8.3f}"
                )
            print()
        model.save_pretrained(args.output_dir)
        size = sum(f.stat().st_size for f in Path(args.output_dir).iterdir())
        print(
            f"Head repo written to {args.output_dir} ({size / 1e6:.2f} MB: config.json, logitmlp_head.safetensors, "
            f"README.md). Load it with AutoModelForCausalLM.from_pretrained({str(args.output_dir)!r})."
        )
        return 0
