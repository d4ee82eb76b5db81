"""push_to_hub / from_pretrained(<repo id>) through huggingface_hub's real client, against a local Hub server."""

import torch
from conftest import scramble_head, tiny_llama
from hub_server import local_hub  # noqa: F401  (fixture)
from test_modeling import _batch
from transformers import AutoModelForCausalLM

from logitmlp_hf import LogitMLPForCausalLM, LogitMLPHead


def test_push_then_load_by_repo_id(local_hub):  # noqa: F811
    tiny_llama().push_to_hub("user/tiny-llama")  # the base lives on the (local) Hub too
    base = AutoModelForCausalLM.from_pretrained("user/tiny-llama")
    model = LogitMLPForCausalLM.from_base_model(base, objective="pass@1")
    scramble_head(model.logitmlp_head)
    assert model.config.base_model_name_or_path == "user/tiny-llama"

    commit = model.push_to_hub("user/tiny-llama-logitmlp", metrics={"mean_acc": 0.42})
    assert commit.oid
    files = local_hub.files("user/tiny-llama-logitmlp")
    assert sorted(files) == ["README.md", "config.json", LogitMLPHead.weights_name]  # head only, no base weights
    card = files["README.md"].decode()
    assert "base_model: user/tiny-llama" in card and "| mean_acc | 0.42 |" in card
    assert 'from_pretrained("user/tiny-llama-logitmlp")' in card

    loaded = AutoModelForCausalLM.from_pretrained("user/tiny-llama-logitmlp")
    assert isinstance(loaded, LogitMLPForCausalLM)
    ids, mask = _batch()
    assert torch.equal(loaded(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)
    # the head repo was read at its own revision, the base at its own: no base files fetched from the head repo
    head_gets = [p for m, p in local_hub.requests if m == "GET" and "tiny-llama-logitmlp/resolve" in p]
    assert not any("model.safetensors" in p and LogitMLPHead.weights_name not in p for p in head_gets)


def test_push_to_a_branch_and_load_that_revision(local_hub):  # noqa: F811
    tiny_llama().push_to_hub("user/tiny-llama")
    model = LogitMLPForCausalLM.from_base_model(AutoModelForCausalLM.from_pretrained("user/tiny-llama"))
    model.push_to_hub("user/head")
    scramble_head(model.logitmlp_head)
    model.push_to_hub("user/head", revision="v2")
    main = LogitMLPForCausalLM.from_pretrained("user/head")
    v2 = LogitMLPForCausalLM.from_pretrained("user/head", revision="v2")
    assert torch.equal(v2.logitmlp_head.fc_out.weight, model.logitmlp_head.fc_out.weight)
    assert not torch.equal(main.logitmlp_head.fc_out.weight, model.logitmlp_head.fc_out.weight)
