"""Holders (ModuleList, ModuleDict, ParameterList, ParameterDict) inside user modules, and lazy
layers (built by the integration test's first call, after a ``to(dtype=...)``)."""

import numpy as np

import nnx
from nnx.core.calls import (
    call_backward,
    capture_call_state,
    restore_call_state,
    restore_final_state,
)


@nnx.register_module(name="zoo.ListChain")
class ListChain(nnx.Module):
    """The members of a ModuleList run in order, ``repeat`` times (shared weights)."""

    def __init__(self, width: int = 3, repeat: int = 2):
        self.layers = nnx.ModuleList()
        self.layers.append(nnx.Linear(width, width, rng=0))
        self.layers.append(nnx.Tanh())
        self.repeat = repeat

    def forward(self, x):
        self._calls = []
        for _ in range(self.repeat):
            for layer in self.layers:
                x = layer(x)
                self._calls.append((layer, capture_call_state(layer)))
        return x

    def backward(self, grad_out, need_input_grad=True):
        for layer, state in reversed(self._calls):
            restore_call_state(state)
            grad_out = call_backward(layer, grad_out, True)
        restore_final_state([state for _, state in self._calls])
        return grad_out


@nnx.register_module(name="zoo.DictHeads")
class DictHeads(nnx.Module):
    """``y = heads["a"](x) * gain["a"] + heads["b"](x) * scales[0]``."""

    def __init__(self, width: int = 4):
        self.heads = nnx.ModuleDict({"a": nnx.Linear(width, 2, rng=1)})
        self.heads["b"] = nnx.Linear(width, 2, rng=2)
        self.gain = nnx.ParameterDict({"a": np.full(2, 0.5, np.float32)})
        self.scales = nnx.ParameterList([np.full(2, 2.0, np.float32)])

    def forward(self, x):
        self._a, self._b = self.heads["a"](x), self.heads["b"](x)
        return self._a * self.gain["a"].value + self._b * self.scales[0].value

    def backward(self, grad_out, need_input_grad=True):
        xp = nnx.namespace(grad_out)
        self.gain["a"].accumulate(xp.sum(grad_out * self._a, axis=0))
        self.scales[0].accumulate(xp.sum(grad_out * self._b, axis=0))
        g = call_backward(self.heads["a"], grad_out * self.gain["a"].value, need_input_grad)
        h = call_backward(self.heads["b"], grad_out * self.scales[0].value, need_input_grad)
        return g + h if need_input_grad else None


EXAMPLES = {
    "module-list-reused": (ListChain, (3, 3)),
    "dict-and-parameter-holders": (DictHeads, (3, 4)),
    "lazy-linear": (lambda: nnx.Linear(None, 4, rng=0), (3, 5), {"sample": True}),
    "lazy-conv-batchnorm": (
        lambda: nnx.Sequential(
            nnx.Conv2d(None, 3, 3, padding=1, rng=0), nnx.BatchNorm2d(None), nnx.ReLU()
        ),
        (2, 2, 4, 4),
    ),
    "lazy-conv1d-groupnorm": (
        lambda: nnx.Sequential(nnx.Conv1d(None, 4, 3, rng=1), nnx.GroupNorm(2, None)),
        (2, 3, 6),
    ),
    "lazy-conv-transpose": (lambda: nnx.ConvTranspose2d(None, 2, 2, stride=2, rng=2), (1, 3, 2, 2)),
    "lazy-batchnorm1d": (lambda: nnx.BatchNorm1d(None), (4, 3)),
}
