"""Every ```python block of README.md runs as written, on small data, in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fdsl.datasets.builder.build import build_dataset
from fdsl.generators.generate import generate

sys.path.insert(0, str(Path(__file__).parent))
from toy_source import ToySource  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


class RenderLike(ToySource):
    """A small stand-in for ``data/renders``: grey views with an ``area`` per image."""

    name = "toy-renders"

    def render(self, start: int, stop: int):
        batch = super().render(start, stop)
        batch.metadata["area"] = np.array([float((self.image(i) > 128).sum()) for i in batch.items])
        return batch


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    build_dataset(RenderLike(classes=3, per_class=12, size=16), root / "data" / "renders",
                  shard_size=10, backend="inline")
    # a small stand-in for data/fdb1k: FractalDB written with --params-only
    generate("fractaldb", root / "data" / "fdb1k", classes=2, instances=12, image_size=32, points=1000,
             search_points=3000, fill_rate=0.005, workers=1, backend="inline", params_only=True)
    return root


def test_the_readme_has_python_blocks():
    assert BLOCKS, "README.md lost its Python examples"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(workdir, code):
    # a fresh interpreter in the data's folder: nothing defined by the test leaks in
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
