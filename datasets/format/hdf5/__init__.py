"""HDF5 shards: ``writer.py`` writes one ``shard-NNNNN.h5`` (and finishes a build),
``reader.py`` reads and verifies them, ``shardfile.py`` opens and checks one file, and
``chunks.py`` reads images for the loaders without h5py."""

from fdsl.datasets.format.base import StorageFormat
from fdsl.datasets.format.hdf5.reader import Hdf5Reader
from fdsl.datasets.format.hdf5.writer import Hdf5ShardWriter, finish, own_files

FORMAT = StorageFormat("hdf5", Hdf5ShardWriter, Hdf5Reader, finish, own_files)
