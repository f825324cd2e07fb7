"""Errors that the command-line tools turn into one clear line and exit status 2."""


class FdslError(Exception):
    """A user-facing error: bad input, a bad flag, a broken file. The message is one line."""


class ConfigMismatchError(FdslError):
    """The output folder holds a data set made with a different configuration."""


class ShardError(FdslError):
    """A shard or manifest is missing, truncated or fails its checksum."""


class DiskFullError(FdslError):
    """The disk (or quota) ran out while writing; the message names the folder and the space needed."""
