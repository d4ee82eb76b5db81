"""Shared fixtures: tiny random causal LMs built from a config in code (no download, ever)."""

from __future__ import annotations

import os


# Nothing in the test suite may reach the Hub; tests that exercise Hub code use the local server in hub_server.py.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM  # noqa: E402


VOCAB = 256
HIDDEN = 48


def tiny_llama(seed: int = 0, hidden_size: int = HIDDEN, vocab_size: int = VOCAB) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


def tiny_qwen3(seed: int = 0) -> Qwen3ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen3Config(
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,
        vocab_size=VOCAB,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    return Qwen3ForCausalLM(config).eval()


def scramble_head(head: torch.nn.Module, seed: int = 1, scale: float = 0.5) -> None:
    """Give a head large random output weights so its warp is far from the identity."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.fc_out.weight.copy_(torch.randn(head.fc_out.weight.shape, generator=gen) * scale)
        head.fc_out.bias.copy_(torch.randn(3, generator=gen))


def identity_head(head: torch.nn.Module) -> None:
    """Raw outputs exactly 0 ⇒ s1 = s2 = 1 ⇒ f(ℓ) = ℓ bit for bit."""
    with torch.no_grad():
        head.fc_out.weight.zero_()
        head.fc_out.bias.zero_()


@pytest.fixture
def llama():
    return tiny_llama()


@pytest.fixture
def base_dir(tmp_path):
    """A tiny Llama saved as a local checkpoint, so heads can name it as their base and reload it offline."""
    path = tmp_path / "tiny-llama"
    tiny_llama().save_pretrained(path)
    return path


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def char_tokenizer():
    """A character-level fast tokenizer with a chat template, built in code (vocab < 256, fits the tiny models)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
    chars = [chr(c) for c in range(32, 127)]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="?"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="<|end|>", padding_side="left"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# ``pytest -q`` prints one dot per finished test, so while one of the slow tests runs (the main job's --quick run takes
# minutes) the terminal would sit silent. A test that runs longer than this says so, every this many seconds.
TEST_HEARTBEAT_S = float(os.environ.get("LOGITMLP_TEST_HEARTBEAT_S", "20"))


class _TestHeartbeat:
    """Writes "still running <test> (N s)" while a test runs longer than :data:`TEST_HEARTBEAT_S`.

    It writes to a duplicate of the terminal's file descriptor taken at configure time: during a test pytest points
    fd 1 at its capture file, and a thread must not suspend capturing behind the test's back.
    """

    def __init__(self, fd: int, interval: float) -> None:
        self._fd = fd
        self._interval = interval

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        import threading
        import time

        done = threading.Event()
        start = time.monotonic()

        def beat() -> None:
            while not done.wait(self._interval):
                line = f"\n    still running {item.nodeid} ({time.monotonic() - start:.0f} s)\n"
                os.write(self._fd, line.encode())

        thread = threading.Thread(target=beat, name="pytest-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker's stdout is not the user's terminal
        return
    try:
        fd = os.dup(1)
    except OSError:
        return
    config.add_cleanup(lambda: os.close(fd))
    config.pluginmanager.register(_TestHeartbeat(fd, TEST_HEARTBEAT_S), "logitmlp-test-heartbeat")
