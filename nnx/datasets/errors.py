"""The error raised for every data set problem (missing files, bad checksums, no scikit-learn)."""

from ..io.errors import NnxFileError


class DatasetError(RuntimeError):
    """A data set cannot be loaded; the message says which files are expected and where."""


class DataFileError(DatasetError, NnxFileError):
    """The user's data file cannot be read: a :class:`DatasetError` like every data set problem,
    and an :class:`~nnx.io.errors.NnxFileError` like every unreadable nnx file."""
