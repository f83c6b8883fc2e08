"""Per-batch losses and metric totals brought to the host: in one transfer, or summed over the
ranks of data-parallel training."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import namespace, to_numpy
from ..core.checks import widened
from ..metrics import Metric


def sum_over_ranks(
    world: Any,
    backend: Any,
    dtype: Any,
    weighted: list[Any],
    sizes: list[int],
    metrics: list[Metric],
    what: str,
) -> tuple[np.ndarray, list[int], list[float]]:
    """Sample-weighted losses (0-d device arrays, loss times samples), their sample counts
    and the metrics' totals and counts, summed over all ranks. Returns the mean losses, the
    summed counts and the metric totals (the metrics' counts are updated).

    The device values are stacked and summed where they live (NCCL on CuPy, MPI on host
    arrays) and copied to the host once; the integer counts, already on the host, travel in
    a second small allreduce. A rank with nothing to report sends zeros."""
    xp, k = backend.xp, len(sizes)
    zero = widened(xp, xp.zeros((), dtype=dtype, device=backend.device))  # sums: >= float32
    dtype = zero.dtype
    values = [xp.astype(v, dtype) for v in weighted]
    values += [zero if m.total is None else xp.astype(m.total, dtype) for m in metrics]
    summed = np.zeros(0)
    if values:
        summed = world.allreduce_sum(xp.stack(values), what, scratch=True)
        summed = np.asarray(to_numpy(summed), dtype=np.float64)
    counts = world.allreduce_counts([*sizes, *(m.count for m in metrics)], what)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_losses = summed[:k] / np.asarray(counts[:k], dtype=np.float64)
    for m, count in zip(metrics, counts[k:], strict=True):
        m.count = count
    return mean_losses, counts[:k], [float(t) for t in summed[k:]]


def to_host(scalars: list[Any], metrics: list[Metric]) -> tuple[np.ndarray, list[float]]:
    """Per-batch 0-d arrays and metric totals, copied to the host in one transfer."""
    values = list(scalars) + [m.total for m in metrics if m.total is not None]
    if not values:
        return np.zeros(0), [0.0 for _ in metrics]
    xp = namespace(values[0])
    dtype = widened(xp, values[0]).dtype  # 16-bit losses with float32 metric totals: no overflow
    host = np.asarray(to_numpy(xp.stack([xp.astype(v, dtype) for v in values])))
    host = host.astype(np.float64)
    totals = list(host[len(scalars) :])
    metric_totals = [totals.pop(0) if m.total is not None else 0.0 for m in metrics]
    return host[: len(scalars)], metric_totals
