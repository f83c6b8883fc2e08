"""Fractional max pooling: ``FractionalMaxPool2d/3d`` (Graham, 2014), as in PyTorch.

Each ``(n, c)`` plane gets its own pseudo-random windows: along an axis of length ``L`` pooled to
``O`` with kernel ``k``, window ``i`` starts at ``floor((i + u) * a) - floor(u * a)`` with
``a = (L - k) / (O - 1)`` and one uniform sample ``u`` per plane and axis (the last window
starts at ``L - k``), computed in the input's floating dtype as PyTorch does. The samples come
from the module's seeded generator (like :class:`~nnx.layers.dropout.Dropout`: ``rng=``,
:meth:`reseed`, drawn on the device), or are fixed by ``_random_samples`` (PyTorch's argument),
an ``(N, C, d)`` array. The maxima are taken one axis at a time (:mod:`nnx.layers._window_max`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from ..backend import Generator, backend_of, device, is_tracer, namespace, to_numpy
from ..core.checks import check_floating, check_grad, require_forward
from ..core.init import Seed, as_rng
from ..core.module import Module
from ._spatial import int_tuple
from ._window_max import check_batched, window_max, window_max_backward


def _ratio_tuple(value: Any, nd: int, who: str) -> tuple[float, ...]:
    many = isinstance(value, Sequence) and not isinstance(value, str)
    items = tuple(value) if many else (value,) * nd
    ok = len(items) == nd and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and 0.0 < float(v) < 1.0
        for v in items
    )
    if not ok:
        raise ValueError(
            f"{who}: output_ratio must be a number in (0, 1) or a tuple of {nd} of them, "
            f"got {value!r}"
        )
    return tuple(float(v) for v in items)


def _samples_list(samples: Any, nd: int, who: str) -> list:
    """``_random_samples`` (any array or nested sequence of shape ``(N, C, nd)`` in [0, 1)) as a
    nested list of floats."""
    host = to_numpy(samples).tolist() if hasattr(samples, "shape") else samples
    ok = isinstance(host, (list, tuple)) and len(host) > 0
    if ok:
        try:
            rows = [[[float(u) for u in plane] for plane in row] for row in host]
        except (TypeError, ValueError):
            rows, ok = [], False
        ok = ok and all(
            len(row) == len(rows[0])
            and all(len(p) == nd and all(0 <= u < 1 for u in p) for p in row)
            for row in rows
        )
    if not ok:
        raise ValueError(
            f"{who}: _random_samples must be an array of shape (N, C, {nd}) with values in "
            f"[0, 1), got {samples!r}"
        )
    return rows


class _FractionalMaxPool(Module):
    nd = 2
    _cache = None
    rows: tuple[int, int, int] | None = None

    def __init__(
        self,
        kernel_size: int | tuple[int, ...],
        output_size: int | tuple[int, ...] | None = None,
        output_ratio: float | tuple[float, ...] | None = None,
        return_indices: bool = False,
        _random_samples: Any = None,
        *,
        rng: Seed = None,
    ):
        who, nd = type(self).__name__, self.nd
        self.kernel_size = int_tuple(kernel_size, nd, "kernel_size", who)
        if (output_size is None) == (output_ratio is None):
            raise ValueError(
                f"{who}: give exactly one of output_size and output_ratio, got output_size="
                f"{output_size!r} and output_ratio={output_ratio!r}"
            )
        self.output_size = (
            None if output_size is None else int_tuple(output_size, nd, "output_size", who)
        )
        self.output_ratio = None if output_ratio is None else _ratio_tuple(output_ratio, nd, who)
        self.return_indices = bool(return_indices)
        self._samples = None if _random_samples is None else _samples_list(_random_samples, nd, who)
        self.seed = int(as_rng(rng).integers(2**63))
        self._generator: Generator | None = None

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments (``_random_samples`` as a nested list) for save_model."""
        return {
            "kernel_size": self.kernel_size,
            "output_size": self.output_size,
            "output_ratio": self.output_ratio,
            "return_indices": self.return_indices,
            "_random_samples": self._samples,
            "rng": self.seed,
        }

    def extra_repr(self) -> str:
        text = f"kernel_size={self.kernel_size}, "
        if self.output_size is not None:
            text += f"output_size={self.output_size}"
        else:
            text += f"output_ratio={self.output_ratio}"
        return text + (", return_indices=True" if self.return_indices else "")

    def _who(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def reseed(self, seed: int) -> None:
        """Restart the sample sequence from ``seed`` (as ``Dropout.reseed``; the Trainer calls it
        before each batch, so a resumed run draws the same windows)."""
        self.seed = int(seed)
        self._generator = None

    def set_rows(self, rows: tuple[int, int, int] | None) -> None:
        """Rows ``[start, stop)`` of a global batch of ``total`` (data-parallel training): the
        samples are drawn for the whole batch and this rank's rows used, as in Dropout."""
        self.rows = rows

    def _draw(self, x: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        backend = backend_of(x)
        if self._generator is None or self._generator.backend != backend:
            if is_tracer(x):  # a key made inside jax.jit would leak out of the trace
                raise ValueError(
                    f"{self._who()}: inside jax.jit (nnx.compile) the layer needs the random "
                    f"key it makes at its first eager forward on JAX: run one forward before "
                    f"compiling, or fix the windows with _random_samples"
                )
            self._generator = backend.generator(self.seed)
        if self.rows is None:
            return self._generator.uniform(shape, dtype)
        start, stop, total = self.rows
        if shape[0] != stop - start:
            raise ValueError(
                f"{self._who()}: rows {start}:{stop} of a global batch of {total} were set for "
                f"this rank, but the input has {shape[0]} rows"
            )
        return self._generator.uniform((total, *shape[1:]), dtype)[start:stop, ...]

    def _starts(self, xp: Any, u: Any, size: int, out: int, k: int, itype: Any) -> Any:
        """``(N, C, out)`` window starts along one axis from the samples ``u`` (``(N, C)``),
        PyTorch's ``generate_intervals`` in ``u``'s dtype."""
        dev = device(u)
        last = xp.full((u.shape[0], u.shape[1], 1), size - k, dtype=itype, device=dev)
        if out == 1:
            return last
        alpha = xp.asarray(size - k, dtype=u.dtype, device=dev) / xp.asarray(
            out - 1, dtype=u.dtype, device=dev
        )
        i = xp.arange(out - 1, dtype=u.dtype, device=dev)
        u = u[..., None]
        head = xp.astype(xp.floor((i + u) * alpha), itype) - xp.astype(xp.floor(u * alpha), itype)
        return xp.concat([head, last], axis=2)

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        who, nd = self._who(), self.nd
        check_batched(x, nd, who)
        check_floating(xp, x, who)
        n, c, sizes = x.shape[0], x.shape[1], tuple(x.shape[2:])
        if self.output_size is not None:
            out = self.output_size
        else:
            out = tuple(int(s * r) for s, r in zip(sizes, self.output_ratio, strict=True))
        # PyTorch's bounds: output + kernel - 1 <= input in 2-d, < input in 3-d
        strict = nd == 3
        for s, o, k in zip(sizes, out, self.kernel_size, strict=True):
            if o <= 0 or o + k - 1 > s - strict:
                raise ValueError(
                    f"{who}: input of shape {tuple(x.shape)} is too small for output size "
                    f"{out} with kernel {self.kernel_size} (needs output + kernel - 1 "
                    f"{'<' if strict else '<='} input)"
                )
        dev = device(x)
        ctype = x.dtype if x.dtype == xp.float64 else xp.float32
        if self._samples is not None:
            shape = (len(self._samples), len(self._samples[0]), nd)
            if shape[:2] != (n, c):
                raise ValueError(
                    f"{who}: _random_samples has shape {shape}, but the input needs ({n}, {c}, "
                    f"{nd})"
                )
            u = xp.asarray(self._samples, dtype=ctype, device=dev)
        else:
            u = self._draw(x, (n, c, nd), ctype)
        itype = xp.arange(1, device=dev).dtype
        # PyTorch's sample columns: (W, H) for 2-d, (D, H, W) for 3-d
        column = (1, 0) if nd == 2 else tuple(range(nd))
        tables = []
        for a, (s, o, k) in enumerate(zip(sizes, out, self.kernel_size, strict=True)):
            starts = self._starts(xp, u[:, :, column[a]], s, o, k, itype)
            tables.append([starts + p for p in range(k)])
        y, idx, offsets = window_max(x, xp, tables)
        self._cache = (tables, offsets, sizes, tuple(y.shape))
        return (y, idx) if self.return_indices else y

    def backward(self, grad_out: Any) -> Any:
        tables, offsets, sizes, out_shape = require_forward(self._cache, self._who())
        check_grad(grad_out, out_shape, self._who())
        return window_max_backward(grad_out, namespace(grad_out), tables, offsets, sizes)


class FractionalMaxPool2d(_FractionalMaxPool):
    """Fractional max pooling of ``(N, C, H, W)`` inputs, as
    ``torch.nn.FractionalMaxPool2d``: ``kh x kw`` windows at pseudo-random starts per
    ``(n, c)`` plane, ``output_size`` given or ``floor(size * output_ratio)``.

    Window ``i`` of an axis starts at ``floor((i + u) * a) - floor(u * a)``,
    ``a = (L - k) / (O - 1)``, the last at ``L - k``; ``u`` is uniform per plane and axis, drawn
    at every forward from the seeded generator (``rng=``, :meth:`reseed`; in training and
    evaluation mode, as PyTorch), or fixed by ``_random_samples`` (``(N, C, 2)``, column 0 for
    ``W`` and 1 for ``H``, as PyTorch). The first maximum of a window in row-major order (a NaN if
    there is one) is kept; ``return_indices=True`` adds their flat positions ``h * W + w``.
    Backward: each ``dy`` goes to its window's maximum; overlapping windows add up.

    >>> import numpy as np, nnx
    >>> pool = nnx.FractionalMaxPool2d(2, output_ratio=0.5, rng=0)
    >>> pool(np.ones((2, 3, 10, 8), np.float32)).shape
    (2, 3, 5, 4)
    """

    nd = 2


class FractionalMaxPool3d(_FractionalMaxPool):
    """Fractional max pooling of ``(N, C, D, H, W)`` inputs, as
    ``torch.nn.FractionalMaxPool3d``: the 2-d rule along three axes; ``_random_samples`` is
    ``(N, C, 3)`` with columns for ``D``, ``H``, ``W``; indices are ``(d * H + h) * W + w``.

    >>> import numpy as np, nnx
    >>> pool = nnx.FractionalMaxPool3d(2, output_size=(3, 2, 2), rng=0)
    >>> pool(np.ones((1, 2, 5, 4, 4), np.float32)).shape
    (1, 2, 3, 2, 2)
    """

    nd = 3
