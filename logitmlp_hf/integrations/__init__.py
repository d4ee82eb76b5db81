"""Integrations with other engines (:mod:`.vllm`)."""
