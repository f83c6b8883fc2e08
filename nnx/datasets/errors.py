"""The error raised for every data set problem (missing files, bad checksums, no scikit-learn)."""


class DatasetError(RuntimeError):
    """A data set cannot be loaded; the message says which files are expected and where."""
