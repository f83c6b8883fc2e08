"""Native fast paths on PyTorch tensors and JAX arrays: the convolutions and poolings of
:mod:`nnx.layers` through the array library's own kernels, inside nnx's explicit forward and
backward (no autodiff: the backward calls the library's *gradient kernels* directly).

- PyTorch: ``torch.nn.functional.conv{1,2,3}d`` forward; backward by one call of
  ``aten.convolution_backward`` (the kernel behind ``torch.nn.grad.conv2d_input`` and
  ``conv2d_weight``), which gives the input, weight and bias gradients together. Max and average
  pooling by ``F.max_pool{2,3}d(return_indices=True)`` / ``F.avg_pool{2,3}d`` and the
  ``aten.max_pool{2,3}d_with_indices_backward`` / ``aten.avg_pool{2,3}d_backward`` kernels
  (the 1-d layers run them with an ``H`` axis of size 1).
  The transposed convolutions run ``F.conv_transpose{1,2,3}d`` and the same backward kernel
  with ``transposed=True``.
- JAX: ``jax.lax.conv_general_dilated`` forward, and both gradients as ``conv_general_dilated``
  calls of their own (the input gradient: the output gradient dilated by the stride, convolved
  with the flipped kernel whose channel axes are exchanged per group; the weight gradient: the
  input convolved with the output gradient, batch and channel axes exchanged, with
  ``batch_group_count`` for groups). ``nnx.compile`` traces them like any other array call.
  Average pooling sums its windows with ``lax.reduce_window`` (backward: the adjoint window sum);
  max pooling keeps the portable code: compiled, it beats both ``lax.reduce_window`` with JAX's
  own gradient (``select_and_scatter``, which also breaks ties its own way) and PyTorch's kernels
  (LeNet's first pooling, forward and backward, batch 128, one thread: 1.8 ms against 6.4 ms
  and torch's 3.4 ms; docs/benchmarks.md).
- PyTorch ReLU backward: the portable code's 0/1 mask in the gradient's dtype, written straight
  by ``torch.gt(y, 0, out=...)`` and multiplied in place: bitwise the portable result, without
  its boolean temporary and bool-to-float copy (PyTorch converts ``bool`` to ``float`` slowly:
  LeNet's first ReLU, batch 128, one thread, ~1.6 ms against ~0.35 ms). The forward keeps
  ``maximum(x, 0)``: ``torch.relu`` differs in the bits of ``-0.0`` and NaN inputs.
- PyTorch SGD with momentum (no dampening, Nesterov or weight decay), after its first step:
  every parameter's ``b = momentum * b + g; p -= lr * b`` in four multi-tensor kernels
  (``torch._foreach_mul_/add_/mul/sub_``, what ``torch.optim.SGD`` runs), the same operations
  as the per-parameter loop, so the same bits (:func:`sgd_momentum`).
- PyTorch attention: :class:`nnx.MultiheadAttention`'s heads (no mask but the causal one, no
  dropout, no weights returned) by ``aten._scaled_dot_product_flash_attention_for_cpu`` and its
  backward kernel ``aten._scaled_dot_product_flash_attention_for_cpu_backward``.

Only tensors of these libraries take this path (:func:`library`); NumPy keeps
:mod:`nnx._fastconv`, everything else the portable code, and inside
:func:`nnx._fastconv.portable_only` (the one switch) every array takes the portable code. The
tests check both paths give the same forward and gradients (``tests/layers/test_native_fastpath.py``).
:data:`calls` counts the kernels run, so tests can tell the fast path ran. The module names no
array library: it receives the library module from :func:`nnx.backend.native_library`.
"""

from __future__ import annotations

import collections
from typing import Any

from . import _fastconv
from .backend import native_library

# kernel name -> number of calls (cheap; tests read it to check the fast path was taken)
calls: collections.Counter[str] = collections.Counter()


def library(*arrays: Any) -> Any:
    """The library module (``torch`` or ``jax``) whose kernels serve ``arrays``: every array of
    that one library and the switch on; ``None`` otherwise (the portable code runs)."""
    if not _fastconv._enabled:
        return None
    lib = native_library(arrays[0])
    if lib is None or any(native_library(a) is not lib for a in arrays[1:]):
        return None
    return lib


def conv_library(x: Any, w: Any) -> Any:
    """:func:`library` for a convolution of ``x`` with the weight ``w`` ``(O, C/G, *kernel)``;
    ``None`` on JAX where each group has a single input channel (first layers of one-channel
    images, depthwise layers): XLA's CPU convolution is slow there (measured, forward and
    backward at batch 128, one thread: 1->6 channels 5x5 at 28x28 32 ms against the portable
    code's 16 ms, a depthwise 16-channel 3x3 at 32x32 426 ms against 181 ms), while from three
    channels on it is the faster one (a 16-channel 3x3 layer: 62 ms against 271 ms).

    Choosing per map instead (for LeNet's layers, compiled, one thread, each map alone: a
    fused per-kernel-offset forward 1.0 ms against ``lax`` 7.5 for 1->6 5x5; the col2im input
    gradient 3.9 against ``lax`` 5.8-6.9 for 6->16 5x5) made each layer faster alone but the
    whole compiled LeNet step slower (29-43 ms against this rule's 19.6-23 ms):
    docs/benchmarks.md, "Native kernels"."""
    lib = library(x, w)
    if lib is not None and w.shape[1] == 1 and not is_torch(lib):
        return None
    return lib


def is_torch(lib: Any) -> bool:
    return lib.__name__ == "torch"


# --------------------------------------------------------------------------- convolutions


def conv_forward(lib, x, w, b, stride, pads, dilation, groups) -> tuple[Any, Any]:
    """``y`` ``(N, O, *out)`` (bias ``b`` added, may be None) of ``x`` ``(N, C, *spatial)``, zero
    padded by ``pads = ((lo, hi), ...)``, and ``w`` ``(O, C/G, *kernel)``; also what
    :func:`conv_backward` needs (the input as the kernel saw it and its crop)."""
    calls["conv_forward"] += 1
    # the saved tuple's first entry is the input itself (nnx.compile forgets a traced one)
    if is_torch(lib):
        f = lib.nn.functional
        nd = w.ndim - 2
        crop = None
        if any(lo != hi for lo, hi in pads):  # torch pads symmetrically: pad first, crop dx
            x = f.pad(x, [p for lo_hi in reversed(pads) for p in lo_hi])
            crop, pads = pads, ((0, 0),) * nd
        conv = (f.conv1d, f.conv2d, f.conv3d)[nd - 1]
        y = conv(x, w, b, tuple(stride), tuple(lo for lo, _ in pads), tuple(dilation), groups)
        return y, (x, tuple(lo for lo, _ in pads), crop)
    lax = lib.lax
    y = lax.conv_general_dilated(
        x,
        w,
        tuple(stride),
        [tuple(p) for p in pads],
        rhs_dilation=tuple(dilation),
        feature_group_count=groups,
    )
    if b is not None:
        y = y + lib.numpy.reshape(b, (1, -1) + (1,) * (w.ndim - 2))
    return y, (x, tuple(pads), None)


def conv_backward(lib, saved, w, g, stride, dilation, groups, need_input, need_bias):
    """``(dx, dw, db)`` of the convolution :func:`conv_forward` ran (``saved`` is its second
    result) for the output gradient ``g``; ``dx`` is None unless ``need_input``, ``db`` unless
    ``need_bias``."""
    calls["conv_backward"] += 1
    x, pads, crop = saved
    nd = w.ndim - 2
    if is_torch(lib):
        dx, dw, db = lib.ops.aten.convolution_backward(
            g.contiguous(),
            x,
            w,
            [w.shape[0]] if need_bias else None,
            list(stride),
            list(pads),
            list(dilation),
            False,
            [0] * nd,
            groups,
            [need_input, True, need_bias],
        )
        if dx is not None and crop is not None:
            key = tuple(slice(lo, s - hi) for s, (lo, hi) in zip(dx.shape[2:], crop, strict=True))
            dx = dx[(slice(None), slice(None), *key)]
        return (dx if need_input else None), dw, (db if need_bias else None)
    lax, jnp = lib.lax, lib.numpy
    db = jnp.sum(g, axis=(0, *range(2, 2 + nd))) if need_bias else None
    dw = _jax_weight_grad(lax, x, g, w.shape, stride, pads, dilation, groups)
    dx = None
    if need_input:
        dx = _jax_input_grad(lax, jnp, g, w, x.shape, stride, pads, dilation, groups)
    return dx, dw, db


def _dilated(size: int, factor: int) -> int:
    return 0 if size == 0 else 1 + factor * (size - 1)


def _jax_input_grad(lax, jnp, g, w, x_shape, stride, pads, dilation, groups):
    """``dx[n, c, p] = sum_{o, i} W[o, c, i] g[n, o, (p + lo - i*d) / s]``: ``g`` dilated by the
    stride (``lhs_dilation``) and padded so that every input position sees each kernel offset
    once, convolved with the kernel flipped and its channel axes exchanged within each group."""
    o, cg, *kernel = w.shape
    nd = len(kernel)
    wf = jnp.reshape(w, (groups, o // groups, cg, *kernel))
    wf = jnp.swapaxes(wf, 1, 2)
    wf = jnp.reshape(wf, (groups * cg, o // groups, *kernel))
    wf = jnp.flip(wf, axis=tuple(range(2, 2 + nd)))
    padding = []
    for size, k, s, d, (lo, _), out in zip(
        x_shape[2:], kernel, stride, dilation, pads, g.shape[2:], strict=True
    ):
        before = _dilated(k, d) - 1 - lo
        after = _dilated(size, 1) + _dilated(k, d) - 1 - _dilated(out, s) - before
        padding.append((before, after))
    return lax.conv_general_dilated(
        g,
        wf,
        (1,) * nd,
        padding,
        lhs_dilation=tuple(stride),
        rhs_dilation=tuple(dilation),
        feature_group_count=groups,
    )


def _jax_weight_grad(lax, x, g, w_shape, stride, pads, dilation, groups):
    """``dW[o, c, i] = sum_{n, p} x[n, c, p*s + i*d - lo] g[n, o, p]``: a convolution of ``x``
    with ``g`` as the kernel, the batch axis the one summed over (``(C, N, ...)`` for the input,
    ``(N, O, ...)`` read as ``(in, out, ...)`` for the kernel), the stride as the kernel's
    dilation and the dilation as the stride; ``batch_group_count`` keeps the groups apart."""
    nd = len(w_shape) - 2
    spec = (1, 0, *range(2, 2 + nd))
    padding = []
    for size, k, s, d, (lo, _), out in zip(
        x.shape[2:], w_shape[2:], stride, dilation, pads, g.shape[2:], strict=True
    ):
        padding.append((lo, _dilated(out, s) - size + _dilated(k, d) - lo - 1))
    return lax.conv_general_dilated(
        x,
        g,
        tuple(dilation),
        padding,
        rhs_dilation=tuple(stride),
        dimension_numbers=lax.ConvDimensionNumbers(spec, spec, spec),
        batch_group_count=groups,
    )


def conv_transpose_forward(torch, x, w, b, stride, padding, output_padding, dilation, groups):
    """PyTorch's ``F.conv_transpose{1,2,3}d`` of ``x`` ``(N, C, *spatial)`` with the weight
    ``w`` ``(C, O/G, *kernel)`` and bias ``b`` (may be None)."""
    calls["conv_transpose_forward"] += 1
    f = torch.nn.functional
    conv = (f.conv_transpose1d, f.conv_transpose2d, f.conv_transpose3d)[w.ndim - 3]
    args = (tuple(stride), tuple(padding), tuple(output_padding), groups, tuple(dilation))
    return conv(x, w, b, *args)


def conv_transpose_backward(torch, g, x, w, geometry, groups, need_input, need_bias):
    """``(dx, dw, db)`` of :func:`conv_transpose_forward` (``geometry``: its stride, padding,
    output padding and dilation) by ``aten.convolution_backward`` with ``transposed=True``;
    ``dx`` is None unless ``need_input``, ``db`` unless ``need_bias``."""
    calls["conv_transpose_backward"] += 1
    stride, padding, output_padding, dilation = (list(t) for t in geometry)
    dx, dw, db = torch.ops.aten.convolution_backward(
        g.contiguous(),
        x,
        w,
        [w.shape[1] * groups] if need_bias else None,
        stride,
        padding,
        dilation,
        True,
        output_padding,
        groups,
        [need_input, True, need_bias],
    )
    return (dx if need_input else None), dw, (db if need_bias else None)


# --------------------------------------------------------------- ReLU and SGD (PyTorch)


def relu_library(*arrays: Any) -> Any:
    """``torch`` where :func:`relu_backward` serves ``arrays`` (PyTorch tensors, switch on)."""
    lib = library(*arrays)
    return lib if lib is not None and is_torch(lib) else None


def relu_backward(torch, y, g):
    """``(y > 0) * g`` as the portable code computes it (the mask in ``g``'s dtype times ``g``,
    so ``-0.0`` and NaN products come out the same), ``y`` and ``g`` of one dtype and shape."""
    calls["relu_backward"] += 1
    mask = torch.gt(y, 0, out=torch.empty_like(g))
    return mask.mul_(g)


def sgd_momentum(torch, values, grads, buffers, momentum, lr):
    """``b *= momentum; b += g; p -= lr * b`` for every parameter (lists of tensors)."""
    calls["sgd_momentum"] += 1
    torch._foreach_mul_(buffers, momentum)
    torch._foreach_add_(buffers, grads)
    torch._foreach_sub_(values, torch._foreach_mul(buffers, lr))


# --------------------------------------------------------------------------- pooling (PyTorch)


def _as_2d(x: Any, nd: int) -> Any:
    return x.unsqueeze(2) if nd == 1 else x


def _pool_args(nd: int, *tuples: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The 1-d layers' arguments with the extra ``H`` axis (kernel 1, stride 1, no padding)."""
    if nd != 1:
        return [tuple(t) for t in tuples]
    extra = (1, 1, 0, 1)  # kernel, stride, padding, dilation
    return [(e, *t) for e, t in zip(extra, tuples, strict=False)]


def max_pool_forward(torch, x, kernel, stride, padding, dilation, ceil_mode):
    """``(y, indices)``: the maxima of the windows and their flat positions (PyTorch's)."""
    calls["max_pool_forward"] += 1
    nd = x.ndim - 2
    k, s, p, d = _pool_args(nd, kernel, stride, padding, dilation)
    pool = torch.nn.functional.max_pool3d if nd == 3 else torch.nn.functional.max_pool2d
    y, idx = pool(_as_2d(x, nd), k, s, p, d, ceil_mode, return_indices=True)
    if nd == 1:
        y, idx = y[:, :, 0], idx[:, :, 0]
    return y, idx


def max_pool_backward(torch, g, x, idx, kernel, stride, padding, dilation, ceil_mode):
    """``dx``: each output gradient added at its window's arg-max."""
    calls["max_pool_backward"] += 1
    nd = x.ndim - 2
    k, s, p, d = _pool_args(nd, kernel, stride, padding, dilation)
    aten = torch.ops.aten
    back = (
        aten.max_pool3d_with_indices_backward if nd == 3 else aten.max_pool2d_with_indices_backward
    )
    dx = back(_as_2d(g, nd), _as_2d(x, nd), k, s, p, d, ceil_mode, _as_2d(idx, nd))
    return dx[:, :, 0] if nd == 1 else dx


def avg_pool_forward(torch, x, kernel, stride, padding, ceil_mode, include_pad, divisor):
    calls["avg_pool_forward"] += 1
    nd = x.ndim - 2
    k, s, p = _pool_args(nd, kernel, stride, padding)
    pool = torch.nn.functional.avg_pool3d if nd == 3 else torch.nn.functional.avg_pool2d
    y = pool(_as_2d(x, nd), k, s, p, ceil_mode, include_pad, divisor)
    return y[:, :, 0] if nd == 1 else y


def avg_pool_backward(torch, g, x, kernel, stride, padding, ceil_mode, include_pad, divisor):
    calls["avg_pool_backward"] += 1
    nd = x.ndim - 2
    k, s, p = _pool_args(nd, kernel, stride, padding)
    aten = torch.ops.aten
    back = aten.avg_pool3d_backward if nd == 3 else aten.avg_pool2d_backward
    dx = back(_as_2d(g, nd), _as_2d(x, nd), k, s, p, ceil_mode, include_pad, divisor)
    return dx[:, :, 0] if nd == 1 else dx


# --------------------------------------------------------------------------- pooling (JAX)


def jax_window_sum(jax, x, kernel, stride, pads):
    """Sums over the windows of ``x`` ``(N, C, *spatial)`` zero-padded by ``pads``
    (``lax.reduce_window``): average pooling's numerator."""
    calls["window_sum"] += 1
    lead = ((0, 0), (0, 0))
    return jax.lax.reduce_window(
        x, 0.0, jax.lax.add, (1, 1, *kernel), (1, 1, *stride), (*lead, *map(tuple, pads))
    )


def jax_window_sum_backward(jax, g, size, kernel, stride, pads):
    """The adjoint of :func:`jax_window_sum`: each input position receives the sum of the ``g``
    of every window over it, a window sum (stride 1) of ``g`` dilated by the stride and padded by
    ``k - 1`` less the forward's padding (a negative padding crops), so that the result has the
    input's ``size``."""
    calls["window_sum_backward"] += 1
    config = [(0, 0, 0), (0, 0, 0)]
    for n, k, s, (lo, _), o in zip(size, kernel, stride, pads, g.shape[2:], strict=True):
        low = k - 1 - lo
        config.append((low, n + k - 1 - low - ((o - 1) * s + 1), s - 1))
    gpad = jax.lax.pad(g, jax.numpy.zeros((), g.dtype), config)
    ones = (1,) * (len(kernel) + 2)
    return jax.lax.reduce_window(gpad, 0.0, jax.lax.add, (1, 1, *kernel), ones, "VALID")


# --------------------------------------------------------------------------- attention (PyTorch)


_ATTENTION_OPS = (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention_for_cpu_backward",
)
_has_attention_ops: dict[int, bool] = {}  # id(torch) -> whether this build has both kernels


def attention_applies(lib, q) -> bool:
    """Whether :func:`attention_forward` serves ``q``: a PyTorch tensor on the CPU (the kernel
    is the CPU one; CUDA tensors keep the portable code), in a PyTorch build that has the
    fused CPU kernels (private ``aten`` ops, since about PyTorch 2.2; older builds keep the
    portable code)."""
    if not is_torch(lib) or q.device.type != "cpu":
        return False
    known = _has_attention_ops.get(id(lib))
    if known is None:
        known = all(hasattr(lib.ops.aten, name) for name in _ATTENTION_OPS)
        _has_attention_ops[id(lib)] = known
    return known


def attention_forward(torch, q, k, v, is_causal, scale):
    """``(out, logsumexp)``: softmax(``q k^T scale`` (+ the causal mask: key ``j > i`` out))
    ``v`` per head, ``q`` ``(N, H, L, d)`` and ``k``, ``v`` ``(N, H, S, d)``, by PyTorch's CPU
    flash-attention kernel (no weights are stored: its backward recomputes them from the
    log-sum-exp of each row)."""
    calls["attention_forward"] += 1
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, 0.0, bool(is_causal), scale=scale
    )


def attention_backward(torch, g, q, k, v, out, lse, is_causal, scale):
    """``(dq, dk, dv)`` of :func:`attention_forward` for the output gradient ``g``."""
    calls["attention_backward"] += 1
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        g.contiguous(), q, k, v, out, lse, 0.0, bool(is_causal), scale=scale
    )
