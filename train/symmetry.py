"""Data sets that are not mirror-symmetric train without horizontal flips, whatever the recipe.

A shard data set declares it in its manifest's generator config: ``"mirror_symmetric": false``
(digits, text, anything whose mirror image is another class or no class). Such a run trains with
``hflip`` 0, says so in one log line, and saves hflip 0 in its config, so ``--resume`` and
``--config RUN/config.yaml`` agree with it. A missing key, or true, changes nothing; ImageFolder
trees have no manifest (set ``hflip=0`` for them).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from fdsl.jsonfile import read_json
from fdsl.train.dataarg import data_root
from fdsl.train.recipes import TrainConfig

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FIELD = "mirror_symmetric"


def declared_not_mirror_symmetric(data: str | Path) -> bool:
    """True when ``data/manifest.json``'s config holds ``"mirror_symmetric": false``."""
    path = data_root(data) / MANIFEST
    if not path.is_file():
        return False
    manifest = read_json(path, "manifest")
    config = manifest.get("config") if isinstance(manifest, dict) else None
    return isinstance(config, dict) and config.get(FIELD) is False


def without_flips_if_asymmetric(config: TrainConfig, data: str | Path, *,
                                announce: bool = True) -> TrainConfig:
    """``config`` with hflip 0 when ``data`` is declared not mirror-symmetric (one log line when
    ``announce``), else ``config`` itself."""
    if config.hflip == 0 or not declared_not_mirror_symmetric(data):
        return config
    if announce:
        log.info("%s is declared not mirror-symmetric (manifest config %s: false): training without "
                 "horizontal flips (hflip %g -> 0)", data, FIELD, config.hflip)
    return dataclasses.replace(config, hflip=0.0)
