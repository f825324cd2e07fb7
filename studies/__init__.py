"""fdsl.studies: the studies the toolkit exists for, each a folder of ordinary training runs.

- ``run_pruning_study``: data pruning by a recorded field (viewpoint study, CUB protocol);
- ``run_transfer_study``: formula-driven pre-training against training from scratch;
- ``run_augment_study``: augmentation search by affinity and diversity, self-paced arms;
- ``import_digits``: scikit-learn's bundled handwritten digits as a built-in downstream set;
- ``checkpoint_stats`` (``run-study stats``, not a study of runs): a data set's intra-class
  spread and class-mean distances in a trained checkpoint's feature space.

Every study of runs (the first three) writes ``study.json`` (its settings; another study in the same folder is refused
unless ``overwrite``), one ``train-classifier`` run folder per cell under ``runs/`` (re-running
resumes: finished cells are kept, a half-finished one continues from its checkpoint), and
``table.md`` (the paper's claim, the test, intervals, Holm-adjusted p-values and a verdict in
words) and ``results.csv`` (every run). ``runner.py`` runs the cells, ``statistics.py`` holds
the statistics, ``report.py`` writes tables and plots. Importing this package does not import
torch.
"""

from __future__ import annotations

from fdsl.studies.augment import run_augment_study
from fdsl.studies.digits import import_digits
from fdsl.studies.pruning import run_pruning_study
from fdsl.studies.stats import checkpoint_stats
from fdsl.studies.transfer import run_transfer_study

__all__ = ["checkpoint_stats", "import_digits", "run_augment_study", "run_pruning_study", "run_transfer_study"]
