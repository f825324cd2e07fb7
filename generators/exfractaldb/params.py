"""ExFractalDB class parameters: candidate sampling, the variance search and ``classes.npz``.

See ``fdsl.generators.exfractaldb`` for the algorithm: candidate ``k`` draws its maps from
``default_rng([seed, 1, k])`` and then, from the same stream, the uniforms of its search cloud.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fdsl.errors import FdslError
from fdsl.generators.classfile import npz_bytes, read_arrays
from fdsl.generators.kernels import ifs3d
from fdsl.generators.search import CandidateJudge, search_candidates

MIN_MAPS, MAX_MAPS = 2, 7
NUM_PARAMS = 12
TAG_SEARCH = 1
EXPECTED_ACCEPT = 0.013  # about 1.3% of candidates pass at threshold 0.05 (sizes a round)
DEFAULT_THRESHOLD = 0.05
DEFAULT_SEARCH_POINTS = 10_000
_ARRAYS = ("params", "probs", "num_maps", "candidate")


@dataclass(frozen=True)
class ClassParams:
    """Accepted IFS per class: params float64 [C, 7, 12] (a..l, zero-padded), probs float64 [C, 7],
    num_maps int64 [C], candidate int64 [C] (search index k, -1 when unknown)."""

    params: np.ndarray
    probs: np.ndarray
    num_maps: np.ndarray
    candidate: np.ndarray

    @classmethod
    def from_systems(cls, systems: list[tuple[np.ndarray, np.ndarray]], candidate: list[int]) -> ClassParams:
        """Classes from (params [N, 12], probs [N]) pairs, one per class, zero-padded to 7 maps."""
        params = np.zeros((len(systems), MAX_MAPS, NUM_PARAMS))
        probs = np.zeros((len(systems), MAX_MAPS))
        num_maps = np.zeros(len(systems), dtype=np.int64)
        for c, (p, q) in enumerate(systems):
            params[c, :len(p)], probs[c, :len(q)], num_maps[c] = p, q, len(p)
        return cls(params, probs, num_maps, np.asarray(candidate, dtype=np.int64))

    @classmethod
    def concat(cls, parts: list[ClassParams]) -> ClassParams:
        """The classes of ``parts`` one after the other."""
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in _ARRAYS))

    def __len__(self) -> int:
        return len(self.num_maps)

    def head(self, classes: int) -> ClassParams:
        return ClassParams(*(np.ascontiguousarray(getattr(self, k)[:classes]) for k in _ARRAYS))

    def system(self, label: int, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(matrices [N, 3, 3], shifts [N, 3], probs [N]) of class ``label``, parameters scaled
        by ``weights`` float64 [12] if given."""
        n = int(self.num_maps[label])
        p = self.params[label, :n] * (weights if weights is not None else 1.0)
        return p[:, :9].reshape(n, 3, 3), p[:, 9:].copy(), self.probs[label, :n].copy()

    def to_npz(self) -> bytes:
        return npz_bytes({k: getattr(self, k) for k in _ARRAYS})


def _draw(seed: int, k: int) -> tuple[np.random.Generator, np.ndarray]:
    """Candidate ``k``'s stream and its maps float64 [N, 12]; the stream goes on with its cloud."""
    rng = np.random.default_rng([seed, TAG_SEARCH, k])
    n = int(rng.integers(MIN_MAPS, MAX_MAPS + 1))
    return rng, rng.uniform(-1.0, 1.0, (n, NUM_PARAMS))


def _candidate(params: np.ndarray, k: int) -> ClassParams | None:
    n = len(params)
    dets = np.abs(np.linalg.det(params[:, :9].reshape(n, 3, 3)))
    total = dets.sum()
    return ClassParams.from_systems([(params, dets / total)], [k]) if total > 0 else None


def sample_candidate(seed: int, k: int) -> ClassParams | None:
    """Candidate ``k`` of the search as one class, map probabilities proportional to |det A| (None
    when every map is singular: no probabilities)."""
    return _candidate(_draw(seed, k)[1], k)


def cloud_variances(candidate: ClassParams, uniforms: np.ndarray) -> np.ndarray | None:
    """Axis variances float64 [3] of the normalised, centred cloud of class 0 of ``candidate``;
    None if it is not finite."""
    matrices, shifts, probs = candidate.system(0)
    points = ifs3d.chaos_game(matrices, shifts, probs, uniforms)
    if not ifs3d.normalize_center(points):
        return None
    return ifs3d.axis_variances(points)


def accepts(variances: np.ndarray | None, threshold: float) -> bool:
    """The official acceptance: every axis variance strictly above ``threshold``."""
    return variances is not None and bool(np.all(variances > threshold))


@dataclass(frozen=True)
class _SearchChunk(CandidateJudge):
    """Judges candidates by the variances of their cloud (picklable for workers)."""

    seed: int
    points: int
    threshold: float

    def judge(self, k: int, scratch: None) -> ClassParams | None:
        rng, params = _draw(self.seed, k)
        candidate = _candidate(params, k)
        if candidate is None or not accepts(cloud_variances(candidate, rng.random(self.points)), self.threshold):
            return None
        return candidate


def search_classes(classes: int, *, seed: int, points: int = DEFAULT_SEARCH_POINTS,
                   threshold: float = DEFAULT_THRESHOLD, workers: int = 1, backend: str = "local",
                   max_candidates: int | None = None) -> ClassParams:
    """The first ``classes`` accepted candidates in k order (identical for any ``workers``)."""
    return search_candidates(
        _SearchChunk(seed, points, threshold), classes,
        expected_rate=EXPECTED_ACCEPT, max_candidates=max_candidates or 5_000 * classes + 200_000,
        too_few=lambda hits, tried: (f"category search found only {hits} of {classes} classes in {tried} "
                                     f"candidates; lower --variance-threshold (now {threshold})"),
        workers=workers, backend=backend, desc="exfractaldb search")


def load_class_params(path: str | Path) -> ClassParams:
    """The classes of an ExFractalDB ``classes.npz`` written by an earlier run; FdslError (one line)."""
    arrays = read_arrays(path, _ARRAYS, "an ExFractalDB classes.npz")
    params, num_maps = arrays["params"], arrays["num_maps"]
    if params.ndim != 3 or params.shape[1:] != (MAX_MAPS, NUM_PARAMS) or num_maps.shape != (len(params),):
        raise FdslError(f"--params-from {path}: params must be [C, {MAX_MAPS}, {NUM_PARAMS}], got {params.shape}")
    if arrays["probs"].shape != (len(params), MAX_MAPS) or arrays["candidate"].shape != (len(params),):
        raise FdslError(f"--params-from {path}: probs must be [C, {MAX_MAPS}] and candidate [C]")
    if np.any(num_maps < 1) or np.any(num_maps > MAX_MAPS):
        raise FdslError(f"--params-from {path}: num_maps must be in 1..{MAX_MAPS}")
    return ClassParams(*(np.ascontiguousarray(arrays[k]) for k in _ARRAYS))
