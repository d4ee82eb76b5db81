"""Stack a head on a LoRA-tuned base: the adapter is loaded with PEFT and stays frozen under the head.

The adapter here is freshly initialised with non-zero weights so the example runs offline in seconds; use the LoRA
of a real RLVR run (TRL's GRPOTrainer with `peft_config`) the same way.

    python examples/stack_head_on_lora.py --work-dir outputs/stacking-demo
"""

import argparse
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.hub.offline_model import load_embedded_model


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-dir", default="outputs/stacking-demo")
    args = parser.parse_args(argv)
    work = Path(args.work_dir)

    base, tokenizer = load_embedded_model()
    torch.manual_seed(0)
    lora = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    lora.save_pretrained(work / "lora")  # adapter_config.json names HuggingFaceTB/SmolLM2-135M-Instruct as its base
    LogitMLPForCausalLM.from_base_model(load_embedded_model()[0], init_std=0.02).save_pretrained(work / "head")

    stacked = LogitMLPForCausalLM.from_pretrained(work / "head", base_model=str(work / "lora"))
    print("base:", type(stacked.get_base_model()).__name__, "| adapter:", stacked.config.base_adapter_name_or_path)
    trainable = [n for n, p in stacked.named_parameters() if p.requires_grad]
    print(f"trainable tensors: {trainable}")
    inputs = tokenizer("What is 3 + 4?", return_tensors="pt")
    out = stacked(**inputs, output_base_logits=True)
    print(f"max |warped − base| logit at the last position: {(out.logits - out.base_logits)[0, -1].abs().max():.3f}")
    return stacked


if __name__ == "__main__":
    main()
