"""``run-study augment``: which augmentation helps, predicted without training a model per candidate.

The Affinity and Diversity protocol (Gontijo-Lopes et al. 2020, ``fdsl.studies.affinity``), in
the study folder ``out``:

1. three fixed sets of the data, shared by every run (``split/train.json``, ``val.json``,
   ``test.json``), grouped by ``model_id`` wherever the data records it (no 3-D model on two
   sides): validation measures affinity and picks ``--top``; the test set gives the final top-1;
2. a clean model, trained without augmentation (``runs/full/none/seed<S>``), and short runs, the
   clean one and one per candidate (``runs/short/<candidate>``, one schedule for all);
3. affinity and diversity as defined and as short-run estimates, with their cost in steps;
4. each candidate (or the ``top`` K by the short-run fdsl score) trained fully on every seed;
5. how well each metric predicts the final test top-1 against the short runs' validation top-1.

With ``self_paced=True`` the candidates form one policy, and the arms none / all / threshold /
ratio of self-paced augmentation (Takase et al. 2021) are compared over seeds. Every cell is an
ordinary ``train-classifier`` run folder; re-running resumes (finished runs are kept).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.studies import data as study_data
from fdsl.studies import report, runner, statistics
from fdsl.studies.affinity import affinity_study, measure_affinity  # noqa: F401  (public re-export)

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES = ("flip", "crop", "jitter", "erasing", "rotation", "mixup", "cutmix", "flip+crop")
GROUP_FIELD = "model_id"
# Presets: the recipe, the config fields of every run, the short-run length and the two held-out shares.
PRESETS: dict[str, dict[str, Any]] = {
    # ResNet-18 at 16 px: a 10-class x 100-image FractalDB study in minutes on 2 CPU cores. Short
    # runs of 4 of the 8 epochs: after 2 the clean model was still at chance (0.12 on 10 classes)
    # and no short-run metric carried signal.
    "mini": {"recipe": "fractaldb-resnet", "short_epochs": 4, "val_fraction": 0.2, "test_fraction": 0.2,
             "fields": dict(model="resnet18", image_size=16, resize_ratio=1.0, batch_size=64, workers=0,
                            epochs=8, lr=0.02, warmup_epochs=0.5, weight_decay=5e-4, schedule="cosine")},
}
SELF_PACED_ARMS = ("none", "all", "threshold", "ratio")
ALPHA = 0.05


def three_sets(labels: np.ndarray, groups: np.ndarray | None, val_fraction: float,
               test_fraction: float) -> dict[str, np.ndarray]:
    """Train, validation and test rows (sorted, disjoint), stratified by class and, with
    ``groups``, whole groups on one side; shares of the whole data set."""
    from fdsl.train.data import split_indices

    rest, test = split_indices(labels, test_fraction, 0, groups)
    train, val = split_indices(labels[rest], val_fraction / (1.0 - test_fraction), 1,
                               None if groups is None else groups[rest])
    return {"train": rest[train], "val": rest[val], "test": test}


def _sets(data: str, spec: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], str]:
    """The study's fixed sets of ``data`` and how they were grouped; FdslError before any file."""
    from fdsl.train.data import open_data

    groups = None
    if (Path(data) / "manifest.json").is_file() and GROUP_FIELD in study_data.metadata_fields(data):
        groups = study_data.columns(data, (GROUP_FIELD,))[1][GROUP_FIELD]
    sets = three_sets(open_data(data, 32, 1.0).labels, groups, spec["val_fraction"], spec["test_fraction"])
    if any(len(rows) == 0 for rows in sets.values()):
        raise FdslError(f"{data}: too few images for train, validation ({spec['val_fraction']:.0%}) and test "
                        f"({spec['test_fraction']:.0%}) sets in every class")
    return sets, f"grouped by {GROUP_FIELD}" if groups is not None else "image by image"


def run_augment_study(data: str | Path, out: str | Path, *, candidates: Sequence[str] = DEFAULT_CANDIDATES,
                      top: int | None = None, self_paced: bool = False, seeds: Sequence[int] = (0,),
                      preset: str | Mapping[str, Any] = "mini", overrides: Mapping[str, Any] | None = None,
                      jobs: int = 1, overwrite: bool = False, threshold: float = 1.0,
                      ratio: float = 0.5, device: str = "auto", backend: str = "local",
                      threads: int | None = None, short_epochs: int | None = None,
                      progress: bool = True) -> dict[str, Any]:
    """Run the augmentation study on ``data`` into ``out``; return its results.

    Args:
        data: data set folder or ImageFolder tree.
        out: study folder (``study.json``, ``split/``, ``runs/``, ``table.md``, ``results.csv``
            (one row per run), and ``candidates.csv`` (one row per candidate: every metric) and
            ``scatter.png`` for the Affinity/Diversity study).
        candidates: augmentation names with optional strength, pairs joined by ``+``
            (``fdsl.train.augment.build_candidate``): ``["flip", "erasing:0.5", "flip+mixup"]``;
            8 by default.
        top: train only the K candidates of highest short-run fdsl score fully (None: all).
        self_paced: compare none / all / threshold / ratio self-paced arms instead, with the
            candidates joined into one policy.
        seeds: training seeds of the full runs (the sets stay fixed; short runs use the first).
        preset: ``mini``, or a mapping with the same keys (``recipe``, ``short_epochs``,
            ``val_fraction``, ``test_fraction``, ``fields``).
        overrides: config fields for every run (after the preset; augmentation fields set here
            become part of the clean baseline).
        jobs: cells trained in parallel on local processes.
        overwrite: restart a study folder made with other settings.
        threshold, ratio: the self-paced arms' loss threshold and batch share.
        device: ``auto``, ``cpu`` or ``cuda``.
        backend, threads: where cells run (``local`` processes or ``ray``) and torch threads per
            run, as in every study (``fdsl.studies.runner.run_cells``).
        short_epochs: epochs of the short runs (None: the preset's); the table warns when the
            clean short run ends at chance, where the short-run metrics carry no signal.
        progress: False shows no progress bars or lines (``--quiet``).

    Returns:
        ``{"rows": [...], "correlations": {...}, "spearman": rho of the fdsl score or None,
        "seconds": ..., "table": ...}`` (also ``table.md`` and ``results.csv``).
    """
    from fdsl.train.augment import CLEAN_FIELDS, build_candidate
    from fdsl.train.recipes import resolve_config

    preset_name, spec = runner.resolve_preset(preset, PRESETS)
    if short_epochs is not None:
        if short_epochs < 1:
            raise FdslError(f"--short-epochs must be at least 1, got {short_epochs}")
        spec = {**spec, "short_epochs": short_epochs}
    built = [build_candidate(c) for c in candidates]
    names = [c.name for c in built]
    if not built or len(set(names)) != len(names) or "none" in names:
        raise FdslError("--candidates needs distinct augmentations (the clean baseline 'none' is always run)")
    if top is not None and top < 1:
        raise FdslError(f"--top must be at least 1, got {top}")
    if not seeds:
        raise FdslError("--seeds needs at least one seed")
    started = time.perf_counter()
    data, out = str(Path(data).resolve()), Path(out)
    study = {"kind": "augment", "data": data, "candidates": names, "top": top, "self_paced": self_paced,
             "seeds": list(seeds), "preset": preset_name, "spec": spec, "overrides": dict(overrides or {}),
             **({"threshold": threshold, "ratio": ratio} if self_paced else {})}
    sets, grouping = _sets(data, spec)  # bad data is refused before the folder exists
    base = {**spec["fields"], **CLEAN_FIELDS, **(overrides or {})}
    with runner.study_folder(out, "augment", study, overwrite=overwrite):
        files = {name: str(Path(runner.write_indices(out / "split" / f"{name}.json", rows)).resolve())
                 for name, rows in sets.items()}

        def cell(folder: str, fields: Mapping[str, Any], evaluate: str = "test",
                 row: Mapping[str, Any] | None = None, keep: bool = False) -> runner.Cell:
            merged = {**base, **fields, "train_indices": files["train"], "val_indices": files[evaluate]}
            resolve_config(spec["recipe"], sets=merged)  # a bad field fails here, before training
            # keep: the run's weights stay (affinity reloads the clean models); every other run
            # leaves its summary, metrics and predictions only (a mini study kept 4.7 GB of weights).
            return runner.Cell(out=str(out / runner.RUNS / folder), data=data, recipe=spec["recipe"],
                               row=dict(row or {}), overrides=merged, threads=runner.cell_threads(jobs, threads),
                               device=device, keep_checkpoint=keep)

        def run(cells: list[runner.Cell]) -> list[dict[str, Any]]:
            return runner.run_cells(cells, jobs=jobs, backend=backend, desc="augment study", progress=progress)

        if self_paced:
            policy = {k: v for c in built for k, v in c.fields.items()}
            result = _self_paced_study(cell, run, policy, seeds, threshold, ratio)
        else:
            batch = resolve_config(spec["recipe"], sets=base).batch_size
            result = affinity_study(out, cell, run, built, seeds, top, spec, sets, data, device, batch)
        result["seconds"] = round(time.perf_counter() - started, 1)
        sizes = ", ".join(f"{name} {len(rows)}" for name, rows in sets.items())
        report.save_text(out / "table.md", (
            f"# Augmentation study ({'self-paced arms' if self_paced else 'affinity and diversity'})\n\n"
            f"data `{data}`, preset `{preset_name}`, seeds {list(seeds)}; images: {sizes} ({grouping}); "
            f"{result['seconds']:.0f} s\n\n{result['table']}"))
        report.write_csv(out / "results.csv", result["runs"], columns=list(result["runs"][0]))
        if not self_paced:
            report.write_csv(out / "candidates.csv", result["rows"], columns=list(result["rows"][0]))
    log.debug("augment study done in %.0f s: %s", result["seconds"], out / "table.md")
    return result


def _self_paced_study(cell: Any, run: Any, policy: Mapping[str, Any], seeds: Sequence[int],
                      threshold: float, ratio: float) -> dict[str, Any]:
    arms = {"none": {}, "all": dict(policy),
            "threshold": {**policy, "self_paced_threshold": threshold},
            "ratio": {**policy, "self_paced_ratio": ratio}}
    cells = [cell(f"{arm}/seed{s}", {**fields, "seed": s}) for arm, fields in arms.items() for s in seeds]
    rows = []
    for done, summary in zip(cells, run(cells), strict=True):
        metrics = runner.read_metrics(done.out)
        shares = [m.get("aug_fraction") for m in metrics if m.get("aug_fraction") is not None]
        arm = Path(done.out).parent.name
        rows.append({"arm": arm, "seed": int(Path(done.out).name[4:]), "top1": summary["top1"],
                     "aug_fraction": 0.0 if arm == "none" else (float(np.mean(shares)) if shares else None),
                     "final_train_loss": statistics.final_epoch_loss(metrics), "seconds": summary.get("seconds")})
    top1 = {(r["arm"], r["seed"]): r["top1"] for r in rows}
    label = {"threshold": f"threshold {threshold:g}", "ratio": f"ratio {ratio:g}"}
    lines = []
    for arm in SELF_PACED_ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        share = [r["aug_fraction"] for r in mine if r["aug_fraction"] is not None]
        lines.append([label.get(arm, arm), report.format_mean_std([r["top1"] for r in mine]),
                      report.fmt(float(np.mean(share)) if share else None, 3),
                      f"{np.mean([r['seconds'] or 0 for r in mine]):.0f}"])
    family = [("all", "none"), ("threshold", "all"), ("ratio", "all")]
    tests = [statistics.paired_difference([top1[a, s] for s in seeds], [top1[b, s] for s in seeds])
             for a, b in family]
    for t, adjusted in zip(tests, statistics.holm([t["p"] for t in tests]), strict=True):
        t["p_holm"] = adjusted
    comparisons = [[f"{label.get(a, a)} - {b}", report.format_estimate(t), report.fmt_p(t["p"]),
                    report.fmt_p(t["p_holm"]), report.holm_word(t, "better", "worse", ALPHA)]
                   for (a, b), t in zip(family, tests, strict=True)]
    policy_text = ", ".join(f"{k}={v}" for k, v in policy.items())
    table = ("**Claim** (Takase et al. 2021): augmenting only the samples whose loss is high (self-paced) "
             "trains a better model than augmenting every sample.\n\n"
             f"**Test**: paired difference in test top-1 over {len(seeds)} seeds (t-interval on seeds - 1 "
             "degrees of freedom), Holm-adjusted over the comparisons below.\n\n"
             + report.markdown_rows(["arm", f"top-1 (mean ± std over {len(seeds)} seeds)", "augmented share",
                                     "seconds per run"], lines, "lrrr")
             + "\n" + report.markdown_rows(["comparison", "difference [95% CI]", "p", "p (Holm)", "verdict"],
                                           comparisons, "lrrrl")
             + f"\np (Holm): Holm-adjusted over the {len(family)} comparisons (family-wise error {ALPHA:g}); "
             f"intervals unadjusted.\n\nPolicy: {policy_text}.\n")
    return {"rows": rows, "runs": rows, "comparisons": tests, "table": table}

