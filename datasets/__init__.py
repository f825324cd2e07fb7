"""fdsl.datasets: the data's way from a source to a training batch, one subpackage per job, for
every set fdsl makes (FractalDB, ExFractalDB, RCDB, LineDB, renders, imports) and the studies.

- ``builder/``: ``build_dataset`` turns a ShardSource into a data set folder (the job runner
  ``jobs.py``, the builder CLIs' shared flags ``cli.py``, the output folder's resume and refusals
  ``outfolder.py``);
- ``format/``: what is on disk, and the only package that knows a storage: ``manifest.json``,
  checksums, and one writer and one reader per storage (``hdf5/``, ``png/``) behind one interface;
- ``read/``: ``ShardDataset`` and ``ShardLoader`` (torch), the per-epoch ``sampler``, ``pruning``;
- ``inspect/``: ``inspect-shards`` (summary, verification, pictures, class statistics);
- ``export/``: ``export-shards`` (WebDataset, ImageFolder, Hugging Face);
- ``importers/``: outside data sets (CUB-200-2011, ``import-cub``).

The public names below load on first use, so ``from fdsl.datasets import ShardDataset`` imports
torch only then, and generator worker processes stay light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ShardDataset": "fdsl.datasets.read.dataset",
    "ShardLoader": "fdsl.datasets.read.loader",
    "prune_dataset": "fdsl.datasets.read.pruning",
    "build_dataset": "fdsl.datasets.builder.build",
    "BuildResult": "fdsl.datasets.builder.build",
    "open_dataset": "fdsl.datasets.format",
    "read_manifest": "fdsl.datasets.format",
    "verify_dataset": "fdsl.datasets.format",
    "inspect_shards": "fdsl.datasets.inspect.report",
    "export_shards": "fdsl.datasets.export.export",
    "import_cub": "fdsl.datasets.importers.cub",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
