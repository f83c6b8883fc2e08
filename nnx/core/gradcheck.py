"""Compare analytic gradients with central finite differences in float64.

For a module ``f``, the checked scalar is ``S = sum(f(x) * w) + f.regularization_loss()`` with a
fixed random ``w``, so
``backward(w)`` must equal ``dS/dx`` and each ``dS/dparam``. For a loss, ``S`` is the loss
itself and ``backward()`` is compared. Each tensor's error is

    max |analytic - numeric| / max(max |analytic|, max |numeric|, 1e-8),

the worst deviation relative to that gradient's own scale.

On JAX without 64-bit mode the whole check runs inside ``jax.enable_x64(True)``, a switch scoped
to the check (the global ``jax_enable_x64`` setting is left as it was): a float64 check in float32
would fail for no fault of the layer.

>>> import numpy as np, nnx
>>> result = nnx.gradcheck(nnx.Linear(3, 2, rng=0), np.ones((4, 3)))
>>> result.ok, sorted(result.errors)
(True, ['bias', 'input', 'weight'])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import backend_of, float64_scope, to_numpy
from ..losses import Loss, not_a_loss_message
from .calls import call_backward
from .module import Module
from .structure import call_with, first_leaf, leaves, map_structure

_FLOOR = 1e-8


@dataclass
class GradcheckResult:
    """Worst relative error per checked tensor (``"input"`` and dotted parameter names)."""

    errors: dict[str, float] = field(default_factory=dict)
    tol: float = 1e-6

    @property
    def worst(self) -> tuple[str, float]:
        """The tensor with the largest error and that error."""
        return max(self.errors.items(), key=lambda kv: kv[1])

    @property
    def ok(self) -> bool:
        """True when every tensor's error is at most ``tol``."""
        return all(err <= self.tol for err in self.errors.values())

    def __str__(self) -> str:
        rows = [
            f"{name:>20s}  {err:.2e}  {'ok' if err <= self.tol else 'FAIL'}"
            for name, err in self.errors.items()
        ]
        return f"gradcheck (tol {self.tol:.0e}):\n" + "\n".join(rows)


def _relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    scale = max(
        float(np.max(np.abs(analytic), initial=0.0)),
        float(np.max(np.abs(numeric), initial=0.0)),
        _FLOOR,
    )
    return float(np.max(np.abs(analytic - numeric), initial=0.0)) / scale


def gradcheck(
    fn: Module,
    x: Any,
    target: Any = None,
    *,
    eps: float = 1e-6,
    tol: float = 1e-6,
    seed: int = 0,
    check_input: bool = True,
) -> GradcheckResult:
    """Check ``fn``'s input and parameter gradients against central differences in float64.

    ``fn`` is copied and cast to float64 on the backend of ``x`` (the original is untouched); ``x``
    (and a floating ``target``) are cast too. ``x`` may be a tuple of arrays (positional inputs, errors
    ``"input.0"``, ...) or a dict (keyword inputs, ``"input.<key>"``). On JAX, 64-bit mode is switched on for the check
    alone when it is off. Pass a :class:`~nnx.losses.Loss` with its
    ``target``, or any :class:`~nnx.core.module.Module` without one. Returns a
    :class:`GradcheckResult`; ``result.ok`` says whether every error is within ``tol``.
    ``seed`` draws the probe weights ``w`` from a stream of its own, so they never equal an input
    drawn with ``np.random.default_rng(seed)`` (that would hide errors in layers such as
    LayerNorm, whose Jacobian maps the input itself to zero).
    """
    if not isinstance(fn, Module):
        if callable(fn):  # most likely a loss written as a plain function
            raise TypeError(not_a_loss_message("gradcheck", fn))
        raise TypeError(f"gradcheck: expected an nnx Module or Loss, got {type(fn).__name__}")
    is_loss = isinstance(fn, Loss)
    if is_loss and target is None:
        raise ValueError(f"gradcheck: {type(fn).__name__} needs a target")
    backend = backend_of(first_leaf(x))
    with float64_scope(backend):
        return _gradcheck(fn, x, target, backend, is_loss, eps, tol, seed, check_input)


def _gradcheck(
    fn: Module,
    x: Any,
    target: Any,
    backend: Any,
    is_loss: bool,
    eps: float,
    tol: float,
    seed: int,
    check_input: bool,
) -> GradcheckResult:
    f64 = backend.dtype("float64")
    fn = copy.deepcopy(fn).to(backend, dtype="float64")
    x64 = map_structure(lambda a: backend.asarray(to_numpy(a), dtype=f64), x)
    if target is not None:
        target = map_structure(
            lambda t: backend.asarray(
                to_numpy(t), dtype=f64 if backend.xp.isdtype(t.dtype, "real floating") else None
            ),
            target,
        )

    weights = None
    if not is_loss:  # one probe array per output
        host_inputs = [to_numpy(v) for _, v in leaves(x64)]
        out = call_with(fn, x64)
        probes = [
            _probe(seed, tuple(o.shape), host_inputs, i) for i, (_, o) in enumerate(leaves(out))
        ]
        weights = map_structure(
            lambda w: backend.asarray(w, dtype=f64), _structure_like(out, probes)
        )

    def objective(inp: Any) -> float:
        if is_loss:
            out = fn(inp, target)
        else:  # layer penalties (L1/L2) are part of what backward differentiates
            outs = leaves(call_with(fn, inp))
            ws = dict(leaves(weights))
            out = sum(backend.xp.sum(o * ws[k]) for k, o in outs) + fn.regularization_loss()
        return float(to_numpy(out))

    # analytic gradients
    fn.zero_grad()
    if is_loss:
        fn(x64, target)
        grad_x = fn.backward()
    else:
        call_with(fn, x64)
        grad_x = call_backward(fn, weights, check_input)
    analytic = {}
    if check_input:
        if grad_x is None:
            raise ValueError("gradcheck: backward returned no input gradient")
        if isinstance(x64, dict) and not isinstance(grad_x, dict):  # backward in input order
            grad_x = dict(zip(x64, grad_x, strict=True))
        for key, g in leaves(grad_x):
            analytic[_input_name(key)] = to_numpy(g)
    for name, p in fn.named_parameters():
        if p.grad is None:
            raise ValueError(f"gradcheck: backward did not set the gradient of parameter {name!r}")
        analytic[name] = to_numpy(p.grad)

    result = GradcheckResult(tol=tol)
    if check_input:
        for key, leaf in leaves(x64):
            host_x = np.array(to_numpy(leaf), dtype=np.float64)

            def with_input(h: np.ndarray, key: str = key) -> float:
                value = backend.asarray(h, dtype=f64)
                if key == "":
                    return objective(value)
                if isinstance(x64, dict):
                    return objective({**x64, key: value})
                return objective(tuple(value if str(i) == key else v for i, v in enumerate(x64)))

            name = _input_name(key)
            if name not in analytic:
                raise ValueError(f"gradcheck: backward returned no gradient for {name!r}")
            result.errors[name] = _relative_error(analytic[name], _numeric(host_x, with_input, eps))
    for name, p in fn.named_parameters():
        original = p.value
        host_p = np.array(to_numpy(original), dtype=np.float64)

        def with_param(h: np.ndarray, p: Any = p) -> float:
            p.value = backend.asarray(h, dtype=f64)
            return objective(x64)

        numeric = _numeric(host_p, with_param, eps)
        p.value = original
        result.errors[name] = _relative_error(analytic[name], numeric)
    return result


def _input_name(key: str) -> str:
    return "input" if key == "" else f"input.{key}"


def _structure_like(like: Any, values: list[Any]) -> Any:
    """``values`` (one per leaf of ``like``, in order) in the form of ``like``."""
    if isinstance(like, dict):
        return dict(zip(like, values, strict=True))
    if isinstance(like, (tuple, list)):
        return tuple(values)
    return values[0]


# Mixed into the probe's seed so that the probe never repeats an input the user drew with
# ``default_rng(seed)``: for a layer such as LayerNorm, whose Jacobian maps its own input to 0,
# weights equal to the input make every gradient 0 and the check meaningless.
_PROBE_STREAM = 0x6E6E78  # "nnx"


def _probe(seed: int, shape: tuple[int, ...], inputs: list[Any], index: int = 0) -> np.ndarray:
    """Probe weights ``w`` of ``shape`` for output ``index`` from ``seed``, never equal to an
    input."""
    inputs = [np.asarray(x) for x in inputs]
    for attempt in range(8):
        entropy = [seed, _PROBE_STREAM, attempt] + ([index] if index else [])
        rng = np.random.default_rng(np.random.SeedSequence(entropy))
        w = rng.standard_normal(shape)
        if all(w.shape != x.shape or not np.allclose(np.abs(w), np.abs(x)) for x in inputs):
            return w
    raise AssertionError("gradcheck: could not draw probe weights that differ from the input")


def _numeric(host: np.ndarray, evaluate: Any, eps: float) -> np.ndarray:
    """Central differences ``(S(v + eps e_i) - S(v - eps e_i)) / (2 eps)`` for every element i."""
    grad = np.zeros_like(host)
    flat, gflat = host.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = evaluate(host)
        flat[i] = old - eps
        minus = evaluate(host)
        flat[i] = old
        gflat[i] = (plus - minus) / (2.0 * eps)
    return grad
