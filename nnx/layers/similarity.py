"""Modules of two inputs: the bilinear form, cosine similarity and the pairwise p-norm distance.

Each ``forward(x1, x2)`` returns one array and ``backward(g)`` returns ``(dx1, dx2)``. The two
inputs broadcast against each other as in PyTorch (``CosineSimilarity``, ``PairwiseDistance``);
each gradient is summed back to its own input's shape.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import Backend, get_backend, namespace
from ..core.checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    positive_int,
    require_forward,
)
from ..core.init import Seed, as_rng, reserve
from ..core.module import Module, Parameter


def _pair(x1: Any, x2: Any, who: str) -> tuple[Any, tuple[int, ...]]:
    """Check two floating inputs of one library, dtype and device; return ``xp`` and the
    broadcast shape (a one-line error naming both shapes when they do not broadcast)."""
    xp = namespace(x1)
    check_floating(xp, x1, who, "x1")
    check_floating(xp, x2, who, "x2")
    check_same_dtype(x2, x1, who, "x2", "x1")
    check_same_device(x2, x1, who, "x2", "x1")
    s1, s2 = tuple(x1.shape), tuple(x2.shape)
    n = max(len(s1), len(s2))
    p1, p2 = (1,) * (n - len(s1)) + s1, (1,) * (n - len(s2)) + s2
    if any(a != b and 1 not in (a, b) for a, b in zip(p1, p2, strict=True)):
        raise ValueError(f"{who}: x1 of shape {s1} and x2 of shape {s2} do not broadcast")
    return xp, tuple(max(a, b) if 0 not in (a, b) else 0 for a, b in zip(p1, p2, strict=True))


def sum_to_shape(xp: Any, g: Any, shape: tuple[int, ...]) -> Any:
    """``g`` (of a broadcast shape) summed back to ``shape``: the gradient of a broadcast."""
    extra = g.ndim - len(shape)
    if extra:
        g = xp.sum(g, axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return xp.sum(g, axis=axes, keepdims=True) if axes else g


class Bilinear(Module):
    """Bilinear form ``y[..., o] = sum_ij x1[..., i] W[o, i, j] x2[..., j] + b[o]``.

    The weight keeps PyTorch's layout ``(out_features, in1_features, in2_features)`` (it is no
    plain matrix, so nnx's ``(in, out)`` convention does not apply); the bias is
    ``(out_features,)``. Both start ``Uniform(-1/sqrt(in1), 1/sqrt(in1))``, as in PyTorch.

    Shapes: ``x1 (..., in1)``, ``x2 (..., in2)`` with the same leading axes; ``y (..., out)``.

    Backward, with ``u[o, j] = sum_i x1_i W[o, i, j]`` and ``v[o, i] = sum_j W[o, i, j] x2_j``:
    ``dW[o, i, j] = sum g_o x1_i x2_j``, ``db = sum g``, ``dx1_i = sum_o g_o v[o, i]``,
    ``dx2_j = sum_o g_o u[o, j]``; ``backward`` returns ``(dx1, dx2)``.

    >>> import numpy as np, nnx
    >>> layer = nnx.Bilinear(3, 4, 2, rng=0)
    >>> layer(np.ones((5, 3), np.float32), np.ones((5, 4), np.float32)).shape
    (5, 2)
    """

    _x1 = None

    def __init__(
        self,
        in1_features: int,
        in2_features: int,
        out_features: int,
        bias: bool = True,
        *,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        self.in1_features = positive_int(in1_features, "in1_features", "Bilinear")
        self.in2_features = positive_int(in2_features, "in2_features", "Bilinear")
        self.out_features = positive_int(out_features, "out_features", "Bilinear")
        shape = (self.out_features, self.in1_features, self.in2_features)
        reserve(shape)
        host = as_rng(rng)
        bound = 1.0 / math.sqrt(self.in1_features)
        backend = get_backend(device)
        w = host.uniform(-bound, bound, shape)
        self.weight = Parameter(backend.asarray(w, dtype=dtype), "weight")
        self.bias = None
        if bias:
            b = host.uniform(-bound, bound, (self.out_features,))
            self.bias = Parameter(backend.asarray(b, dtype=dtype), "bias")

    def extra_repr(self) -> str:
        return (
            f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
            f"out_features={self.out_features}, bias={self.bias is not None}"
        )

    def forward(self, x1: Any, x2: Any) -> Any:
        w = self.weight.value
        xp = namespace(x1)
        i, j, o = self.in1_features, self.in2_features, self.out_features
        if (
            x1.ndim == 0
            or x1.shape[-1] != i
            or x2.ndim != x1.ndim
            or x2.shape[-1] != j
            or x1.shape[:-1] != x2.shape[:-1]
        ):
            raise ValueError(
                f"Bilinear: expected x1 of shape (..., {i}) and x2 of shape (..., {j}) with the "
                f"same leading axes, got {tuple(x1.shape)} and {tuple(x2.shape)}"
            )
        for name, x in (("x1", x1), ("x2", x2)):
            check_floating(xp, x, "Bilinear", name)
            check_same_dtype(x, w, "Bilinear", name)
            check_same_device(x, w, "Bilinear", name)
        lead = tuple(x1.shape[:-1])
        a, b = xp.reshape(x1, (-1, i)), xp.reshape(x2, (-1, j))
        # u[n, o, j] = sum_i a[n, i] W[o, i, j]: one matmul with W as (i, o * j)
        wi = xp.reshape(xp.permute_dims(w, (1, 0, 2)), (i, o * j))
        u = xp.reshape(a @ wi, (-1, o, j))
        y = xp.sum(u * b[:, None, :], axis=-1)
        if self.bias is not None:
            y = y + self.bias.value
        self._x1, self._x2, self._u = a, b, u
        self._lead = lead
        return xp.reshape(y, (*lead, o))

    def backward(self, grad_out: Any) -> tuple[Any, Any]:
        a = require_forward(self._x1, "Bilinear")
        b, u = self._x2, self._u
        i, j, o = self.in1_features, self.in2_features, self.out_features
        check_grad(grad_out, (*self._lead, o), "Bilinear")
        xp = namespace(a)
        g = xp.reshape(grad_out, (-1, o))
        # dW[o, i, j] = sum_n g[n, o] a[n, i] b[n, j]
        ga = xp.reshape(g[:, :, None] * a[:, None, :], (-1, o * i))
        self.weight.accumulate(xp.reshape(ga.T @ b, (o, i, j)))
        if self.bias is not None:
            self.bias.accumulate(xp.sum(g, axis=0))
        # v[n, o, i] = sum_j W[o, i, j] b[n, j]; dx1[n, i] = sum_o g[n, o] v[n, o, i]
        wj = xp.reshape(xp.permute_dims(self.weight.value, (2, 0, 1)), (j, o * i))
        v = xp.reshape(b @ wj, (-1, o, i))
        dx1 = xp.sum(g[:, :, None] * v, axis=1)
        dx2 = xp.sum(g[:, :, None] * u, axis=1)
        return xp.reshape(dx1, (*self._lead, i)), xp.reshape(dx2, (*self._lead, j))


def _check_eps(eps: Any, who: str) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps):
        raise ValueError(f"{who}: eps must be a finite number, got {eps!r}")
    return float(eps)


class CosineSimilarity(Module):
    """``y = sum(x1 x2) / (max(|x1|, eps) max(|x2|, eps))`` along ``dim`` (norms ``|.|_2``),
    PyTorch's formula: each input is divided by its own norm clamped below at ``eps``.

    ``x1`` and ``x2`` broadcast against each other; the output has their broadcast shape without
    ``dim``. Backward (``n1``, ``n2`` the clamped norms, ``y`` the output):
    ``dx1 = g (x2 / (n1 n2) - y x1 / (n1 |x1|))`` and symmetrically for ``x2``; like PyTorch, the
    clamp is not differentiated (its gradient flows as if through the norm, and is 0 for a zero
    vector). ``backward`` returns ``(dx1, dx2)``, each summed back to its input's shape.
    """

    _x1 = None

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
            raise ValueError(f"CosineSimilarity: dim must be an integer, got {dim!r}")
        self.dim = int(dim)
        self.eps = _check_eps(eps, "CosineSimilarity")

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"

    def forward(self, x1: Any, x2: Any) -> Any:
        xp, shape = _pair(x1, x2, "CosineSimilarity")
        if not -len(shape) <= self.dim < len(shape):
            raise ValueError(
                f"CosineSimilarity: dim {self.dim} is out of range for inputs of broadcast "
                f"shape {shape}"
            )
        axis = self.dim % len(shape)
        a, b = xp.broadcast_to(x1, shape), xp.broadcast_to(x2, shape)
        r1 = xp.sqrt(xp.sum(a * a, axis=axis, keepdims=True))
        r2 = xp.sqrt(xp.sum(b * b, axis=axis, keepdims=True))
        n1, n2 = xp.maximum(r1, self.eps), xp.maximum(r2, self.eps)
        y = xp.sum((a / n1) * (b / n2), axis=axis, keepdims=True)
        self._x1, self._x2, self._cache = x1, x2, (a, b, r1, r2, n1, n2, y, axis)
        return xp.squeeze(y, axis=axis)

    def backward(self, grad_out: Any) -> tuple[Any, Any]:
        x1 = require_forward(self._x1, "CosineSimilarity")
        a, b, r1, r2, n1, n2, y, axis = self._cache
        check_grad(grad_out, tuple(y.shape[:axis] + y.shape[axis + 1 :]), "CosineSimilarity")
        xp = namespace(a)
        g = xp.expand_dims(grad_out, axis=axis)
        gy = g * y

        def through_norm(x: Any, r: Any, n: Any) -> Any:  # d/dx of n treated as |x|: x / |x|
            safe = xp.where(r == 0, xp.ones_like(r), r)
            return xp.where(r == 0, xp.zeros_like(x), x / (n * safe))

        da = g * b / (n1 * n2) - gy * through_norm(a, r1, n1)
        db = g * a / (n1 * n2) - gy * through_norm(b, r2, n2)
        return sum_to_shape(xp, da, tuple(x1.shape)), sum_to_shape(xp, db, tuple(self._x2.shape))


class PairwiseDistance(Module):
    """``y = |x1 - x2 + eps|_p`` along the last axis (PyTorch adds ``eps`` to the difference, so
    equal inputs give ``eps * D^(1/p)``, not 0).

    ``x1`` and ``x2`` broadcast; the last axis of the broadcast shape is reduced (kept with size
    1 when ``keepdim``). ``p`` is a number ``>= 0`` or ``math.inf``: ``p = 0`` counts the nonzero
    entries (zero gradient), ``p = inf`` takes the largest ``|v|``.

    Backward with ``v = x1 - x2 + eps``: ``dv = g sign(v) |v|^(p-1) / y^(p-1)`` (0 where
    ``y = 0``); ``p = 1``: ``g sign(v)``; ``p = inf``: ``g sign(v)`` shared among the entries
    where ``|v| = y``. ``dx1 = dv``, ``dx2 = -dv``, each summed back to its input's shape;
    ``backward`` returns ``(dx1, dx2)``.
    """

    _x1 = None

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
        if (
            isinstance(p, bool)
            or not isinstance(p, numbers.Real)
            or math.isnan(p)
            or p < 0
            or p == -math.inf
        ):
            raise ValueError(f"PairwiseDistance: p must be a number >= 0 or math.inf, got {p!r}")
        self.norm = float(p)
        self.eps = _check_eps(eps, "PairwiseDistance")
        self.keepdim = bool(keepdim)

    def extra_repr(self) -> str:
        return f"p={self.norm}, eps={self.eps}, keepdim={self.keepdim}"

    def forward(self, x1: Any, x2: Any) -> Any:
        xp, shape = _pair(x1, x2, "PairwiseDistance")
        if not shape:
            raise ValueError("PairwiseDistance: inputs must have at least one axis, got 0-d arrays")
        v = (x1 - x2) + self.eps
        a, p = xp.abs(v), self.norm
        if p == 0:
            y = xp.sum(xp.astype(a != 0, v.dtype), axis=-1, keepdims=True)
        elif p == 1:
            y = xp.sum(a, axis=-1, keepdims=True)
        elif p == 2:
            y = xp.sqrt(xp.sum(v * v, axis=-1, keepdims=True))
        elif p == math.inf:
            y = xp.max(a, axis=-1, keepdims=True)
        else:
            y = xp.sum(a**p, axis=-1, keepdims=True) ** (1.0 / p)
        self._x1, self._x2, self._v, self._y = x1, x2, v, y
        return y if self.keepdim else xp.squeeze(y, axis=-1)

    def backward(self, grad_out: Any) -> tuple[Any, Any]:
        x1 = require_forward(self._x1, "PairwiseDistance")
        v, y, p = self._v, self._y, self.norm
        check_grad(grad_out, y.shape if self.keepdim else y.shape[:-1], "PairwiseDistance")
        xp = namespace(v)
        g = grad_out if self.keepdim else xp.expand_dims(grad_out, axis=-1)
        a, sign = xp.abs(v), xp.sign(v)
        if p == 0:
            dv = xp.zeros_like(v)
        elif p == 1:
            dv = g * sign
        elif p == math.inf:
            ties = xp.astype(a == y, v.dtype)
            dv = sign * ties * (g / xp.sum(ties, axis=-1, keepdims=True))
        else:
            nonzero = v != 0
            a1 = xp.where(nonzero, a, xp.ones_like(a))  # no 0 ** negative below
            mag = xp.where(nonzero, sign * a1 ** (p - 1.0), xp.zeros_like(v))  # sign |v|^(p-1)
            if p < 1:  # PyTorch's form: sign |v|^(p-1) g y^(1-p) (0 where v = 0)
                dv = mag * (g * y ** (1.0 - p))
            else:  # g sign |v|^(p-1) / y^(p-1), and 0 where y = 0
                safe = xp.where(y == 0, xp.ones_like(y), y)
                dv = mag * xp.where(y == 0, xp.zeros_like(y), g / safe ** (p - 1.0))
        return sum_to_shape(xp, dv, tuple(x1.shape)), -sum_to_shape(xp, dv, tuple(self._x2.shape))
