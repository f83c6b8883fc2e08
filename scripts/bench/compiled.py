"""nnx on NumPy, on JAX eager and on JAX compiled by ``nnx.compile`` (``jax.jit``): the MLP
workload of :mod:`bench.mlp` (same data, initial weights and SGD-with-momentum steps), so the
three differ only in the array library and in compiling the step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

import nnx

from .measure import command_line, machine_description, rotated, write_json
from .mlp import MOMENTUM, NnxLoop, initial_weights, layer_sizes, make_data


class NnxCompiled(NnxLoop):
    """The loop of :class:`NnxLoop`, each step compiled by ``nnx.compile`` (``jax.jit``)."""

    name = "nnx compiled"

    def __init__(self, backend, x, y, weights, lr, batch_size, seed=0):
        super().__init__(backend, x, y, weights, lr, batch_size, seed)
        self.step = nnx.compile(self.model, self.loss, self.optimizer)

    def train_step(self, xb: Any, yb: Any) -> Any:
        return self.step(xb, yb)[0]


def run_jax(args: argparse.Namespace) -> dict[str, Any]:
    """nnx on NumPy, on JAX eager and on JAX compiled: the same MLP, data and SGD steps.

    Batches that do not fill ``batch_size`` are dropped (every contender alike), so the compiled
    step is traced once per batch size, during the warm-up.
    """
    jax_backend, numpy_backend = nnx.get_backend("jax"), nnx.get_backend("numpy")
    sizes = layer_sizes(args)
    n = args.samples
    x, y = make_data(n, args.features, args.classes)
    y = y.astype(np.int32)  # JAX's integer without 64-bit mode
    weights = initial_weights(sizes)
    kinds = {
        "numpy eager": (NnxLoop, numpy_backend),
        "jax eager": (NnxLoop, jax_backend),
        "jax compiled": (NnxCompiled, jax_backend),
    }
    results: dict[str, Any] = {
        "machine": machine_description(numpy_backend),
        "command": command_line(),
        "load_average": list(os.getloadavg()),
        "workload": {"samples": n, "layers": sizes, "optimizer": f"SGD momentum {MOMENTUM}"},
        "batches": {},
    }
    for batch_size in args.batch_sizes:
        contenders = {}
        for name, (make, backend) in kinds.items():
            c = make(backend, x, y, weights, args.lr, batch_size)
            c.loader.drop_last = True
            contenders[name] = c
        first = {
            k: [float(nnx.to_numpy(v)) for v in c.run_epoch(max_batches=3)]
            for k, c in contenders.items()
        }
        difference = max(
            abs(a - b) for a, b in zip(first["jax compiled"], first["numpy eager"], strict=True)
        )
        for c in contenders.values():
            c.run_epoch(max_batches=args.warmup_batches)
        times: dict[str, list[float]] = {k: [] for k in kinds}
        names = list(kinds)
        for rep in range(args.repeats):
            for k in rotated(names, rep):
                start = time.perf_counter()
                losses = contenders[k].run_epoch()
                float(nnx.to_numpy(losses[-1]))  # waits for JAX's asynchronous dispatch
                times[k].append(time.perf_counter() - start)
        median = {k: statistics.median(t) for k, t in times.items()}
        results["batches"][str(batch_size)] = {
            **{
                k: {"seconds": median[k], "samples_per_s": n / median[k], "all_seconds": times[k]}
                for k in names
            },
            "loss_difference_compiled_vs_numpy": difference,
            "ratio_jax_eager_vs_numpy": median["jax eager"] / median["numpy eager"],
            "ratio_jax_compiled_vs_numpy": median["jax compiled"] / median["numpy eager"],
            "ratio_jax_compiled_vs_jax_eager": median["jax compiled"] / median["jax eager"],
        }
        print(f"bench: batch {batch_size} done", file=sys.stderr)
    results["load_average_after"] = list(os.getloadavg())
    return results


def print_jax_table(results: dict[str, Any]) -> None:
    print(f"command: {results['command']}")
    print(f"machine: {results['machine']}")
    print(f"load average before/after: {results['load_average']} / {results['load_average_after']}")
    print(
        f"{'batch':>6} {'numpy eager s':>14} {'jax eager s':>12} {'jax compiled s':>15} "
        f"{'jax/numpy':>10} {'compiled/numpy':>15} {'compiled/jax':>13} {'loss diff':>10}"
    )
    for batch, row in results["batches"].items():
        print(
            f"{batch:>6} {row['numpy eager']['seconds']:>14.3f} {row['jax eager']['seconds']:>12.3f} "
            f"{row['jax compiled']['seconds']:>15.3f} {row['ratio_jax_eager_vs_numpy']:>10.2f} "
            f"{row['ratio_jax_compiled_vs_numpy']:>15.2f} {row['ratio_jax_compiled_vs_jax_eager']:>13.2f} "
            f"{row['loss_difference_compiled_vs_numpy']:>10.1e}"
        )


def main_jax(args: argparse.Namespace) -> int:
    """The comparison; exit status 1 when the compiled and NumPy losses differ by over 1e-4,
    2 when JAX cannot be used."""
    ok, why = nnx.backend.backend_available("jax")
    if not ok:
        print(f"bench.py: error: {why}", file=sys.stderr)
        return 2
    results = run_jax(args)
    print_jax_table(results)
    write_json(args.json, results)
    worst = max(r["loss_difference_compiled_vs_numpy"] for r in results["batches"].values())
    if worst > 1e-4:
        print(f"bench.py: error: compiled and NumPy losses differ by {worst:.2e}", file=sys.stderr)
        return 1
    return 0
