"""fdsl: formula-driven synthetic image datasets and training on them.

Subpackages: ``fdsl.generators`` (FractalDB, ExFractalDB, RCDB, LineDB; on the CPU or a GPU),
``fdsl.render`` (ShapeNet and procedural renders), ``fdsl.datasets`` (the builder and its job
runner, the HDF5 and PNG storage formats, ``ShardDataset`` / ``ShardLoader``, pruning, inspection,
exports, importers), ``fdsl.train`` (models, augmentation, recipes, the training loop) and
``fdsl.studies`` (``run-study``: pruning, transfer, augmentation and feature statistics).

The modules of this root package are what every layer uses: ``errors``, ``atomic`` (files and
folder locks), ``limits``, ``sources`` (the ShardSource seam), ``imaging``, ``progress``,
``jsonfile``, ``cli``, ``faults``, ``interrupts``, ``workers`` and ``entry`` (the console scripts).
"""

__version__ = "0.1.0"
