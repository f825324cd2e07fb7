"""What every storage format's verifier reports (``Problem``), and the check of one shard's
arrays against the manifest they share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Problem:
    """One failed check: which file, which check, what was found."""

    file: str
    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: {self.check} check failed: {self.detail}"

    @classmethod
    def from_error(cls, path: str | Path, check: str, exc: BaseException) -> Problem:
        """The failed ``check`` of ``path`` that ``exc`` reports (its message less the leading
        file name, which ``file`` already gives)."""
        return cls(str(path), check, str(exc).split(": ", 1)[-1])


def check_arrays(path: Path, manifest: Mapping[str, Any], count: int, labels: np.ndarray,
                 image_shape: tuple[int, ...] | None, fields: Mapping[str, np.dtype]) -> Problem | None:
    """The manifest against what one shard holds: count, image shape, label range, metadata
    fields and dtypes (an incomplete manifest may not know the shape and fields yet)."""
    if len(labels) != count:
        return Problem(str(path), "count", f"holds {len(labels)} images, manifest says {count}")
    want = manifest.get("image_shape")
    if want is not None and image_shape is not None and count and tuple(want) != tuple(image_shape):
        return Problem(str(path), "image_shape", f"images are {list(image_shape)}, manifest says {want}")
    classes = len(manifest["classes"])
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        return Problem(str(path), "labels", f"labels span {labels.min()}..{labels.max()} but there are "
                                            f"{classes} classes")
    declared = manifest.get("metadata_fields")
    if declared is not None:
        got = {name: np.dtype(dtype).str for name, dtype in fields.items()}
        want_fields = {name: np.dtype(dtype).str for name, dtype in declared.items()}
        if got != want_fields:
            return Problem(str(path), "metadata", f"fields {got} differ from the manifest's {want_fields}")
    return None
