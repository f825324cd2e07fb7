"""ExFractalDB's instance tables, viewpoint modes and the released-code preset.

Instance tables (rows of 12 per-parameter factors a..l, applied to every map; probabilities are not
renormalised, as in the official ``ifs_function.set_param``):

- ``paper25`` (default, the paper's 25 instances): the official ``weights_ins25.csv`` in file order
  (a x 0.9, identity, a x 1.1, then b..l x 0.9 / 1.1), followed by 120 spare rows (factors
  0.8 / 1.2 ... 0.4 / 1.6, ring by ring, parameters a..l, smaller factor first) that are drawn only
  in place of a diverging instance or when more than 25 instances are asked for;
- ``released145``: the 145 rows of ``weights_ins145.csv`` that the released ``instance.py`` reads,
  literally, in file order: a x 0.4..0.9, identity, a x 1.1..1.6, then b..l x 0.4..0.9, 1.1..1.6,
  including the file's slip at parameter i (0.6 twice, no 1.6).

View modes (the camera always sits at distance 4 looking at the origin):

- ``random`` (default, the paper's 40 random viewpoints): a direction uniform on the sphere and a
  uniform roll (none with ``--no-roll``);
- ``ring``: the released ``render.py``: view v of V on the horizontal ring at yaw
  ``2 pi v / V + 30 deg + j`` with j uniform in +-pi *degrees* (the script passes
  ``random.uniform(-pi, pi)`` through ``glm.radians``), camera up = +Y, no elevation or roll.

The angles of each view are drawn by ``fdsl.generators.kernels.ifs3d_image.view_angles``.

The ``released-code`` preset selects what the released scripts do: the 145-row table (all of it),
12 ring views, 10,000 points, and images stored bottom row first as the script saves OpenGL's
``glReadPixels`` output.
"""

from __future__ import annotations

import numpy as np

from fdsl.errors import FdslError

NUM_PARAMS = 12
INSTANCE_TABLES = ("paper25", "released145")
VIEW_MODES = ("random", "ring")
PRESETS = ("released-code",)


def _row(param: int, factor: float) -> list[float]:
    row = [1.0] * NUM_PARAMS
    row[param] = factor
    return row


def _paper25() -> list[list[float]]:
    rows = [_row(0, 0.9), _row(0, 1.0), _row(0, 1.1)]
    rows += [_row(p, f) for p in range(1, NUM_PARAMS) for f in (0.9, 1.1)]
    spares = [_row(p, f) for ring in range(2, 7) for p in range(NUM_PARAMS)
              for f in (round(1 - ring / 10, 1), round(1 + ring / 10, 1))]
    return rows + spares


def _released145() -> list[list[float]]:
    below, above = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9), (1.1, 1.2, 1.3, 1.4, 1.5, 1.6)
    rows = [_row(0, f) for f in (*below, 1.0, *above)]
    for p in range(1, NUM_PARAMS):
        factors = (*below, *above)
        if p == 8:  # weights_ins145.csv repeats 0.6 where 1.6 belongs for parameter i
            factors = (*below, 1.1, 1.2, 1.3, 1.4, 1.5, 0.6)
        rows += [_row(p, f) for f in factors]
    return rows


TABLES = {"paper25": np.array(_paper25()), "released145": np.array(_released145())}


def instance_table(name: str) -> np.ndarray:
    """float64 [rows, 12] factors of table ``name`` (``INSTANCE_TABLES``)."""
    if name not in TABLES:
        raise FdslError(f"--instance-table must be one of {', '.join(INSTANCE_TABLES)}, got {name!r}")
    return TABLES[name]


def preset_settings(name: str | None) -> dict[str, object]:
    """The settings a preset fixes (empty for None); FdslError for an unknown name."""
    if name is None:
        return {}
    if name != "released-code":
        raise FdslError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return {"instance_table": "released145", "instances_3d": 145, "views_mode": "ring", "views": 12,
            "points": 10_000, "gl_rows": True}
