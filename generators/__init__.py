"""fdsl.generators: formula-driven data sets, one package per generator.

``fractaldb/``, ``exfractaldb/``, ``rcdb/`` and ``linedb/`` each hold ``__init__.py`` (the
registration), ``params.py`` (class parameters) and ``source.py`` (the ShardSource); the contract
they keep is in ``fdsl.generators.registry``, which maps ``--db`` names to ``GeneratorSpec``s
(``spec.py``: what a package registers). ``kernels/`` holds the Numba kernels the CPU and the GPU
share.
``generate.generate`` is the body of ``gen-fractal``; ``rebuild.source_from_folder`` turns a
generated set's folder back into its source. ``device.generate`` makes a generated set's images on
the CPU or a GPU (``cuda/``: the numba-cuda kernels), and ``OnTheFlyDataset`` (which imports
torch; its former name ``OnTheFlyFractalDataset`` still works) reads a set through it; both load on
first use, so importing a generator stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"OnTheFlyDataset": "fdsl.generators.onthefly", "OnTheFlyFractalDataset": "fdsl.generators.onthefly"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
