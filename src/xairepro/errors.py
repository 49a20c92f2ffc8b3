"""Errors raised in the user's terms.

Everything a user can cause (bad name, bad shape, bad config value, missing file) raises a
subclass of ``ValueError`` or ``FileNotFoundError`` with a one-line message; the CLI turns
these into exit code 2 without a traceback.
"""

from __future__ import annotations


class XaiReproError(Exception):
    """Base class of every error xairepro raises on purpose."""


class UsageError(XaiReproError, ValueError):
    """Bad input: unknown name, invalid value, wrong shape. CLI exit code 2."""


class ConfigError(UsageError):
    """A configuration key is unknown or its value has the wrong type or range."""


class DataNotFoundError(XaiReproError, FileNotFoundError):
    """A data set's files are missing; the message names the files and where to get them."""


class OfflineError(XaiReproError, RuntimeError):
    """Something would need the network (weights or data from a hub) and none is allowed."""


class CheckpointError(UsageError):
    """A checkpoint file is missing, corrupted, or does not match the model."""


#: Exceptions the CLI reports as bad usage/input (exit code 2, one line, no traceback).
USER_ERRORS: tuple[type[BaseException], ...] = (
    UsageError,
    DataNotFoundError,
    OfflineError,
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
)
