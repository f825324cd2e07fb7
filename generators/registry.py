"""The generator registry behind ``gen-fractal --db NAME``, and the contract every generator keeps.

A generator is one package ``generators/<db>/`` plus one line naming it in ``BUILTIN_MODULES``
below (as timm lists its model modules); the types it registers (``GeneratorSpec``, the
``ClassParams`` protocol, ``register_generator``) are in ``fdsl.generators.spec``, which the
packages import, so that no generator imports this module, which imports them:

- ``params.py``: ``ClassParams``, the parameters of every class of a data set in one object (the
  ``spec.ClassParams`` protocol: ``len()``, ``head(n)``, ``to_npz()``), how they are drawn
  (``sample_candidate(seed, k) -> ClassParams | None`` and ``search_classes(classes, *, seed,
  workers, backend, ...) -> ClassParams`` for a category search, ``sample_classes(classes, seed)``
  otherwise) and ``load_class_params(path) -> ClassParams``, which reads the ``classes.npz`` the
  source stored (FdslError, one line, for a file it cannot use);
- ``source.py``: the ``ShardSource`` (``<Db>Source(params, *, seed, ...)``, its ``params`` the
  ``ClassParams``) and ``source_from_config(config, params) -> <Db>Source``, which rebuilds the
  source of a data set from its manifest's config and its class parameters;
- ``__init__.py``: the algorithm in its docstring, the generator's flags (``add_arguments``),
  ``prepare_source`` and ``make_source``, and the registration::

    SPEC = register_generator(GeneratorSpec(
        name="linedb", description="random straight lines ...",
        defaults={"instances": 1000, "image_size": 512},   # the common settings it takes
        add_arguments=add_arguments,                       # its own flags, on an argument group
        prepare_source=prepare_source,                     # settings -> checked -> source factory
        load_class_params=params.load_class_params,        # classes.npz -> ClassParams
        source_from_config=source.source_from_config))     # (manifest config, ClassParams) -> source

- kernels: Numba CPU kernels in ``generators/kernels/`` (``<db>_image.py``: the per-image bodies
  that the CPU and the GPU share); GPU kernels, for generators that have them, in
  ``generators/cuda/`` (a ``@cuda.jit`` kernel in ``kernels.py`` and a launch plan in ``plans.py``'s
  ``PLANS``); a generator without a plan runs on the CPU only.

``prepare_source`` checks every setting first and returns a zero-argument factory that does the
long work (a category search), so ``gen-fractal`` refuses bad input before it locks the output
folder and searches only once it holds the lock. ``fdsl.generators.rebuild.source_from_folder``
turns any generator's data set folder back into its source with the last two entries.
The spec's option names are read from the flags ``add_arguments`` defines, so no list is kept by
hand. Modules load on the first lookup; none of them imports h5py, torch or the builder.
"""

from __future__ import annotations

import importlib

from fdsl.errors import FdslError
from fdsl.generators.spec import COMMON_SETTINGS, GeneratorSpec, registered

__all__ = ["BUILTIN_MODULES", "COMMON_SETTINGS", "GeneratorSpec", "generators", "get_generator"]

# The one registration line per built-in generator: the module that registers it.
BUILTIN_MODULES = (
    "fdsl.generators.fractaldb",
    "fdsl.generators.exfractaldb",
    "fdsl.generators.rcdb",
    "fdsl.generators.linedb",
)
_loaded = False


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def generators() -> dict[str, GeneratorSpec]:
    """Every registered generator, name -> spec: the built-ins in ``BUILTIN_MODULES`` order (whatever
    order they were imported in), then others in registration order."""
    _load_builtins()
    rank = {module: i for i, module in enumerate(BUILTIN_MODULES)}
    specs = sorted(registered(), key=lambda s: rank.get(_module_of(s), len(rank)))
    return {spec.name: spec for spec in specs}


def get_generator(name: str) -> GeneratorSpec:
    """The spec behind ``--db name``; FdslError for an unknown name."""
    specs = generators()
    if name not in specs:
        raise FdslError(f"unknown --db {name!r}; choose one of {', '.join(specs)}")
    return specs[name]


def _module_of(spec: GeneratorSpec) -> str:
    return getattr(spec.prepare_source, "__module__", "")
