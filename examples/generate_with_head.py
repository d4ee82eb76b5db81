"""Generate with a LogitMLP head on the embedded SmolLM2, next to the base model with the same seed.

python examples/generate_with_head.py                       # a fresh (near-identity) head
python examples/generate_with_head.py --head outputs/demo-head --num-samples 4
"""

import argparse

import torch

from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.hub.offline_model import load_embedded_model


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--head", default=None, help="head repo (dir or Hub id); default: a fresh head")
    parser.add_argument("--prompt", default="What is 17 + 25?")
    parser.add_argument("--num-samples", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args(argv)

    base, tokenizer = load_embedded_model()
    if args.head:
        model = LogitMLPForCausalLM.from_pretrained(args.head, base_model=base)
    else:
        model = LogitMLPForCausalLM.from_base_model(base)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": args.prompt}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer(text, return_tensors="pt")
    kwargs = dict(do_sample=True, num_return_sequences=args.num_samples, max_new_tokens=args.max_new_tokens)
    torch.manual_seed(0)
    warped = model.generate(**inputs, **kwargs)
    with model.disable_head():
        torch.manual_seed(0)
        plain = model.generate(**inputs, **kwargs)
    n = inputs["input_ids"].shape[1]
    for i in range(args.num_samples):
        print(f"[{i}] base:   {tokenizer.decode(plain[i, n:], skip_special_tokens=True)!r}")
        print(f"[{i}] warped: {tokenizer.decode(warped[i, n:], skip_special_tokens=True)!r}")
    return warped


if __name__ == "__main__":
    main()
