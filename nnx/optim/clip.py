"""Gradient clipping, computed on the device (no host synchronisation)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..backend import namespace
from ..core.checks import real_in_range
from ..core.module import Parameter


def clip_grad_norm(params: Iterable[Parameter], max_norm: float, eps: float = 1e-6) -> Any:
    """Scale all gradients together so their global L2 norm is at most ``max_norm``.

    ``total = sqrt(sum over params of sum(g^2))``; every ``g`` is multiplied by
    ``min(1, max_norm / (total + eps))``. Returns ``total`` (before clipping) as a 0-d array on
    the gradients' device, or None when no parameter has a gradient.
    """
    max_norm = real_in_range(max_norm, "max_norm", "clip_grad_norm")
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return None
    xp = namespace(grads[0].grad)
    total = xp.sqrt(sum(xp.sum(p.grad * p.grad) for p in grads))
    scale = xp.minimum(max_norm / (total + eps), 1.0)
    for p in grads:
        p.grad = p.grad * scale
    return total


def clip_grad_value(params: Iterable[Parameter], clip_value: float) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]``."""
    clip_value = real_in_range(clip_value, "clip_value", "clip_grad_value")
    for p in params:
        if p.grad is not None:
            p.grad = namespace(p.grad).clip(p.grad, -clip_value, clip_value)
