"""fdsl: formula-driven synthetic image datasets and training on them.

Subpackages: ``fdsl.generators`` (FractalDB, ExFractalDB, RCDB), ``fdsl.render`` (ShapeNet and
procedural renders), ``fdsl.datasets`` (HDF5 shards, job runner, loaders, pruning) and
``fdsl.train`` (models, augmentation, training loop).
"""

__version__ = "0.1.0"
