"""Stage 1 of a run: its config and inputs, from flags, a config file or a saved run.

A run folder's ``config.yaml`` holds everything a rerun needs: the resolved fields
(``recipe_fields``), the recipe name and the absolute paths of the data, the held-out data and the
starting weights. So

- ``--config RUN/config.yaml`` reruns a run alone, into ``--out`` or a fresh folder beside RUN
  (``RUN-rerun``, ``RUN-rerun-2``, ...);
- ``--resume RUN`` (timm's ``--resume PATH``; RUN may also name RUN/checkpoint.pt) continues RUN
  with the settings in its ``config.yaml``; flags given beside it must agree with the run, except
  a larger ``--epochs``, which extends it (``fdsl.train.resume``).

Layers, later wins: recipe preset < the saved run's or ``--config`` fields < flags < ``--set``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fdsl.errors import FdslError
from fdsl.train.dataarg import absolute_data
from fdsl.train.models import canonical_name
from fdsl.train.recipes import SAVED_FIELDS, TrainConfig, resolve_config

DEFAULT_RECIPE = "fractaldb-resnet"
RUN_CONFIG = "config.yaml"


def resolve_run_config(recipe: str = DEFAULT_RECIPE, *, model: str | None = None,
                       config_file: str | Path | None = None,
                       overrides: Mapping[str, Any] | None = None, **fields: Any) -> TrainConfig:
    """The config ``train_classifier`` would run with (``--print-config`` shows it)."""
    flags = dict(fields)
    if model is not None:
        flags["model"] = model
    config = resolve_config(recipe, config_file=config_file, flags=flags, sets=overrides)
    config.model = canonical_name(config.model)
    for name in ("train_indices", "val_indices"):  # a saved config must work from any folder
        if getattr(config, name):
            setattr(config, name, str(Path(getattr(config, name)).resolve()))
    return config


@dataclass
class RunSpec:
    """What stage 1 resolves: the config and the inputs of one run (paths absolute)."""

    config: TrainConfig
    recipe: str
    data: str | Path | None  # a folder, or "gen:FOLDER" (fdsl.train.dataarg)
    val_data: str | Path | None
    finetune_from: Path | None
    out: Path | None
    resume: bool


def read_run_record(path: Path) -> dict[str, Any] | None:
    """A run folder's saved ``config.yaml`` (None when ``path`` is a plain mapping of fields)."""
    try:
        record = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # resolve_config reports the file in one line
    return record if isinstance(record, dict) and isinstance(record.get(SAVED_FIELDS), dict) else None


def fresh_folder_beside(run: Path) -> Path:
    """``RUN-rerun``, else ``RUN-rerun-2``, ``-3``...: the first that does not exist."""
    candidate = run.with_name(f"{run.name}-rerun")
    count = 1
    while candidate.exists():
        count += 1
        candidate = run.with_name(f"{run.name}-rerun-{count}")
    return candidate


def _absolute(path: str | Path | None) -> Path | None:
    return None if path is None else Path(path).resolve()


def _resume_folder(resume: bool | str | Path, out: str | Path | None) -> Path | None:
    """The run folder ``resume`` names (None when not resuming)."""
    if resume is False or resume is None:
        return None
    if resume is True:
        if out is None:
            raise FdslError("--resume needs the run: --resume RUN, or --resume with --out RUN")
        return Path(out)
    folder = Path(resume)
    folder = folder.parent if folder.is_file() else folder
    if out is not None and Path(out).resolve() != folder.resolve():
        raise FdslError(f"--resume {resume} continues the run in {folder}; --out {out} names another "
                        "folder (leave --out out)")
    return folder


def resolve_run(data: str | Path | None = None, out: str | Path | None = None, *,
                recipe: str | None = None, model: str | None = None,
                finetune_from: str | Path | None = None, val_data: str | Path | None = None,
                resume: bool | str | Path = False, config_file: str | Path | None = None,
                overrides: Mapping[str, Any] | None = None, **fields: Any) -> RunSpec:
    """The config and inputs of a run (see the module docstring); data and out may be None here,
    ``train_classifier`` requires them."""
    folder = _resume_folder(resume, out)
    record = None
    if folder is not None:
        if config_file is not None:
            raise FdslError("--resume reads the run's own config.yaml; drop --config (change "
                            "fields with flags, or start another run)")
        saved = folder / RUN_CONFIG
        record = read_run_record(saved) if saved.is_file() else None
        config_file = saved if record is not None else None
        out = folder
    elif config_file is not None:
        record = read_run_record(Path(config_file))
        if record is not None and out is None:
            out = fresh_folder_beside(Path(config_file).resolve().parent)
    record = record or {}
    recipe = recipe or record.get("recipe") or DEFAULT_RECIPE
    config = resolve_run_config(recipe, model=model, config_file=config_file, overrides=overrides,
                                **fields)
    data = data if data is not None else record.get("data_resolved", record.get("data"))
    val_data = val_data if val_data is not None else record.get("val_data")
    return RunSpec(config=config, recipe=recipe,
                   data=None if data is None else absolute_data(data),
                   val_data=None if val_data is None else absolute_data(val_data),
                   finetune_from=_absolute(finetune_from if finetune_from is not None
                                           else record.get("finetune_from")),
                   out=None if out is None else Path(out), resume=folder is not None)
