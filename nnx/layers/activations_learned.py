"""Rectifiers whose negative slope is learned (``PReLU``) or drawn at random (``RReLU``)."""

from __future__ import annotations

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
from ..core.init import Seed
from ..core.module import Module, Parameter
from .activations import _check_real
from .dropout import Dropout


class PReLU(Module):
    """Parametric ReLU: ``y = x`` where ``x > 0``, else ``a x``, with a learned slope ``a``.

    ``num_parameters=1`` learns one slope for every element; ``num_parameters=C`` learns one per
    channel, broadcast over axis 1 of the input (``(N, C, ...)``, as PyTorch; a 1-D input has no
    channel axis and takes only ``num_parameters=1``).

    Backward: ``dx = g`` where ``x > 0``, else ``a g`` (``a g`` at ``x = 0``, as PyTorch);
    ``da = sum of g x over the elements with x <= 0`` (per channel: summed over every other axis).

    Args:
        num_parameters: 1, or the number of channels ``C``.
        init: initial value of every slope (default 0.25).
        dtype, device: of the weight ``(num_parameters,)``.

    >>> import numpy as np, nnx
    >>> nnx.PReLU()(np.array([-2.0, 3.0], np.float32))
    array([-0.5,  3. ], dtype=float32)
    """

    _x = None

    def __init__(
        self,
        num_parameters: int = 1,
        init: float = 0.25,
        *,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        self.num_parameters = positive_int(num_parameters, "num_parameters", "PReLU")
        self.init = _check_real(init, "init", "PReLU")
        backend = get_backend(device)
        host = [self.init] * self.num_parameters
        self.weight = Parameter(backend.asarray(host, dtype=dtype), "weight")

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"

    def _slope(self, x: Any) -> Any:
        """The weight shaped to broadcast against ``x``: ``(C, 1, ..., 1)`` for axis 1."""
        xp = namespace(x)
        w = self.weight.value
        if self.num_parameters == 1 or x.ndim < 2:
            return xp.reshape(w, ()) if self.num_parameters == 1 else w
        return xp.reshape(w, (self.num_parameters,) + (1,) * (x.ndim - 2))

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        check_floating(xp, x, "PReLU")
        w = self.weight.value
        check_same_dtype(x, w, "PReLU")
        check_same_device(x, w, "PReLU")
        if self.num_parameters > 1 and (x.ndim < 2 or x.shape[1] != self.num_parameters):
            raise ValueError(
                f"PReLU: num_parameters={self.num_parameters} needs input of shape "
                f"(N, {self.num_parameters}, ...), got shape {tuple(x.shape)}"
            )
        self._x = x
        self._a = self._slope(x)
        return xp.where(x > 0, x, self._a * x)

    def backward(self, grad_out: Any) -> Any:
        x = require_forward(self._x, "PReLU")
        check_grad(grad_out, x.shape, "PReLU")
        xp = namespace(x)
        positive = x > 0
        gx = xp.where(positive, xp.zeros_like(x), grad_out * x)
        if self.num_parameters == 1:
            self.weight.accumulate(xp.reshape(xp.sum(gx), (1,)))
        else:
            axes = (0, *range(2, x.ndim))
            self.weight.accumulate(xp.sum(gx, axis=axes))
        return xp.where(positive, grad_out, self._a * grad_out)


class RReLU(Dropout):
    """Randomized leaky ReLU: ``y = x`` where ``x > 0``, else ``a x``.

    In training each element draws its own slope ``a ~ Uniform(lower, upper)``; in evaluation
    ``a = (lower + upper) / 2``. Backward multiplies by the same slopes (``dx = g`` where
    ``x > 0``, else ``a g``; the slope at ``x = 0``, as PyTorch).

    The slopes come from Dropout's seeded generators (a subclass of :class:`Dropout`: ``rng=``,
    ``reseed``, the Trainer's per-epoch reseeding, a compiled JAX step and data-parallel rows
    all work as for dropout), so a run repeats and resumes exactly. PyTorch draws from its own
    generator: the two agree in evaluation and in distribution, not draw for draw.

    Args:
        lower, upper: the range of the slopes, ``lower <= upper`` (PyTorch's 1/8 and 1/3).
        inplace: accepted and ignored.
        rng: seed (or ``numpy.random.Generator`` to draw a seed from) for the slopes.
    """

    _x = None

    def __init__(
        self,
        lower: float = 1.0 / 8.0,
        upper: float = 1.0 / 3.0,
        inplace: bool = False,
        rng: Seed = None,
    ):
        self.lower = _check_real(lower, "lower", "RReLU")
        self.upper = _check_real(upper, "upper", "RReLU")
        if self.upper < self.lower:
            raise ValueError(
                f"RReLU: lower ({lower!r}) must be less than or equal to upper ({upper!r})"
            )
        self.inplace = bool(inplace)
        super().__init__(0.0, rng=rng)

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}"

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        check_floating(xp, x, "RReLU")
        self._shape = tuple(x.shape)
        self._x = x
        if self.training:
            u = self._uniform(x, tuple(x.shape))
            self._a = self.lower + (self.upper - self.lower) * u
        else:
            self._a = 0.5 * (self.lower + self.upper)
        return xp.where(x > 0, x, self._a * x)

    def backward(self, grad_out: Any) -> Any:
        x = require_forward(self._x, "RReLU")
        check_grad(grad_out, x.shape, "RReLU")
        xp = namespace(x)
        return xp.where(x > 0, grad_out, self._a * grad_out)
