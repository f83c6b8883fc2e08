"""Instance normalization: ``InstanceNorm1d/2d/3d``, as in PyTorch.

Each channel of each sample is normalized over its own spatial positions,
``x_hat = (x - mean) / sqrt(var + eps)`` (biased variance over the ``m`` spatial values), then
``y = gamma * x_hat + beta`` per channel when ``affine``. The backward pass is BatchNorm's
(:mod:`nnx.layers.norm.batch`) with the sums running over one channel of one sample:

    dx = invstd * (dxh - mean(dxh) - x_hat * mean(dxh * x_hat)),  dxh = g * gamma,

``dgamma = sum(g * x_hat)`` and ``dbeta = sum(g)`` over the batch and spatial axes. With
``track_running_stats`` the running buffers move towards the batch average of the per-instance
statistics (unbiased variance), and evaluation normalizes by them (then ``dx = g * gamma *
invstd_running``), as ``torch.nn.functional.instance_norm`` does.
"""

from __future__ import annotations

from typing import Any

from ...backend import Backend, namespace
from ...core.checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    require_forward,
)
from ...core.lazy import lazy_input
from .batch import _NormBase


@lazy_input("num_features", axis=1)
class _InstanceNorm(_NormBase):
    """Shared code of InstanceNorm1d/2d/3d: ``spatial`` is the number of spatial axes."""

    spatial = 0
    layout = ""
    _cache = None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        *,
        bias: bool = True,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        self._setup(num_features, eps, momentum, affine, track_running_stats, bias, dtype, device)

    def _check(self, xp: Any, x: Any) -> bool:
        """Validate ``x``; True when it is unbatched (``(C, *spatial)``)."""
        who = self._who()
        rank = self.spatial + 2
        if x.ndim not in (rank - 1, rank):
            raise ValueError(
                f"{who}: expected input of shape {self.layout}, got shape {tuple(x.shape)}"
            )
        channels = x.shape[0] if x.ndim == rank - 1 else x.shape[1]
        # without weights or running statistics num_features is unused, as in PyTorch
        if (self.affine or self.track_running_stats) and channels != self.num_features:
            raise ValueError(
                f"{who}: expected {self.num_features} channels, got input of shape {tuple(x.shape)}"
            )
        check_floating(xp, x, who)
        ref = self.weight if self.affine else self.running_mean
        if ref is not None:
            check_same_dtype(x, ref.value, who)
            check_same_device(x, ref.value, who)
        return x.ndim == rank - 1

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        unbatched = self._check(xp, x)
        if unbatched:
            x = xp.expand_dims(x, axis=0)
        shape = (1, -1) + (1,) * self.spatial  # a (C,) vector over (N, C, *spatial)
        axes = tuple(range(2, x.ndim))
        m = 1
        for size in x.shape[2:]:
            m *= int(size)
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            if self.training and m <= 1:
                raise ValueError(
                    f"{self._who()}: expected more than 1 spatial element when training, got "
                    f"input of shape {tuple(x.shape)}"
                )
            mean = xp.mean(x, axis=axes, keepdims=True)
            centered = x - mean
            var = xp.mean(centered * centered, axis=axes, keepdims=True)
            if self.training and self.track_running_stats and self.momentum is not None:
                self._update_running(xp, mean, var, m)
        else:
            mean = xp.reshape(self.running_mean.value, shape)
            var = xp.reshape(self.running_var.value, shape)
            centered = x - mean
        invstd = 1.0 / xp.sqrt(var + self.eps)
        x_hat = centered * invstd
        y = x_hat
        if self.affine:
            y = x_hat * xp.reshape(self.weight.value, shape)
            if self.bias is not None:
                y = y + xp.reshape(self.bias.value, shape)
        self._cache = (x_hat, invstd, use_batch, unbatched)
        return y[0, ...] if unbatched else y

    def _update_running(self, xp: Any, mean: Any, var: Any, m: int) -> None:
        """``r = (1 - f) r + f * mean over the batch of each instance's statistic``, the variance
        unbiased (``var * m / (m - 1)``); momentum None leaves the buffers alone, as PyTorch."""
        f = self.momentum
        n = mean.shape[0]
        batch_mean = xp.reshape(xp.sum(mean, axis=0), (-1,)) / n
        batch_var = xp.reshape(xp.sum(var, axis=0), (-1,)) * (m / (m - 1) / n)
        self.running_mean.value = (1.0 - f) * self.running_mean.value + f * batch_mean
        self.running_var.value = (1.0 - f) * self.running_var.value + f * batch_var

    def backward(self, grad_out: Any) -> Any:
        x_hat, invstd, use_batch, unbatched = require_forward(self._cache, self._who())
        out_shape = tuple(x_hat.shape[1:]) if unbatched else tuple(x_hat.shape)
        check_grad(grad_out, out_shape, self._who())
        xp = namespace(grad_out)
        g = xp.expand_dims(grad_out, axis=0) if unbatched else grad_out
        shape = (1, -1) + (1,) * self.spatial
        axes = tuple(range(2, g.ndim))
        if self.affine:
            batch_axes = (0, *axes)
            self.weight.accumulate(xp.sum(g * x_hat, axis=batch_axes))
            if self.bias is not None:
                self.bias.accumulate(xp.sum(g, axis=batch_axes))
            dxh = g * xp.reshape(self.weight.value, shape)
        else:
            dxh = g
        if use_batch:
            mean_d = xp.mean(dxh, axis=axes, keepdims=True)
            mean_dx = xp.mean(dxh * x_hat, axis=axes, keepdims=True)
            dx = (dxh - mean_d - x_hat * mean_dx) * invstd
        else:  # running statistics are constants
            dx = dxh * invstd
        return dx[0, ...] if unbatched else dx


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization of ``(N, C, L)`` (or unbatched ``(C, L)``) inputs over ``L``, as
    ``torch.nn.InstanceNorm1d(num_features, eps=1e-5, momentum=0.1, affine=False,
    track_running_stats=False, *, bias=True)`` (plus keyword-only ``dtype`` and ``device``).

    Each ``x[n, c]`` is normalized by its own mean and biased variance, in training and in
    evaluation (unless ``track_running_stats``: then evaluation uses the running statistics,
    which training moves towards the batch average of the instance statistics).

    >>> import numpy as np, nnx
    >>> y = nnx.InstanceNorm1d(3)(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    >>> [round(float(v), 3) for v in y[0, 0]]
    [-1.342, -0.447, 0.447, 1.342]
    """

    spatial = 1
    layout = "(N, C, L) or (C, L)"


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization of ``(N, C, H, W)`` (or ``(C, H, W)``) inputs over ``(H, W)``, as
    ``torch.nn.InstanceNorm2d`` (see :class:`InstanceNorm1d`).

    >>> import numpy as np, nnx
    >>> nnx.InstanceNorm2d(2, affine=True)(np.ones((1, 2, 3, 3), np.float32)).shape
    (1, 2, 3, 3)
    """

    spatial = 2
    layout = "(N, C, H, W) or (C, H, W)"


class InstanceNorm3d(_InstanceNorm):
    """Instance normalization of ``(N, C, D, H, W)`` (or ``(C, D, H, W)``) inputs over
    ``(D, H, W)``, as ``torch.nn.InstanceNorm3d`` (see :class:`InstanceNorm1d`).

    >>> import numpy as np, nnx
    >>> nnx.InstanceNorm3d(2)(np.ones((1, 2, 2, 2, 2), np.float32)).shape
    (1, 2, 2, 2, 2)
    """

    spatial = 3
    layout = "(N, C, D, H, W) or (C, D, H, W)"
