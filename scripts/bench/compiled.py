"""nnx on NumPy, on JAX eager and on JAX compiled by ``nnx.compile`` (``jax.jit``), and PyTorch
eager as the yardstick: the MLP workload of :mod:`bench.mlp` (same data, initial weights and
SGD-with-momentum steps), so the nnx three differ only in the array library and in compiling
the step. Wall time and this process's CPU time are both reported; with ``--threads 1`` (which
also keeps XLA and torch to one thread) the CPU time is the work done, steady on a busy machine.
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

from .measure import command_line, limit_threads, machine_description, rotated, write_json
from .mlp import MOMENTUM, NnxLoop, Torch, initial_weights, layer_sizes, make_data


class NnxCompiled(NnxLoop):
    """The loop of :class:`NnxLoop`, each step compiled by ``nnx.compile`` (``jax.jit``)."""

    name = "nnx compiled"

    def __init__(self, backend, x, y, weights, lr, batch_size, seed=0):
        super().__init__(backend, x, y, weights, lr, batch_size, seed)
        self.step = nnx.compile(self.model, self.loss, self.optimizer)

    def train_step(self, xb: Any, yb: Any) -> Any:
        return self.step(xb, yb)[0]


class TorchDropLast(Torch):
    """PyTorch eager (:class:`bench.mlp.Torch`) on the same batches, the last partial batch of an
    epoch dropped like the nnx contenders'."""

    def __init__(self, backend, x, y, weights, lr, batch_size, seed=0):
        super().__init__(backend, x, y.astype(np.int64), weights, lr, batch_size, seed)

    def run_epoch(self, max_batches: int | None = None) -> list[Any]:
        full = len(self.x) // self.batch_size
        limit = full if max_batches is None else min(full, max_batches)
        return super().run_epoch(limit)


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
    if args.with_torch:
        kinds["torch eager"] = (TorchDropLast, numpy_backend)
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
            if hasattr(c, "loader"):
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
        cpu: dict[str, list[float]] = {k: [] for k in kinds}
        names = list(kinds)
        for rep in range(args.repeats):
            for k in rotated(names, rep):
                start, start_cpu = time.perf_counter(), time.process_time()
                losses = contenders[k].run_epoch()
                float(nnx.to_numpy(losses[-1]))  # waits for JAX's asynchronous dispatch
                times[k].append(time.perf_counter() - start)
                cpu[k].append(time.process_time() - start_cpu)
        median = {k: statistics.median(t) for k, t in times.items()}
        median_cpu = {k: statistics.median(t) for k, t in cpu.items()}
        row = results["batches"][str(batch_size)] = {
            **{
                k: {
                    "seconds": median[k],
                    "cpu_seconds": median_cpu[k],
                    "samples_per_s": n / median[k],
                    "all_seconds": times[k],
                }
                for k in names
            },
            "loss_difference_compiled_vs_numpy": difference,
            "ratio_jax_eager_vs_numpy": median["jax eager"] / median["numpy eager"],
            "ratio_jax_compiled_vs_numpy": median["jax compiled"] / median["numpy eager"],
            "ratio_jax_compiled_vs_jax_eager": median["jax compiled"] / median["jax eager"],
        }
        row["first_losses"] = first
        if "torch eager" in median:
            torch_cpu = median_cpu["torch eager"]
            row["cpu_ratio_jax_compiled_vs_torch"] = median_cpu["jax compiled"] / torch_cpu
            row["cpu_ratio_numpy_vs_torch"] = median_cpu["numpy eager"] / torch_cpu

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
        cpu = ", ".join(
            f"{k} {row[k]['cpu_seconds']:.3f}"
            for k in row
            if isinstance(row[k], dict) and "cpu_seconds" in row[k]
        )
        print(f"{'':>6} CPU s: {cpu}")
        if "cpu_ratio_jax_compiled_vs_torch" in row:
            print(
                f"{'':>6} CPU ratio jax compiled / torch eager "
                f"{row['cpu_ratio_jax_compiled_vs_torch']:.2f}, numpy eager / torch eager "
                f"{row['cpu_ratio_numpy_vs_torch']:.2f}"
            )


def main_jax(args: argparse.Namespace) -> int:
    """The comparison; exit status 1 when the compiled and NumPy losses differ by over 1e-4,
    2 when JAX cannot be used."""
    limit_threads(args.threads)  # before JAX starts: XLA reads its thread flags then
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
