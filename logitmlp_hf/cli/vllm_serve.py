"""``logitmlp vllm-serve``: ``vllm serve`` sampling from a decoding head (``--for-training`` for TRL's server mode)."""

from __future__ import annotations

import argparse
import json
import os
import shlex

from ..errors import HeadCheckpointError
from ..heads.registry import registered_head_types
from ..hub.base_loading import resolve_model_path
from ..hub.head_repo import load_head_config
from ..integrations.vllm.engine import (
    ADAPTER_MODES,
    fresh_head_overrides,
    python_command,
    vllm_serve_command,
)
from .base import Command


DESCRIPTION = """\
Run ``vllm serve`` (an OpenAI-compatible server) that samples from a decoding head.

    logitmlp vllm-serve [options] HEAD [vllm serve options ...]

HEAD is a head repo (Hub id or directory); its config names the base, which is what vLLM loads. Everything after
HEAD goes to ``vllm serve`` unchanged (``--port``, ``--dtype``, ``--max-model-len``, ...). ``--dry-run`` prints the
command instead of running it.

For training with ``DecodingHeadGRPOTrainer(use_vllm=True, vllm_mode="server")``, add ``--for-training``: the server then
gets TRL's settings (the NCCL weight-transfer engine the trainer pushes the head through, processed log-probs for
importance sampling, development endpoints), as ``trl vllm-serve`` would set them. HEAD may then also be a plain base
model: the server starts with a fresh head of ``--head-type`` whose weights the trainer sends before its first
rollout.
"""


def build_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The ``vllm serve`` arguments (what follows ``serve``) and the environment to run the server in."""
    env = dict(os.environ)
    if not args.for_training:
        command = vllm_serve_command(
            args.head, args.base_model, revision=args.revision, adapter=args.adapter, extra_args=args.vllm_args
        )
        return command[2:], env
    from trl.scripts.vllm_serve import ScriptArguments
    from trl.scripts.vllm_serve import build_command as trl_build_command

    model, extra = _training_target(args)
    command = trl_build_command(ScriptArguments(model=model), extra_args=[*extra, *args.vllm_args])
    env["VLLM_SERVER_DEV_MODE"] = "1"  # TRL's weight-update and prefix-cache endpoints live behind it
    return command[command.index("serve") + 1 :], env


def _training_target(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The model to serve and the extra ``vllm serve`` arguments for a training server."""
    try:  # (the resolved path: the embedded model's Hub id must not send a Hub request)
        load_head_config(resolve_model_path(args.head), revision=args.revision)
    except HeadCheckpointError:  # not a head repo: a base model, served with a fresh head
        overrides = fresh_head_overrides(args.head, args.head_type, json.loads(args.head_config))
        path = resolve_model_path(args.head)
        return path, ["--tokenizer", path, "--hf-overrides", json.dumps(overrides)]
    command = vllm_serve_command(args.head, args.base_model, revision=args.revision, adapter=args.adapter)
    return command[2], command[3:]


class VllmServeCommand(Command):
    def __init__(self) -> None:
        super().__init__(
            "vllm-serve",
            "vllm serve (OpenAI-compatible server) sampling from a head repo; --for-training for TRL's server mode",
            DESCRIPTION,
        )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "head", metavar="HEAD", help="head repo (Hub id or directory); with --for-training also a base"
        )
        parser.add_argument("vllm_args", nargs=argparse.REMAINDER, help="options passed on to `vllm serve`")
        parser.add_argument("--base-model", help="serve the head on this model instead of the base its config names")
        parser.add_argument("--revision", help="revision of the head repo (default: the newest)")
        parser.add_argument(
            "--adapter",
            choices=ADAPTER_MODES,
            default="merge",
            help="a head trained on a LoRA adapter: merge it into the base (default) or use vLLM's LoRA",
        )
        parser.add_argument(
            "--for-training",
            action="store_true",
            help="add the settings DecodingHeadGRPOTrainer's vllm_mode='server' needs",
        )
        parser.add_argument(
            "--head-type",
            default="logitmlp",
            choices=registered_head_types(trainable=True),
            help="with --for-training and a plain base as HEAD: the type of the fresh head",
        )
        parser.add_argument(
            "--head-config", default="{}", help="with --for-training and a base: extra head config, JSON"
        )
        parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")

    def run(self, args: argparse.Namespace) -> int:
        serve_args, env = build_command(args)
        if args.dry_run:
            prefix = "VLLM_SERVER_DEV_MODE=1 " if args.for_training else ""
            print(prefix + shlex.join(["vllm", "serve", *serve_args]))
            return 0
        command = python_command(serve_args)
        os.execve(command[0], command, env)
