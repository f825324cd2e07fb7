"""The transfer study's table: top-1 per arm and downstream set, and each pre-trained arm against
scratch with an interval that covers pre-training and fine-tuning variation, Holm-adjusted.

An arm's difference to scratch is a pre-training-seed x fine-tuning-seed table (fine-tuning seed
s pairs arm(p, s) with scratch(s): same subset, same seed); its mean gets the crossed two-way
interval of ``statistics.crossed_mean_interval`` (one-way over fine-tuning seeds when there is
one pre-training seed, which then leaves pre-training variation out, and the table says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fdsl.studies import report, statistics

ALPHA = 0.05
SCRATCH = "scratch"


def _word(item: Mapping[str, Any]) -> str:
    return report.holm_word(item, "pre-training helps", "pre-training hurts", ALPHA)


def compare(rows: Sequence[Mapping[str, Any]], arms: Sequence[str], downs: Sequence[str]) -> list[dict[str, Any]]:
    """Each pre-trained arm minus scratch per downstream set, Holm-adjusted over all of them."""
    scratch = {(r["downstream"], r["seed"]): r["top1"] for r in rows if r["arm"] == SCRATCH}
    out = []
    for d in downs:
        for a in arms[1:]:
            mine = {(r["pretrain_seed"], r["seed"]): r["top1"] for r in rows if r["arm"] == a and r["downstream"] == d}
            pseeds = sorted({p for p, _ in mine})
            fseeds = sorted({s for _, s in mine if (d, s) in scratch})
            table = [[mine[p, s] - scratch[d, s] for s in fseeds] for p in pseeds]
            est = statistics.crossed_mean_interval(table) if table and fseeds else {"mean": None, "p": None}
            out.append({"downstream": d, "arm": a, "pretrain_seeds": len(pseeds), "seeds": len(fseeds), **est})
    for item, adjusted in zip(out, statistics.holm([c.get("p") for c in out]), strict=True):
        item["p_holm"] = adjusted
    return out


def write_outputs(out: Path, rows: list[dict[str, Any]], pre_rows: list[dict[str, Any]], arms: list[str],
                  downs: list[str], train_per_class: int | None, *, flips: Mapping[str, bool],
                  normalisation: Mapping[str, Any]) -> dict[str, Any]:
    """table.md and results.csv (every run: pre-training, then fine-tuning); returns the results."""
    every = [{"stage": "pretrain", "arm": r["pretrain"], **r} for r in pre_rows] + \
        [{"stage": "finetune", **r} for r in rows]
    report.write_csv(out / "results.csv", every, ["stage", "downstream", "arm", "pretrain_seed", "seed", "top1",
                                                  "train_images", "val_images", "epochs", "seconds", "run"])
    cell = {(a, d): report.format_mean_std([r["top1"] for r in rows if r["arm"] == a and r["downstream"] == d])
            for a in arms for d in downs}
    comparisons = compare(rows, arms, downs)
    pseeds = sorted({r["pretrain_seed"] for r in pre_rows})
    fseeds = sorted({r["seed"] for r in rows})
    spread = (f"over {len(pseeds)} pre-training seeds x {len(fseeds)} fine-tuning seeds: it covers both "
              "pre-training and fine-tuning variation; scratch over the fine-tuning seeds" if len(pseeds) > 1 else
              f"over {len(fseeds)} fine-tuning seeds from one pre-trained model per set: it leaves "
              "pre-training variation out (give --pretrain-seeds to cover it)")
    lines = [[c["arm"], c["downstream"], report.format_estimate(c),
              f"{c.get('df', 0):.1f}" if c.get("df") else "-", report.fmt_p(c.get("p")),
              report.fmt_p(c["p_holm"]), _word(c)] for c in comparisons]
    subset = "all training images" if train_per_class is None else f"{train_per_class} training images per class"
    no_flip = [d for d in downs if not flips.get(d, True)]
    pre = [f"- {r['pretrain']} (seed {r['pretrain_seed']}): {r['train_images']} images, {r['epochs']} epochs, "
           f"{r['seconds']:.0f} s" for r in pre_rows]
    verdicts = "; ".join(f"{c['arm']} on {c['downstream']}: {_word(c)}" for c in comparisons)
    text = (
        "# Transfer study: does formula-driven pre-training beat training from scratch?\n\n"
        "**Claim** (FractalDB, Kataoka et al.): pre-training on a formula-driven data set improves "
        "top-1 on downstream sets over training from scratch with the same recipe.\n\n"
        "**Test**: per downstream set, each pre-trained arm minus scratch in test top-1, paired by "
        "fine-tuning seed (the same training subset and seed); the interval covers pre-training seeds "
        "and fine-tuning seeds (crossed two-way random effects, Satterthwaite degrees of freedom, never "
        "narrower than either one-way interval).\n\n"
        f"**Design**: {subset} (one subset per fine-tuning seed, shared by all arms); every arm, scratch "
        f"included, normalises with the pre-training mean {normalisation['mean']} and std "
        f"{normalisation['std']}; "
        + (f"no horizontal flips on {', '.join(no_flip)} (not mirror-symmetric)" if no_flip else
           "horizontal flips as the recipe sets them on every downstream set") + ".\n\n"
        f"## Verdict\n\n{verdicts or 'no pre-trained arm'}.\n\n"
        f"## Top-1 on each downstream test set (mean ± std {spread})\n\n"
        + report.markdown_table("arm \\ downstream", arms, downs, cell)
        + "\n## Each arm against scratch (difference in top-1, 95% interval)\n\n"
        + report.markdown_rows(["arm", "downstream", "difference [95% CI]", "df", "p", "p (Holm)", "verdict"],
                               lines, "llrrrrl")
        + f"\np (Holm): Holm-adjusted over all {len(lines)} comparisons in this table (family-wise error "
        f"{ALPHA:g}); the intervals are unadjusted. Precision (95% half-widths): "
        + ("; ".join(f"{c['arm']} on {c['downstream']} ±{c['half']:.4f}" for c in comparisons
                     if c.get("half") is not None) or "none (one seed gives no interval)")
        + ".\n\n## Pre-training runs\n\n" + "\n".join(pre) + "\n")
    report.save_text(out / "table.md", text)
    return {"rows": rows, "pretrain": pre_rows, "comparisons": comparisons, "table": text, "out": str(out)}
