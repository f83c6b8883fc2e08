"""The one error class for nnx files that cannot be written or read."""


class NnxFileError(ValueError):
    """An nnx file (model file, checkpoint, ``.npz`` data file) cannot be read or written: missing,
    not a regular file, not an ``.npz``, truncated, corrupted, crafted to exhaust memory, or saved
    for another model. The message is one line naming the file and what is wrong.

    ``nnx.CheckpointError`` and ``nnx.ModelFileError`` are other names of this class.
    """
