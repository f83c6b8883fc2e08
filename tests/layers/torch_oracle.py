"""Run an nnx layer and its PyTorch twin on the same float64 data and compare everything.

:func:`compare` is the oracle every layer test uses: forward output, the gradient of every input,
every parameter gradient and every buffer, within ``tol``, on any nnx backend (the nnx side runs
on ``backend``; PyTorch runs on its CPU tensors). :func:`torch_module_configs` reads PyTorch's
own module-test configurations (``torch.testing._internal.common_nn``) for one class, so a test
can run every configuration PyTorch itself tests.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

import nnx
from nnx.io.torch_weights import torch_gradients


def copy_into_torch(module, tmodule):
    """Give the torch module the nnx module's parameter and buffer values, in PyTorch's names
    and layout: the library's own mapping, :func:`nnx.torch_state_dict`, so every comparison
    here tests that mapping too."""
    import torch

    tstate = {
        **dict(tmodule.named_parameters(remove_duplicate=False)),
        **dict(tmodule.named_buffers(remove_duplicate=False)),
    }
    for name, value in nnx.torch_state_dict(module).items():
        tstate[name].data = torch.tensor(value)


@contextlib.contextmanager
def _torch_notes_ignored():
    """PyTorch's own UserWarnings while the oracle runs (such as its note that padding='same'
    with an even kernel copies the input): they say nothing about nnx, and pytest turns
    warnings into errors. Warnings raised by nnx are not inside this block."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch(\.|$)")
        warnings.filterwarnings("ignore", message=r"Using padding='same'", category=UserWarning)
        yield


def _is_multi(shape: Any) -> bool:
    """A list of shapes (several inputs) rather than one shape."""
    return isinstance(shape, list)


def compare(
    module,
    tmodule,
    shape,
    *,
    steps: int = 1,
    seed: int = 0,
    tol: float = 1e-9,
    train: bool = True,
    backend: str = "numpy",
    kwargs: dict | None = None,
    inputs: Sequence[np.ndarray] | None = None,
    differentiable: Sequence[int] | None = None,
):
    """Forward, input gradients, every parameter gradient and every buffer, ``steps`` times
    (fresh data each step; parameters unchanged), within ``tol`` (absolute and relative).

    ``shape`` is one input shape, or a list of shapes for a module that takes several positional
    inputs (its ``backward`` then returns one gradient per input, in order). ``inputs`` gives
    the host arrays instead of random ones (used for every step). ``kwargs`` are passed to both
    forwards unchanged when they are not arrays; NumPy arrays among them go to each side as its
    own array (masks, lengths). The nnx module runs on ``backend`` (a spec such as
    ``"strict:device1"`` or ``"jax"``). ``differentiable`` are the positions of the inputs the
    nnx module returns gradients for (default: all; a float mask passed positionally, as
    ``Transformer``'s third input in PyTorch's configurations, is a constant to nnx).
    """
    import torch

    be = nnx.get_backend(backend)
    module = module.to(be, dtype="float64")
    tmodule = tmodule.double()
    copy_into_torch(module, tmodule)
    module.train(train)
    tmodule.train(train)
    rng = np.random.default_rng(seed)
    shapes = shape if _is_multi(shape) else [shape]
    wanted = range(len(shapes)) if differentiable is None else differentiable
    multi = len(wanted) > 1
    kwargs = kwargs or {}
    nkw = {k: be.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with nnx.backend.float64_scope(be):
        for step in range(steps):
            xs = list(inputs) if inputs is not None else [rng.standard_normal(s) for s in shapes]
            xts = [
                torch.tensor(x, requires_grad=x.dtype.kind == "f" and i in wanted)
                for i, x in enumerate(xs)
            ]
            module.zero_grad()
            y = module(*[be.asarray(x) for x in xs], **nkw)
            with _torch_notes_ignored():
                yt = tmodule(*xts, **tkw)
            y_host = nnx.to_numpy(y)
            assert y_host.shape == tuple(yt.shape), (y_host.shape, tuple(yt.shape))
            np.testing.assert_allclose(
                y_host, yt.detach().numpy(), rtol=tol, atol=tol, err_msg=f"output, step {step}"
            )
            g = rng.standard_normal(y_host.shape)
            with _torch_notes_ignored():
                yt.backward(torch.tensor(g))
            dxs = module.backward(be.asarray(g))
            dxs = dxs if multi else (dxs,)
            for i, (dx, xt) in enumerate(zip(dxs, [xts[i] for i in wanted], strict=True)):
                if xt.grad is None:
                    continue
                np.testing.assert_allclose(
                    nnx.to_numpy(dx),
                    xt.grad.numpy(),
                    rtol=tol,
                    atol=tol,
                    err_msg=f"input {i} grad, step {step}",
                )
            tparams = dict(tmodule.named_parameters())
            for name, grad in torch_gradients(module).items():
                tgrad = tparams[name].grad
                expected = np.zeros(grad.shape) if tgrad is None else tgrad.numpy()
                np.testing.assert_allclose(
                    grad,
                    expected,
                    rtol=tol,
                    atol=tol,
                    err_msg=f"{name} grad, step {step}",
                )
                tparams[name].grad = None
            tbuffers = dict(tmodule.named_buffers())
            for name, b in module.named_buffers():
                np.testing.assert_allclose(
                    nnx.to_numpy(b.value),
                    tbuffers[name].numpy(),
                    rtol=tol,
                    atol=tol,
                    err_msg=f"{name}, step {step}",
                )
    return module


def torch_module_configs(name: str) -> list[dict[str, Any]]:
    """PyTorch's own module-test configurations for the class ``name``.

    Returns the dicts of ``torch.testing._internal.common_nn`` (``module_tests``,
    ``get_new_module_tests()`` and ``criterion_tests``) whose ``module_name`` is ``name`` or
    whose ``fullname`` starts with ``name + "_"``. Each has ``constructor_args`` (or a
    ``constructor``), and ``input_size`` or ``input_fn`` (a function returning torch tensors);
    losses also have ``target_size``/``target_fn``. Call it inside a ``torch``-marked test.
    """
    return [
        t
        for t in _all_configs()
        if t.get("module_name") == name or str(t.get("fullname", "")).startswith(name + "_")
    ]


@functools.cache
def _all_configs() -> tuple[dict[str, Any], ...]:
    import warnings

    with warnings.catch_warnings():
        # common_utils warns when the optional `hypothesis` is missing; it is not needed here
        warnings.simplefilter("ignore")
        from torch.testing._internal import common_nn

        tests = [*common_nn.module_tests, *common_nn.get_new_module_tests()]
    tests += list(getattr(common_nn, "criterion_tests", []))
    return tuple(tests)


class _Recorder:
    """Stands in for ``torch.nn`` while a configuration's ``constructor`` runs: records the call."""

    def __getattr__(self, cls_name: str):
        def record(*args, **kwargs):
            return cls_name, args, kwargs

        return record


def config_arguments(config: dict[str, Any]) -> tuple[tuple, dict]:
    """The ``(args, kwargs)`` a PyTorch module-test configuration builds its module with.

    A configuration gives either ``constructor_args`` or a ``constructor`` such as
    ``lambda: nn.Conv2d(4, 4, 3, groups=2)``; the lambda is re-run with ``nn`` recording the
    call, so the same arguments can build the nnx twin.
    """
    import types

    if "constructor" not in config or "constructor_args" in config:
        return tuple(config.get("constructor_args", ())), dict(config.get("constructor_kwargs", {}))
    fn = config["constructor"]
    if not isinstance(fn, types.FunctionType):
        raise TypeError(f"config {config.get('fullname')}: constructor {fn!r} is not a lambda")
    replay = types.FunctionType(
        fn.__code__,
        {**fn.__globals__, "nn": _Recorder()},
        fn.__name__,
        fn.__defaults__,
        fn.__closure__,
    )
    replay.__kwdefaults__ = fn.__kwdefaults__  # lambda *args, name=name: ...
    _, args, kwargs = replay()
    return args, kwargs


ORACLE_BACKENDS = ("numpy", "strict:device1", "jax")


def check_torch_configs(
    name: str,
    *,
    backends: Sequence[str] = ORACLE_BACKENDS,
    make=None,
    skip=None,
    tol: float = 1e-9,
    minimum: int = 1,
    differentiable: Sequence[int] | None = None,
) -> int:
    """Run every PyTorch module-test configuration of class ``name`` through :func:`compare`
    on each of ``backends`` (those not importable are left out); returns how many ran.

    ``make(args, kwargs)`` builds the nnx module (default ``getattr(nnx, name)(*args,
    **kwargs)``); ``skip(config)`` returns a reason to leave a configuration out (a feature
    PyTorch tests that nnx does not have, such as complex inputs), or None. Configurations with
    an ``input_fn`` use its tensors. Fails if fewer than ``minimum`` configurations ran.
    ``differentiable`` is passed to :func:`compare`.
    """
    import warnings

    import torch

    from nnx.backend import backend_available

    make = make or (lambda args, kwargs: getattr(nnx, name)(*args, **kwargs))
    usable = [b for b in backends if backend_available(b)[0]]
    ran = 0
    for config in torch_module_configs(name):
        if skip is not None and skip(config):
            continue
        args, kwargs = config_arguments(config)
        label = config.get("fullname") or f"{name}_{config.get('desc', '')}"
        if "input_fn" in config:
            made = config["input_fn"]()
            made = made if isinstance(made, tuple) else (made,)
            host = [
                t.detach().double().numpy() if t.is_floating_point() else t.numpy() for t in made
            ]
            shape, inputs = [h.shape for h in host], host
        else:
            shape, inputs = tuple(config["input_size"]), None
        for backend in usable:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # PyTorch's own notes (padding='same')
                tmodule = getattr(torch.nn, name)(*args, **kwargs)
            try:
                compare(
                    make(args, kwargs),
                    tmodule,
                    shape,
                    inputs=inputs,
                    backend=backend,
                    tol=tol,
                    differentiable=differentiable,
                )
            except AssertionError as e:
                raise AssertionError(f"{label} on {backend}: {e}") from None
        ran += 1
    assert ran >= minimum, f"only {ran} of PyTorch's {name} configurations ran"
    return ran


def compare_loss(
    loss,
    tloss,
    inputs: Sequence[np.ndarray],
    *,
    differentiable: Sequence[int] = (0,),
    backend: str = "numpy",
    tol: float = 1e-9,
    seed: int = 0,
):
    """A loss (or any module of several inputs) against its PyTorch twin: value and the gradient
    of every floating input, float64, on ``backend``.

    ``inputs`` are host arrays passed positionally to both (``loss(pred, target)``, or
    ``loss(x1, x2, y)``). ``differentiable`` are the positions of the inputs nnx returns
    gradients for: ``backward(grad_out)`` returns that one gradient, or a tuple of them in
    argument order when there are several. Each is compared with PyTorch's gradient of the same
    input; ``grad_out`` is random (any shape, so ``reduction="none"`` is covered too).
    """
    import torch

    be = nnx.get_backend(backend)
    loss = loss.to(be, dtype="float64")
    copy_into_torch(loss, tloss.double())
    rng = np.random.default_rng(seed)
    with nnx.backend.float64_scope(be):
        tensors = [torch.tensor(x, requires_grad=i in differentiable) for i, x in enumerate(inputs)]
        out = loss(*[be.asarray(x) for x in inputs])
        with _torch_notes_ignored():
            tout = tloss(*tensors)
        out_host = nnx.to_numpy(out)
        np.testing.assert_allclose(
            out_host, tout.detach().numpy(), rtol=tol, atol=tol, err_msg="value"
        )
        g = rng.standard_normal(out_host.shape)
        with _torch_notes_ignored():
            tout.backward(torch.tensor(g))
        grads = loss.backward(be.asarray(g))
        grads = grads if len(differentiable) > 1 else (grads,)
        assert isinstance(grads, tuple) and len(grads) == len(differentiable), type(grads)
        for i, d in zip(differentiable, grads, strict=True):
            t = tensors[i]
            np.testing.assert_allclose(
                nnx.to_numpy(d), t.grad.numpy(), rtol=tol, atol=tol, err_msg=f"input {i} grad"
            )
        tparams = dict(tloss.named_parameters())
        for name, p in loss.named_parameters():
            np.testing.assert_allclose(
                nnx.to_numpy(p.grad), tparams[name].grad.numpy(), rtol=tol, atol=tol, err_msg=name
            )
    return out_host


@functools.cache
def _module_db() -> dict[str, Any]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.testing._internal.common_modules import module_db

    return {info.module_cls.__name__: info for info in module_db}


def torch_module_db_inputs(
    name: str, training: bool = True
) -> list[tuple[tuple, dict, list, dict, str]]:
    """PyTorch's ``torch.testing._internal.common_modules.module_db`` inputs for class ``name``:
    a list of ``(args, kwargs, forward_inputs, forward_kwargs, desc)``, the forward inputs as
    float64 host arrays (integer tensors keep their dtype). Empty when the class has none.
    (The module is slow to import, ~10 s: call it inside a ``torch``-marked test.)"""
    import torch

    info = _module_db().get(name)
    if info is None:
        return []

    def host(v):
        if isinstance(v, torch.Tensor):
            v = v.detach()
            return v.double().numpy() if v.is_floating_point() else v.numpy()
        return v

    found = []
    for item in info.module_inputs_func(
        info, device="cpu", dtype=torch.float64, requires_grad=True, training=training
    ):
        fwd = item.forward_input
        if fwd is None:
            continue
        found.append(
            (
                tuple(item.constructor_input.args),
                dict(item.constructor_input.kwargs),
                [host(a) for a in fwd.args],
                {k: host(v) for k, v in fwd.kwargs.items()},
                item.desc,
            )
        )
    return found


def check_torch_module_db(
    name: str,
    *,
    backends: Sequence[str] = ORACLE_BACKENDS,
    make=None,
    skip=None,
    train: bool = True,
    tol: float = 1e-9,
    minimum: int = 1,
) -> int:
    """Like :func:`check_torch_configs`, for the inputs of PyTorch's ``module_db`` (the newer
    module tests, which cover classes common_nn has no configuration for, such as the
    normalization layers). ``skip(args, kwargs, inputs, desc)`` returns a reason or None."""
    import warnings

    import torch

    from nnx.backend import backend_available

    make = make or (lambda args, kwargs: getattr(nnx, name)(*args, **kwargs))
    usable = [b for b in backends if backend_available(b)[0]]
    ran = 0
    for args, kwargs, inputs, fkwargs, desc in torch_module_db_inputs(name, training=train):
        if skip is not None and skip(args, kwargs, inputs, desc):
            continue
        arrays = [x for x in inputs if isinstance(x, np.ndarray)]
        if len(arrays) != len(inputs):
            continue  # a forward argument that is not an array (None, a tuple of states)
        for backend in usable:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                tmodule = getattr(torch.nn, name)(*args, **kwargs)
            try:
                compare(
                    make(args, kwargs),
                    tmodule,
                    [x.shape for x in arrays],
                    inputs=arrays,
                    kwargs=fkwargs,
                    train=train,
                    backend=backend,
                    tol=tol,
                )
            except AssertionError as e:
                raise AssertionError(f"{name} {desc!r} {args} {kwargs} on {backend}: {e}") from None
        ran += 1
    assert ran >= minimum, f"only {ran} of PyTorch's module_db inputs for {name} ran"
    return ran


def _host(t: Any) -> np.ndarray:
    """A torch tensor as a host array: floating ones in float64, integer ones as they are."""
    return t.detach().double().numpy() if t.is_floating_point() else t.numpy()


def _loss_cases(config: dict[str, Any]) -> list[tuple[dict[str, Any], list[np.ndarray]]]:
    """``(constructor kwargs, host inputs)`` of one loss configuration of common_nn.

    Two kinds exist: ``wrap_functional`` ones (``constructor`` is a module class whose
    ``forward`` calls ``F.some_loss(i, t, **options)`` with the target ``t`` closed over; the call
    is replayed with ``F`` recording it) and ordinary ones (``input_fn`` gives the input or a
    tuple of inputs, ``target_fn`` the target). Torch tensors among the kwargs (class weights)
    are returned as host arrays."""
    import types

    import torch

    constructor = config["constructor"]
    if isinstance(constructor, type) and constructor.__name__ == "FunctionalModule":
        forward = constructor.forward
        cells = dict(zip(forward.__code__.co_freevars, forward.__closure__, strict=True))
        fn, extra = cells["fn"].cell_contents, cells["kwargs"].cell_contents
        replay = types.FunctionType(
            fn.__code__, {**fn.__globals__, "F": _Recorder()}, fn.__name__, None, fn.__closure__
        )
        _, args, kwargs = replay(config["input_fn"]().double())
        kwargs = {**kwargs, **extra}
        made = list(args)
    else:
        _, kwargs = config_arguments(config)
        made = config["input_fn"]()
        made = list(made) if isinstance(made, tuple) else [made]
        made.append(config["target_fn"]())
    kwargs = {k: _host(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    return [(kwargs, [_host(t) for t in made])]


def check_torch_loss_configs(
    name: str,
    *,
    differentiable: Sequence[int] = (0,),
    backends: Sequence[str] = ORACLE_BACKENDS,
    make=None,
    skip=None,
    reductions: Sequence[str] = ("none", "mean", "sum"),
    tol: float = 1e-9,
    minimum: int = 1,
) -> int:
    """:func:`check_torch_configs` for losses: every PyTorch ``criterion_tests`` and
    ``wrap_functional`` configuration of class ``name`` through :func:`compare_loss` on each of
    ``backends``, with each of ``reductions`` (PyTorch itself checks the sum of its
    ``reduction="none"`` configurations as well). ``differentiable`` are the positions of the
    inputs nnx returns gradients for. ``make(kwargs)`` builds the nnx loss (default
    ``getattr(nnx, name)(**kwargs)``; array kwargs arrive as host arrays); ``skip(config)``
    returns a reason to leave one out, or None. Returns how many configurations ran."""
    import torch

    from nnx.backend import backend_available

    make = make or (lambda kwargs: getattr(nnx, name)(**kwargs))
    usable = [b for b in backends if backend_available(b)[0]]
    ran = 0
    for config in torch_module_configs(name):
        if skip is not None and skip(config):
            continue
        label = config.get("fullname") or f"{name}_{config.get('desc', '')}"
        for kwargs, inputs in _loss_cases(config):
            for reduction in reductions:
                kw = {**kwargs, "reduction": reduction}
                tkw = {
                    k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()
                }
                for backend in usable:
                    try:
                        compare_loss(
                            make(kw),
                            getattr(torch.nn, name)(**tkw),
                            inputs,
                            differentiable=differentiable,
                            backend=backend,
                            tol=tol,
                        )
                    except AssertionError as e:
                        raise AssertionError(f"{label} ({reduction}) on {backend}: {e}") from None
        ran += 1
    assert ran >= minimum, f"only {ran} of PyTorch's {name} configurations ran"
    return ran
