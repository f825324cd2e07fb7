"""fdsl.datasets: the shard format, the builder, and (lazily, since they import torch) the loaders,
for every set fdsl makes (FractalDB, ExFractalDB, RCDB, LineDB, renders, imports) and the studies.

``from fdsl.datasets import ShardDataset, ShardLoader`` imports torch on
first use only, so generator worker processes that import ``fdsl.datasets.shards`` stay light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ShardDataset": "fdsl.datasets.loader",
    "ShardLoader": "fdsl.datasets.loader",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
