"""A data set of arrays, moved to the backend's device once."""

from __future__ import annotations

from typing import Any

from ..backend import Backend, backend_of, get_backend, namespace


class ArrayDataset:
    """Features ``x`` (first axis = samples) and optional targets ``y`` of the same length.

    >>> import numpy as np
    >>> data = ArrayDataset(np.zeros((5, 3)), np.arange(5))
    >>> len(data), data.to("cpu", dtype="float32").x.dtype
    (5, dtype('float32'))
    """

    def __init__(self, x: Any, y: Any = None):
        namespace(x)  # a clear TypeError for lists and other non-arrays
        if x.ndim < 1:
            raise ValueError(f"ArrayDataset: features must have a sample axis, got shape {x.shape}")
        if y is not None:
            namespace(y)
            if y.ndim < 1 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"ArrayDataset: {x.shape[0]} samples of features but targets of shape "
                    f"{tuple(y.shape)}"
                )
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def backend(self) -> Backend:
        return backend_of(self.x)

    def to(self, backend: str | Backend, dtype: Any = None) -> ArrayDataset:
        """This data on ``backend``, features (and floating targets) cast to ``dtype``.

        Integer targets (class labels) stay integers. Arrays already there are not copied.
        """
        be = get_backend(backend)
        x = be.asarray(self.x, dtype=dtype)
        y = self.y
        if y is not None:
            host_or_dev_xp = namespace(y)
            floating = host_or_dev_xp.isdtype(y.dtype, "real floating")
            y = be.asarray(y, dtype=dtype if floating else None)
        return ArrayDataset(x, y)
