"""Time a loader-bound epoch with and without prefetching: ``python scripts/bench.py --loader``.

    python scripts/bench.py --loader                      # 20,000 samples, batch 128
    python scripts/bench.py --loader --loader-samples 4000 --repeats 3
    python scripts/bench.py --loader --file-rows 2000000   # one epoch on a 6 GB .npy: peak RSS

Workload (``--loader-kind``): a memory-mapped float32 ``.npy`` file (samples x 784, in a
temporary folder) read either by a map-style dataset whose ``__getitem__`` reads one row and
applies a per-sample transform (``python``: ``tanh`` of the scaled row, the per-sample Python
work of a typical ``Dataset``, which holds the GIL) or as an ``ArrayDataset`` over the memory
map (``memmap``: each batch's rows read with ``pread``, which releases the GIL). The step is the MLP 784-256-10 with SGD on
the NumPy backend; BLAS is limited to one thread (``--threads``), so each contender computes on
one thread and prefetching adds the one gathering thread.

Contenders, interleaved in a rotating order, median wall AND CPU time (``time.process_time``,
all threads) of one shuffled epoch each:

* ``step``: the training steps alone, on batches gathered beforehand (the compute floor);
* ``gather``: the loader alone, without steps (the gather floor);
* ``prefetch=0``: ``Trainer.fit`` one epoch with ``DataLoader(..., prefetch=0)``;
* ``prefetch=2``: the same with ``prefetch=2``: its wall time should approach the larger of
  ``step`` and ``gather`` rather than their sum, for about the same CPU time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import nnx
from nnx.data import DataLoader

from .measure import limit_threads, rotated, write_json


class Transformed:
    """Rows of a memory-mapped array, each scaled and squashed: per-sample host work."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.int64]:
        return np.tanh(self.x[i] * 0.5), self.y[i]


def _trainer(features: int) -> nnx.Trainer:
    model = nnx.Sequential(nnx.Linear(features, 256, rng=0), nnx.ReLU(), nnx.Linear(256, 10, rng=1))
    opt = nnx.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return nnx.Trainer(model, nnx.CrossEntropyLoss(), opt, device="cpu", progress=False)


def run_loader(
    samples: int, features: int, batch: int, repeats: int, folder: Path, kind: str = "python"
) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    path = folder / "x.npy"
    np.save(path, rng.standard_normal((samples, features), dtype=np.float32))
    x, y = np.load(path, mmap_mode="r"), rng.integers(0, 10, samples)
    data: Any = Transformed(x, y) if kind == "python" else nnx.data.ArrayDataset(x, y)
    trainer = _trainer(features)
    loaders = {p: DataLoader(data, batch, seed=0, prefetch=p) for p in (0, 2)}
    ready = list(loaders[0])  # the batches of epoch 0, for the step-only contender

    def step_only() -> None:
        step = trainer.train_step
        for xb, yb in ready:
            step(np.asarray(xb, np.float32), yb)

    def gather_only() -> None:
        for _ in loaders[0]:
            pass

    def fit(p: int) -> Any:
        return lambda: trainer.fit(loaders[p], epochs=trainer.epoch + 1)

    contenders = {
        "step": step_only,
        "gather": gather_only,
        "prefetch=0": fit(0),
        "prefetch=2": fit(2),
    }
    for run in contenders.values():  # warm-up: page cache, allocator, BLAS
        run()
    wall: dict[str, list[float]] = {n: [] for n in contenders}
    cpu: dict[str, list[float]] = {n: [] for n in contenders}
    for r in range(repeats):
        for name in rotated(list(contenders), r):
            w0, c0 = time.perf_counter(), time.process_time()
            contenders[name]()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    return {
        "kind": kind,
        "samples": samples,
        "features": features,
        "batch": batch,
        "repeats": repeats,
        "wall_s": {n: statistics.median(t) for n, t in wall.items()},
        "cpu_s": {n: statistics.median(t) for n, t in cpu.items()},
        "wall_all": wall,
        "cpu_all": cpu,
    }


def write_npy(path: Path, rows: int, features: int, chunk: int = 8192) -> None:
    """A float32 ``.npy`` of ``rows x features`` normal values, written in chunks (never whole
    in memory); class ``row % 10`` is encoded in feature 0 so the epoch learns something."""
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": (rows, features)}
        np.lib.format.write_array_header_2_0(f, header)
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            block = rng.standard_normal((n, features), dtype=np.float32)
            block[:, 0] += (np.arange(start, start + n) % 10).astype(np.float32)
            f.write(block.tobytes())


def run_file_epoch(rows: int, features: int, batch: int, folder: Path) -> dict[str, Any]:
    """One epoch of the MLP 784-512-256-10 on a memory-mapped ``.npy``: time and peak RSS."""
    import resource

    path = folder / "big.npy"
    start = time.perf_counter()
    write_npy(path, rows, features)
    written = time.perf_counter() - start
    x = np.load(path, mmap_mode="r")
    y = (np.arange(rows) % 10).astype(np.int64)
    model = nnx.Sequential(
        nnx.Linear(features, 512, rng=0),
        nnx.ReLU(),
        nnx.Linear(512, 256, rng=1),
        nnx.ReLU(),
        nnx.Linear(256, 10, rng=2),
    )
    opt = nnx.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    trainer = nnx.Trainer(model, nnx.CrossEntropyLoss(), opt, device="cpu", progress=False)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    w0, c0 = time.perf_counter(), time.process_time()
    history = trainer.fit(DataLoader(nnx.data.ArrayDataset(x, y), batch, prefetch=2), epochs=1)
    return {
        "rows": rows,
        "features": features,
        "file_gb": path.stat().st_size / 1e9,
        "batch": batch,
        "write_s": written,
        "epoch_wall_s": time.perf_counter() - w0,
        "epoch_cpu_s": time.process_time() - c0,
        "train_loss": history.last["train_loss"],
        "train_accuracy": history.last["train_accuracy"],
        "peak_rss_mb_before_epoch": rss_before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def print_loader_table(results: dict[str, Any]) -> None:
    print(
        f"one shuffled epoch of {results['samples']} x {results['features']} float32 from a "
        f"memory map ({results['kind']} gather), batch {results['batch']}, median of "
        f"{results['repeats']}"
    )
    print(f"{'contender':<12}{'wall s':>10}{'CPU s':>10}")
    for name, w in results["wall_s"].items():
        print(f"{name:<12}{w:>10.3f}{results['cpu_s'][name]:>10.3f}")
    print(
        f"load average before {tuple(round(v, 2) for v in results['load_average_before'])}, "
        f"after {tuple(round(v, 2) for v in results['load_average_after'])}"
    )


def main_loader(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loader", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--loader-samples", type=int, default=20_000)
    p.add_argument("--loader-features", type=int, default=784)
    p.add_argument("--loader-batch", type=int, default=128)
    p.add_argument(
        "--loader-kind",
        choices=("python", "memmap"),
        default="python",
        help="python: a map-style dataset with per-sample Python work (holds the GIL); memmap: "
        "an ArrayDataset over the memory map, rows read with pread (releases the GIL)",
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument(
        "--file-rows",
        type=int,
        help="instead: one epoch of the MLP on a memory-mapped .npy of this many rows, written "
        "to --loader-dir; reports its time and the process's peak RSS",
    )
    p.add_argument("--loader-dir", help="folder for the .npy (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 512 samples, 1 repeat")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.loader_samples, args.loader_features, args.repeats = 512, 32, 1
    before = os.getloadavg()
    if args.file_rows:  # BLAS threads without importing torch: its memory would count too
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        with tempfile.TemporaryDirectory(dir=args.loader_dir) as folder:
            results = run_file_epoch(
                args.file_rows, args.loader_features, args.loader_batch, Path(folder)
            )
        results["load_average_before"], results["load_average_after"] = before, os.getloadavg()
        for key, value in results.items():
            print(f"{key}: {value}")
        write_json(args.json, results)
        return 0
    limit_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        results = run_loader(
            args.loader_samples,
            args.loader_features,
            args.loader_batch,
            args.repeats,
            Path(folder),
            args.loader_kind,
        )
    results["load_average_before"], results["load_average_after"] = before, os.getloadavg()
    results["threads"] = args.threads
    print_loader_table(results)
    write_json(args.json, results)
    return 0
