"""One registry of head types: every per-token head type, built-in or added in a test, through every path.

The paths: the transformers wrapper, the Auto classes (``AutoConfig``, ``AutoModel``, ``AutoModelForCausalLM``), the
head-repo format and its card, the logits processor, the trainer's ``head_type``, per-token analysis, checkpoint
detection, and the per-step computation of the vLLM model class (``apply_head``, which needs no vLLM) with its inline
head config. The test head type below lives outside the package and is added with one ``register_decoding_head``
call, as the README's "Adding a head type" says.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import char_tokenizer, tiny_llama
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from logitmlp_hf import (
    DecodingHeadConfig,
    DecodingHeadForCausalLM,
    DecodingHeadLogitsProcessor,
    LogitMLPLogitsProcessor,
    SequenceAdapterForCausalLM,
    load_decoding_head_model,
    registered_head_types,
)
from logitmlp_hf.features import LogitStatistics
from logitmlp_hf.heads import DecodingHead, decoding_head_type, register_decoding_head
from logitmlp_hf.heads.base import Decisions, DecodingContext


# ------------------------------------------------------------------------------ a head type outside the package
@strict
class PerTokenTemperatureConfig(DecodingHeadConfig):
    """A test head type: one temperature per token from ``h`` and the logit statistics."""

    model_type = "test_per_token_temperature"

    max_log_temperature: float = 1.0

    @property
    def num_head_parameters(self) -> int:
        return self.hidden_size + 3 + 1


class PerTokenTemperatureHead(DecodingHead):
    config_class = PerTokenTemperatureConfig
    weights_name = "test_per_token_temperature.safetensors"

    def __init__(self, config: PerTokenTemperatureConfig) -> None:
        super().__init__(config)
        self.bound = config.max_log_temperature
        self.proj = nn.Linear(config.hidden_size + 3, 1)
        nn.init.normal_(self.proj.weight, std=0.05)
        nn.init.zeros_(self.proj.bias)

    def decide(
        self, hidden_states: torch.Tensor, stats: LogitStatistics, context: DecodingContext | None = None
    ) -> Decisions:
        x = torch.cat((hidden_states.float(), torch.stack((stats.max, stats.mean, stats.std), -1)), -1)
        return {"temperature": (self.bound * torch.tanh(self.proj(x).squeeze(-1))).exp()}

    def sampling_logits(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        return logits.float() / decisions["temperature"].unsqueeze(-1)


class PerTokenTemperatureForCausalLM(DecodingHeadForCausalLM):
    config_class = PerTokenTemperatureConfig
    head_class = PerTokenTemperatureHead
    head_attribute = "temperature_head"


@pytest.fixture(scope="module")
def test_head_type(tmp_path_factory):
    template = tmp_path_factory.mktemp("cards") / "card.md"
    template.write_text("A head that picks a temperature per token (bound {{ config.max_log_temperature }}).\n")
    return register_decoding_head(
        PerTokenTemperatureForCausalLM, card_template=str(template), card_title="A **per-token temperature** head"
    )


PER_TOKEN_TYPES = ["logitmlp", "autodeco", "decoding_adapter", "test_per_token_temperature"]


def _model(model_type: str, seed: int = 0) -> DecodingHeadForCausalLM:
    torch.manual_seed(seed)
    model = decoding_head_type(model_type).model_class.from_base_model(tiny_llama())
    with torch.no_grad():  # away from the near-identity init, so that every path has something to get wrong
        for p in model.decoding_head.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def _ids(seed: int = 0, rows: int = 2, length: int = 7) -> torch.Tensor:
    return torch.randint(3, 200, (rows, length), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------- the table
def test_registry_lists_types_and_their_facts(test_head_type):
    assert {"logitmlp", "autodeco", "decoding_adapter", "sequence_adapter"} <= set(registered_head_types())
    assert "sequence_adapter" not in registered_head_types(trainable=True)
    assert "sequence_adapter" not in registered_head_types(per_token=True)
    assert test_head_type.model_type in registered_head_types(trainable=True, per_token=True)
    assert decoding_head_type("logitmlp").weights_name == "logitmlp_head.safetensors"
    with pytest.raises(ValueError, match="unknown decoding head type 'nope'; known: .*logitmlp"):
        decoding_head_type("nope")
    for name in registered_head_types():
        head_type = decoding_head_type(name)
        assert isinstance(AutoConfig.for_model(name), head_type.config_class)
        assert head_type.head_class.config_class is head_type.config_class


def test_registration_refuses_a_wrapper_whose_head_reads_another_config():
    class Mismatched(DecodingHeadForCausalLM):
        config_class = DecodingHeadConfig
        head_class = PerTokenTemperatureHead

    with pytest.raises(TypeError, match="built from PerTokenTemperatureConfig"):
        register_decoding_head(Mismatched, card_template="decoding_head.md")


# ------------------------------------------------------------------------------------- every path, every type
@pytest.mark.parametrize("model_type", PER_TOKEN_TYPES)
def test_wrapper_processor_and_vllm_step_agree(model_type, test_head_type):
    """The wrapper's logits, the logits processor's scores and vLLM's compute_logits step are one function."""
    from logitmlp_hf.integrations.vllm.model import apply_head, check_runs_in_vllm

    model = _model(model_type)
    ids = _ids()
    with torch.no_grad():
        out = model(ids, output_base_logits=True, output_decisions=True)
        wrapped = out.logits[:, -1]
        base = model.get_base_model()
        with DecodingHeadLogitsProcessor(model.decoding_head, base, config=model.config) as processor:
            base_logits = base(ids).logits[:, -1]
            processed = processor(ids, base_logits)
        captured = {}
        handle = base.get_output_embeddings().register_forward_pre_hook(lambda m, a: captured.update(h=a[0]))
        base(ids)
        handle.remove()
        in_vllm = apply_head(model.decoding_head, captured["h"][:, -1], base_logits.clone())
    moved = (out.logits.log_softmax(-1) - out.base_logits.float().log_softmax(-1)).abs().amax()
    assert out.decisions and moved > 1e-3  # the head acts somewhere, so agreement below is not the base's
    assert torch.allclose(processed, wrapped, atol=1e-5)
    assert torch.allclose(in_vllm, wrapped, atol=1e-5)
    check_runs_in_vllm(model.decoding_head)


@pytest.mark.parametrize("model_type", PER_TOKEN_TYPES)
def test_head_repo_round_trip_through_every_auto_class(model_type, test_head_type, tmp_path):
    model = _model(model_type)
    base_dir = tmp_path / "base"
    model.get_base_model().save_pretrained(base_dir)
    model.config.base_model_name_or_path = str(base_dir)
    model.save_pretrained(tmp_path / "head", metrics={"best@8": 0.5})
    head_type = decoding_head_type(model_type)
    assert sorted(p.name for p in (tmp_path / "head").iterdir()) == sorted(
        ["README.md", "config.json", head_type.weights_name]
    )
    card = (tmp_path / "head" / "README.md").read_text()
    assert head_type.model_class.__name__ in card and "best@8" in card
    if head_type.card_title is not None:
        assert head_type.card_title in card
    ids = _ids(1)
    with torch.no_grad():
        expected = model(ids).logits
    loaded = [
        AutoModelForCausalLM.from_pretrained(tmp_path / "head"),
        AutoModel.from_pretrained(tmp_path / "head"),
        load_decoding_head_model(tmp_path / "head"),
        DecodingHeadForCausalLM.from_pretrained(tmp_path / "head"),
    ]
    for other in loaded:
        assert type(other) is head_type.model_class
        with torch.no_grad():
            assert torch.allclose(other(ids).logits, expected, atol=1e-6)
    with LogitMLPLogitsProcessor.from_pretrained(tmp_path / "head", model.get_base_model()) as processor:
        assert type(processor.head) is head_type.head_class


@pytest.mark.parametrize("model_type", PER_TOKEN_TYPES)
def test_per_token_analysis_reads_every_type(model_type, test_head_type):
    from logitmlp_hf.analysis.per_token import analyze_rollouts

    model = _model(model_type)
    rollouts = [
        {"prompt_ids": [5, 6, 7], "completion_ids": [8, 9, 10, 11]},
        {"prompt_ids": [5, 6], "completion_ids": [12, 13]},
    ]
    analysis = analyze_rollouts(model, char_tokenizer(), rollouts, batch_size=2)
    assert len(analysis) == 6 and np.isfinite(analysis.kl).all() and (analysis.kl > 0).any()
    assert analysis.decisions and all(len(v) == 6 for v in analysis.decisions.values())


def test_processor_refuses_heads_it_cannot_run():
    base = tiny_llama()
    sequence = SequenceAdapterForCausalLM.from_base_model(base, strategies=[{"temperature": 0.7}])
    with pytest.raises(ValueError, match="decides once per sequence"):
        DecodingHeadLogitsProcessor(sequence.decoding_head, base)
    budget = decoding_head_type("decoding_adapter").model_class.from_base_model(base, budget_conditioning=True)
    with pytest.raises(ValueError, match="conditions on the token budget"):
        DecodingHeadLogitsProcessor(budget.decoding_head, base)


def test_trainer_trains_a_registered_type_and_resumes_it(test_head_type, tmp_path):
    from test_grpo_trainer import make_trainer

    from logitmlp_hf.trainer.checkpoints import last_complete_checkpoint

    trainer = make_trainer(
        tmp_path,
        save_strategy="steps",
        save_steps=2,
        head_init_std=None,  # the test type has no init_std field
        head_type=test_head_type.model_type,
        head_config=json.dumps({"max_log_temperature": math.log(4)}),
    )
    assert type(trainer.model) is PerTokenTemperatureForCausalLM
    assert trainer.model.config.max_log_temperature == pytest.approx(math.log(4))
    before = {n: p.clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])]
    assert changed and all(n.startswith("temperature_head.") for n in changed)
    checkpoint = last_complete_checkpoint(tmp_path / "out")
    assert checkpoint is not None and checkpoint.endswith("checkpoint-2")
    assert (tmp_path / "out" / "checkpoint-2" / test_head_type.weights_name).is_file()


def test_vllm_inline_spec_carries_a_registered_type(test_head_type):
    from logitmlp_hf.integrations.vllm.model import VLLMHeadSpec

    model = _model(test_head_type.model_type)
    config = VLLMHeadSpec(config=model.config.to_diff_dict()).load_config()
    assert type(config) is PerTokenTemperatureConfig and config.hidden_size == model.config.hidden_size
