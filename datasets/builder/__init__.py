"""Build a data set folder from a ShardSource: ``build.py`` (``build_dataset``: plan, run, write,
finish), ``jobs.py`` (one task per shard on local processes, inline or Ray), ``outfolder.py``
(resume what verifies, refuse what does not match, ``--overwrite``), ``cli.py`` (the flags every
builder command shares) and ``_heap.py`` (render parts reuse freed memory)."""
