"""The seam between what makes images (generators, renderers, importers) and what stores them.

NumPy only: importing a generator imports this module, never h5py, torch or the builder.
A source describes a data set as ``num_items()`` items, each a pure function of (config, index);
the builder (``fdsl.datasets.builder.build``) splits the items into shards and drives ``render``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class RenderedBatch:
    """Items ``[start, stop)`` of a source, as rendered.

    images: uint8 [n, H, W] or [n, H, W, C]; labels: int64 [n]; metadata: name -> 1-D array [n];
    items: int64 [n], the item index of each image (a source may skip broken items, so n can be
    smaller than stop - start); failures: one JSON-able dict per skipped unit (e.g. a broken mesh),
    each with at least ``reason``.
    """

    images: np.ndarray
    labels: np.ndarray
    metadata: dict[str, np.ndarray]
    items: np.ndarray
    failures: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class ShardSource(Protocol):
    """What a generator or renderer offers the builder. It must pickle (it is sent to workers)."""

    name: str
    version: str

    def config(self) -> dict[str, Any]:
        """JSON-able configuration that, with the version, fixes every output byte."""

    def class_names(self) -> list[str]:
        """Class names; label ``i`` is ``class_names()[i]``."""

    def num_items(self) -> int:
        """How many items (images) the data set has, before any failures."""

    def render(self, start: int, stop: int) -> RenderedBatch:
        """Render items ``[start, stop)``; each item depends only on its index and the config."""

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        """Relative path of an item in the official PNG folder layout."""

    def extra_files(self) -> dict[str, bytes]:
        """Files to store beside the manifest (e.g. the class parameters), name -> bytes."""


def with_preview(factory: Any, preview: Any = None) -> Any:
    """Give a source factory (a zero-argument callable that makes a ShardSource, perhaps after long
    work such as a category search) its ``preview``: a cheap zero-argument callable making a source
    whose ``name``, ``version`` and ``config()`` equal the real one's. The builder compares those
    with a data set already in the output folder before the long work, so a run of other settings
    is refused before it searches (and before it creates or locks anything). Without ``preview``
    the factory is cheap and its own preview. Returns ``factory``."""
    factory.preview = factory if preview is None else preview
    return factory


class Unsearched:
    """The class parameters of a source whose category search has not run yet: only their number.

    A source built on it answers ``name``, ``version`` and ``config()`` (a preview, see
    ``with_preview``) and nothing that needs the parameters themselves."""

    def __init__(self, classes: int) -> None:
        self.classes = classes

    def __len__(self) -> int:
        return self.classes

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the class parameters are not searched yet (asked for {name!r})")
