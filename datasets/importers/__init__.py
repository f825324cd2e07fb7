"""Importers of outside data sets into fdsl's format: each a ``ShardSource`` plus its CLI
(``cub.py``: CUB-200-2011 as ``import-cub``). They read foreign layouts; the builder and the
format writers do the rest."""
