"""``SyncBatchNorm``: batch normalization whose training statistics span every rank's shard.

With data-parallel training (:mod:`nnx.distributed`) a plain ``BatchNorm`` normalizes each rank's
shard by that shard's own statistics, so the result depends on the number of ranks. A
``SyncBatchNorm`` sums the per-channel statistics over the ranks in its forward pass, so every
rank normalizes by the statistics of the whole global batch, as one process would.

Forward (training, ``R`` ranks, rank ``r`` holding ``m_r`` values per channel, ``M = sum m_r``)::

    mean = sum_r sum_i x_i / M             (one allreduce)
    var  = sum_r sum_i (x_i - mean)^2 / M  (a second one: two passes, no cancellation)

Backward. nnx's data-parallel convention is that each rank differentiates the *mean* loss of its
own shard and :func:`~nnx.distributed.allreduce_gradients` combines the gradients weighted by
``m_r / M``. The loss of the global batch therefore sees rank ``r``'s upstream gradient ``g`` scaled
by ``m_r / M``; with ``dxh = g * gamma`` and the sums ``S1 = sum_r (m_r/M) sum_i dxh_i``,
``S2 = sum_r (m_r/M) sum_i dxh_i * x_hat_i`` (one allreduce)::

    dx_i = invstd * (dxh_i - (S1 + x_hat_i * S2) / m_r)

which, after the weighted gradient allreduce, is exactly the gradient of the global batch's loss.
``dgamma`` and ``dbeta`` are the local sums, combined by the same allreduce. With one process (or
before :func:`nnx.distributed.init`), and in evaluation mode, it is a plain ``BatchNorm``.
"""

from __future__ import annotations

import math
from typing import Any

from ...core.module import Module
from .batch import BatchNorm1d, BatchNorm2d, _BatchNorm, _channel_sum


def _world() -> Any:
    """The distributed world when it has more than one rank, else None."""
    from ... import distributed

    if not distributed.is_initialized():
        return None
    world = distributed.world()
    return world if world.size > 1 else None


class SyncBatchNorm(_BatchNorm):
    """Batch normalization over the whole global batch of data-parallel training, as
    ``torch.nn.SyncBatchNorm``: input ``(N, C, *)`` (any rank >= 2), per-channel statistics
    summed over every rank during training; running statistics, buffers and evaluation as
    :class:`BatchNorm1d`.

    Args as PyTorch (``num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True``) plus keyword-only ``dtype`` and ``device``. PyTorch's
    ``process_group`` has no counterpart: the ranks are those of :func:`nnx.distributed.init`.

    Every rank must call the layer's forward and backward in every training step, a rank with
    an empty shard too (the :class:`~nnx.Trainer` runs the model on zero rows then); the
    gradients must be combined with :func:`~nnx.distributed.allreduce_gradients` (sample-weighted)
    from a mean loss, as the Trainer does.

    >>> import numpy as np, nnx
    >>> bn = nnx.SyncBatchNorm(3)      # one process: the same as BatchNorm1d(3)
    >>> y = bn(np.arange(12, dtype=np.float32).reshape(4, 3))
    >>> np.round(y.mean(axis=0), 6).tolist()
    [0.0, 0.0, 0.0]
    """

    ranks = tuple(range(2, 33))  # any input with a channel axis
    # In training its forward and backward join allreduces: a process whose share of a batch is
    # empty must still run them (nnx.training.step.EagerStep does).
    collective = True
    layout = "(N, C, *)"
    _counts: tuple[int, int] | None = None

    def _batch_statistics(self, xp: Any, x: Any, axes: tuple[int, ...], shape: Any) -> tuple:
        world = _world()
        self._counts = None
        if world is None or not self.training:
            return super()._batch_statistics(xp, x, axes, shape)
        local = math.prod(x.shape) // self.num_features
        (total,) = world.allreduce_counts([local], self._what())
        self._counts = (local, total)
        scale = 1.0 / total if total else 0.0
        mean = world.allreduce_sum(_channel_sum(xp, x, axes), self._what(), scratch=True) * scale
        centered = x - xp.reshape(mean, shape)
        squares = _channel_sum(xp, centered, axes, centered)
        var = world.allreduce_sum(squares, self._what(), scratch=True) * scale
        return mean, var, centered, total

    def _grad_means(self, xp: Any, sum_dxh: Any, sum_dxh_xhat: Any, m: int) -> tuple:
        world = _world()
        if self._counts is None or world is None:
            return super()._grad_means(xp, sum_dxh, sum_dxh_xhat, m)
        local, total = self._counts
        c = self.num_features
        weight = local / total  # this rank's share of the global batch's mean loss
        packed = xp.concat([sum_dxh, sum_dxh_xhat]) * weight
        summed = world.allreduce_sum(packed, self._what(), scratch=True)
        per_value = 1.0 / local if local else 0.0  # S / m_r: no rows here, nothing to scale
        return summed[:c] * per_value, summed[c:] * per_value

    def _what(self) -> str:
        return f"SyncBatchNorm({self.num_features})"

    @classmethod
    def convert_sync_batchnorm(cls, module: Module) -> Module:
        """Turn every ``BatchNorm1d``/``BatchNorm2d`` in ``module`` into a ``SyncBatchNorm``, in
        place (their parameters, buffers and every reference to them are kept), and return
        ``module``, as ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``."""
        for m in module.modules():
            if type(m) in (BatchNorm1d, BatchNorm2d):
                m.__class__ = cls
        return module
