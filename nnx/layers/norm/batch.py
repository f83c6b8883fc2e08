"""Batch normalization: ``BatchNorm1d``, ``BatchNorm2d`` and ``BatchNorm3d``, as in PyTorch.

BatchNorm (and GroupNorm, :mod:`nnx.layers.norm.group`) normalize ``x_hat = (x - mean) / sqrt(var + eps)`` (biased variance) and apply a per-channel
``y = gamma * x_hat + beta``. With batch (or group) statistics the backward pass is the usual

    dx = invstd / m * (m * dxh - sum(dxh) - x_hat * sum(dxh * x_hat)),  dxh = g * gamma,

the sums running over the ``m`` values that shared one mean; ``dgamma = sum(g * x_hat)`` and
``dbeta = sum(g)`` over every axis but the channel axis. BatchNorm computes it as a per-channel
affine map of ``g`` and the centred input ``xc = x - mean`` (``x_hat = xc * invstd``):
``dx = g * gamma*invstd - xc * gamma*invstd^3 * sum(g*xc)/m - gamma*invstd * sum(g)/m``, with
only the two reductions ``sum(g)`` and ``sum(g * xc)``.
"""

from __future__ import annotations

import math
from typing import Any

from ... import _fastreduce
from ...backend import Backend, get_backend, is_writeable, namespace
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
from ...core.module import Buffer, Module, Parameter


def _channel_shape(ndim: int) -> tuple[int, ...]:
    """Shape that broadcasts a ``(C,)`` vector over ``(N, C, *spatial)``."""
    return (1, -1) + (1,) * (ndim - 2)


def _channel_sum(xp: Any, a: Any, axes: tuple[int, ...], b: Any = None) -> Any:
    """``sum(a)`` (or ``sum(a * b)``) over ``axes``, every axis but the channel axis 1 (on
    channel-major NumPy arrays by :mod:`nnx._fastreduce`, with no product array)."""
    fast = _fastreduce.channel_sum(a, b)
    if fast is not None:
        return fast
    return xp.sum(a if b is None else a * b, axis=axes)


def _channel_mean(xp: Any, a: Any, axes: tuple[int, ...], m: int, b: Any = None) -> Any:
    """``mean(a)`` (or ``mean(a * b)``) over ``axes``, the ``m`` values of each channel. The
    portable path is ``xp.mean``, which NumPy and torch accumulate in float32 for 16-bit floats
    (a float16 sum of 128x32x32 values would overflow)."""
    fast = _fastreduce.channel_sum(a, b)
    if fast is not None:
        return fast * (1.0 / m)
    return xp.mean(a if b is None else a * b, axis=axes)


def _add(a: Any, b: Any) -> Any:
    """``a + b`` for a fresh array ``a`` of the result's shape: in place where ``a`` is writeable
    (no new full-size array, measured 3.1 -> 0.9 ms for BatchNorm's forward affine map on a
    128x16x32x32 float32 batch, 4.8 -> 4.1 ms for its backward), else a new array (JAX)."""
    if is_writeable(a):
        a += b
        return a
    return a + b


class _NormBase(Module):
    """What the batch and instance norms share, as PyTorch's ``_NormBase``: the checked
    arguments, ``weight``/``bias`` (when ``affine``; ``bias=False`` keeps ``weight`` alone) and
    the running buffers (when ``track_running_stats``)."""

    def _setup(
        self,
        num_features: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        track_running_stats: bool,
        bias: bool,
        dtype: Any,
        device: str | Backend,
    ) -> None:
        who = type(self).__name__
        self.num_features = positive_int(num_features, "num_features", who)
        self.eps = real_in_range(eps, "eps", who, low=0.0)
        if self.eps <= 0:
            raise ValueError(f"{who}: eps must be a finite number > 0, got {eps!r}")
        self.momentum = (
            None if momentum is None else real_in_range(momentum, "momentum", who, 0.0, 1.0)
        )
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        backend = get_backend(device)
        c = self.num_features
        if self.affine:
            self.weight = Parameter(backend.asarray([1.0] * c, dtype=dtype), "weight")
            self.bias = Parameter(backend.asarray([0.0] * c, dtype=dtype), "bias") if bias else None
        else:
            self.weight = self.bias = None
        if self.track_running_stats:
            self.running_mean = Buffer(backend.asarray([0.0] * c, dtype=dtype), "running_mean")
            self.running_var = Buffer(backend.asarray([1.0] * c, dtype=dtype), "running_var")
            # (the instance norms keep it too, as PyTorch, but never count)
            self.num_batches_tracked = Buffer(
                backend.asarray(0, dtype="int64"), "num_batches_tracked"
            )
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )

    def _who(self) -> str:
        return f"{type(self).__name__}({self.num_features})"


@lazy_input("num_features", axis=1)
class _BatchNorm(_NormBase):
    """Shared code of BatchNorm1d/2d/3d (they differ only in the accepted ranks)."""

    ranks: tuple[int, ...] = ()
    layout = ""
    _cache = None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        bias: bool = True,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        self._setup(num_features, eps, momentum, affine, track_running_stats, bias, dtype, device)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked."""
        if self.track_running_stats:
            xp = namespace(self.running_mean.value)
            self.running_mean.value = xp.zeros_like(self.running_mean.value)
            self.running_var.value = xp.ones_like(self.running_var.value)
            self.num_batches_tracked.value = xp.zeros_like(self.num_batches_tracked.value)

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        who = self._who()
        if x.ndim not in self.ranks or x.shape[1] != self.num_features:
            raise ValueError(
                f"{who}: expected input of shape {self.layout} with C={self.num_features}, "
                f"got shape {tuple(x.shape)}"
            )
        check_floating(xp, x, who)
        ref = (
            self.weight.value
            if self.affine
            else (self.running_mean.value if self.track_running_stats else None)
        )
        if ref is not None:
            check_same_dtype(x, ref, who)
            check_same_device(x, ref, who)
        if math.prod(x.shape) == 0 and not getattr(self, "collective", False):
            return self._empty(xp, x)
        axes = (0, *range(2, x.ndim))
        shape = _channel_shape(x.ndim)
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            mean, var, centered, m = self._batch_statistics(xp, x, axes, shape)
            if m <= 1 and self.training:
                raise ValueError(
                    f"{who}: expected more than 1 value per channel when training, got input of "
                    f"shape {tuple(x.shape)}"
                )
            if self.training and self.track_running_stats:
                self._update_running(xp, mean, var, m)
        else:
            mean, var = self.running_mean.value, self.running_var.value
            centered = x - xp.reshape(mean, shape)
        invstd = 1.0 / xp.sqrt(var + self.eps)
        # y = gamma * x_hat + beta as ONE per-channel scale of the centred input (x_hat itself is
        # never formed: backward works from the centred input, one pass fewer each way)
        scale = invstd * self.weight.value if self.affine else invstd
        y = centered * xp.reshape(scale, shape)
        if self.bias is not None:
            y = _add(y, xp.reshape(self.bias.value, shape))
        self._cache = (centered, invstd, use_batch, tuple(y.shape))
        return y

    def _empty(self, xp: Any, x: Any) -> Any:
        """An empty batch, as PyTorch: the output is empty, the running statistics stay and
        ``num_batches_tracked`` still counts the step; the parameter gradients are zero."""
        if self.training and self.track_running_stats:
            self.num_batches_tracked.value = self.num_batches_tracked.value + 1
        self._cache = (None, None, None, tuple(x.shape))
        return x * 1.0

    def _batch_statistics(self, xp: Any, x: Any, axes: tuple[int, ...], shape: Any) -> tuple:
        """``(mean, biased variance, x - mean, m)`` per channel over the ``m`` values of each
        channel in this batch (:class:`~nnx.SyncBatchNorm` takes them over every rank's batch)."""
        m = math.prod(x.shape) // x.shape[1]
        mean = _channel_mean(xp, x, axes, m)
        centered = x - xp.reshape(mean, shape)
        return mean, _channel_mean(xp, centered, axes, m, centered), centered, m

    def _grad_means(self, xp: Any, sum_dxh: Any, sum_dxh_xhat: Any, m: int) -> tuple:
        """``mean(dxh)`` and ``mean(dxh * x_hat)`` per channel, from their sums over the ``m``
        values of this batch, over the values that shared the statistics
        (:class:`~nnx.SyncBatchNorm` sums them over every rank)."""
        scale = 1.0 / m if m else 0.0  # an empty batch has nothing to spread the gradient over
        return sum_dxh * scale, sum_dxh_xhat * scale

    def _update_running(self, xp: Any, mean: Any, var: Any, m: int) -> None:
        """PyTorch's update: ``r = (1 - f) r + f stat``, with the unbiased variance
        ``var * m / (m - 1)`` and ``f = momentum`` (or ``1 / num_batches_tracked``, a cumulative
        average, when momentum is None)."""
        self.num_batches_tracked.value = self.num_batches_tracked.value + 1
        if self.momentum is None:
            # a 0-d array on the device: no host read, and nnx.compile can trace it
            f = 1.0 / xp.astype(self.num_batches_tracked.value, mean.dtype)
        else:
            f = self.momentum
        unbiased = var * (m / (m - 1))
        self.running_mean.value = (1.0 - f) * self.running_mean.value + f * mean
        self.running_var.value = (1.0 - f) * self.running_var.value + f * unbiased

    def backward(self, grad_out: Any) -> Any:
        centered, invstd, use_batch, out_shape = require_forward(self._cache, self._who())
        check_grad(grad_out, out_shape, self._who())
        xp = namespace(grad_out)
        if centered is None:  # an empty batch: nothing flows, the parameters get zeros
            for p in (self.weight, self.bias):
                if p is not None:
                    p.accumulate(xp.zeros_like(p.value))
            return grad_out
        axes = (0, *range(2, grad_out.ndim))
        shape = _channel_shape(grad_out.ndim)
        # the two reductions everything needs: sum(g) and sum(g * x_hat) = invstd * sum(g * xc)
        sum_g = _channel_sum(xp, grad_out, axes)
        sum_gx = _channel_sum(xp, grad_out, axes, centered) * invstd
        if self.affine:
            self.weight.accumulate(sum_gx)
            if self.bias is not None:
                self.bias.accumulate(sum_g)
            gamma = self.weight.value
            gamma_s = invstd * gamma
        else:
            gamma_s = invstd
        if not use_batch:  # running statistics are constants
            return grad_out * xp.reshape(gamma_s, shape)
        # dx = invstd * (dxh - mean(dxh) - x_hat * mean(dxh * x_hat)) with dxh = g * gamma and
        # x_hat = xc * invstd: a per-channel affine map of g and xc, dx = g*k1 + xc*k2 + k3
        sums = (gamma * sum_g, gamma * sum_gx) if self.affine else (sum_g, sum_gx)
        m = math.prod(grad_out.shape) // grad_out.shape[1]
        mean_d, mean_dx = self._grad_means(xp, *sums, m)
        k2 = -(invstd * invstd) * mean_dx
        k3 = -invstd * mean_d
        return _add(
            grad_out * xp.reshape(gamma_s, shape),
            _add(centered * xp.reshape(k2, shape), xp.reshape(k3, shape)),
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalization of ``(N, C)`` or ``(N, C, L)`` inputs, as ``torch.nn.BatchNorm1d``.

    Training: ``y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta`` with the batch's per-channel
    mean and biased variance; the buffers ``running_mean``/``running_var`` move towards them by
    ``momentum`` (unbiased variance), ``num_batches_tracked`` counts the steps. Evaluation: the
    running statistics are used instead (or the batch's when ``track_running_stats=False``).

    Args as PyTorch (``num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True``, keyword-only ``bias=True``: ``bias=False`` with ``affine`` learns
    ``gamma`` alone) plus keyword-only ``dtype`` and ``device``.

    >>> import numpy as np, nnx
    >>> bn = nnx.BatchNorm1d(3)
    >>> y = bn(np.arange(12, dtype=np.float32).reshape(4, 3))
    >>> np.round(y.mean(axis=0), 6).tolist(), bn.running_mean.value.tolist()
    ([0.0, 0.0, 0.0], [0.45000001788139343, 0.550000011920929, 0.6500000357627869])
    """

    ranks = (2, 3)
    layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of ``(N, C, H, W)`` inputs over ``(N, H, W)``, as
    ``torch.nn.BatchNorm2d`` (see :class:`BatchNorm1d` for the statistics and buffers).

    >>> import numpy as np, nnx
    >>> nnx.BatchNorm2d(4)(np.ones((2, 4, 3, 3), np.float32)).shape
    (2, 4, 3, 3)
    """

    ranks = (4,)
    layout = "(N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """Batch normalization of ``(N, C, D, H, W)`` inputs over ``(N, D, H, W)``, as
    ``torch.nn.BatchNorm3d`` (see :class:`BatchNorm1d` for the statistics and buffers).

    >>> import numpy as np, nnx
    >>> nnx.BatchNorm3d(2)(np.ones((2, 2, 3, 3, 3), np.float32)).shape
    (2, 2, 3, 3, 3)
    """

    ranks = (5,)
    layout = "(N, C, D, H, W)"
