"""Importers of outside data sets into fdsl's format: each a ``ShardSource`` and its public import
function (``cub.py``: CUB-200-2011, ``import_cub``), with the command in ``cli.py``
(``import-cub``). They read foreign layouts; the builder and the format writers do the rest."""
