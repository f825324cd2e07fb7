"""A generated data set's folder back to the source that made it, for any registered generator.

``source_from_folder(folder)`` reads the manifest (generator name and version, config) and the
stored ``classes.npz``, and rebuilds the source with the generator's ``load_class_params`` and
``source_from_config`` (``fdsl.generators.registry``): it renders the very images the folder holds,
so a set can be re-rendered, extended or drawn on another device without a category search.
"""

from __future__ import annotations

import json
from pathlib import Path

from fdsl.errors import FdslError
from fdsl.generators.classfile import NAME as NPZ_NAME
from fdsl.generators.registry import get_generator
from fdsl.sources import ShardSource


def source_from_folder(folder: str | Path) -> ShardSource:
    """The source of the generated data set in ``folder``; FdslError (one line) when the folder
    holds no such set, or one made by another version of its generator."""
    from fdsl.datasets.format import read_manifest  # the manifest reader, not the builder

    folder = Path(folder)
    manifest = read_manifest(folder)
    name = manifest["generator"]["name"]
    spec = get_generator(name)
    if spec.load_class_params is None or spec.source_from_config is None:
        raise FdslError(f"{folder}: generator {name!r} cannot rebuild its source from a folder")
    params = spec.load_class_params(folder / NPZ_NAME)
    config = manifest["config"]
    source = spec.source_from_config(config, params)
    made_by = manifest["generator"]["version"]
    if source.version != made_by or json.loads(json.dumps(source.config())) != config:
        raise FdslError(f"{folder} was made by {name} version {made_by} with settings this fdsl's {name} "
                        f"(version {source.version}) does not draw the same way; regenerate it")
    return source


def with_seed(source: ShardSource, seed: int) -> ShardSource:
    """``source``'s data set drawn with another ``seed``: the same classes (parameters and
    settings), new instances of them (every per-image stream is keyed by the seed)."""
    spec = get_generator(source.name)
    if spec.source_from_config is None:
        raise FdslError(f"generator {source.name!r} cannot rebuild its source with another seed")
    return spec.source_from_config({**source.config(), "seed": int(seed)}, source.params)
