"""The MLP workload: nnx against a hand-written array reference and PyTorch eager.

An MLP (default 784-512-256-10) with ReLU, softmax cross-entropy and SGD with momentum 0.9 on
synthetic float32 samples, one shuffled epoch per measurement. The contenders (nnx's own loop,
the README loop, Trainer.fit, the reference, torch) start from the same weights, see the same
batches in the same order, run interleaved after a warm-up in an order that rotates every
repetition, and the median is reported with ratios against the reference and against torch,
in wall time and in process CPU time (``--threads 1``: one BLAS and one torch thread, so the
CPU time is the work done and the CPU-time ratios hold on a loaded machine).
GFLOP/s counts 6 x parameters x samples per epoch (forward 2, backward 4 flops per weight and
sample); the matrix-multiply ceiling is the best float32 GEMM rate measured in the same run.
Peak memory is measured per contender in a fresh subprocess: RSS, and on a GPU also the
high-water mark of CuPy's memory pool (PyTorch's allocator for torch) and its growth.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np

import nnx
from nnx.data import ArrayDataset, DataLoader
from nnx.optim import SGD

from .measure import (
    Timer,
    blas_threads,
    can_measure_memory,
    command_line,
    gpu_memory_meter,
    limit_threads,
    load_average,
    machine_description,
    reset_peak_rss,
    rotated,
    run_probe,
    status_kb,
    synchronize,
    write_json,
)

MOMENTUM = 0.9


# ---------------------------------------------------------------------------- setup


def make_data(n: int, features: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features), dtype=np.float32)
    y = rng.integers(0, classes, size=n).astype(np.int64)
    return x, y


def layer_sizes(args: argparse.Namespace) -> list[int]:
    return [args.features, *args.hidden, args.classes]


def initial_weights(sizes: list[int], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-normal weights ``(in, out)`` and zero biases, float32, shared by every contender."""
    rng = np.random.default_rng(seed)
    return [
        (
            (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32),
            np.zeros(b, dtype=np.float32),
        )
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The same per-epoch order nnx's DataLoader uses."""
    return np.random.default_rng([seed, epoch]).permutation(n)


# ---------------------------------------------------------------------------- contenders


class NnxLoop:
    """nnx through its public API, as a user writes a training loop."""

    name = "nnx"

    def __init__(self, backend, x, y, weights, lr, batch_size, seed=0):
        layers: list[Any] = []
        for i, (w, b) in enumerate(weights):
            lin = nnx.Linear(w.shape[0], w.shape[1])
            lin.weight.value, lin.bias.value = w.copy(), b.copy()
            layers += [lin, nnx.ReLU()] if i < len(weights) - 1 else [lin]
        self.model = nnx.Sequential(*layers).to(backend)
        self.loss = nnx.CrossEntropyLoss(check_labels=False)
        self.optimizer = SGD(self.model.parameters(), lr=lr, momentum=MOMENTUM)
        self.loader = DataLoader(
            ArrayDataset(x, y).to(backend), batch_size=batch_size, shuffle=True, seed=seed
        )
        self.epoch = 0

    def run_epoch(self, max_batches: int | None = None) -> list[Any]:
        self.loader.set_epoch(self.epoch)
        self.epoch += 1
        losses = []
        for i, (xb, yb) in enumerate(self.loader):
            if max_batches is not None and i >= max_batches:
                break
            losses.append(self.train_step(xb, yb))
        return losses

    def train_step(self, xb: Any, yb: Any) -> Any:
        """One optimizer step on a batch; returns its loss (a device scalar)."""
        self.optimizer.zero_grad()  # frees the last step's gradients before the forward
        loss = self.loss(self.model(xb), yb)
        self.model.backward(self.loss.backward(), need_input_grad=False)
        self.optimizer.step()
        return loss


class ReadmeLoop(NnxLoop):
    """The loop README.md shows, word for word: ``loss_fn(model(x), y)``, ``model.zero_grad()``,
    ``model.backward(loss_fn.backward())`` (no flags: the model's default skips ``dL/dx`` of
    the data), then the optimizer step."""

    name = "nnx README loop"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.loss = nnx.CrossEntropyLoss()  # as in README.md: label checks on

    def train_step(self, xb: Any, yb: Any) -> Any:
        model, loss_fn, optimizer = self.model, self.loss, self.optimizer
        loss = loss_fn(model(xb), yb)
        model.zero_grad()
        model.backward(loss_fn.backward())
        optimizer.step()
        return loss


class NnxTrainer:
    """nnx's Trainer.fit for one epoch (accuracy metric, NaN guard, no progress bar)."""

    name = "nnx Trainer.fit"

    def __init__(self, backend, x, y, weights, lr, batch_size, seed=0):
        self.inner = NnxLoop(backend, x, y, weights, lr, batch_size, seed)
        self.trainer = nnx.Trainer(
            self.inner.model,
            nnx.CrossEntropyLoss(),
            self.inner.optimizer,
            device=backend,
            seed=seed,
            progress=False,
        )
        self.data = self.inner.loader.dataset
        self.batch_size = batch_size

    def run_epoch(self, max_batches: int | None = None) -> list[Any]:
        data = self.data
        if max_batches is not None:
            n = min(len(data), max_batches * self.batch_size)
            data = ArrayDataset(data.x[:n, ...], data.y[:n])
        history = self.trainer.fit(data, epochs=self.trainer.epoch + 1, batch_size=self.batch_size)
        return [history.last["train_loss"]]


class Reference:
    """The same math written by hand with the array library (NumPy or CuPy), no framework."""

    name = "reference"

    def __init__(self, backend, x, y, weights, lr, batch_size, seed=0):
        self.xp = xp = _raw_namespace(backend)
        self.x, self.y = xp.asarray(x), xp.asarray(y)
        self.params = [xp.asarray(w.copy()) for pair in weights for w in pair]
        self.velocity = [None] * len(self.params)
        self.lr, self.batch_size, self.seed = lr, batch_size, seed
        self.epoch = 0

    def run_epoch(self, max_batches: int | None = None) -> list[Any]:
        xp, params, vel = self.xp, self.params, self.velocity
        order = xp.asarray(permutation(len(self.x), self.seed, self.epoch))
        self.epoch += 1
        losses = []
        n_layers = len(params) // 2
        for i, start in enumerate(range(0, len(self.x), self.batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            idx = order[start : start + self.batch_size]
            xb, yb = xp.take(self.x, idx, axis=0), xp.take(self.y, idx, axis=0)
            n = xb.shape[0]
            acts = [xb]
            h = xb
            for k in range(n_layers):  # forward
                h = h @ params[2 * k]
                h += params[2 * k + 1]
                if k < n_layers - 1:
                    h = xp.maximum(h, 0)
                acts.append(h)
            z = h - h.max(axis=1, keepdims=True)  # softmax cross-entropy
            e = xp.exp(z)
            s = e.sum(axis=1, keepdims=True)
            losses.append(xp.mean(xp.log(s[:, 0]) - z[xp.arange(n), yb]))
            g = e / s
            g[xp.arange(n), yb] -= 1.0
            g *= 1.0 / n
            grads = [None] * len(params)
            for k in reversed(range(n_layers)):  # backward
                grads[2 * k] = acts[k].T @ g
                grads[2 * k + 1] = g.sum(axis=0)
                if k > 0:
                    g = g @ params[2 * k].T
                    g *= acts[k] > 0
            for j, (p, dp) in enumerate(zip(params, grads, strict=True)):  # SGD with momentum
                if vel[j] is None:
                    vel[j] = dp.copy()
                else:
                    vel[j] *= MOMENTUM
                    vel[j] += dp
                p -= self.lr * vel[j]
        return losses


class Torch:
    """PyTorch eager: nn.Sequential, nn.CrossEntropyLoss, optim.SGD."""

    name = "torch"

    def __init__(self, backend, x, y, weights, lr, batch_size, seed=0):
        import torch

        self.torch = torch
        self.device = torch.device("cuda" if backend.is_gpu else "cpu")
        layers: list[Any] = []
        for i, (w, b) in enumerate(weights):
            lin = torch.nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            layers += [lin, torch.nn.ReLU()] if i < len(weights) - 1 else [lin]
        self.model = torch.nn.Sequential(*layers).to(self.device)
        self.loss = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=MOMENTUM)
        self.x = torch.from_numpy(x).to(self.device)
        self.y = torch.from_numpy(y).to(self.device)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def run_epoch(self, max_batches: int | None = None) -> list[Any]:
        torch = self.torch
        order = torch.from_numpy(permutation(len(self.x), self.seed, self.epoch)).to(self.device)
        self.epoch += 1
        losses = []
        for i, start in enumerate(range(0, len(self.x), self.batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            idx = order[start : start + self.batch_size]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(self.model(self.x[idx]), self.y[idx])
            loss.backward()
            self.optimizer.step()
            losses.append(loss.detach())
        return losses


# The ratios every row reports (wall and CPU time): key -> (numerator, denominator).
RATIOS = {
    "nnx_vs_reference": ("nnx", "reference"),
    "readme_vs_reference": ("readme", "reference"),
    "trainer_vs_nnx": ("trainer", "nnx"),
    "nnx_vs_torch": ("nnx", "torch"),
    "readme_vs_torch": ("readme", "torch"),
}

CONTENDERS = {
    "nnx": NnxLoop,
    "readme": ReadmeLoop,
    "trainer": NnxTrainer,
    "reference": Reference,
    "torch": Torch,
}


def _raw_namespace(backend) -> Any:
    if backend.name == "cupy":
        import cupy

        return cupy
    return np


def sync_torch(contender) -> None:
    if isinstance(contender, Torch) and contender.device.type == "cuda":
        contender.torch.cuda.synchronize()


# ---------------------------------------------------------------------------- measurements


def timed_epoch(contender, backend) -> Timer:
    """One epoch of ``contender``: its wall and process CPU time (``.wall``, ``.cpu``)."""
    synchronize(backend)
    sync_torch(contender)
    with Timer() as timer:
        losses = contender.run_epoch()
        _ = float(nnx.to_numpy(losses[-1])) if not isinstance(losses[-1], float) else losses[-1]
        synchronize(backend)
        sync_torch(contender)
    return timer


def matmul_ceiling(backend, size: int = 2048, repeats: int = 5) -> float:
    """Best float32 GEMM rate (GFLOP/s) of a size x size product on this backend."""
    xp = _raw_namespace(backend)
    a = xp.asarray(np.random.default_rng(0).standard_normal((size, size), dtype=np.float32))
    b = xp.asarray(np.random.default_rng(1).standard_normal((size, size), dtype=np.float32))
    best = float("inf")
    for _ in range(repeats + 1):
        synchronize(backend)
        start = time.perf_counter()
        a @ b
        synchronize(backend)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def n_parameters(sizes: list[int]) -> int:
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def memory_probe(args: argparse.Namespace) -> dict[str, Any]:
    """Run in a subprocess: one contender's peak memory over three epochs, and its growth."""
    limit_threads(args.threads)
    backend = nnx.get_backend(args.device)
    x, y = make_data(args.samples, args.features, args.classes)
    weights = initial_weights(layer_sizes(args))
    if args.probe == "torch":
        import torch  # noqa: F401  (the library itself is not the contender's working memory)
    gpu = gpu_memory_meter(backend, torch_allocator=args.probe == "torch")
    reset_peak_rss()
    baseline = status_kb("VmRSS")  # the data is in; the model, its state and the steps are not
    contender = CONTENDERS[args.probe](backend, x, y, weights, args.lr, args.probe_batch)
    after, after_gpu = [], []
    for _ in range(3):
        timed_epoch(contender, backend)
        after.append(status_kb("VmRSS"))
        if gpu:
            after_gpu.append(gpu["in_use"]())
    result = {
        "peak_rss_mb": (status_kb("VmHWM") - baseline) / 1024,
        "growth_mb": (after[-1] - after[0]) / 1024,
    }
    if gpu:  # the device copy of the data counts here: every contender holds one
        result["gpu_peak_mb"] = gpu["peak"]() / 2**20
        result["gpu_growth_mb"] = (after_gpu[-1] - after_gpu[0]) / 2**20
    return result


def measure_memory(args: argparse.Namespace, name: str) -> dict[str, Any] | None:
    """Contender ``name``'s :func:`memory_probe`, run in a fresh process (None off Linux)."""
    if not can_measure_memory():
        return None
    flags = ["--probe", name, "--probe-batch", str(args.memory_batch), "--device", args.device]
    flags += ["--samples", str(args.samples), "--features", str(args.features)]
    flags += ["--classes", str(args.classes), "--hidden", ",".join(map(str, args.hidden))]
    if args.threads:
        flags += ["--threads", str(args.threads)]
    return run_probe(flags, f"for {name}")


def check_same_loss(backend, args: argparse.Namespace, batches: int = 5) -> float:
    """nnx (its loop and the README loop) and the reference take the same steps: largest loss
    difference over a few batches."""
    x, y = make_data(args.batch_sizes[0] * batches, args.features, args.classes, seed=1)
    weights = initial_weights(layer_sizes(args), seed=1)
    runs = [
        c(backend, x, y, weights, args.lr, args.batch_sizes[0]).run_epoch()
        for c in (NnxLoop, ReadmeLoop, Reference)
    ]
    host = [np.array([float(nnx.to_numpy(v)) for v in r]) for r in runs]
    return float(max(np.max(np.abs(h - host[-1])) for h in host[:-1]))


def run(args: argparse.Namespace, backend: nnx.Backend) -> dict[str, Any]:
    names = ["nnx", "readme", "trainer", "reference"]
    if not args.no_torch:
        try:
            import torch  # noqa: F401

            names.append("torch")
        except ImportError:
            print("bench: PyTorch is not installed; skipping it", file=sys.stderr)
    sizes = layer_sizes(args)
    x, y = make_data(args.samples, args.features, args.classes)
    weights = initial_weights(sizes)
    flops_per_epoch = 6.0 * n_parameters(sizes) * args.samples
    results: dict[str, Any] = {
        "machine": machine_description(backend),
        "command": command_line(),
        "workload": {
            "samples": args.samples,
            "layers": sizes,
            "parameters": n_parameters(sizes),
            "optimizer": f"SGD momentum {MOMENTUM}",
            "lr": args.lr,
            "repeats": args.repeats,
            "dtype": "float32",
        },
        "backend": backend.name,
        "loss_difference_nnx_vs_reference": check_same_loss(backend, args),
        "matmul_ceiling_gflops": matmul_ceiling(backend),
        "threads": args.threads,
        "blas_threads": blas_threads(),
        "load_average_before": load_average(),
        "batches": {},
    }
    for batch_size in args.batch_sizes:
        contenders = {n: CONTENDERS[n](backend, x, y, weights, args.lr, batch_size) for n in names}
        for c in contenders.values():  # warm-up: caches, BLAS threads, CUDA kernels
            c.run_epoch(max_batches=args.warmup_batches)
        times: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}
        for rep in range(args.repeats):
            # interleaved, and the order rotates every repetition: what ran just before a
            # contender (torch's spinning worker threads, a cache another one just filled)
            # then falls on every contender alike
            for n in rotated(names, rep):
                timer = timed_epoch(contenders[n], backend)
                times[n].append(timer.wall)
                cpu[n].append(timer.cpu)
        median = {n: statistics.median(t) for n, t in times.items()}
        median_cpu = {n: statistics.median(t) for n, t in cpu.items()}
        row: dict[str, Any] = {}
        for n in names:
            row[n] = {
                "seconds": median[n],
                "cpu_seconds": median_cpu[n],
                "samples_per_s": args.samples / median[n],
                "gflops": flops_per_epoch / median[n] / 1e9,
                "all_seconds": times[n],
                "all_cpu_seconds": cpu[n],
            }
        for key, (a, b) in RATIOS.items():
            if a in median and b in median:
                row[f"ratio_{key}"] = median[a] / median[b]
                row[f"cpu_ratio_{key}"] = median_cpu[a] / median_cpu[b]
        row["nnx_fraction_of_matmul_ceiling"] = (
            row["nnx"]["gflops"] / results["matmul_ceiling_gflops"]
        )
        results["batches"][str(batch_size)] = row
        print(f"bench: batch {batch_size} done", file=sys.stderr)
    results["load_average_after"] = load_average()
    if not args.no_memory:
        results["memory_batch"] = args.memory_batch
        results["memory"] = {n: measure_memory(args, n) for n in names}
    return results


def print_table(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(
        f"machine: {m.get('gpu', m['cpu'])}, {m['cores']} cores, numpy {m['numpy']}"
        + (f", torch {m['torch']}" if "torch" in m else "")
    )
    print(
        f"workload: {results['workload']['layers']} ({results['workload']['parameters']:,} "
        f"parameters), {results['workload']['samples']:,} samples, backend {results['backend']}"
    )
    print(
        f"float32 matmul ceiling: {results['matmul_ceiling_gflops']:.1f} GFLOP/s; "
        f"loss difference nnx vs reference: {results['loss_difference_nnx_vs_reference']:.2e}"
    )
    before, after = results["load_average_before"], results.get("load_average_after") or []
    print(
        f"threads: {results['threads'] or 'library defaults'} (BLAS {results['blas_threads']}); "
        f"1-minute load average {before[0] if before else '-'} before, "
        f"{after[0] if after else '-'} after"
    )
    header = (
        f"{'batch':>6} {'contender':<16} {'s/epoch':>9} {'CPU s':>8} {'samples/s':>11} "
        f"{'GFLOP/s':>8}"
    )
    print(header)
    for batch, row in results["batches"].items():
        for name in ("nnx", "readme", "trainer", "reference", "torch"):
            if name in row:
                r = row[name]
                label = CONTENDERS[name].name
                print(
                    f"{batch:>6} {label:<16} {r['seconds']:>9.3f} {r['cpu_seconds']:>8.3f} "
                    f"{r['samples_per_s']:>11,.0f} {r['gflops']:>8.1f}"
                )
        labels = {
            "nnx_vs_reference": "nnx/reference",
            "readme_vs_reference": "README loop/reference",
            "trainer_vs_nnx": "Trainer.fit/nnx",
            "nnx_vs_torch": "nnx/torch",
            "readme_vs_torch": "README loop/torch",
        }
        for kind, prefix in (("wall", "ratio_"), ("CPU", "cpu_ratio_")):
            ratios = [
                f"{label} {row[prefix + key]:.3f}"
                for key, label in labels.items()
                if prefix + key in row
            ]
            print(f"{'':>6} {kind:<4} " + ", ".join(ratios))
        print(
            f"{'':>6} nnx at {100 * row['nnx_fraction_of_matmul_ceiling']:.0f}% of the matmul "
            "ceiling"
        )
    if results.get("memory"):
        print(
            f"peak RSS above the data (model, optimizer state, steps), batch {results['memory_batch']}, 3 epochs, one fresh process each:"
        )
        for name, mem in results["memory"].items():
            if mem:
                extra = (
                    f"; GPU peak {mem['gpu_peak_mb']:.1f} MB, growth {mem['gpu_growth_mb']:+.1f} MB"
                    if "gpu_peak_mb" in mem
                    else ""
                )
                print(
                    f"  {CONTENDERS[name].name:<16} RSS {mem['peak_rss_mb']:.1f} MB, growth epoch 1->3 "
                    f"{mem['growth_mb']:+.1f} MB{extra}"
                )


def main_mlp(args: argparse.Namespace) -> int:
    """The MLP benchmark on ``--device`` (NumPy or CuPy: the backends with a reference);
    exit status 1 when nnx and the reference disagree, 2 for an unusable device."""
    try:
        backend = nnx.get_backend(args.device)
    except nnx.BackendUnavailableError as err:
        print(f"bench.py: error: {err}", file=sys.stderr)
        return 2
    if backend.name not in ("numpy", "cupy"):
        print(
            f"bench.py: error: --device {args.device} selects the {backend.name} backend; the "
            "hand-written reference exists for NumPy (--device cpu) and CuPy (--device gpu) only",
            file=sys.stderr,
        )
        return 2
    limit_threads(args.threads)
    results = run(args, backend)
    print_table(results)
    write_json(args.json, results)
    difference = results["loss_difference_nnx_vs_reference"]
    if difference > 1e-5:
        print(
            f"bench.py: error: nnx and the reference disagree: loss difference {difference:.2e}",
            file=sys.stderr,
        )
        return 1
    return 0
