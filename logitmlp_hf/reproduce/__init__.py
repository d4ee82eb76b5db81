"""The main job (``logitmlp reproduce``): train LogitMLP heads, GLOBAL-T*, evaluation, analysis, the report.

- :mod:`.config` — :class:`ReproduceConfig` and where each stage writes;
- :mod:`.pipeline` — the stages and :func:`reproduce`;
- :mod:`.report` — ``results.md`` / ``results.json``.
"""

from .config import ReproduceConfig
from .pipeline import reproduce


__all__ = ["ReproduceConfig", "reproduce"]
