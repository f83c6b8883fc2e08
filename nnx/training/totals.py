"""Per-batch losses and metric totals brought to the host: in one transfer, or summed over the
ranks of data-parallel training."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import namespace, to_numpy
from ..core.checks import widened
from ..metrics import Metric, host_state


def sum_over_ranks(
    world: Any,
    backend: Any,
    dtype: Any,
    weighted: list[Any],
    sizes: list[int],
    metrics: list[Metric],
    what: str,
) -> tuple[np.ndarray, list[int], list[Any]]:
    """Sample-weighted losses (0-d device arrays, loss times samples), their sample counts
    and the metrics' states and counts, summed over all ranks. Returns the mean losses, the
    summed counts and the metrics' host states (the metrics' counts are updated): a float for a
    0-d total, a float64 array for an array total (summed element-wise), and for a metric that
    ``gather``s, every rank's rows concatenated in rank order.

    The integer counts, with the size of each metric's state, are summed first (a small host
    allreduce), so that a rank with nothing to report knows what shape of zeros to send. The
    device values are then flattened, concatenated and summed where they live (NCCL on CuPy,
    MPI on host arrays) and copied to the host once; gathered rows travel by MPI allgather."""
    xp, k = backend.xp, len(sizes)
    zero = widened(xp, xp.zeros((), dtype=dtype, device=backend.device))  # sums: >= float32
    dtype = zero.dtype
    states = [m.state() for m in metrics]
    summed_at = [i for i, m in enumerate(metrics) if not m.gather]
    state_sizes = [0 if s is None else math.prod(s.shape) for s in states]
    have = [int(s is not None) for s in states]
    counts = world.allreduce_counts(
        [*sizes, *(m.count for m in metrics), *state_sizes, *have], what
    )
    n = len(metrics)
    for m, count in zip(metrics, counts[k : k + n], strict=True):
        m.count = count
    values = [xp.reshape(xp.astype(v, dtype), (1,)) for v in weighted]
    for i in summed_at:
        total_size, holders = counts[k + n + i], counts[k + 2 * n + i]
        width = total_size // holders if holders else 1
        state = states[i]
        if state is None:
            state = xp.zeros((width,), dtype=dtype, device=backend.device)
        values.append(xp.reshape(xp.astype(state, dtype), (-1,)))
    summed = np.zeros(0)
    if values:
        summed = world.allreduce_sum(xp.concat(values), what, scratch=True)
        summed = np.asarray(to_numpy(summed), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_losses = summed[:k] / np.asarray(counts[:k], dtype=np.float64)
    host: list[Any] = [None] * n
    offset = k
    for i in summed_at:
        size = counts[k + n + i] // counts[k + 2 * n + i] if counts[k + 2 * n + i] else 1
        part = summed[offset : offset + size]
        offset += size
        shape = () if states[i] is None else tuple(states[i].shape)
        host[i] = float(part[0]) if shape == () and size == 1 else part.reshape(shape or (-1,))
    for i, m in enumerate(metrics):
        if m.gather:
            mine = host_state(states[i])
            rows = world.allgather(mine if isinstance(mine, np.ndarray) else np.zeros(0), what)
            rows = [r for r in rows if r.size]
            host[i] = np.concatenate(rows, axis=0) if rows else np.zeros(0)
    return mean_losses, counts[:k], host


def to_host(scalars: list[Any], metrics: list[Metric]) -> tuple[np.ndarray, list[Any]]:
    """Per-batch 0-d arrays and the metrics' states, copied to the host in one transfer:
    flattened and concatenated on the device. The states come back as
    :func:`~nnx.metrics.host_state` gives them (a float for a 0-d total)."""
    states = [m.state() for m in metrics]
    values = list(scalars) + [s for s in states if s is not None]
    if not values:
        return np.zeros(0), [0.0 for _ in metrics]
    xp = namespace(values[0])
    dtype = widened(xp, values[0]).dtype  # 16-bit losses with float32 metric totals: no overflow
    rows = [xp.stack([xp.astype(v, dtype) for v in scalars])] if scalars else []
    rows += [xp.reshape(xp.astype(s, dtype), (-1,)) for s in states if s is not None]
    host = np.asarray(to_numpy(xp.concat(rows) if len(rows) > 1 else rows[0]))
    host = host.astype(np.float64)
    losses, offset = host[: len(scalars)], len(scalars)
    result: list[Any] = []
    for s in states:
        if s is None:
            result.append(0.0)
            continue
        size = math.prod(s.shape)
        part = host[offset : offset + size]
        offset += size
        result.append(float(part[0]) if s.ndim == 0 else part.reshape(tuple(s.shape)))
    return losses, result
