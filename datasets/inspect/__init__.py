"""Look at a data set of any storage: ``report.py`` (``inspect_shards``, the ``inspect-shards``
command's function; ``cli.py`` is the command), ``summary.py``, ``pictures.py`` (contact sheets,
histograms) and ``stats.py`` (intra-class std and class-mean distances)."""
