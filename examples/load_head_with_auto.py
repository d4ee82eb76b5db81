"""A head repo is enough to get base + head back through transformers' Auto classes.

python examples/load_head_with_auto.py --output-dir outputs/auto-demo-head
"""

import argparse

import torch
from transformers import AutoModelForCausalLM

import logitmlp_hf  # noqa: F401  (registers the "logitmlp" model type with the Auto classes)
from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.hub.offline_model import load_embedded_model


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", default="outputs/auto-demo-head")
    args = parser.parse_args(argv)

    base, tokenizer = load_embedded_model()
    LogitMLPForCausalLM.from_base_model(base, init_std=0.02).save_pretrained(args.output_dir)

    # config.json names the base (HuggingFaceTB/SmolLM2-135M-Instruct, here served by the offline copy)
    model = AutoModelForCausalLM.from_pretrained(args.output_dir, dtype=torch.bfloat16)
    print(
        type(model).__name__, "on", model.config.base_model_name_or_path, "| base dtype:", model.get_base_model().dtype
    )
    model.print_trainable_parameters()
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**inputs, do_sample=False, max_new_tokens=8)
    print(tokenizer.decode(out[0], skip_special_tokens=True))
    return model


if __name__ == "__main__":
    main()
