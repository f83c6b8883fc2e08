"""Data parallelism over MPI: every process trains on its share of each global batch.

``DataParallel(step)`` (which starts :func:`nnx.distributed.init` unless it ran) gives every process rank 0's
parameters and buffers, and after each batch's backward replaces every gradient by the
sample-weighted mean over the processes (:func:`~nnx.distributed.allreduce_gradients`): the
gradient one process would get on the whole global batch, also for uneven or empty shares.
Before each batch (``begin_batch(rows)``) the modules with a ``set_rows`` method (``Dropout``)
learn this process's rows of the global batch, so their random masks are those one process
would draw; a process whose share is empty still runs the modules marked ``collective``
(``SyncBatchNorm``, see :class:`~nnx.training.step.EagerStep`). At the end of an epoch
(``end_epoch``) the floating buffers (BatchNorm running statistics, which saw this process's
shares only) are averaged over the processes.

The loss must have ``reduction="mean"``: each process's gradient is weighted by its sample count.
With gradient accumulation, wrap this in :class:`~nnx.training.accumulate.Accumulate` and give
it the global batch sizes: each batch's gradient is allreduced before it joins the group's sum.
"""

from __future__ import annotations

from typing import Any

from .. import distributed as dist
from ..core.structure import first_leaf
from .step import StepWrapper, add_back, fresh_grads


class DataParallel(StepWrapper):
    """MPI data parallelism around ``step`` (see the module docstring); ``world`` defaults to
    that of :func:`nnx.distributed.init`."""

    def __init__(self, step: Any, world: Any = None):
        super().__init__(step)
        if getattr(self.loss, "reduction", "mean") != "mean":
            raise ValueError(
                "distributed training weights each rank's gradient by its sample count, which "
                f"needs a loss with reduction='mean', got {self.loss.reduction!r}"
            )
        self.world = world if world is not None else dist.init()  # init again: the same world
        dist.broadcast_parameters(self.model)  # every rank starts from rank 0's weights

    def _set_rows(self, rows: tuple[int, int, int] | None) -> None:
        for m in self.model.modules():
            set_rows = getattr(m, "set_rows", None)
            if callable(set_rows):
                set_rows(rows)

    def begin_batch(self, rows: tuple[int, int, int]) -> None:
        self._set_rows(rows)
        super().begin_batch(rows)

    def compute_grads(self, x: Any, y: Any, weight: Any = None, **options: Any) -> tuple[Any, Any]:
        params = list(self.model.parameters())
        held = fresh_grads(params)  # an accumulated group's earlier batches: already reduced
        out = self.inner.compute_grads(x, y, weight, **options)
        dist.allreduce_gradients(params, int(first_leaf(x).shape[0]))
        add_back(params, held)
        return out

    def end_epoch(self) -> None:
        self._set_rows(None)
        dist.average_buffers(self.model)  # BatchNorm's statistics saw this rank's shards only
        super().end_epoch()
