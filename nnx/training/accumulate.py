"""Gradient accumulation: one optimizer step per ``k`` mini-batches.

``Accumulate(step, k)`` sums the gradients of ``k`` consecutive calls and applies them once.
Each mini-batch's loss gradient is weighted by its share of the group's samples, so with
``reduction="mean"`` the step equals one step on the group's concatenated batch, L1/L2 penalty
gradients (which every backward adds once) counted once; a short last group is weighted by its
own size. The weights need the epoch's batch sizes, given by :meth:`Accumulate.begin_epoch` (the
Trainer calls it); without them every batch of a group of ``k`` weighs the same.

>>> import numpy as np, nnx
>>> from nnx.training.step import EagerStep
>>> model = nnx.Sequential(nnx.Linear(3, 2, rng=0))
>>> step = Accumulate(EagerStep(model, nnx.MSELoss(), nnx.optim.SGD(model.parameters())), 2)
>>> step.begin_epoch([4, 4, 1])     # batches of 4, 4 and 1 samples: groups (4, 4) and (1)
>>> stepped = []
>>> for n in (4, 4, 1):
...     loss, pred = step(np.ones((n, 3), np.float32), np.zeros((n, 2), np.float32))
...     stepped.append(step.stepped)
>>> stepped
[False, True, True]
"""

from __future__ import annotations

from typing import Any

from ..core.checks import positive_int
from .step import StepWrapper


def accumulation_weights(
    sizes: list[int], k: int, mean: bool
) -> list[tuple[bool, float, int | None]]:
    """Per mini-batch of ``sizes`` samples: (first of its group, weight of its loss gradient, and
    at the last mini-batch of the group the number of mini-batches in it, else None).

    Gradients of a group are summed with weights ``m * n_i / N`` (mean reduction; ``m`` for sum)
    and divided by ``m`` before the step, ``m`` being the group's mini-batches, ``n_i`` a
    mini-batch's samples and ``N`` the group's: the data gradient is then that of the group's
    concatenated batch, and a penalty gradient, which each backward adds once, counts once.
    """
    weights = []
    for start in range(0, len(sizes), k):
        group = sizes[start : start + k]
        m, total = len(group), sum(group)
        for j, size in enumerate(group):
            weights.append(
                (j == 0, m * size / total if mean else float(m), m if j == m - 1 else None)
            )
    return weights


class Accumulate(StepWrapper):
    """One optimizer step per ``k`` calls of ``step`` (see the module docstring).

    ``stepped`` is True after the call that ended a group. Under data parallelism give it the
    global batch sizes: the weights are then those of the global group.
    """

    def __init__(self, step: Any, k: int):
        super().__init__(step)
        self.k = positive_int(k, "k", "Accumulate")
        self._plan: list[tuple[bool, float, int | None]] | None = None
        self._index = 0

    def begin_epoch(self, sizes: list[int]) -> None:
        mean = getattr(self.loss, "reduction", "mean") == "mean"
        self._plan = accumulation_weights(list(sizes), self.k, mean)
        self._index = 0
        super().begin_epoch(sizes)

    def seek(self, batch: int) -> None:
        """Continue the epoch at mini-batch ``batch`` (a resume), which must start a group."""
        if batch % self.k and (self._plan is None or batch != len(self._plan)):
            raise ValueError(
                f"Accumulate: batch {batch} is inside a group of {self.k}; an epoch can only "
                f"continue at a group's first batch"
            )
        self._index = batch

    def __call__(self, x: Any, y: Any) -> tuple[Any, Any]:
        i = self._index
        if self._plan is None:
            first, weight, count = (
                i % self.k == 0,
                None,
                self.k if i % self.k == self.k - 1 else None,
            )
        elif i < len(self._plan):
            first, weight, count = self._plan[i]
        else:
            raise ValueError(
                f"Accumulate: call {i + 1} of an epoch planned for {len(self._plan)} batches; "
                f"call begin_epoch with the new epoch's batch sizes"
            )
        if first:
            self.zero_grad()
        out = self.compute_grads(x, y, weight)
        self.stepped = count is not None
        if self.stepped:
            self.apply(count)
        self._index = i + 1
        return out
