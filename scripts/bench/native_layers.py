"""Single layers on PyTorch tensors: nnx with PyTorch's native kernels (nnx._native) against
the same nnx layer on the portable code and against torch eager, forward and backward.

    python scripts/bench.py --native-layers                 # one thread, batch as below
    python scripts/bench.py --native-layers --quick         # a smoke run on tiny shapes

- ``conv_transpose``: ConvTranspose2d(16, 8, 4, stride 2, padding 1), 16x16 -> 32x32, batch 128;
- ``attention``: MultiheadAttention(256, 4 heads) self-attention, sequence 128, batch 32
  (batch first), no mask: PyTorch's fused CPU attention kernel and its backward kernel.

The three contenders rotate (the order changes every repetition); each measurement is process
CPU time over ``--calls`` forward + backward calls, one thread (torch and BLAS). Same weights and
inputs for all three; the outputs are checked equal before timing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

import nnx
from nnx import _fastconv

from .measure import limit_threads, rotated, write_json


def _cases(quick: bool) -> dict[str, tuple[Any, tuple[int, ...]]]:
    if quick:
        return {
            "conv_transpose": (
                lambda: nnx.ConvTranspose2d(2, 3, 4, stride=2, padding=1),
                (2, 2, 4, 4),
            ),
            "attention": (lambda: nnx.MultiheadAttention(8, 2, batch_first=True), (2, 5, 8)),
        }
    return {
        "conv_transpose": (
            lambda: nnx.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
            (128, 16, 16, 16),
        ),
        "attention": (lambda: nnx.MultiheadAttention(256, 4, batch_first=True), (32, 128, 256)),
    }


def _torch_twin(torch: Any, layer: Any) -> Any:
    """The torch module with the nnx layer's weights."""
    if isinstance(layer, nnx.MultiheadAttention):
        e = layer.embed_dim
        twin = torch.nn.MultiheadAttention(e, layer.num_heads, batch_first=True)
        with torch.no_grad():
            projections = (layer.q_proj, layer.k_proj, layer.v_proj)
            w = np.concatenate([nnx.to_numpy(p.weight.value).T for p in projections])
            twin.in_proj_weight.copy_(torch.from_numpy(w))
            b = np.concatenate([nnx.to_numpy(p.bias.value) for p in projections])
            twin.in_proj_bias.copy_(torch.from_numpy(b))
            twin.out_proj.weight.copy_(
                torch.from_numpy(nnx.to_numpy(layer.out_proj.weight.value).T)
            )
            twin.out_proj.bias.copy_(torch.from_numpy(nnx.to_numpy(layer.out_proj.bias.value)))
        return lambda x: twin(x, x, x, need_weights=False)[0]
    w = nnx.to_numpy(layer.weight.value)
    twin = torch.nn.ConvTranspose2d(
        layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding
    )
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(w))
        twin.bias.copy_(torch.from_numpy(nnx.to_numpy(layer.bias.value)))
    return twin


def run_native_layers(quick: bool, repeats: int, calls: int) -> dict[str, Any]:
    import torch

    be = nnx.get_backend("torch")
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    for name, (make, shape) in _cases(quick).items():
        layer = make().to(be)
        attention = isinstance(layer, nnx.MultiheadAttention)
        x = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
        twin = _torch_twin(torch, layer)
        probe = layer(x, x, x) if attention else layer(x)
        g = torch.from_numpy(rng.standard_normal(tuple(probe.shape), dtype=np.float32))
        tx = x.clone().requires_grad_(True)
        np.testing.assert_allclose(twin(tx).detach().numpy(), probe.numpy(), rtol=1e-3, atol=1e-4)

        def nnx_call(layer=layer, attention=attention, x=x, g=g) -> None:
            layer.zero_grad()
            _ = layer(x, x, x) if attention else layer(x)
            layer.backward(g)

        def portable_call(nnx_call=nnx_call) -> None:
            with _fastconv.portable_only():
                nnx_call()

        def torch_call(twin=twin, tx=tx, g=g) -> None:
            tx.grad = None
            twin(tx).backward(g)

        steps = {"nnx-torch": nnx_call, "nnx-torch-portable": portable_call, "torch": torch_call}
        for fn in steps.values():
            fn()
        cpu: dict[str, list[float]] = {k: [] for k in steps}
        for r in range(repeats):
            for label in rotated(list(steps), r):
                start = time.process_time()
                for _ in range(calls):
                    steps[label]()
                cpu[label].append((time.process_time() - start) / calls)
        ms = {k: 1e3 * statistics.median(v) for k, v in cpu.items()}
        results[name] = {
            "shape": shape,
            "cpu_ms": ms,
            "native_over_torch": ms["nnx-torch"] / ms["torch"],
            "portable_over_torch": ms["nnx-torch-portable"] / ms["torch"],
        }
    return results


def main_native_layers(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--native-layers", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--calls", type=int, default=5, help="calls per measurement")
    p.add_argument("--quick", action="store_true", help="a smoke run on tiny shapes")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.calls = 2, 1
    limit_threads(1)
    results = run_native_layers(args.quick, args.repeats, args.calls)
    for name, r in results.items():
        ms = r["cpu_ms"]
        print(
            f"{name:<15} CPU ms nnx-torch {ms['nnx-torch']:.2f}, portable "
            f"{ms['nnx-torch-portable']:.2f}, torch {ms['torch']:.2f}: native/torch "
            f"{r['native_over_torch']:.2f}, portable/torch {r['portable_over_torch']:.2f}"
        )
    write_json(args.json, results)
    return 0
