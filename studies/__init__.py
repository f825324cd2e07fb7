"""fdsl.studies: the studies the toolkit exists for, each a folder of ordinary training runs.

- ``run_pruning_study``: data pruning by a recorded field (viewpoint study, CUB protocol);
- ``run_transfer_study``: formula-driven pre-training against training from scratch;
- ``import_digits``: scikit-learn's bundled handwritten digits as a built-in downstream set.

Every study writes ``study.json`` (its settings; another study in the same folder is refused
unless ``overwrite``), one ``train-classifier`` run folder per cell under ``runs/`` (re-running
resumes: finished cells are kept, a half-finished one continues from its checkpoint), and
``table.md`` and ``results.csv``. Functions import torch on first use only.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "run_pruning_study": "fdsl.studies.pruning",
    "run_transfer_study": "fdsl.studies.transfer",
    "import_digits": "fdsl.studies.digits",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
