"""Decoding heads in vLLM. Importing this package does not import vLLM; its modules do.

- :mod:`.model` — ``DecodingHead<Arch>``: vLLM's own model class with the head applied in ``compute_logits``;
- :mod:`.plugin` — the ``vllm.general_plugins`` entry point that registers those classes in every vLLM process;
- :mod:`.engine` — engine arguments and ``vllm.LLM`` from a head repo, merged LoRA bases, the ``vllm serve`` command;
- :mod:`.rollouts` — TRL's vLLM generation (colocate and server modes) with head-only weight syncs.
"""
