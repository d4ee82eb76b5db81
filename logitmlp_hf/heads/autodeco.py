"""AutoDeco (arXiv:2510.26697): a head that predicts a temperature and a top-p for every token.

What follows the released code (``Zacks917/AutoDeco``: ``model/templlm_auto.py`` for the heads and the loss, and its
vLLM fork's ``gpu_model_runner.py`` for how a user's settings combine with them at inference):

- temperature head ``Linear(d → w) → ReLU → Linear(w → 1) → sigmoid × max_temperature`` (``w = 256``, max 2);
- top-p head ``Linear(d + 5 → w) → ReLU → Linear(w → 1) → sigmoid`` on ``[h; T̂; max prob, entropy, variance,
  top-5 mass]``, the four statistics of ``q = softmax(ℓ/(T̂ + 1e-8))`` with ``T̂`` detached (entropy
  ``−Σ q·log(q + 1e-8)``, unbiased variance over the vocabulary): ``top_p_features="prob_stats"``, the released
  default (its ``use_enhanced_features=False`` variant, ``[h; T̂]``, is ``top_p_features="temperature"``);
- the user's settings *scale* the head's predictions (``sampling_composition="released"``): with the user's
  temperature ``T_u`` and top-p ``p_u``, tokens are sampled at ``T = T̂·T_u`` with one top-p ``p = min(1, p̂·p_u)``
  computed at ``T`` (``T_u = 0`` is greedy);
- the differentiable top-p used for the policy's log-prob: with ``q = softmax(ℓ/T̂)`` sorted in decreasing order and
  ``c`` its *inclusive* cumulative sum, the mask ``m = exp(−α·ReLU(c − p̂))`` (``α = 30``) and
  ``p̃ = q·m / Σ q·m``. ``T̂`` is not detached there, so the temperature head also learns from it;
- checkpoints: a released head directory (``config.json`` with ``use_enhanced_features``, and
  ``autodeco_heads.safetensors`` with ``temp_head.mlp.{0,2}.*`` and ``top_p_head.mlp.{0,2}.*``, or the
  ``model.safetensors`` its split script writes) loads as it is, converted on load
  (:meth:`AutoDecoHead.convert_state_dict`, :meth:`AutoDecoConfig.from_dict`; its ``enable_*_head`` flags are not
  read: both heads are loaded and run, as the released transformers model does).

Where this implementation differs, and why:

- ``sampling_composition="sequential"`` keeps this package's earlier rule: the head samples at ``T̂`` with top-p
  ``p̂``, and ``generate``'s temperature/top-k/top-p/min-p warpers then act on that distribution, as they do after
  every other head. Configs saved before the field existed load with it.
- ``top_p_features="logit_spread"`` (``[h; T̂, (max ℓ − mean ℓ)/T̂, std ℓ/T̂]``, ``d + 3`` inputs) is this package's
  earlier top-p input, computable from the cached per-token statistics alone; configs saved before the field existed
  load with it. With ``"prob_stats"`` the trainer's update decides chunk by chunk where it recomputes the logits.
- The user's top-k and min-p (and every other warper) act after the head's rule, as ``generate``'s warpers do; the
  released vLLM fork applies them at ``T`` before its top-p.
- ``T̂`` is clamped below at ``min_temperature`` (0.01) where it samples and in the policy (the released training
  clamps at 0.01 too; its inference does not clamp, vLLM samples greedily below 1e-5); the top-p head's input is the
  unclamped ``T̂``, as released.
- The top-p head's statistics are computed in float32 from the logits the head is given (the model's output logits,
  after any soft-capping; the released code uses the ``lm_head`` output in the model's dtype).
- In vLLM (:mod:`logitmlp_hf.integrations.vllm`) the head's rule is applied in ``compute_logits``, which does not
  see a request's sampling parameters; vLLM's sampler then applies the request's temperature and top-p after it, so
  the released composition holds there only at ``temperature=1, top_p=1`` (the released evaluation's setting).
- Training is RLVR with :class:`~logitmlp_hf.DecodingHeadGRPOTrainer` (as every head in this package), with the soft
  top-p above as the policy log-prob, not AutoDeco's supervised cross-entropy on reference tokens. With the released
  composition TRL's sampling temperature scales ``T̂`` in the policy exactly as it does in ``generate``.
- ``generate()`` samples with the *hard* rule (transformers' ``TopPLogitsWarper`` semantics, per row), as AutoDeco
  does at inference. The relaxation differs from it near the nucleus edge and, because the cumulative sum is
  inclusive, also penalises the top token when its probability alone exceeds ``p̂``; the trainer's importance
  ratios are therefore between relaxed policies, which is what the source trains.
- The heads start near "no change" (``T̂ ≈ 1``, ``p̂ ≈ init_top_p = 0.98``), so RL starts from the base model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import nn

from ..errors import HeadCheckpointError, InvalidHeadConfigError
from ..features import LogitStatistics
from ..modeling import DecodingHeadForCausalLM
from ..sampling_rules import SamplingRule, temperature_logits, top_p_logits
from .base import Decisions, DecodingContext, DecodingHead
from .configuration import DecodingHeadConfig, check_choice, check_number
from .registry import register_decoding_head


TOP_P_FEATURES = {"prob_stats": 5, "temperature": 1, "logit_spread": 3}
"""What the top-p head reads besides ``h``, and how many numbers that is (see the module docstring)."""
SAMPLING_COMPOSITIONS = ("released", "sequential")
"""How the user's temperature/top-k/top-p/min-p combine with the head's decisions (see the module docstring)."""
# What a config saved before these fields existed meant (its behaviour is kept when it is loaded).
_BEFORE_FIELDS = {"top_p_features": "logit_spread", "sampling_composition": "sequential"}
# Keys that only the released code's config.json has (AutoDecoModelForCausalLMConfig, and its vLLM variant's).
_RELEASED_CONFIG_KEYS = ("use_enhanced_features", "enable_temperature_head", "enable_top_p_head", "train_temp")
RELEASED_HIDDEN_SIZE = 256
"""Width of both released heads' hidden layer (fixed in the released code)."""


def _released_config(config_dict: dict[str, Any]) -> dict[str, Any]:
    """Our config fields from a released AutoDeco ``config.json`` (the base model's fields plus the head flags)."""
    enhanced = config_dict.get("use_enhanced_features", True)
    if not isinstance(enhanced, bool):
        raise InvalidHeadConfigError("use_enhanced_features", enhanced, "true or false (released AutoDeco config)")
    converted = {
        "model_type": AutoDecoConfig.model_type,
        "hidden_size": config_dict.get("hidden_size"),
        "vocab_size": config_dict.get("vocab_size"),
        "head_hidden_size": RELEASED_HIDDEN_SIZE,
        "max_temperature": 2.0,
        "top_p_features": "prob_stats" if enhanced else "temperature",
        "sampling_composition": "released",
    }
    if config_dict.get("base_model_name_or_path") is not None:
        converted["base_model_name_or_path"] = config_dict["base_model_name_or_path"]
    for key in ("hidden_size", "vocab_size"):
        if converted[key] is None:
            raise InvalidHeadConfigError(key, None, "an integer (a released AutoDeco config holds its base's)")
    return converted


@strict
class AutoDecoConfig(DecodingHeadConfig):
    r"""
    Configuration of an AutoDeco temperature + top-p head (and of the base it sits on; see
    :class:`~logitmlp_hf.DecodingHeadConfig` for the shared fields).

    Args:
        max_temperature (`float`, *optional*, defaults to `2.0`): the temperature is ``sigmoid(·) × max_temperature``.
        min_temperature (`float`, *optional*, defaults to `0.01`): lower clamp of the temperature the head samples at.
        top_p_steepness (`float`, *optional*, defaults to `30.0`): ``α`` of the soft top-p mask.
        init_top_p (`float`, *optional*, defaults to `0.98`): top-p at initialisation (the output bias).
        init_std (`float`, *optional*, defaults to `2.5e-4`): std of both output layers' initial weights.
        top_p_features (`str`, *optional*, defaults to `"prob_stats"`): what the top-p head reads besides ``h``:
            ``"prob_stats"`` — ``T̂`` and the max prob, entropy, variance and top-5 mass of ``softmax(ℓ/T̂)`` (the
            released head, ``d + 5`` inputs); ``"temperature"`` — ``T̂`` only (the released
            ``use_enhanced_features=False``, ``d + 1``); ``"logit_spread"`` — ``T̂, (max ℓ − mean ℓ)/T̂, std ℓ/T̂``
            (this package's earlier head, ``d + 3``; what configs saved without this field mean).
        sampling_composition (`str`, *optional*, defaults to `"released"`): how the user's temperature ``T_u`` and
            top-p ``p_u`` (``generate``'s, a logits processor's, TRL's temperature) combine with the head's:
            ``"released"`` — sample at ``T = T̂·T_u`` with one top-p ``min(1, p̂·p_u)`` at ``T`` (the released
            code); ``"sequential"`` — the head's rule first, then the user's warpers on its distribution (this
            package's earlier rule; what configs saved without this field mean). Other warpers (top-k, min-p, ...)
            act after the head's rule either way.
    """

    model_type = "autodeco"

    max_temperature: float = 2.0
    min_temperature: float = 0.01
    top_p_steepness: float = 30.0
    init_top_p: float = 0.98
    init_std: float = 2.5e-4
    top_p_features: str = "prob_stats"
    sampling_composition: str = "released"

    def validate_architecture(self) -> None:
        """Part of `@strict` validation."""
        super().validate_architecture()
        check_number("max_temperature", self.max_temperature, above=0.0, at_most=1e3)
        check_number("min_temperature", self.min_temperature, above=0.0, below=self.max_temperature)
        check_number("top_p_steepness", self.top_p_steepness, above=0.0, at_most=1e6)
        check_number("init_top_p", self.init_top_p, above=0.0, below=1.0)
        check_number("init_std", self.init_std, at_least=0.0, at_most=1.0)
        check_choice("top_p_features", self.top_p_features, tuple(TOP_P_FEATURES))
        check_choice("sampling_composition", self.sampling_composition, SAMPLING_COMPOSITIONS)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """transformers' ``from_dict``, reading two older layouts as what they meant:

        - a ``config.json`` saved before ``top_p_features`` / ``sampling_composition`` existed keeps its behaviour
          (``"logit_spread"``, ``"sequential"``);
        - a released AutoDeco ``config.json`` (the base's fields plus ``use_enhanced_features``, ...) becomes the
          equivalent config here (released features and composition, ``head_hidden_size=256``).
        """
        if any(key in config_dict for key in _RELEASED_CONFIG_KEYS):
            config_dict = _released_config(config_dict)
        else:
            config_dict = {**_BEFORE_FIELDS, **config_dict}
        out = super().from_dict(config_dict, **kwargs)
        # kwargs (from_pretrained(..., sampling_composition=...)) are set after validation: check them too
        (out[0] if isinstance(out, tuple) else out).validate_architecture()
        return out

    @property
    def num_head_parameters(self) -> int:
        d, w = self.hidden_size, self.head_hidden_size
        k = TOP_P_FEATURES[self.top_p_features]
        return (d * w + w + w + 1) + ((d + k) * w + w + w + 1)


def probability_statistics(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """The released top-p head's four statistics of ``q = softmax(ℓ/(T + 1e-8))``, float32, shape ``(..., 4)``:
    max prob, entropy ``−Σ q·log(q + 1e-8)``, unbiased variance over the vocabulary, top-5 mass."""
    q = torch.softmax(logits.float() / (temperature.float() + 1e-8).unsqueeze(-1), dim=-1)
    entropy = -(q * torch.log(q + 1e-8)).sum(dim=-1)
    top5 = q.topk(min(5, q.shape[-1]), dim=-1).values.sum(dim=-1)
    return torch.stack((q.amax(dim=-1), entropy, q.var(dim=-1), top5), dim=-1)


class AutoDecoHead(DecodingHead):
    r"""
    Per-token temperature ``T̂`` and top-p ``p̂`` from the hidden state (see the module docstring).

    Example:

    ```python
    >>> import torch
    >>> from logitmlp_hf import AutoDecoConfig, AutoDecoHead
    >>> head = AutoDecoHead(AutoDecoConfig(hidden_size=64, vocab_size=100))
    >>> logits, decisions = head.warp(torch.randn(2, 64), torch.randn(2, 100))
    >>> sorted(decisions)
    ['temperature', 'top_p']
    ```
    """

    config_class = AutoDecoConfig
    weights_name = "autodeco_head.safetensors"
    converted_weights_names = ("autodeco_heads.safetensors", "model.safetensors")
    converted_key_prefixes = ("temp_head.", "top_p_head.")

    def __init__(self, config: AutoDecoConfig) -> None:
        super().__init__(config)
        w = config.head_hidden_size
        self.max_temperature = config.max_temperature
        self.min_temperature = config.min_temperature
        self.steepness = config.top_p_steepness
        self.init_top_p = config.init_top_p
        self.init_std = config.init_std
        self.top_p_features = config.top_p_features
        self.reads_logits = config.top_p_features == "prob_stats"
        self.absorbs_user_rule = config.sampling_composition == "released"
        top_p_inputs = config.hidden_size + TOP_P_FEATURES[config.top_p_features]
        self.temperature_head = nn.Sequential(nn.Linear(config.hidden_size, w), nn.ReLU(), nn.Linear(w, 1))
        self.top_p_head = nn.Sequential(nn.Linear(top_p_inputs, w), nn.ReLU(), nn.Linear(w, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default for the first layers; N(0, init_std) output weights with biases giving T̂ = 1 (when
        ``max_temperature = 2``, sigmoid(0)·2) and ``p̂ = init_top_p``."""
        for head in (self.temperature_head, self.top_p_head):
            head[0].reset_parameters()
            nn.init.normal_(head[2].weight, mean=0.0, std=self.init_std)
        t0 = 1.0 / self.max_temperature  # sigmoid(bias) · max = 1
        nn.init.constant_(self.temperature_head[2].bias, math.log(t0 / (1 - t0)) if t0 < 1 else 0.0)
        nn.init.constant_(self.top_p_head[2].bias, math.log(self.init_top_p / (1 - self.init_top_p)))

    # ------------------------------------------------------------------------------------------ released checkpoints
    @classmethod
    def convert_state_dict(
        cls, state: dict[str, torch.Tensor], config: DecodingHeadConfig, path: str
    ) -> dict[str, torch.Tensor]:
        """A released checkpoint's head tensors (``temp_head.mlp.{0,2}.*``, ``top_p_head.mlp.{0,2}.*``) under this
        head's parameter names (``temperature_head.{0,2}.*``, ``top_p_head.{0,2}.*``), shapes checked.

        Raises:
            HeadCheckpointError: a tensor is missing, unexpected or of the wrong shape (naming ``path`` and the key).
        """
        names = {
            f"{released}.mlp.{layer}.{param}": f"{ours}.{layer}.{param}"
            for released, ours in (("temp_head", "temperature_head"), ("top_p_head", "top_p_head"))
            for layer in (0, 2)
            for param in ("weight", "bias")
        }
        missing = [key for key in names if key not in state]
        if missing:
            raise HeadCheckpointError(
                f"{path} is not a released AutoDeco head checkpoint: it has no tensor {missing[0]!r} "
                f"(missing: {missing}; found: {sorted(state)})"
            )
        unexpected = sorted(set(state) - set(names))
        if unexpected:
            raise HeadCheckpointError(
                f"{path} holds {unexpected[0]!r}, which a released AutoDeco head does not have (unexpected: "
                f"{unexpected}; expected exactly {sorted(names)})"
            )
        expected = cls.expected_state_shapes(config)
        for key, ours in names.items():
            if tuple(state[key].shape) != expected[ours]:
                raise HeadCheckpointError(
                    f"{path}: {key!r} has shape {tuple(state[key].shape)}, but the config "
                    f"(hidden_size={config.hidden_size}, top_p_features={config.top_p_features!r}) needs "
                    f"{expected[ours]}"
                )
        return {ours: state[key] for key, ours in names.items()}

    # -------------------------------------------------------------------------------------------------- policy
    def _top_p_inputs(
        self,
        raw_temperature: torch.Tensor,
        temperature: torch.Tensor,
        stats: LogitStatistics,
        logits: torch.Tensor | None,
    ) -> torch.Tensor:
        if self.top_p_features == "logit_spread":  # this package's earlier head: the clamped T̂ and logit spread
            t = temperature.detach().float()
            return torch.stack((t, (stats.max - stats.mean) / t, stats.std / t), dim=-1)
        t = raw_temperature.detach().float()  # released: the unclamped prediction
        if self.top_p_features == "temperature":
            return t.unsqueeze(-1)
        if logits is None:
            raise ValueError(
                "AutoDecoHead with top_p_features='prob_stats' reads the logits: call decide(..., logits=...) or "
                "decide_at(hidden_states, logits)"
            )
        return torch.cat((t.unsqueeze(-1), probability_statistics(logits.detach().to(t.device), t)), dim=-1)

    def decide(
        self,
        hidden_states: torch.Tensor,
        stats: LogitStatistics,
        context: DecodingContext | None = None,
        logits: torch.Tensor | None = None,
    ) -> Decisions:
        """``{"temperature", "top_p"}`` per position (``logits`` is needed with ``top_p_features="prob_stats"``)."""
        h = hidden_states.to(self.dtype)
        raw = torch.sigmoid(self.temperature_head(h)).squeeze(-1) * self.max_temperature
        temperature = raw.clamp(min=self.min_temperature)
        inputs = self._top_p_inputs(raw, temperature, stats, logits).to(self.dtype)
        top_p = torch.sigmoid(self.top_p_head(torch.cat((h, inputs), dim=-1))).squeeze(-1)
        return {"temperature": temperature.float(), "top_p": top_p.float()}

    def apply_user_rule(self, decisions: Decisions, rule: SamplingRule) -> Decisions:
        """The released composition: ``T = T̂·T_u``, ``p = min(1, p̂·p_u)`` per position (top-p at ``T``, by
        :meth:`sampling_logits`). The rule's top-k and min-p are not absorbed: ``generate`` applies them after."""
        top_p = 1.0 if rule.top_p is None else rule.top_p
        return {
            "temperature": decisions["temperature"] * rule.temperature,
            "top_p": (decisions["top_p"] * top_p).clamp(max=1.0),
        }

    def sampling_logits(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """``ℓ/T̂`` with hard top-p ``p̂`` per row (transformers' rule); ``T̂ = 0`` rows are greedy."""
        return top_p_logits(temperature_logits(logits, decisions["temperature"]), decisions["top_p"])

    def policy_logits(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """``ℓ/T̂ − α·ReLU(c − p̂)``: the log of AutoDeco's soft-masked probabilities, up to normalisation."""
        scaled = logits.float() / decisions["temperature"].unsqueeze(-1)
        q = scaled.softmax(dim=-1)
        sorted_q, order = q.sort(dim=-1, descending=True)
        excess = (sorted_q.cumsum(dim=-1) - decisions["top_p"].unsqueeze(-1)).relu()
        penalty = torch.empty_like(excess).scatter_(-1, order, excess)
        return scaled - self.steepness * penalty

    def log_values(self, decisions: Decisions, logit_features: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"autodeco/temperature": decisions["temperature"], "autodeco/top_p": decisions["top_p"]}


class AutoDecoForCausalLM(DecodingHeadForCausalLM):
    r"""
    A frozen causal LM with an AutoDeco head: each token is sampled at the head's temperature with the head's top-p.

    Loads, saves, pushes, generates and trains exactly as :class:`~logitmlp_hf.LogitMLPForCausalLM`.

    Example:

    ```python
    >>> from logitmlp_hf import AutoDecoForCausalLM
    >>> model = AutoDecoForCausalLM.from_base_model(base)
    >>> out = model.generate(**inputs, do_sample=True, max_new_tokens=64)
    ```
    """

    config_class = AutoDecoConfig
    head_class = AutoDecoHead
    head_attribute = "autodeco_head"

    def _identity_decisions(self, logits: torch.Tensor) -> Decisions:
        ones = torch.ones(logits.shape[:-1], device=logits.device)
        return {"temperature": ones, "top_p": ones}


register_decoding_head(
    AutoDecoForCausalLM,
    card_template="autodeco_head.md",
    card_title="An **AutoDeco head** (per-token temperature and top-p)",
)


__all__ = ["AutoDecoConfig", "AutoDecoForCausalLM", "AutoDecoHead"]
