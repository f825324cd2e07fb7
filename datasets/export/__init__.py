"""Export a data set to the formats other tools read: ``export.py`` (``export_shards``, the
``export-shards`` command's function; ``cli.py`` is the command) and ``targets.py`` (WebDataset,
ImageFolder, Hugging Face writers)."""
