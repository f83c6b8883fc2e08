"""One whole training step compiled by XLA: ``nnx.compile(model, loss, optimizer)``.

The step is the same Python code as the eager one (forward, loss, every layer's hand-written
``backward``, gradient clipping, the optimizer's update rule), traced once by ``jax.jit`` and
compiled by XLA into one program. The step is made a pure function by passing every array it
changes in and out:

- in: parameter values, optimizer state arrays and step counts, buffer values, the dropout
  generators' ``jax.random`` keys, the learning rate, the batch;
- inside: those arrays are rebound onto the :class:`~nnx.Parameter` objects, optimizer state
  dicts, buffers and generators, the ordinary eager code runs on them, and the new values are
  read back off the same objects;
- out: the new values, the loss and the predictions; outside the compiled function they are
  rebound onto the objects, so the model, optimizer and checkpoints see an ordinary state.

What is fixed when the step is traced (a change needs a new trace; see docs/backends.md):
train/eval mode (part of the cache key: switching retraces), hyperparameters other than the
learning rate, the model's structure and the batch's shape and dtype (a partial last batch is a
second trace). What cannot be traced: anything that reads an array back to the host
(``float(x)``, ``CrossEntropyLoss(check_labels=True)``, which is switched off inside), and host
random numbers (dropout draws from ``jax.random`` on JAX, so it is traced).

>>> import numpy as np, nnx
>>> model = nnx.Sequential(nnx.Linear(2, 4, rng=0, device="jax"), nnx.ReLU(),
...                        nnx.Linear(4, 2, rng=1, device="jax"))
>>> step = nnx.compile(model, nnx.CrossEntropyLoss(), nnx.optim.SGD(model.parameters(), lr=0.1))
>>> x = nnx.get_backend("jax").asarray(np.ones((8, 2)), dtype="float32")
>>> y = nnx.get_backend("jax").asarray(np.zeros(8, dtype=np.int32))
>>> loss, pred = step(x, y)
>>> tuple(pred.shape), float(step(x, y)[0]) < float(loss)
((8, 2), True)
"""

from __future__ import annotations

import time
from typing import Any

from ..backend import Generator, backend_of, is_tracer, jit
from ..core.module import Module
from ..layers import Dropout
from ..losses import Loss
from ..optim import Optimizer
from .step import EagerStep, StepBase


class Compiled(StepBase):
    """A training step compiled with ``jax.jit``; call it as ``loss, pred = step(x, y)``.

    The whole call (forward, loss, backward, clipping, optimizer step) is one XLA program. Its
    phases (:mod:`nnx.training.step`) are compiled too, so wrappers compose with it:
    ``compute_grads`` (forward, loss and backward, with the gradients passed in and out: the
    16-bit casts of :class:`~nnx.training.precision.MixedPrecision` happen inside it) and
    ``apply`` (clipping and the optimizer step) are each one program, and
    :class:`~nnx.training.accumulate.Accumulate` or ``MixedPrecision`` around them run their
    own bookkeeping (weights, the inf/NaN check and the loss scale) between the programs.

    After a call the parameters, optimizer state, buffers and dropout keys hold the new values
    (as after an eager step) and every ``param.grad`` is None (gradients live only inside the
    compiled program; after ``compute_grads`` they are on the parameters). Build it with
    :func:`compile`.
    """

    def __init__(
        self, model: Module, loss: Loss, optimizer: Optimizer, clip_norm: float | None = None
    ):
        if not isinstance(model, Module) or not isinstance(loss, Loss):
            raise TypeError(
                "nnx.training.compile: expected an nnx Module, an nnx loss and an optimizer"
            )
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"nnx.training.compile: optimizer must be an nnx optimizer, got {type(optimizer).__name__}"
            )
        params = list(model.parameters())
        if not params:
            raise ValueError("nnx.training.compile: the model has no parameters")
        not_jax = [p.name for p in params if backend_of(p.value).name != "jax"]
        if not_jax:
            raise ValueError(
                f"nnx.training.compile traces with jax.jit and needs the model on JAX, but parameters "
                f"{not_jax} are on {backend_of(params[0].value).name}; move the model first "
                f"(model.to('jax')) or use the eager step"
            )
        ids = {id(p) for p in params}
        foreign = [i for i, p in enumerate(optimizer.params) if id(p) not in ids]
        if foreign:
            raise ValueError(
                f"nnx.training.compile: optimizer parameters {foreign} are not in the model"
            )
        self.model, self.loss, self.optimizer = model, loss, optimizer
        self.clip_norm = clip_norm
        self.eager = EagerStep(model, loss, optimizer, clip_norm)  # the code that is traced
        self.backend = backend_of(params[0].value)
        self.traces = 0  # how often jax.jit traced a program (a new shape or mode traces again)
        self.compile_seconds = 0.0  # wall time of the calls that traced and compiled
        self._stepped: dict[Any, list[bool]] = {}  # per program: which parameters it steps
        self._program = jit(self._pure, static_argnums=(0,))

    # -------------------------------------------------------------- the phases
    def __call__(self, x: Any, y: Any) -> tuple[Any, Any]:
        out = self._run(("call", None), (x, y))
        self.stepped = True
        return out

    def zero_grad(self) -> None:
        for p in self.model.parameters():
            p.grad = None

    def compute_grads(
        self, x: Any, y: Any, weight: Any = None, *, compute_dtype: Any = None
    ) -> tuple[Any, Any]:
        return self._run(("grads", compute_dtype), (x, y, weight))

    def apply(self, divisor: int = 1) -> bool:
        self._run(("apply", int(divisor)), ())
        return True

    # -------------------------------------------------------------- state in and out
    def _generators(self) -> list[Generator]:
        """Every JAX random generator of the model (made now where a layer has none yet)."""
        for m in self.model.modules():
            if isinstance(m, Dropout) and (
                m._generator is None or m._generator.backend != self.backend
            ):
                m._generator = self.backend.generator(m.seed)
        return [
            g
            for m in self.model.modules()
            for g in vars(m).values()
            if isinstance(g, Generator) and hasattr(g, "key")
        ]

    def _run(self, phase: tuple[str, Any], args: tuple) -> Any:
        opt = self.optimizer
        values = [p.value for p in opt.params]
        whole = phase[0] == "call"  # a whole step starts from no gradients
        grads = [None if whole else p.grad for p in self.model.parameters()]
        arrays = [{k: v for k, v in s.items() if k != "step"} for s in opt.state]
        steps = [s.get("step", 0) for s in opt.state]
        buffers = [b.value for b in self.model.buffers()]
        generators = self._generators()
        keys = [g.key for g in generators]
        mode = tuple(m.training for m in self.model.modules())
        traces = self.traces
        static = (*phase, mode)
        started = time.perf_counter()
        out = self._program(static, values, grads, arrays, steps, buffers, keys, opt.lr, args)
        if self.traces != traces:  # this call traced and compiled a program (its first call)
            self.compile_seconds += time.perf_counter() - started
        new_values, new_grads, new_arrays, new_buffers, new_keys, result = out
        for p, v in zip(opt.params, new_values, strict=True):
            p.value = v
        for p, g in zip(self.model.parameters(), new_grads, strict=True):
            p.grad = g
        stepped = self._stepped.get(static, [False] * len(steps))
        for state, a, t, advanced in zip(opt.state, new_arrays, steps, stepped, strict=True):
            state.clear()
            state.update(a)
            if advanced or t:  # counted on the host: no read-back of the traced counter
                state["step"] = t + int(advanced)
        for b, v in zip(self.model.buffers(), new_buffers, strict=True):
            b.value = v
        for g, k in zip(generators, new_keys, strict=True):
            g.key = k
        if self.traces != traces:
            self._forget_placeholders()
        return result

    def _pure(self, static, values, grads, arrays, steps, buffers, keys, lr, args):
        """A phase of the eager step on traced arrays; runs only while jax.jit traces (once per
        phase, shape and mode)."""
        self.traces += 1
        phase, option, _ = static
        model, loss_fn, opt, eager = self.model, self.loss, self.optimizer, self.eager
        for p, v in zip(opt.params, values, strict=True):
            p.value = v
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g
        saved_state, saved_lr = opt.state, opt._lr
        opt.state = [{**a, "step": t} for a, t in zip(arrays, steps, strict=True)]
        opt._lr = lr  # traced: a schedule's new rate needs no new trace
        for b, v in zip(model.buffers(), buffers, strict=True):
            b.value = v
        generators = self._generators()
        for g, k in zip(generators, keys, strict=True):
            g.key = k
        check_labels = getattr(loss_fn, "check_labels", None)
        if check_labels is not None:
            loss_fn.check_labels = False  # it reads labels back to the host
        try:
            result = None
            if phase == "call":
                result = eager.compute_grads(*args)
            elif phase == "grads":
                x, y, weight = args
                result = eager.compute_grads(x, y, weight, compute_dtype=option)
            if phase != "grads":
                self._stepped[static] = [p.grad is not None for p in opt.params]
                eager.apply(1 if option is None else option)
                model.zero_grad()
            new_arrays = [{k: v for k, v in s.items() if k != "step"} for s in opt.state]
            return (
                [p.value for p in opt.params],
                [p.grad for p in model.parameters()],
                new_arrays,
                [b.value for b in model.buffers()],
                [g.key for g in generators],
                result,
            )
        finally:
            opt.state, opt._lr = saved_state, saved_lr
            if check_labels is not None:
                loss_fn.check_labels = check_labels

    def _forget_placeholders(self) -> None:
        """Drop what layers cached during the trace (placeholders, not arrays): an eager
        ``backward`` now says that ``forward`` must run first instead of failing inside JAX."""
        for m in [*self.model.modules(), self.loss]:
            for name, value in list(vars(m).items()):
                items = value if isinstance(value, (tuple, list)) else (value,)
                if any(is_tracer(v) for v in items):
                    setattr(m, name, None)
        for p in self.model.parameters():
            if is_tracer(p.grad):
                p.grad = None


CompiledStep = Compiled  # the name nnx has exported since the first compiled step


def compile(
    model: Module, loss: Loss, optimizer: Optimizer, clip_norm: float | None = None
) -> Compiled:
    """Compile one training step of ``model`` (on JAX) with ``jax.jit``.

    Returns a :class:`Compiled` step; ``loss, pred = step(x, y)`` runs forward, ``loss``,
    the explicit backward passes, gradient-norm clipping (``clip_norm``) and
    ``optimizer.step()`` as one XLA program, and leaves the new parameter values on the model.
    """
    return Compiled(model, loss, optimizer, clip_norm)
