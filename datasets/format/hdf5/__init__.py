"""HDF5 shards: ``writer.py`` writes one ``shard-NNNNN.h5``, ``reader.py`` reads and verifies them."""
