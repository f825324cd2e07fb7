"""Read a data set for training: ``dataset.py`` (``ShardDataset``, the ImageFolder drop-in) and
``loader.py`` (``ShardLoader``, whole batches; both torch),
``_index.py`` (what a loader reads at open, through ``fdsl.datasets.format.open_dataset``),
``_batches.py`` (batch buffers, process workers, read-ahead), ``sampler.py`` (the seeded
per-epoch order of every rank) and ``pruning.py`` (which images of each class to keep).
Nothing here writes a data set."""
