"""PNG trees with a ``metadata.csv`` sidecar: ``writer.py`` writes a task, ``reader.py`` reads and verifies."""
