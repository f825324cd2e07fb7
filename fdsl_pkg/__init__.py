"""fdsl: formula-driven synthetic image datasets and training on them.

Subpackages: ``fdsl.generators`` (FractalDB, ExFractalDB, RCDB, LineDB), ``fdsl.render`` (ShapeNet
and procedural renders), ``fdsl.datasets`` (HDF5 shards, job runner, loaders, pruning),
``fdsl.train`` (models, augmentation, training loop) and ``fdsl.studies`` (``run-study``: pruning,
transfer, augmentation and feature statistics).
"""

__version__ = "0.1.0"
