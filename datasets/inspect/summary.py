"""What a data set holds, from its manifest and its labels (any storage, finished or not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fdsl.datasets.format import open_dataset, read_manifest, storage_of


def _labels(folder: Path, manifest: dict[str, Any]) -> np.ndarray:
    """Every image's label: from the reader of a complete set, from the shards listed so far of
    an unfinished one."""
    if manifest["complete"]:
        with open_dataset(folder) as reader:
            return reader.labels
    reader = storage_of(manifest).reader
    parts = [reader.entry_labels(folder, e) for e in sorted(manifest["shards"], key=lambda e: e["index"])]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def summarize(folder: str | Path, read_labels: bool = True) -> dict[str, Any]:
    """Counts per class, image shape, metadata fields and size of a data set.

    ``read_labels=False`` takes everything from the manifest alone (for damaged data sets); the
    per-class counts are then None.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    labels = _labels(folder, manifest) if read_labels else None
    readable = labels is not None
    classes = manifest["classes"]
    counts = np.bincount(labels, minlength=len(classes)) if readable and len(labels) else np.zeros(len(classes), int)
    return {
        "folder": str(folder),
        "generator": manifest["generator"],
        "seed": manifest.get("seed"),
        "complete": manifest.get("complete", False),
        "storage": manifest.get("storage", "hdf5"),
        "compression": manifest.get("compression"),
        "images": int(manifest["num_images"]),
        "planned": int(manifest.get("num_items", manifest["num_images"])),
        "shards": len(manifest["shards"]),
        "failures": int(manifest.get("failures", 0)),
        "image_shape": manifest.get("image_shape"),
        "metadata_fields": manifest.get("metadata_fields") or {},
        "bytes": sum(storage_of(manifest).reader.data_bytes(s) for s in manifest["shards"]),
        "classes": {name: (int(n) if readable else None) for name, n in zip(classes, counts, strict=True)},
    }


def format_summary(summary: dict[str, Any], max_classes: int = 20) -> str:
    """Human-readable text of ``summarize``'s result."""
    gen = summary["generator"]
    known = [n for n in summary["classes"].values() if n is not None]
    counts = np.array(known or [0])
    lines = [
        f"data set   {summary['folder']}",
        f"generator  {gen['name']} v{gen['version']}, seed {summary['seed']}",
        f"status     {'complete' if summary['complete'] else 'INCOMPLETE (re-run the command to resume)'}",
        f"images     {summary['images']} of {summary['planned']} planned in {summary['shards']} shards "
        f"({summary['storage']}, {summary['compression']}), {summary['bytes'] / 2**20:.1f} MiB",
        f"failures   {summary['failures']}",
        f"shape      {summary['image_shape']} uint8",
        "metadata   " + (", ".join(f"{k} ({v})" for k, v in summary["metadata_fields"].items()) or "-"),
        f"classes    {len(summary['classes'])}, "
        + (f"images per class min {counts.min()} / mean {counts.mean():.1f} / max {counts.max()}" if known
           else "images per class not read (the data set failed verification)"),
    ]
    for i, (name, n) in enumerate(summary["classes"].items()):
        if i == max_classes:
            lines.append(f"  ... {len(summary['classes']) - max_classes} more classes")
            break
        lines.append(f"  {i:5d} {name:<24} {'?' if n is None else n}")
    return "\n".join(lines)
