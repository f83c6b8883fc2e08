"""Group normalization: ``GroupNorm``, as in PyTorch.

The statistics are taken per sample over each group of channels (and the spatial axes), the
same in training and evaluation; the forward and backward formulas are BatchNorm's
(:mod:`nnx.layers.norm.batch`), with the sums running over one group of one sample.
"""

from __future__ import annotations

from typing import Any

from ...backend import Backend, get_backend, namespace
from ...core.checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    positive_int,
    real_in_range,
    require_forward,
)
from ...core.lazy import lazy_input
from ...core.module import Module, Parameter
from .batch import _channel_shape


@lazy_input("num_channels", axis=1, multiple_of="num_groups")
class GroupNorm(Module):
    """Group normalization, as ``torch.nn.GroupNorm(num_groups, num_channels, eps, affine, *,
    bias)`` (``bias=False``: ``gamma`` without ``beta``).

    The channels of each sample are split into ``num_groups`` groups; each group is normalized
    by its own mean and biased variance (over its channels and spatial positions), then a
    per-channel ``gamma``/``beta`` is applied. Same in training and evaluation; no buffers.
    Input ``(N, C, *)``.

    >>> import numpy as np, nnx
    >>> nnx.GroupNorm(2, 4)(np.ones((2, 4, 3, 3), np.float32)).shape
    (2, 4, 3, 3)
    """

    _cache = None

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        *,
        bias: bool = True,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        self.num_groups = positive_int(num_groups, "num_groups", "GroupNorm")
        self.num_channels = positive_int(num_channels, "num_channels", "GroupNorm")
        if self.num_channels % self.num_groups:
            raise ValueError(
                f"GroupNorm: num_channels ({self.num_channels}) must be divisible by "
                f"num_groups ({self.num_groups})"
            )
        self.eps = real_in_range(eps, "eps", "GroupNorm")
        if self.eps <= 0:
            raise ValueError(f"GroupNorm: eps must be a finite number > 0, got {eps!r}")
        self.affine = bool(affine)
        backend = get_backend(device)
        if self.affine:
            self.weight = Parameter(backend.asarray([1.0] * num_channels, dtype=dtype), "weight")
            self.bias = (
                Parameter(backend.asarray([0.0] * num_channels, dtype=dtype), "bias")
                if bias
                else None
            )
        else:
            self.weight = self.bias = None

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"

    def _who(self) -> str:
        return f"GroupNorm({self.num_groups}, {self.num_channels})"

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        who = self._who()
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"{who}: expected input of shape (N, C, *) with C={self.num_channels}, "
                f"got shape {tuple(x.shape)}"
            )
        check_floating(xp, x, who)
        if self.affine:
            check_same_dtype(x, self.weight.value, who)
            check_same_device(x, self.weight.value, who)
        n = x.shape[0]
        if n == 0:  # an empty batch: an empty output; the parameters get zero gradients
            self._cache = (x * 1.0, None)
            return x * 1.0
        xg = xp.reshape(x, (n, self.num_groups, -1))
        mean = xp.mean(xg, axis=2, keepdims=True)
        centered = xg - mean
        var = xp.mean(centered * centered, axis=2, keepdims=True)
        invstd = 1.0 / xp.sqrt(var + self.eps)
        x_hat = xp.reshape(centered * invstd, tuple(x.shape))
        y = x_hat
        if self.affine:
            shape = _channel_shape(x.ndim)
            y = x_hat * xp.reshape(self.weight.value, shape)
            if self.bias is not None:
                y = y + xp.reshape(self.bias.value, shape)
        self._cache = (x_hat, invstd)
        return y

    def backward(self, grad_out: Any) -> Any:
        x_hat, invstd = require_forward(self._cache, self._who())
        check_grad(grad_out, tuple(x_hat.shape), self._who())
        xp = namespace(grad_out)
        if invstd is None:  # the empty batch of forward
            for p in (self.weight, self.bias):
                if p is not None:
                    p.accumulate(xp.zeros_like(p.value))
            return grad_out
        axes = (0, *range(2, grad_out.ndim))
        if self.affine:
            shape = _channel_shape(grad_out.ndim)
            self.weight.accumulate(xp.sum(grad_out * x_hat, axis=axes))
            if self.bias is not None:
                self.bias.accumulate(xp.sum(grad_out, axis=axes))
            dxh = grad_out * xp.reshape(self.weight.value, shape)
        else:
            dxh = grad_out
        n = grad_out.shape[0]
        dg = xp.reshape(dxh, (n, self.num_groups, -1))
        xg = xp.reshape(x_hat, (n, self.num_groups, -1))
        mean_d = xp.mean(dg, axis=2, keepdims=True)
        mean_dx = xp.mean(dg * xg, axis=2, keepdims=True)
        return xp.reshape((dg - mean_d - xg * mean_dx) * invstd, tuple(grad_out.shape))
