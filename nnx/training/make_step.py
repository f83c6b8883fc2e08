"""The Trainer's options -> one composed training step; the one place that refuses the
combinations of options that cannot work.

``make_step`` builds ``Accumulate(DataParallel(MixedPrecision(base)))``, each layer only when its
option asks for it, with ``base`` the eager step or the step compiled by ``jax.jit``. The order
matters: mixed precision hands float32, unscaled gradients to the allreduce (so every process
sees the same inf/NaN and skips the same steps), and accumulation weights each batch's reduced
gradient by its share of the global group.
"""

from __future__ import annotations

from typing import Any

from .accumulate import Accumulate
from .compile import Compiled
from .data_parallel import DataParallel
from .precision import PRECISIONS, MixedPrecision
from .step import EagerStep, Step


def make_step(
    model: Any,
    loss: Any,
    optimizer: Any,
    backend: Any,
    *,
    clip_norm: float | None = None,
    accumulate: int = 1,
    precision: str = "float32",
    jit: bool = False,
    distributed: bool = False,
) -> Step:
    """The training step for the :class:`~nnx.Trainer`'s options (same meanings).

    Refused, with a one-line reason: an unknown ``precision``; ``jit`` off JAX; ``jit`` with
    ``distributed`` (the MPI collectives, ``SyncBatchNorm``'s included, run on the host between
    the layers, and the dropout rows change every batch: neither can live inside one compiled
    program). Distributed training with a loss whose reduction is not ``"mean"`` and mixed
    precision on a model that is not float32 are refused by their wrappers.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"Trainer: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
        )
    if jit and distributed:
        raise ValueError(
            "Trainer: jit=True cannot be combined with distributed=True: the MPI collectives run "
            "on the host, outside a compiled program"
        )
    if jit and backend.name != "jax":
        raise ValueError(
            f"Trainer: jit=True compiles the step with jax.jit and needs a JAX backend "
            f"(device='jax'), got {backend.name!r}"
        )
    step: Any = (Compiled if jit else EagerStep)(model, loss, optimizer, clip_norm)
    if precision != "float32":
        step = MixedPrecision(step, precision)
    if distributed:
        step = DataParallel(step)
    if accumulate > 1:
        step = Accumulate(step, accumulate)
    return step
