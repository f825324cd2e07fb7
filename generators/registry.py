"""The generator registry behind ``gen-fractal --db NAME``: one registered spec per generator.

A generator is one module that ends with a registration::

    SPEC = register_generator(GeneratorSpec(
        name="linedb", description="random straight lines ...",
        defaults={"instances": 1000, "image_size": 512},   # the common settings it takes
        add_arguments=add_arguments,                       # its own flags, on an argument group
        make_source=make_source))                          # options -> ShardSource

and one line naming the module in ``BUILTIN_MODULES`` below (as timm lists its model modules).
The spec's option names are read from the flags ``add_arguments`` defines, so no list is kept by
hand. Modules load on the first lookup; none of them imports h5py, torch or the builder.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from fdsl.errors import FdslError
from fdsl.sources import ShardSource

# The one registration line per built-in generator: the module that registers it.
BUILTIN_MODULES = (
    "fdsl.generators.fractaldb",
    "fdsl.generators.exfractaldb",
    "fdsl.generators.rcdb",
    "fdsl.generators.linedb",
)

# Settings every generator may take, passed to make_source as keyword arguments (None = the
# generator's default); a generator takes those named in its spec's ``defaults``.
COMMON_SETTINGS = ("instances", "image_size", "points")


def _no_arguments(group: argparse._ArgumentGroup) -> None:
    """A generator without flags of its own."""


@dataclass(frozen=True)
class GeneratorSpec:
    """One generator, as ``gen-fractal`` and the library see it.

    name: the ``--db`` value. description: one line for ``--help``.
    make_source: ``make_source(*, classes, seed, params_from, workers, backend, <common settings
        named in defaults>, **options) -> ShardSource``; ``None`` for a setting means its default;
        raises FdslError (one line) for bad values.
    add_arguments: adds the generator's own flags to an argparse group; every flag's default
        must be None (= not given), and its dest is the keyword ``make_source`` receives.
    defaults: the common settings (``COMMON_SETTINGS``) it takes, with the default shown in
        ``--help`` (a number, or a short text such as "instances-3d x views"); a common setting
        missing here is refused for this generator.
    """

    name: str
    description: str
    make_source: Callable[..., ShardSource]
    add_arguments: Callable[[argparse._ArgumentGroup], None] = _no_arguments
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.defaults) - set(COMMON_SETTINGS)
        if unknown:
            raise ValueError(f"generator {self.name!r}: defaults for unknown settings {sorted(unknown)}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @cached_property
    def option_names(self) -> tuple[str, ...]:
        """The dest names of the generator's own flags, read from the parser ``add_arguments``
        fills (ValueError for a flag whose default is not None: None means "not given")."""
        parser = argparse.ArgumentParser(add_help=False)
        self.add_arguments(parser.add_argument_group(self.name))
        defaults = vars(parser.parse_args([]))
        given = sorted(name for name, value in defaults.items() if value is not None)
        if given:
            raise ValueError(f"generator {self.name!r}: flags {given} must default to None")
        return tuple(defaults)

    def takes(self, setting: str) -> bool:
        """Whether the common setting ``setting`` applies to this generator."""
        return setting in self.defaults


_REGISTRY: dict[str, GeneratorSpec] = {}
_loaded = False


def register_generator(spec: GeneratorSpec) -> GeneratorSpec:
    """Register ``spec`` under ``spec.name`` and return it (a name registers once)."""
    known = _REGISTRY.get(spec.name)
    if known is not None and known.make_source is not spec.make_source:
        raise ValueError(f"a generator named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


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
    specs = sorted(_REGISTRY.values(), key=lambda s: rank.get(_module_of(s), len(rank)))
    return {spec.name: spec for spec in specs}


def get_generator(name: str) -> GeneratorSpec:
    """The spec behind ``--db name``; FdslError for an unknown name."""
    specs = generators()
    if name not in specs:
        raise FdslError(f"unknown --db {name!r}; choose one of {', '.join(specs)}")
    return specs[name]


def _module_of(spec: GeneratorSpec) -> str:
    return getattr(spec.make_source, "__module__", "")
