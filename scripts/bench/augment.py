"""Time nnx.augment on a CIFAR-sized batch: ``python scripts/bench.py --augment``.

    python scripts/bench.py --augment                  # numpy, torch and jax when installed
    python scripts/bench.py --augment --augment-devices numpy --augment-batch 256

Workload: a float32 batch (N, 3, 32, 32), ``RandomCrop(32, padding=4)`` and
``RandomHorizontalFlip()`` as in CIFAR-10 training, choices drawn anew each call (host RNG
included in the time). Contenders per backend, interleaved in a rotating order, median of the
repetitions (the result is synchronised by ``nnx.to_numpy`` of one element):

* ``crop``, ``flip``, ``crop+flip``: nnx.augment (the last fused into one gather);
* ``loop``: the same crop as a Python loop over samples (pad once with ``concat``, slice each
  sample at its corner, ``stack``), the simple alternative the gather replaces;
* ``copy``: one copy of the batch (``xp.asarray(x, copy=True)``), the memory-bound floor.
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
from nnx.data.augment import Compose, RandomCrop, RandomHorizontalFlip

from .measure import rotated, write_json


def _loop_crop(xp: Any, x: Any, rng: np.random.Generator, padding: int) -> Any:
    """The per-sample loop: zero-pad the batch once, cut each sample at its random corner."""
    n, c, h, w = (int(s) for s in x.shape)
    dev = nnx.backend.device(x)
    rows = xp.zeros((n, c, padding, w), dtype=x.dtype, device=dev)
    padded = xp.concat([rows, x, rows], axis=2)
    cols = xp.zeros((n, c, h + 2 * padding, padding), dtype=x.dtype, device=dev)
    padded = xp.concat([cols, padded, cols], axis=3)
    top = rng.integers(0, 2 * padding + 1, size=n)
    left = rng.integers(0, 2 * padding + 1, size=n)
    return xp.stack(
        [padded[k, :, top[k] : top[k] + h, left[k] : left[k] + w] for k in range(n)], axis=0
    )


def _contenders(xp: Any, x: Any, crop: Any, flip: Any, both: Any) -> dict[str, Any]:
    return {
        "crop": lambda rng: crop(x, rng),
        "flip": lambda rng: flip(x, rng),
        "crop+flip": lambda rng: both(x, rng),
        "loop": lambda rng: _loop_crop(xp, x, rng, 4),
        "copy": lambda rng: xp.asarray(x, copy=True),
    }


def run_augment(
    devices: list[str], batch: int, repeats: int, calls: int, threads: int | None = None
) -> dict[str, Any]:
    host = np.random.default_rng(0).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    crop, flip = RandomCrop(32, padding=4), RandomHorizontalFlip()
    both = Compose([crop, flip])
    results: dict[str, Any] = {
        "batch": [batch, 3, 32, 32],
        "repeats": repeats,
        "calls_per_measurement": calls,
        "load_average_before": os.getloadavg(),
        "backends": {},
    }
    for spec in devices:
        ok, why = nnx.backend.backend_available(spec)
        if not ok:
            print(f"skipping {spec}: {why}", file=sys.stderr)
            continue
        be = nnx.get_backend(spec)
        if be.name == "torch":
            import torch

            if threads:
                torch.set_num_threads(threads)
            results["torch_threads"] = torch.get_num_threads()
        xp, x = be.xp, be.asarray(host)
        contenders = _contenders(xp, x, crop, flip, both)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for name in names:  # warm-up (JAX compiles each new shape once)
            nnx.to_numpy(contenders[name](np.random.default_rng(0))[0, 0, 0, :1])
        for r in range(repeats):
            for name in rotated(names, r):
                rng = np.random.default_rng(r)
                start = time.perf_counter()
                for _ in range(calls):
                    out = contenders[name](rng)
                nnx.to_numpy(out[0, 0, 0, :1])  # wait for asynchronous backends
                times[name].append((time.perf_counter() - start) / calls)
        medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        results["backends"][spec] = {
            "median_ms": medians,
            "crop_over_loop": medians["crop"] / medians["loop"],
            "crop_flip_over_copy": medians["crop+flip"] / medians["copy"],
        }
    results["load_average_after"] = os.getloadavg()
    return results


def print_augment_table(results: dict[str, Any]) -> None:
    shape = "x".join(map(str, results["batch"]))
    print(
        f"nnx.data.augment on a float32 batch {shape}, RandomCrop(32, padding=4) + flip; median ms"
    )
    names = ("crop", "flip", "crop+flip", "loop", "copy")
    print(f"{'backend':<10}" + "".join(f"{n:>11}" for n in names) + "  crop/loop  (crop+flip)/copy")
    for spec, r in results["backends"].items():
        row = "".join(f"{r['median_ms'][n]:>11.3f}" for n in names)
        print(f"{spec:<10}{row}  {r['crop_over_loop']:>9.2f}  {r['crop_flip_over_copy']:>15.1f}")
    if "torch_threads" in results:
        print(f"torch threads: {results['torch_threads']}")
    print(
        f"load average before {tuple(round(v, 2) for v in results['load_average_before'])}, "
        f"after {tuple(round(v, 2) for v in results['load_average_after'])}"
    )


def main_augment(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--augment", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--augment-devices", default="numpy,torch,jax")
    p.add_argument("--augment-batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--calls", type=int, default=10, help="calls per measurement")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch's CPU threads (default 1: on a shared, loaded machine more threads spin-wait "
        "for each other; 0 keeps torch's default)",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 repeats of 1 call")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.calls = 2, 1
    results = run_augment(
        args.augment_devices.split(","),
        args.augment_batch,
        args.repeats,
        args.calls,
        args.threads or None,
    )
    print_augment_table(results)
    write_json(args.json, results)
    return 0
