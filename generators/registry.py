"""Name -> generator module, for ``gen-fractal --db NAME``.

Each generator module provides:

- ``DESCRIPTION: str``: one line for ``--help``;
- ``add_arguments(group) -> None``: its own flags (dest names must be unique across modules);
- ``OPTION_NAMES: tuple[str, ...]``: the dest names of those flags;
- ``make_source(*, classes, instances, seed, image_size, points, params_from, workers, backend,
  **options) -> ShardSource``: ``None`` for a common setting means the data set's own default.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fdsl.errors import FdslError

GENERATORS: dict[str, str] = {
    "fractaldb": "fdsl.generators.fractaldb",
    "exfractaldb": "fdsl.generators.exfractaldb",
    "rcdb": "fdsl.generators.rcdb",
}


def get_generator(name: str) -> ModuleType:
    """The module behind ``--db name``; FdslError for an unknown name."""
    if name not in GENERATORS:
        raise FdslError(f"unknown --db {name!r}; choose one of {', '.join(GENERATORS)}")
    return importlib.import_module(GENERATORS[name])


def available() -> dict[str, ModuleType]:
    """Every generator module that imports (all of them, once the package is complete)."""
    found = {}
    for name in GENERATORS:
        try:
            found[name] = get_generator(name)
        except ModuleNotFoundError:
            continue
    return found
