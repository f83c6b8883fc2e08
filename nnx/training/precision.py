"""Mixed precision: compute in 16 bits, keep float32 master weights, scale the loss.

:class:`MixedPrecision` wraps a training step (:mod:`nnx.training.step`); ``loss, pred = step(x, y)``:

1. the float32 *master* values of the parameters are cast to the compute dtype (float16 or
   bfloat16) and put on the model, and the batch is cast likewise (the cast at the model's
   input boundary);
2. the model's forward and explicit backward run in 16 bits (``Softmax`` accumulates in
   float32 inside, whatever its input dtype);
3. the prediction is cast back to float32 before the loss (the cast at the output boundary), so
   the loss, its gradient and every metric are float32; the loss gradient is multiplied by the
   loss scale ``S`` before it enters the 16-bit backward, so small gradients do not underflow;
4. the 16-bit gradients are cast to float32 and divided by ``S``, the master values are put back
   on the parameters, and the optimizer updates the float32 masters (its state is float32 too);
5. dynamic loss scaling (:class:`LossScaler`): if any gradient is inf or NaN the update is
   skipped and ``S`` halves; after ``growth_interval`` clean steps in a row ``S`` doubles.

Precisions: ``"float16"`` (loss scaling on), ``"bfloat16"`` (float32's exponent range, so the
scale stays at 1, but non-finite steps are still skipped; PyTorch, JAX and CuPy only) and
``"mixed16"``: bfloat16 where the backend has it, else float16 with loss scaling. ``"float32"``
is ordinary training. Checking for inf/NaN reads one boolean back to the host per step.

>>> import numpy as np, nnx
>>> model = nnx.Sequential(nnx.Linear(3, 2, rng=0))
>>> from nnx.training.step import EagerStep
>>> step = MixedPrecision(EagerStep(model, nnx.MSELoss(), nnx.optim.SGD(model.parameters(), lr=0.1)),
...                       "float16")
>>> loss, pred = step(np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32))
>>> loss.dtype, pred.dtype, model[0].weight.value.dtype, step.scaler.scale
(dtype('float32'), dtype('float32'), dtype('float32'), 65536.0)
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import backend_of, namespace, overflow_allowed
from ..core.checks import dtype_name
from .step import StepWrapper, add_back, fresh_grads

PRECISIONS = ("float32", "float16", "bfloat16", "mixed16")


MIN_SCALE, MAX_SCALE = 2.0**-24, 2.0**64  # float16's smallest step; far past any useful scale


class LossScaler:
    """Dynamic loss scale, as in PyTorch's ``GradScaler`` (same defaults).

    ``update(found_inf)`` after every step: on inf/NaN the step is skipped and the scale is
    multiplied by ``backoff_factor``; after ``growth_interval`` clean steps in a row it is
    multiplied by ``growth_factor``. With ``dynamic=False`` the scale never changes (bfloat16),
    but non-finite steps are still skipped. The scale stays within ``[2**-24, 2**64]``: below,
    float16 gradients vanish; above, every gradient overflows.

    >>> s = LossScaler(init_scale=8.0, growth_interval=2)
    >>> [s.update(False), s.scale, s.update(False), s.scale, s.update(True), s.scale]
    [True, 8.0, True, 16.0, False, 8.0]
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        dynamic: bool = True,
    ):
        if not (math.isfinite(init_scale) and MIN_SCALE <= init_scale <= MAX_SCALE):
            raise ValueError(
                f"LossScaler: init_scale must be positive and finite, in [2**-24, 2**64], got "
                f"{init_scale!r}"
            )
        if not growth_factor > 1.0:
            raise ValueError(f"LossScaler: growth_factor must be > 1, got {growth_factor!r}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(
                f"LossScaler: backoff_factor must lie in (0, 1), got {backoff_factor!r}"
            )
        if (
            isinstance(growth_interval, bool)
            or not isinstance(growth_interval, int)
            or growth_interval < 1
        ):
            raise ValueError(
                f"LossScaler: growth_interval must be a positive integer, got {growth_interval!r}"
            )
        self.scale = float(init_scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self.dynamic = bool(dynamic)
        self.good_steps = 0  # clean steps since the last change of scale
        self.skipped_steps = 0  # steps skipped for inf/NaN gradients, in total

    def update(self, found_inf: bool) -> bool:
        """Record one step; returns whether its update may be applied (no inf/NaN)."""
        if found_inf:
            self.skipped_steps += 1
            self.good_steps = 0
            if self.dynamic:
                self.scale = max(self.scale * self.backoff_factor, MIN_SCALE)
            return False
        self.good_steps += 1
        if self.dynamic and self.good_steps >= self.growth_interval:
            self.scale = min(self.scale * self.growth_factor, MAX_SCALE)
            self.good_steps = 0
        return True

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers (JSON-serialisable): checkpoints carry them."""
        return {
            "scale": self.scale,
            "good_steps": self.good_steps,
            "skipped_steps": self.skipped_steps,
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
            "dynamic": self.dynamic,
        }

    def check_state_dict(self, state: Any) -> None:
        """Raise ValueError or TypeError unless ``state`` is a :meth:`state_dict`: a scale in
        ``[2**-24, 2**64]``, factors and interval as the constructor takes them, integer counts
        >= 0, a boolean ``dynamic``; every key present, none unknown."""
        if not isinstance(state, dict):
            raise TypeError(f"LossScaler: state must be a dict, got {state!r}")
        keys = set(self.state_dict())
        if set(state) != keys:
            missing, unknown = sorted(keys - set(state)), sorted(set(state) - keys)
            what = [f"lacks {missing}"] * bool(missing) + [f"has unknown {unknown}"] * bool(unknown)
            raise ValueError(f"LossScaler: the state {' and '.join(what)}")
        ranges = {
            "scale": (MIN_SCALE, MAX_SCALE, "lie in [2**-24, 2**64]"),
            "growth_factor": (1.0, math.inf, "be > 1"),
            "backoff_factor": (0.0, 1.0, "lie in (0, 1)"),
        }
        for key, (low, high, rule) in ranges.items():
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"LossScaler: {key} must be a number, got {value!r}")
            open_ends = key != "scale"
            ok = math.isfinite(value) and (
                low < value < high if open_ends else low <= value <= high
            )
            if not ok:
                raise ValueError(f"LossScaler: {key} must {rule}, got {value!r}")
        for key, low in (("good_steps", 0), ("skipped_steps", 0), ("growth_interval", 1)):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"LossScaler: {key} must be an integer >= {low}, got {value!r}")
        if not isinstance(state.get("dynamic"), bool):
            raise TypeError(
                f"LossScaler: dynamic must be true or false, got {state.get('dynamic')!r}"
            )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_dict(state)
        self.scale = float(state["scale"])
        self.good_steps = int(state["good_steps"])
        self.skipped_steps = int(state["skipped_steps"])
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])
        self.dynamic = bool(state["dynamic"])


def compute_dtype_name(precision: str, backend: Any) -> str:
    """``"float16"`` or ``"bfloat16"`` for ``precision`` on ``backend``; a clear error when the
    backend lacks it (NumPy and array-api-strict have no bfloat16, array-api-strict no float16)."""
    if precision not in PRECISIONS or precision == "float32":
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS[1:])} for mixed precision, "
            f"got {precision!r}"
        )
    if precision == "mixed16":
        precision = "bfloat16" if hasattr(backend.xp, "bfloat16") else "float16"
    if not hasattr(backend.xp, precision):
        raise ValueError(
            f"precision {precision!r} is not available on backend {backend.name!r}"
            + (
                " (bfloat16 needs PyTorch, JAX or CuPy; use float16 or mixed16)"
                if precision == "bfloat16"
                else ""
            )
        )
    return precision


class MixedPrecision(StepWrapper):
    """16-bit compute with float32 master weights and loss scaling around ``step`` (see the
    module docstring). The model's parameters must be float32 (they are the masters).

    ``compute_grads`` scales the loss by ``scaler.scale``, runs ``step``'s forward and backward in
    the compute dtype, and adds the gradients to those held, in float32 and divided by the
    scale; ``apply`` skips the update (and lowers the scale) when any gradient is inf or NaN.
    Under data parallelism wrap it inside :class:`~nnx.training.data_parallel.DataParallel`,
    whose allreduce then sums float32 gradients and every process skips the same steps.
    """

    def __init__(self, step: Any, precision: str = "mixed16", scaler: LossScaler | None = None):
        super().__init__(step)
        params = list(self.model.parameters())
        if not params:
            raise ValueError("MixedPrecision: the model has no parameters")
        backend = backend_of(params[0].value)
        wrong = [p.name for p in params if dtype_name(p.value.dtype) != "float32"]
        if wrong:
            raise ValueError(
                f"mixed precision keeps float32 master weights, but parameters {wrong} are "
                f"{dtype_name(params[0].value.dtype)}; move the model with .to(dtype='float32')"
            )
        self.name = compute_dtype_name(precision, backend)
        self.precision = precision
        self.compute_dtype = backend.dtype(self.name)
        self.float32 = backend.dtype("float32")
        if scaler is None:  # bfloat16 has float32's range: no scaling needed
            scaler = (
                LossScaler(init_scale=1.0, dynamic=False)
                if self.name == "bfloat16"
                else LossScaler()
            )
        self.scaler = scaler
        self.last_step_skipped = False

    def compute_grads(self, x: Any, y: Any, weight: Any = None, **options: Any) -> tuple[Any, Any]:
        params = list(self.model.parameters())
        held = fresh_grads(params)
        scale = self.scaler.scale
        with overflow_allowed():  # inf/NaN are expected here, found in apply, and skipped
            loss, pred = self.inner.compute_grads(
                x, y, scale if weight is None else weight * scale, compute_dtype=self.compute_dtype
            )
            for p in params:
                if p.grad is not None:
                    p.grad = p.grad * (1.0 / scale)
        add_back(params, held)
        return loss, pred

    def apply(self, divisor: int = 1) -> bool:
        params = list(self.model.parameters())
        present = [p.grad for p in params if p.grad is not None]
        finite = True
        if present:
            xp = namespace(present[0])
            finite = bool(xp.all(xp.stack([xp.all(xp.isfinite(g)) for g in present])))
        self.last_step_skipped = not self.scaler.update(found_inf=not finite)
        if not self.last_step_skipped:
            self.inner.apply(divisor)
        for p in params:
            p.grad = None
        return not self.last_step_skipped
