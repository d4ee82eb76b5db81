"""Training decoding heads. Importing this package does not import TRL; its modules do.

- :mod:`.config` — :class:`DecodingHeadGRPOConfig`, TRL's ``GRPOConfig`` with head-only RLVR defaults;
- :mod:`.grpo_trainer` — :class:`DecodingHeadGRPOTrainer`, TRL's ``GRPOTrainer`` updating only the head from cached
  features (DAPO clipping, pass@k advantages);
- :mod:`.advantages` — group-mean and analytical pass@k advantages;
- :mod:`.checkpoints` — finding a checkpoint that is safe to resume from;
- :mod:`.callbacks` — per-step metrics to the logger and the progress bar instead of stdout;
- :mod:`.sequence_adapter` — fitting the sequence-level adapter (action-set selection, contextual bandit).
"""
