"""What every generator's ShardSource shares: its class parameters stored as ``classes.npz``, and
the layout of sources whose item ``i`` is image ``i % per_class`` of class ``i // per_class``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fdsl.generators.classfile import NAME as NPZ_NAME
from fdsl.generators.registry import ClassParams


class GeneratedSource:
    """Base of the generators' sources: ``params`` (the ClassParams) and ``per_class`` images per
    class; class ``c`` is named ``c`` in ``name_digits`` digits."""

    params: ClassParams
    per_class: int
    name_digits = 5

    def class_names(self) -> list[str]:
        return [f"{c:0{self.name_digits}d}" for c in range(len(self.params))]

    def num_items(self) -> int:
        return len(self.params) * self.per_class

    def extra_files(self) -> dict[str, bytes]:
        return {NPZ_NAME: self.params.to_npz()}

    def png_path(self, label: int, metadata: Mapping[str, Any], item: int) -> str:
        # The official RCDB layout (make_rcdb.py, below its image/ folder): <class>/<class>_<image>.png
        return f"{label:05d}/{label:05d}_{int(metadata['instance']):04d}.png"
