"""Backends: which array namespace and device nnx computes on.

This is the only module that names concrete array libraries (NumPy, CuPy, PyTorch,
array-api-strict, JAX). Everything else receives an array-API namespace ``xp`` and the arrays.

>>> be = get_backend("cpu")
>>> be.name, be.is_gpu
('numpy', False)
>>> x = be.asarray([[1.0, 2.0]], dtype="float32")
>>> be.to_numpy(x).dtype
dtype('float32')
"""

from __future__ import annotations

import contextlib
import logging
import types
from typing import Any

import array_api_compat
import numpy as np

logger = logging.getLogger("nnx")

VALID_SPECS = (
    "auto",
    "cpu",
    "numpy",
    "gpu",
    "cuda",
    "cuda:N",
    "cupy",
    "torch",
    "torch:cpu",
    "torch:cuda",
    "torch:cuda:N",
    "strict",
    "strict:DEVICE (e.g. strict:device1)",
    "jax",
    "jax:cpu",
    "jax:gpu",
)

_GPU_HINT = "install the GPU extra (pip install 'nnx-trainer[gpu]') or use backend 'cpu' or 'auto'"
# CuPy is there, so installing the extra again would not help: the driver or the GPU is missing
_DRIVER_HINT = (
    "check the NVIDIA driver and GPU (nvidia-smi; CuPy for CUDA 12 needs driver >= 525) "
    "or use backend 'cpu' or 'auto'"
)


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot be used on this machine (library or device missing)."""


class Backend:
    """An array namespace (``xp``) plus the device that new arrays are created on.

    Attributes:
        name: ``"numpy"``, ``"cupy"``, ``"torch"``, ``"array_api_strict"``, ``"jax"`` (or the
            library's name).
        xp: the array-API namespace (from array-api-compat where the library needs a wrapper).
        device: the device object of that library.
        is_gpu: True when arrays live on a GPU.
    """

    __slots__ = ("name", "xp", "device", "is_gpu")

    def __init__(self, name: str, xp: Any, device: Any, is_gpu: bool = False):
        self.name = name
        self.xp = xp
        self.device = device
        self.is_gpu = is_gpu

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={self.device!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Backend):
            return NotImplemented
        return self.name == other.name and self.device == other.device

    def __hash__(self) -> int:
        return hash((self.name, str(self.device)))

    def __deepcopy__(self, memo: dict) -> Backend:
        return self  # a namespace and a device: nothing to copy (modules cannot be deep-copied)

    def dtype(self, dtype: Any) -> Any:
        """This namespace's dtype for ``dtype`` (a name such as ``"float32"``, a NumPy or xp dtype)."""
        if isinstance(dtype, str):
            name = dtype
        else:
            try:
                name = np.dtype(dtype).name
            except TypeError:
                return dtype  # already a dtype of this namespace (torch, array-api-strict)
        if name == "bfloat16" and not hasattr(self.xp, name):
            raise ValueError(
                f"backend {self.name!r} has no bfloat16 (PyTorch, JAX and CuPy have it); "
                f"use float16 or another backend"
            )
        if name in _DTYPE_NAMES and not hasattr(self.xp, name):
            raise ValueError(f"backend {self.name!r} has no {name}; use another dtype or backend")
        if name not in _DTYPE_NAMES:
            raise ValueError(
                f"unknown dtype {dtype!r} for backend {self.name!r}; "
                f"expected one of {', '.join(_DTYPE_NAMES)}"
            )
        if self.name == "jax" and name in ("float64", "int64") and not jax_x64_enabled():
            if name == "int64":  # JAX's own integer without x64; class labels fit in it
                return self.xp.int32
            raise ValueError(
                "JAX computes in float32 unless 64-bit mode is on: set the environment variable "
                "JAX_ENABLE_X64=1 before starting Python, or call "
                "jax.config.update('jax_enable_x64', True) before creating any array"
            )
        return getattr(self.xp, name)

    def asarray(self, obj: Any, dtype: Any = None, copy: bool | None = None) -> Any:
        """Host data (lists, NumPy arrays) or another backend's array -> an array on this backend."""
        if _is_array(obj) and not self.owns(obj):
            obj = to_numpy(obj)  # cross-library / cross-device moves go through the host
        dt = None if dtype is None else self.dtype(dtype)
        return self.xp.asarray(obj, dtype=dt, device=self.device, copy=copy)

    def owns(self, array: Any) -> bool:
        """True when ``array`` belongs to this namespace and lives on this backend's device."""
        return namespace(array) is self.xp and device(array) == self.device

    def to_numpy(self, array: Any) -> np.ndarray:
        """Copy (or view, for NumPy) an array of this backend as a host NumPy array."""
        return to_numpy(array)

    def generator(self, seed: int) -> Generator:
        """A seeded source of uniform random numbers on this backend's device."""
        return Generator(self, seed)


_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64", "int32", "int64", "bool")


class Generator:
    """Seeded uniform random numbers made on the backend's device.

    CuPy and PyTorch use their own device generator (no host round trip); JAX uses
    ``jax.random`` with the generator's key kept in :attr:`key` (split at every draw, so
    :func:`nnx.compile` can pass it in and out of a compiled step); every other backend draws on
    the host with ``numpy.random.Generator`` and copies the result over.
    """

    def __init__(self, backend: Backend, seed: int):
        self.backend = backend
        self.seed = int(seed)
        if backend.name == "cupy":
            import cupy

            with backend.device:
                self._rng = cupy.random.default_rng(self.seed)
        elif backend.name == "torch":
            import torch

            self._rng = torch.Generator(device=backend.device)
            self._rng.manual_seed(self.seed)
        elif backend.name == "jax":
            import jax

            # two 32-bit words of the seed: jax.random.key takes 32-bit seeds without x64
            key = jax.random.key(self.seed & 0xFFFFFFFF)
            self.key = jax.random.fold_in(key, (self.seed >> 32) & 0xFFFFFFFF)
        else:
            self._rng = np.random.default_rng(self.seed)

    def uniform(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """Uniform numbers in [0, 1) of ``shape`` and floating ``dtype`` on the backend's device."""
        be = self.backend
        if be.name == "cupy":
            with be.device:
                return self._rng.random(shape, dtype=dtype)
        if be.name == "torch":
            import torch

            return torch.rand(shape, generator=self._rng, dtype=dtype, device=be.device)
        if be.name == "jax":
            import jax

            self.key, draw = jax.random.split(self.key)
            with jax.default_device(be.device):
                return jax.random.uniform(draw, shape, dtype=dtype)
        host_dtype = np.float64 if dtype == be.xp.float64 else np.float32
        return be.asarray(self._rng.random(shape, dtype=host_dtype), dtype=dtype)


# --------------------------------------------------------------------------- array helpers

_NAMESPACES: dict[type, Any] = {}


def _is_array(obj: Any) -> bool:
    return array_api_compat.is_array_api_obj(obj) and not isinstance(obj, (int, float, complex))


def namespace(x: Any) -> Any:
    """The array-API namespace of ``x``, cached per array type (a dict look-up per call)."""
    try:
        return _NAMESPACES[type(x)]
    except KeyError:
        pass
    try:
        xp = array_api_compat.array_namespace(x)
    except TypeError:
        raise TypeError(
            f"expected an array (NumPy, CuPy, PyTorch, array-api-strict, ...), "
            f"got {type(x).__name__}; convert it with backend.asarray(...)"
        ) from None
    if xp.__name__ == "array_api_compat.numpy":
        xp = numpy_namespace()
    elif xp.__name__ == "array_api_compat.torch":
        xp = torch_namespace()
    _NAMESPACES[type(x)] = xp
    return xp


_NUMPY_NAMESPACE: Any = None


def _with_shortcuts(compat: Any, shortcuts: dict[str, Any]) -> Any:
    """A copy of the array-api-compat namespace module ``compat`` whose functions named in
    ``shortcuts`` are replaced (each keeps the docstring of the function it replaces)."""
    fast = types.ModuleType(compat.__name__, compat.__doc__)
    fast.__dict__.update(vars(compat))
    for name, function in shortcuts.items():
        function.__doc__ = getattr(compat, name).__doc__
        setattr(fast, name, function)
    return fast


def numpy_namespace() -> Any:
    """array-api-compat's NumPy namespace, with its most called reductions and reshapes (``sum``,
    ``max``, ``min``, ``reshape``, ``take``) going straight to the call NumPy's own function
    ends in when the argument is a plain ``ndarray``; made once.

    ``np.sum(x, axis)`` reaches ``np.add.reduce(x, axis, ...)`` through two Python functions
    (``np.max`` through the same two, ``np.reshape`` and ``np.take`` through one), about 1-2 us
    per call: a tenth of a small MLP's whole training step, and several times that between
    large matrix products that have emptied the caches. The shortcut makes the same call,
    so results are identical (but for ``max`` and ``min`` along the rows of a 2-D array of
    many short rows, which reduce down the columns of its transpose: the same values, see
    :func:`_by_columns`); it is installed only where array-api-compat hands out NumPy's
    own function (not a wrapper of its own), and any other argument (a NumPy scalar, an
    ``ndarray`` subclass such as a memory map, extra keywords) takes NumPy's function."""
    global _NUMPY_NAMESPACE
    if _NUMPY_NAMESPACE is None:
        import array_api_compat.numpy as compat

        shortcuts = {  # only where compat hands out NumPy's own function, not a wrapper
            name: function
            for name, function in _numpy_shortcuts().items()
            if getattr(compat, name, None) is getattr(np, name)
        }
        shortcuts["astype"] = _numpy_astype(compat.astype)
        _NUMPY_NAMESPACE = _with_shortcuts(compat, shortcuts)
    return _NUMPY_NAMESPACE


def _numpy_astype(compat_astype: Any) -> Any:
    """The standard's ``astype(x, dtype, copy=True, device=None)``: for a plain ``ndarray`` on
    its only device, ``x.astype(dtype, copy=copy)`` (what array-api-compat's does after
    checking the device), without the wrapper's two Python calls."""
    ndarray = np.ndarray

    def astype(x, dtype, /, *, copy=True, device=None):
        if type(x) is ndarray and device is None:
            return x.astype(dtype, copy=copy)
        return compat_astype(x, dtype, copy=copy, device=device)

    return astype


# Row maxima and minima of a 2-D array with many short rows (logits of a few classes) are
# taken down the columns of its transpose: NumPy reduces a contiguous row of 10 floats one row
# at a time (60 us for 1024 x 10 float32 on a 2-core Xeon), but combines whole rows of the
# transpose element-wise (7 us with the copy). Wide rows lose: the limits below.
SHORT_ROW = 32  # at most this many columns
MANY_ROWS = 32  # and at least this many rows


def _by_columns(reduce: Any, x: np.ndarray, keepdims: bool) -> np.ndarray:
    """``reduce(x, axis=1)`` for a 2-D ``x`` with short rows, as ``reduce`` down the columns of
    its contiguous transpose. Equal values: a maximum or minimum is one of the inputs (NaN
    where a row has one); of a ``0.0`` and a ``-0.0`` in one row either may come back, as in
    NumPy's own vector loops."""
    result = reduce(np.ascontiguousarray(x.T), 0, None, None)
    return result.reshape(x.shape[0], 1) if keepdims else result


def _numpy_shortcuts() -> dict[str, Any]:
    ndarray = np.ndarray
    np_sum, np_max, np_min, np_reshape, np_take = np.sum, np.max, np.min, np.reshape, np.take
    add, maximum, minimum = np.add.reduce, np.maximum.reduce, np.minimum.reduce

    def sum(x, /, axis=None, dtype=None, out=None, keepdims=False, **more):  # noqa: A001
        if type(x) is ndarray and not more:
            return add(x, axis, dtype, out, keepdims=keepdims)
        return np_sum(x, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **more)

    def short_rows(x: Any, axis: Any, out: Any) -> bool:
        # x is a plain ndarray; a reduction along axis 1 of many short rows of numbers
        return (
            x.ndim == 2
            and (axis == 1 or axis == -1)
            and out is None
            and 0 < x.shape[1] <= SHORT_ROW
            and x.shape[0] >= MANY_ROWS
            and x.dtype.kind in "fiu"
        )

    def extremum(reduce: Any, fallback: Any) -> Any:  # max and min: the same shortcut
        def shortcut(x, /, axis=None, out=None, keepdims=False, **more):
            if type(x) is ndarray and not more:
                if short_rows(x, axis, out):
                    return _by_columns(reduce, x, keepdims)
                return reduce(x, axis, None, out, keepdims=keepdims)
            return fallback(x, axis=axis, out=out, keepdims=keepdims, **more)

        shortcut.__name__ = shortcut.__qualname__ = fallback.__name__
        return shortcut

    max, min = extremum(maximum, np_max), extremum(minimum, np_min)  # noqa: A001

    def reshape(x, /, shape=None, *more, **options):
        if type(x) is ndarray and shape is not None and not more and not options:
            return x.reshape(shape)
        return np_reshape(x, shape, *more, **options)

    def take(x, indices, /, axis=None, **more):
        if type(x) is ndarray and not more:
            return x.take(indices, axis=axis)
        return np_take(x, indices, axis=axis, **more)

    return {"sum": sum, "max": max, "min": min, "reshape": reshape, "take": take}


_TORCH_NAMESPACE: Any = None
_TORCH_TENSOR: Any = None  # torch.Tensor once a tensor has been seen (torch is not imported before)
_TORCH: Any = None


def torch_namespace() -> Any:
    """array-api-compat's PyTorch namespace, its most called functions going straight to the
    PyTorch call its wrapper makes when the arguments are plain ``torch.Tensor`` objects (and
    Python scalars where the wrapper passes them on as they are); made once.

    The wrappers exist for the cases PyTorch handles unlike the standard (``axis=()``,
    ``axis=None`` with ``keepdims``, mixed dtypes, scalars where PyTorch takes none, the
    ``copy``/``device`` keywords); each shortcut takes only arguments for which the wrapper
    makes exactly the call it makes, so results are identical, and hands everything else to
    the wrapper. Each wrapper costs 1-3 us of Python (the two-argument ones look up the
    promotion table), several of them per layer per step."""
    global _TORCH_NAMESPACE, _TORCH_TENSOR, _TORCH
    if _TORCH_NAMESPACE is None:
        import array_api_compat.torch as compat
        import torch

        fast = _with_shortcuts(compat, _torch_shortcuts(torch, compat))
        _TORCH_NAMESPACE, _TORCH_TENSOR, _TORCH = fast, torch.Tensor, torch
    return _TORCH_NAMESPACE


def _torch_shortcuts(torch: Any, compat: Any) -> dict[str, Any]:
    tensor = torch.Tensor
    c_sum, c_max, c_min, c_reshape, c_astype = (
        compat.sum, compat.max, compat.min, compat.reshape, compat.astype,
    )  # fmt: skip
    t_sum, amax, amin, t_reshape = torch.sum, torch.amax, torch.amin, torch.reshape

    def sum(x, /, *, axis=None, dtype=None, keepdims=False, **more):  # noqa: A001
        # compat: axis=() and axis=None have wrappers of their own; an int or tuple is passed on
        if type(x) is tensor and axis is not None and axis != () and not more:
            return t_sum(x, axis, dtype=dtype, keepdims=keepdims)
        return c_sum(x, axis=axis, dtype=dtype, keepdims=keepdims, **more)

    def max(x, /, *, axis=None, keepdims=False):  # noqa: A001
        if type(x) is tensor and axis != ():
            return amax(x, axis, keepdims=keepdims)
        return c_max(x, axis=axis, keepdims=keepdims)

    def min(x, /, *, axis=None, keepdims=False):  # noqa: A001
        if type(x) is tensor and axis != ():
            return amin(x, axis, keepdims=keepdims)
        return c_min(x, axis=axis, keepdims=keepdims)

    def reshape(x, /, shape, *, copy=None, **more):
        if type(x) is tensor and copy is None and not more:
            return t_reshape(x, shape)
        return c_reshape(x, shape, copy=copy, **more)

    def astype(x, dtype, /, *, copy=True, device=None):
        if type(x) is tensor and device is None:
            return x.to(dtype=dtype, copy=copy)
        return c_astype(x, dtype, copy=copy, device=device)

    shortcuts = {"sum": sum, "max": max, "min": min, "reshape": reshape, "astype": astype}

    def same_dtype(function: Any, wrapper: Any) -> Any:
        # compat's _fix_promotion only changes tensors of different dtypes (and its scalar
        # conversion only Python scalars): two tensors of one dtype go straight through
        def direct(x1, x2, /, **more):
            if type(x1) is tensor and type(x2) is tensor and x1.dtype == x2.dtype and not more:
                return function(x1, x2)
            return wrapper(x1, x2, **more)

        return direct

    for name, function in (
        ("add", torch.add),
        ("subtract", torch.subtract),
        ("multiply", torch.multiply),
        ("divide", torch.divide),
    ):
        shortcuts[name] = same_dtype(function, getattr(compat, name))
    t_asarray, is_floating = torch.asarray, torch.is_floating_point

    def with_scalar(function: Any, wrapper: Any) -> Any:
        # ``maximum(x, 0)`` (ReLU): compat makes the Python number a 0-d tensor of the dtype
        # torch.result_type gives, which for a floating tensor and an int or float is its own
        def direct(x1, x2, /, **more):
            if type(x1) is tensor and not more:
                if type(x2) is tensor and x1.dtype == x2.dtype:
                    return function(x1, x2)
                if type(x2) in (int, float) and is_floating(x1):
                    return function(x1, t_asarray(x2, dtype=x1.dtype, device=x1.device))
            return wrapper(x1, x2, **more)

        return direct

    for name, function in (("maximum", torch.maximum), ("minimum", torch.minimum)):
        shortcuts[name] = with_scalar(function, getattr(compat, name))
    c_where, t_where = compat.where, torch.where

    def where(condition, x1, x2, /):
        if type(x1) is tensor and type(x2) is tensor and x1.dtype == x2.dtype:
            return t_where(condition, x1, x2)
        return c_where(condition, x1, x2)

    shortcuts["where"] = where
    return shortcuts


def device(x: Any) -> Any:
    """The device ``x`` lives on."""
    if type(x) is np.ndarray:  # array-api-compat's answer for NumPy, without its type tests
        return "cpu"
    if type(x) is _TORCH_TENSOR:  # and for PyTorch (``x.device``)
        return x.device
    return array_api_compat.device(x)


def to_numpy(x: Any) -> np.ndarray:
    """Any supported array (or host data) as a NumPy array on the host."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if _is_array(x) and array_api_compat.is_array_api_strict_namespace(namespace(x)):
        return np.from_dlpack(x)  # np.asarray refuses strict's non-default devices
    return np.asarray(x)


def backend_of(x: Any) -> Backend:
    """The :class:`Backend` an array belongs to (namespace and device)."""
    xp = namespace(x)
    dev = device(x)
    if array_api_compat.is_numpy_array(x):
        return Backend("numpy", xp, dev)
    if array_api_compat.is_cupy_array(x):
        return Backend("cupy", xp, dev, is_gpu=True)
    if array_api_compat.is_torch_array(x):
        return Backend("torch", xp, dev, is_gpu=dev.type != "cpu")
    if array_api_compat.is_array_api_strict_namespace(xp):
        return Backend("array_api_strict", xp, dev)
    if array_api_compat.is_jax_array(x):
        if dev is None:  # a traced array inside jax.jit: it will live on JAX's default device
            import jax

            dev = jax.devices()[0]
        return Backend("jax", xp, dev, is_gpu=getattr(dev, "platform", "cpu") != "cpu")
    return Backend(getattr(xp, "__name__", type(x).__module__), xp, dev)


def is_writeable(x: Any) -> bool:
    """Whether ``x`` may be updated in place (False for JAX and read-only NumPy views)."""
    if type(x) is np.ndarray:  # the hot path of every optimizer step on the CPU
        return x.flags.writeable
    if type(x) is _TORCH_TENSOR:  # array-api-compat's answer for PyTorch, without its look-ups
        return True
    return array_api_compat.is_writeable_array(x)


def mask_in_place(grad: Any, keep: Any) -> Any:
    """``grad`` times the booleans ``keep`` (0 where False), computed in ``grad``'s memory, for
    a writeable NumPy ``grad``: one pass, where the standard (which has no bool * float) needs
    ``keep`` as a 0/1 array of ``grad``'s dtype first, a second array and a second pass. The
    same numbers as ``grad * astype(keep, grad.dtype)``. Returns ``grad``, or None for any
    other array (the caller then takes the standard's way)."""
    if type(grad) is np.ndarray and grad.flags.writeable and type(keep) is np.ndarray:
        np.multiply(grad, keep, out=grad)
        return grad
    return None


_BLAS_CONTROLLER: Any = None  # threadpoolctl's controller, made on first use; False: none


def one_blas_thread(x: Any) -> Any:
    """A context in which NumPy's BLAS runs on one thread, for many small matrix products at
    once (a no-op for other backends, or where ``threadpoolctl`` is not installed).

    A stacked matmul such as ``(N, H, L, d) @ (N, H, d, S)`` calls BLAS once per matrix; a
    multi-threaded BLAS then wakes its threads and waits for them at every call, hundreds of
    times per product. On a busy machine each wait can last a scheduler time slice: the
    attention products of a transformer block ran 30x slower with two BLAS threads than with
    one under load (docs/benchmarks.md). Large single products keep all threads. The limit is
    process-wide while the context lasts (BLAS has no per-call setting).
    """
    global _BLAS_CONTROLLER
    if type(x) is not np.ndarray:
        return contextlib.nullcontext()
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER = ThreadpoolController().select(user_api="blas")
        except ImportError:  # pragma: no cover - threadpoolctl is a dependency
            _BLAS_CONTROLLER = False
    if not _BLAS_CONTROLLER:
        return contextlib.nullcontext()
    return _BLAS_CONTROLLER.limit(limits=1)


def jax_x64_enabled() -> bool:
    """Whether JAX creates 64-bit arrays right now (``JAX_ENABLE_X64`` or ``jax.enable_x64``);
    False when JAX is not installed."""
    try:
        import jax
    except ImportError:
        return False
    return bool(jax.config.jax_enable_x64)


def float64_scope(backend: Backend) -> Any:
    """A context in which ``backend`` can compute in float64.

    JAX without 64-bit mode gets ``jax.enable_x64(True)``, which is scoped to the ``with``
    block (and thread): the global switch stays as it was, so nothing outside the block starts
    making 64-bit arrays. Every other backend always has float64: a no-op context.
    """
    if backend.name == "jax" and not jax_x64_enabled():
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


def overflow_allowed() -> Any:
    """A context in which NumPy overflows to inf/NaN silently: a 16-bit step with loss scaling
    expects overflow, detects it and skips the step, and a diverging training step's NaN/inf
    loss is reported in one line instead (other libraries never warn). Scoped to the ``with``
    block: NumPy's global error state is left as it was."""
    return np.errstate(over="ignore", invalid="ignore")


def is_jax(x: Any) -> bool:
    """Whether ``x`` is a JAX array (also a traced one inside ``jax.jit``)."""
    return array_api_compat.is_jax_array(x)


def is_tracer(x: Any) -> bool:
    """Whether ``x`` is a placeholder array of a function being traced by ``jax.jit``."""
    if type(x) is np.ndarray or not array_api_compat.is_jax_array(x):
        return False
    import jax

    return isinstance(x, jax.core.Tracer)


def native_library(x: Any) -> Any:
    """The library module behind ``x`` where nnx has native kernels for it (``torch`` for a
    PyTorch tensor, ``jax`` for a JAX array, traced ones included); ``None`` for anything else.
    :mod:`nnx._native` reaches the libraries' convolution and pooling kernels through it."""
    if type(x) is np.ndarray:
        return None
    if type(x) is _TORCH_TENSOR:
        return _TORCH
    if array_api_compat.is_torch_array(x):
        import torch

        return torch
    if array_api_compat.is_jax_array(x):
        import jax

        return jax
    return None


def jit(fn: Any, static_argnums: tuple[int, ...] = ()) -> Any:
    """``jax.jit(fn)``: ``fn`` is traced once per argument structure and compiled by XLA."""
    try:
        import jax
    except ImportError:
        raise BackendUnavailableError(
            f"compiling needs JAX, which is not installed; {_JAX_HINT}"
        ) from None
    return jax.jit(fn, static_argnums=static_argnums)


def same_device(a: Any, b: Any) -> bool:
    """Whether two arrays live on the same device (cheap for NumPy, which has only the CPU)."""
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return True
    return device(a) == device(b)


# --------------------------------------------------------------------------- selection


def get_backend(spec: str | Backend = "auto") -> Backend:
    """Resolve a backend spec such as ``"cpu"``, ``"gpu"``, ``"cuda:1"``, ``"torch"`` or ``"auto"``.

    ``"jax"`` (``"jax:cpu"``) and ``"jax:gpu"`` (``"jax:gpu:N"``) compute with ``jax.numpy``.
    ``"auto"`` picks CuPy when a usable CUDA device exists, else NumPy, and logs its choice on
    the ``nnx`` logger. A GPU spec on a machine without one raises
    :class:`BackendUnavailableError` saying what is missing.
    """
    if isinstance(spec, Backend):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"backend spec must be a string or Backend, got {type(spec).__name__}")
    s = spec.strip().lower()
    if s in ("cpu", "numpy"):
        return _numpy_backend()
    if s == "auto":
        try:
            backend = _cupy_backend(0)
        except BackendUnavailableError as err:
            logger.info("nnx: backend 'auto' chose NumPy on the CPU (no usable GPU: %s)", err)
            return _numpy_backend()
        logger.info("nnx: backend 'auto' chose CuPy on %s", backend.device)
        return backend
    if s in ("gpu", "cuda", "cupy"):
        return _cupy_backend(0)
    if s.startswith("cuda:"):
        return _cupy_backend(_device_index(spec, s[len("cuda:") :]))
    if s == "torch" or s.startswith("torch:"):
        return _torch_backend(spec, s[len("torch:") :] if ":" in s else "cpu")
    if s == "strict" or s.startswith("strict:"):
        return _strict_backend(spec.strip()[len("strict:") :] if ":" in s else None)
    if s == "jax" or s.startswith("jax:"):
        return _jax_backend(spec, s[len("jax:") :] if ":" in s else "cpu")
    raise ValueError(f"unknown backend spec {spec!r}; valid specs: {', '.join(VALID_SPECS)}")


def backend_available(spec: str) -> tuple[bool, str]:
    """``(True, "")`` when :func:`get_backend` would succeed for ``spec``, else ``(False, why)``."""
    try:
        get_backend(spec)
    except BackendUnavailableError as err:
        return False, str(err)
    return True, ""


def _device_index(spec: str, text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"bad device index in {spec!r}: expected a number such as 'cuda:0'")
    return int(text)


def _numpy_backend() -> Backend:
    return Backend("numpy", numpy_namespace(), "cpu")


def _cupy_backend(index: int) -> Backend:
    try:
        import cupy
    except ImportError:
        raise BackendUnavailableError(
            f"a CUDA GPU was requested but CuPy is not installed; {_GPU_HINT}"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDARuntimeError: no driver, insufficient driver, no device
        raise BackendUnavailableError(
            f"a CUDA GPU was requested but CUDA is not usable ({type(err).__name__}: {err}); "
            f"{_DRIVER_HINT}"
        ) from None
    if count == 0:
        raise BackendUnavailableError(
            f"a CUDA GPU was requested but no CUDA device was found; {_DRIVER_HINT}"
        )
    if index >= count:
        raise BackendUnavailableError(
            f"cuda:{index} was requested but this machine has {count} CUDA device(s) "
            f"(cuda:0 .. cuda:{count - 1})"
        )
    try:
        dev = cupy.cuda.Device(index)
        with dev:
            cupy.zeros(1, dtype=cupy.float32) + 1  # a real allocation and kernel prove it works
    except Exception as err:
        raise BackendUnavailableError(
            f"CUDA device {index} is present but not usable ({type(err).__name__}: {err}); "
            f"{_DRIVER_HINT}"
        ) from None
    import array_api_compat.cupy as xp

    return Backend("cupy", xp, dev, is_gpu=True)


def _torch_backend(spec: str, where: str) -> Backend:
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            f"backend {spec!r} needs PyTorch, which is not installed: pip install torch "
            f"(or use backend 'cpu' or 'gpu')"
        ) from None
    xp = torch_namespace()

    if where == "cpu":
        return Backend("torch", xp, torch.device("cpu"))
    if where == "cuda" or where.startswith("cuda:"):
        index = _device_index(spec, where[len("cuda:") :]) if ":" in where else 0
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"backend {spec!r} needs CUDA, which PyTorch cannot use here"
            )
        if index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"{spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return Backend("torch", xp, torch.device("cuda", index), is_gpu=True)
    raise ValueError(f"unknown backend spec {spec!r}; valid specs: {', '.join(VALID_SPECS)}")


def _strict_backend(device_name: str | None) -> Backend:
    try:
        import array_api_strict as xp
    except ImportError:
        raise BackendUnavailableError(
            "backend 'strict' needs array-api-strict, which is not installed: "
            "pip install array-api-strict"
        ) from None
    if device_name is None:
        return Backend("array_api_strict", xp, xp.Device())
    try:
        dev = xp.Device(device_name)
    except ValueError as err:
        raise ValueError(f"unknown array-api-strict device {device_name!r}: {err}") from None
    return Backend("array_api_strict", xp, dev)


_JAX_HINT = "install the JAX extra (pip install 'nnx-trainer[jax]')"


def _jax_backend(spec: str, where: str) -> Backend:
    try:
        import jax
        import jax.numpy as xp
    except ImportError:
        raise BackendUnavailableError(
            f"backend {spec!r} needs JAX, which is not installed; {_JAX_HINT}"
        ) from None
    platform, _, index_text = where.partition(":")
    if platform not in ("cpu", "gpu", "cuda"):
        raise ValueError(f"unknown backend spec {spec!r}; valid specs: {', '.join(VALID_SPECS)}")
    index = _device_index(spec, index_text) if index_text else 0
    try:
        devices = jax.devices("cpu" if platform == "cpu" else "gpu")
    except RuntimeError as err:  # "Unknown backend: 'gpu' requested, but no platforms ..."
        raise BackendUnavailableError(
            f"backend {spec!r}: JAX has no GPU here ({err}); install a CUDA build of JAX "
            f"(pip install 'jax[cuda12]') or use 'jax' for the CPU"
        ) from None
    if index >= len(devices):
        raise BackendUnavailableError(
            f"{spec!r}: JAX sees {len(devices)} {platform} device(s) here"
        )
    return Backend("jax", xp, devices[index], is_gpu=platform != "cpu")


# --------------------------------------------------------------------------- scatter-add


def scatter_add_rows(ids: Any, values: Any, num_rows: int) -> Any:
    """``out[ids[i]] += values[i]`` into a fresh zero ``(num_rows, D)`` array, by the library's
    own scatter-add, or None when the backend has none (the caller then uses a portable path).

    ``ids`` is 1-D integer, ``values`` is ``(len(ids), D)``. NumPy: ``np.add.at``; PyTorch:
    ``index_add_``; CuPy: ``cupyx.scatter_add`` (untested: no GPU in CI). Duplicate ids add up.
    """
    if type(values) is np.ndarray and type(ids) is np.ndarray:
        out = np.zeros((num_rows, values.shape[1]), dtype=values.dtype)
        np.add.at(out, ids, values)
        return out
    if array_api_compat.is_torch_array(values):
        import torch

        out = torch.zeros((num_rows, values.shape[1]), dtype=values.dtype, device=values.device)
        return out.index_add_(0, ids, values)
    if array_api_compat.is_cupy_array(values):
        import cupy
        import cupyx

        with values.device:
            out = cupy.zeros((num_rows, values.shape[1]), dtype=values.dtype)
            cupyx.scatter_add(out, ids, values)
        return out
    return None


# ---------------------------------------------------------------------------- NCCL (CuPy)
# Data-parallel training (nnx.distributed) sums CuPy gradient buffers on the GPUs with NCCL.
# Written against cupy.cuda.nccl but not yet run: no machine with a GPU was available.


def gpu_count() -> int:
    """The number of CUDA GPUs CuPy sees on this machine."""
    import cupy

    return int(cupy.cuda.runtime.getDeviceCount())


def nccl_communicator(size: int, rank: int, share_id: Any) -> Any:
    """An NCCL communicator of ``size`` ranks on the current GPU; ``share_id(uid)`` returns rank
    0's unique id on every rank (nnx.distributed passes an MPI broadcast)."""
    from cupy.cuda import nccl

    uid = share_id(nccl.get_unique_id() if rank == 0 else None)
    return nccl.NcclCommunicator(size, uid, rank)


def nccl_allreduce_sum(comm: Any, array: Any) -> Any:
    """The sum over the ranks of CuPy ``array`` (a new array), on the current stream."""
    import cupy
    from cupy.cuda import nccl

    kinds = {
        np.dtype("float16"): nccl.NCCL_FLOAT16,  # MixedPrecision's 16-bit gradients
        np.dtype("float32"): nccl.NCCL_FLOAT32,
        np.dtype("float64"): nccl.NCCL_FLOAT64,
        np.dtype("int32"): nccl.NCCL_INT32,
        np.dtype("int64"): nccl.NCCL_INT64,
    }
    if array.dtype not in kinds:
        raise TypeError(
            f"NCCL allreduce: no NCCL type for dtype {array.dtype}; "
            f"expected one of {', '.join(str(k) for k in kinds)}"
        )
    buf = cupy.ascontiguousarray(array).copy()
    stream = cupy.cuda.get_current_stream()
    comm.allReduce(
        buf.data.ptr, buf.data.ptr, buf.size, kinds[buf.dtype], nccl.NCCL_SUM, stream.ptr
    )
    return buf


def import_torch(needed_for: str) -> Any:
    """PyTorch, imported only when asked (reading a ``.pt`` weights file, say); an ImportError
    of one line, naming ``needed_for``, when it is not installed."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{needed_for} needs PyTorch, which is not installed: pip install torch"
        ) from None
    return torch
