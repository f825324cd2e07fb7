"""What a generator is, as ``gen-fractal`` and the library see it: ``GeneratorSpec``, the
``ClassParams`` protocol, the settings every generator may take, and ``register_generator``.

Each ``generators/<db>/__init__.py`` imports this module and registers its spec here;
``fdsl.generators.registry`` lists the built-in generators (and holds the contract of a generator
package in its docstring), loads them on the first lookup and answers ``--db NAME``. So a
generator never imports the registry that loads it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, Self, runtime_checkable

from fdsl.errors import FdslError
from fdsl.sources import ShardSource

# Settings every generator may take, passed to prepare_source as keyword arguments (None = the
# generator's default); a generator takes those named in its spec's ``defaults``.
COMMON_SETTINGS = ("instances", "image_size", "points")


SourceFactory = Callable[[], ShardSource]


@runtime_checkable
class ClassParams(Protocol):
    """The parameters of every class of a data set, as one object (each generator's
    ``params.ClassParams``; class ``c`` is label ``c``)."""

    def __len__(self) -> int:
        """The number of classes."""

    def head(self, classes: int) -> Self:
        """The first ``classes`` classes."""

    def to_npz(self) -> bytes:
        """The ``classes.npz`` bytes (reproducible); the generator's ``load_class_params`` reads
        them back."""


def _no_arguments(group: argparse._ArgumentGroup) -> None:
    """A generator without flags of its own."""


@dataclass(frozen=True)
class GeneratorSpec:
    """One generator, as ``gen-fractal`` and the library see it.

    name: the ``--db`` value. description: one line for ``--help``.
    prepare_source: ``prepare_source(*, classes, seed, params_from, workers, backend, <common
        settings named in defaults>, **options) -> SourceFactory``; ``None`` for a setting means
        its default. It checks every setting (and reads ``params_from``) at once, raising
        FdslError (one line) for bad values, and returns a zero-argument callable that does the
        long work (a category search) and returns the ``ShardSource``.
    add_arguments: adds the generator's own flags to an argparse group; every flag's default
        must be None (= not given), and its dest is the keyword ``prepare_source`` receives.
    defaults: the common settings (``COMMON_SETTINGS``) it takes, with the default shown in
        ``--help`` (a number, or a short text such as "instances-3d x views"); a common setting
        missing here is refused for this generator.
    load_class_params: ``load_class_params(path) -> ClassParams`` of a stored ``classes.npz``.
    source_from_config: ``source_from_config(config, params) -> ShardSource``: the source whose
        ``config()`` is ``config`` (a manifest's), drawing classes ``params``.
        These two are what ``fdsl.generators.rebuild`` needs; None for a generator without.
    """

    name: str
    description: str
    prepare_source: Callable[..., SourceFactory]
    add_arguments: Callable[[argparse._ArgumentGroup], None] = _no_arguments
    defaults: Mapping[str, Any] = field(default_factory=dict)
    load_class_params: Callable[[Path], ClassParams] | None = None
    source_from_config: Callable[[Mapping[str, Any], Any], ShardSource] | None = None

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

    def make_source(self, **settings: Any) -> ShardSource:
        """``prepare_source(**settings)()``: check the settings, then make the source."""
        return self.prepare_source(**settings)()


def checked_sizes(db: str, *, seed: int, instances: int | None, image_size: int | None, default_instances: int,
                  default_image_size: int, min_image_size: int) -> tuple[int, int]:
    """(instances, image_size), ``None`` taking the defaults; FdslError (one line) for a negative
    seed, a non-positive instance count or an image side under ``min_image_size``."""
    if seed < 0:
        raise FdslError(f"--seed must be >= 0 for {db}, got {seed}")
    size = default_image_size if image_size is None else image_size
    if size < min_image_size:
        raise FdslError(f"--image-size must be at least {min_image_size} for {db}, got {size}")
    per_class = default_instances if instances is None else instances
    if per_class <= 0:
        raise FdslError(f"--instances must be positive, got {per_class}")
    return per_class, size


_REGISTRY: dict[str, GeneratorSpec] = {}


def register_generator(spec: GeneratorSpec) -> GeneratorSpec:
    """Register ``spec`` under ``spec.name`` and return it (a name registers once)."""
    known = _REGISTRY.get(spec.name)
    if known is not None and known.prepare_source is not spec.prepare_source:
        raise ValueError(f"a generator named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def registered() -> list[GeneratorSpec]:
    """Every spec registered so far, in registration order."""
    return list(_REGISTRY.values())
