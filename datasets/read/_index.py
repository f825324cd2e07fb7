"""What a loader reads at open: labels, metadata and the image reader, for one data set.

An ``Index`` is shared, read-only, by a ShardDataset and all its subsets and DDP views. Its
``images`` reader (the format's ``row_reader``) reads images by global row into a uint8 batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fdsl.datasets.format import open_dataset
from fdsl.datasets.format.base import DatasetReader, RowReader


@dataclass
class Index:
    """Everything read at open, shared by a data set and its subsets (read-only)."""

    folder: Path
    classes: list[str]
    image_shape: tuple[int, ...]  # as stored: (H, W) or (H, W, C)
    labels: np.ndarray  # int64 [N]
    metadata: dict[str, np.ndarray]  # name -> [N]
    images: RowReader  # read_rows(rows, out), advise(rows)
    stored_bytes: int  # bytes on disk of the whole data set (images)
    reader: DatasetReader  # closed; for what is rarely asked (sample_names)
    _names: list[str] | None = field(default=None, repr=False)

    def sample_names(self) -> list[str]:
        """Every row's locator inside the folder (``DatasetReader.sample_names``), made once."""
        if self._names is None:
            self._names = self.reader.sample_names()
        return self._names

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_names": None}  # workers make their own, if they need them


def open_index(path: str | Path, verify: bool) -> Index:
    """Open a complete data set folder of any storage through ``open_dataset``.

    The format's reader validates the manifest and checks every shard against it (ShardError,
    one line, for anything broken); its ``row_reader`` then reads the images (HDF5: without h5py,
    for speed).
    """
    folder = Path(path)
    with open_dataset(folder, verify=verify) as dataset:
        metadata = dict(dataset.metadata())
        images = dataset.row_reader()
    return Index(folder=folder, classes=list(dataset.classes), image_shape=tuple(dataset.image_shape),
                 labels=np.asarray(dataset.labels, np.int64), metadata=metadata, images=images,
                 stored_bytes=dataset.stored_bytes, reader=dataset)
