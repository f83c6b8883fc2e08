"""A data set of arrays, moved to the backend's device once."""

from __future__ import annotations

from typing import Any

from ..backend import Backend, backend_of, get_backend, namespace
from ..core.structure import first_leaf, leaves, map_structure


class ArrayDataset:
    """Features ``x`` (first axis = samples) and optional targets ``y`` of the same length.

    Either may be an array, a tuple of arrays (a model with several inputs or outputs) or a
    dict of arrays (inputs by name); every array has the same number of samples.

    >>> import numpy as np
    >>> data = ArrayDataset(np.zeros((5, 3)), np.arange(5))
    >>> len(data), data.to("cpu", dtype="float32").x.dtype
    (5, dtype('float32'))
    """

    def __init__(self, x: Any, y: Any = None):
        for key, leaf in leaves(x):
            namespace(leaf)  # a clear TypeError for lists and other non-arrays
            if leaf.ndim < 1:
                where = f" {key!r}" if key else ""
                raise ValueError(
                    f"ArrayDataset: features{where} must have a sample axis, got shape "
                    f"{tuple(leaf.shape)}"
                )
        n = int(first_leaf(x).shape[0])
        for what, value in (("features", x), ("targets", y)):
            if value is None:
                continue
            for key, leaf in leaves(value):
                namespace(leaf)
                if leaf.ndim < 1 or leaf.shape[0] != n:
                    where = f" {key!r}" if key else ""
                    raise ValueError(
                        f"ArrayDataset: {n} samples of features but {what}{where} of shape "
                        f"{tuple(leaf.shape)}"
                    )
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return int(first_leaf(self.x).shape[0])

    @property
    def backend(self) -> Backend:
        return backend_of(first_leaf(self.x))

    def to(self, backend: str | Backend, dtype: Any = None) -> ArrayDataset:
        """This data on ``backend``, features (and floating targets) cast to ``dtype``.

        Integer targets (class labels) stay integers. Arrays already there are not copied.
        """
        be = get_backend(backend)

        def move(a: Any) -> Any:
            floating = namespace(a).isdtype(a.dtype, "real floating")
            return be.asarray(a, dtype=dtype if floating else None)

        x = map_structure(lambda a: be.asarray(a, dtype=dtype), self.x)
        y = None if self.y is None else map_structure(move, self.y)
        return ArrayDataset(x, y)
