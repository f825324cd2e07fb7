"""Generate a registered formula-driven data set into a folder: the body of ``gen-fractal``.

The order is the one a refused run needs to leave nothing behind: every setting is checked first
(the generator's own checks, ``--params-from`` read, the size limits of ``fdsl.limits``,
the builder's settings and the output folder), then the builder locks the folder, and only then
does the generator do its long work (a category search) and the builder render.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fdsl import limits
from fdsl.errors import FdslError
from fdsl.generators.registry import GeneratorSpec, get_generator

if TYPE_CHECKING:
    from fdsl.datasets.builder.build import BuildResult


def _flag(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def generator_settings(spec: GeneratorSpec, common: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``spec.prepare_source`` for these common settings and options;
    FdslError for a setting or option that does not apply to the generator."""
    wrong = [k for k, v in common.items() if v is not None and not spec.takes(k)]
    wrong += sorted(set(options) - set(spec.option_names))
    if wrong:
        verb = "does" if len(wrong) == 1 else "do"
        raise FdslError(f"{', '.join(_flag(k) for k in wrong)} {verb} not apply to --db {spec.name}")
    return {k: v for k, v in common.items() if spec.takes(k)} | options


def _default(spec: GeneratorSpec, setting: str, value: Any) -> Any:
    """``value``, or the spec's numeric default for it (None when it has none)."""
    if value is not None:
        return value
    default = spec.defaults.get(setting)
    return default if isinstance(default, int) else None


def generate(
    db: str,
    out: str | Path,
    *,
    classes: int,
    instances: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    image_size: int | None = None,
    points: int | None = None,
    shard_size: int = 10_000,
    compression: str = "lz4",
    fmt: str = "hdf5",
    overwrite: bool = False,
    params_from: str | Path | None = None,
    backend: str = "local",
    params_only: bool = False,
    quiet: bool = False,
    **options: Any,
) -> BuildResult:
    """Generate data set ``db`` into ``out`` and return the build summary.

    ``classes`` and ``instances`` (images per class) size the data set; ``None`` settings take
    the data set's official defaults; ``options`` are the generator's own flags (dest names).
    Every setting and the folder are checked before any file is made; the category search runs
    holding the folder's lock, so a second run into a busy folder is refused before it searches.
    Re-running the same call resumes; different settings into the same folder raise
    ConfigMismatchError unless ``overwrite``. ``params_only`` stops after the manifest and the class
    parameters (``classes.npz``): no shard is rendered, and the same call without it renders them.
    ``quiet`` shows no progress.
    """
    if classes <= 0:
        raise FdslError(f"--classes must be positive, got {classes}")
    spec = get_generator(db)
    kwargs = generator_settings(spec, {"instances": instances, "image_size": image_size, "points": points},
                                options)
    from fdsl.datasets.builder.cli import build_from_options
    from fdsl.datasets.builder.jobs import default_workers

    workers = workers or default_workers()
    limits.check_job(classes=classes, instances=_default(spec, "instances", instances),
                     image_size=_default(spec, "image_size", image_size), points=_default(spec, "points", points),
                     workers=workers, shard_size=shard_size, channels=3 if options.get("color") == "color" else 1)
    factory = spec.prepare_source(classes=classes, seed=seed, params_from=Path(params_from) if params_from else None,
                                  workers=workers, backend=backend, **kwargs)
    return build_from_options(factory, out, strict=True, shard_size=shard_size, workers=workers, backend=backend,
                              compression=compression, fmt=fmt, overwrite=overwrite, params_only=params_only,
                              quiet=quiet)
