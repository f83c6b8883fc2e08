"""One training step: ``loss, pred = step(x, y)`` runs forward -> loss -> backward -> (clip) ->
optimizer step on one batch.

A step is built from a base step and wrappers (one file each), which compose::

    EagerStep(model, loss, optimizer, clip_norm)     # the step itself (step.py)
    Compiled(model, loss, optimizer, clip_norm)      # the same step compiled by jax.jit (compile.py)
    MixedPrecision(step, "float16")                  # 16-bit compute, float32 masters (precision.py)
    DataParallel(step)                               # MPI gradient allreduce (data_parallel.py)
    Accumulate(step, k)                              # one optimizer step per k batches (accumulate.py)

for example ``Accumulate(DataParallel(MixedPrecision(EagerStep(...))), 4)``. They compose because
every step exposes the phases of its call, which each wrapper extends:

- ``zero_grad()``: forget the gradients (the start of an optimizer step);
- ``compute_grads(x, y, weight=None)``: forward, loss and backward of one batch, *adding* the
  gradient of ``weight * loss`` into every ``param.grad``; returns ``(loss, pred)``;
- ``apply(divisor=1)``: divide the summed gradients by ``divisor``, clip, take the optimizer step;
  returns whether the update was applied (mixed precision skips non-finite ones).

``step(x, y)`` is ``zero_grad(); compute_grads(x, y); apply()``, except where a wrapper decides
otherwise (:class:`~nnx.training.accumulate.Accumulate` applies every k-th call only). After a
call, ``step.stepped`` says whether it ended with an optimizer step. The Trainer also calls three
hooks, passed down the chain: ``begin_epoch(sizes)`` with the global sample count of every batch
of the epoch (the accumulation weights need the group sizes), ``begin_batch(rows)`` with this
process's rows ``(start, stop, total)`` of the global batch (data parallelism's dropout masks)
and ``end_epoch()``.

>>> import numpy as np, nnx
>>> model = nnx.Sequential(nnx.Linear(3, 2, rng=0))
>>> step = EagerStep(model, nnx.MSELoss(), nnx.optim.SGD(model.parameters(), lr=0.1))
>>> x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
>>> first, _ = step(x, y)
>>> bool(step(x, y)[0] < first), step.stepped
(True, True)
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from ..backend import backend_of, namespace, overflow_allowed
from ..core.calls import accepts_need_input_grad
from ..core.structure import call_with, first_leaf, map_structure
from ..optim import clip_grad_norm

W = TypeVar("W")


class Step(Protocol):
    """What the Trainer calls: one training step on one batch (see the module docstring)."""

    model: Any
    loss: Any
    optimizer: Any
    stepped: bool

    def __call__(self, x: Any, y: Any) -> tuple[Any, Any]: ...

    def zero_grad(self) -> None: ...

    def compute_grads(self, x: Any, y: Any, weight: Any = None, **options: Any) -> tuple[Any, Any]:
        """Forward, loss and backward of one batch; gradients are added into ``param.grad``."""

    def apply(self, divisor: int = 1) -> bool: ...

    def begin_epoch(self, sizes: list[int]) -> None: ...

    def begin_batch(self, rows: tuple[int, int, int]) -> None: ...

    def end_epoch(self) -> None: ...

    def wrapper(self, kind: type[W]) -> W | None: ...


class StepBase:
    """What every step and wrapper shares: the call as its three phases, hooks that do nothing
    and :meth:`wrapper` to find a layer of the chain."""

    stepped = False
    inner: Any = None

    def __call__(self, x: Any, y: Any) -> tuple[Any, Any]:
        self.zero_grad()
        out = self.compute_grads(x, y)
        self.apply()
        self.stepped = True
        return out

    def begin_epoch(self, sizes: list[int]) -> None:
        if self.inner is not None:
            self.inner.begin_epoch(sizes)

    def begin_batch(self, rows: tuple[int, int, int]) -> None:
        if self.inner is not None:
            self.inner.begin_batch(rows)

    def end_epoch(self) -> None:
        if self.inner is not None:
            self.inner.end_epoch()

    def wrapper(self, kind: type[W]) -> W | None:
        """The first step of type ``kind`` along the chain from this one inwards, or None."""
        step: Any = self
        while step is not None:
            if isinstance(step, kind):
                return step
            step = step.inner
        return None


class EagerStep(StepBase):
    """The training step, run eagerly on the model's backend.

    Args:
        model, loss, optimizer: an nnx Module, Loss and Optimizer (on the model's parameters).
        clip_norm: clip the global gradient norm to this value before each optimizer step.

    A batch of 0 rows (a process's empty share of a short last batch in data-parallel training)
    gives a zero loss and ``pred=None``; modules that set ``collective = True`` (``SyncBatchNorm``)
    still run forward and backward on it, so they join the other processes' allreduces.
    """

    def __init__(self, model: Any, loss: Any, optimizer: Any, clip_norm: float | None = None):
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.clip_norm = clip_norm
        self._skip_input_grad = accepts_need_input_grad(model)
        self._collective = any(getattr(m, "collective", False) for m in model.modules())

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def compute_grads(
        self, x: Any, y: Any, weight: Any = None, *, compute_dtype: Any = None
    ) -> tuple[Any, Any]:
        """Forward, loss, backward of ``weight * loss`` (``weight=None``: 1).

        ``compute_dtype`` (mixed precision): the parameters and floating inputs are cast to it
        for the forward and backward passes, the prediction is cast back to the parameters'
        dtype before the loss, the loss gradient is cast to it before the backward, and the
        gradients come back in the parameters' dtype (the float32 masters are put back).
        Gradients already held must then be None (:class:`MixedPrecision` sees to it).
        """
        if compute_dtype is None:  # no parameter is needed (an empty batch looks one up)
            with overflow_allowed():  # see below
                return self._forward_backward(None, x, y, weight, None, None)
        params = list(self.model.parameters())
        xp = namespace(params[0].value)
        masters = [p.value for p in params]
        for p in params:
            p.value, p.grad = xp.astype(p.value, compute_dtype), None
        x = map_structure(lambda a: _cast_floating(a, compute_dtype), x)
        try:
            # a diverging run's overflow becomes a NaN/inf loss, reported in one line at the
            # epoch's end; NumPy's RuntimeWarnings would be printed before it
            with overflow_allowed():
                return self._forward_backward(xp, x, y, weight, masters[0].dtype, compute_dtype)
        finally:
            for p, master in zip(params, masters, strict=True):
                p.value = master
                if p.grad is not None:
                    p.grad = xp.astype(p.grad, master.dtype)

    def _forward_backward(
        self, xp: Any, x: Any, y: Any, weight: Any, dtype: Any, compute_dtype: Any
    ) -> tuple[Any, Any]:
        model, loss_fn = self.model, self.loss
        if int(first_leaf(x).shape[0]) == 0:
            first = next(model.parameters()).value
            if xp is None:  # compute_grads without compute_dtype: the parameters' own
                xp, dtype = namespace(first), first.dtype
            device = backend_of(first).device
            zero = xp.zeros((), dtype=dtype, device=device)
            if self._collective:  # it must still join its collectives
                out = call_with(model, x)
                model.backward(map_structure(xp.zeros_like, out))
            return zero, None
        pred = call_with(model, x)
        if compute_dtype is not None:  # the cast at the output boundary
            pred = map_structure(lambda a: _cast_floating(a, dtype), pred)
        loss = loss_fn.forward(pred, y)
        grad = loss_fn.backward() if weight is None else loss_fn.backward(weight)
        if compute_dtype is not None:
            grad = map_structure(lambda a: xp.astype(a, compute_dtype), grad)
        if self._skip_input_grad:  # nobody uses dL/dx of the data: save the first layer's matmul
            model.backward(grad, need_input_grad=False)
        else:
            model.backward(grad)
        return loss, pred

    def apply(self, divisor: int = 1) -> bool:
        # the parameters are walked only where needed (a walk of the model per step costs as
        # much as a small layer's update)
        params = None
        if divisor != 1 or self.clip_norm is not None:
            params = list(self.model.parameters())
        if divisor != 1:
            for p in params:
                if p.grad is not None:
                    p.grad = p.grad * (1.0 / divisor)
        with overflow_allowed():
            if self.clip_norm is not None:
                clip_grad_norm(params, self.clip_norm)
            self.optimizer.step()
        return True


def _cast_floating(array: Any, dtype: Any) -> Any:
    xp = namespace(array)
    return xp.astype(array, dtype) if xp.isdtype(array.dtype, "real floating") else array


class StepWrapper(StepBase):
    """Base of the wrappers: every phase and hook goes to ``inner``; subclasses extend some."""

    def __init__(self, inner: Any):
        self.inner = inner

    @property
    def model(self) -> Any:
        return self.inner.model

    @property
    def loss(self) -> Any:
        return self.inner.loss

    @property
    def optimizer(self) -> Any:
        return self.inner.optimizer

    def zero_grad(self) -> None:
        self.inner.zero_grad()

    def compute_grads(self, x: Any, y: Any, weight: Any = None, **options: Any) -> tuple[Any, Any]:
        return self.inner.compute_grads(x, y, weight, **options)

    def apply(self, divisor: int = 1) -> bool:
        return self.inner.apply(divisor)


def fresh_grads(params: list[Any]) -> list[Any]:
    """Take the gradients held now off ``params`` (each becomes None) and return them: a wrapper
    then transforms the gradients of one batch alone and adds the held ones back with
    :func:`add_back`."""
    held = [p.grad for p in params]
    for p in params:
        p.grad = None
    return held


def add_back(params: list[Any], held: list[Any]) -> None:
    """``param.grad = held + param.grad`` (either may be None)."""
    for p, h in zip(params, held, strict=True):
        if h is not None:
            p.grad = h if p.grad is None else h + p.grad
