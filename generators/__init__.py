"""fdsl.generators: formula-driven data sets, one registered generator per module.

``fdsl.generators.registry`` maps ``--db`` names to ``GeneratorSpec``s; ``OnTheFlyFractalDataset``
(which imports torch) loads on first use, so importing a generator stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"OnTheFlyFractalDataset": "fdsl.generators.onthefly"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
