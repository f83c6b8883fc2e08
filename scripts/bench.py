#!/usr/bin/env python3
"""Benchmark nnx against a hand-written array reference and PyTorch eager, in one run.

    python scripts/bench.py                      # CPU, NumPy backend, batches 32,128,1024
    python scripts/bench.py --device gpu         # CuPy backend vs a CuPy reference vs torch CUDA
    python scripts/bench.py --quick              # tiny smoke run: nnx and reference losses agree
    python scripts/bench.py --json results.json  # machine-readable output as well
    python scripts/bench.py --cnn                # convolutional workloads vs torch (bench_cnn.py)
    python scripts/bench.py --jax --samples 8192 --batch-sizes 128,1024
        # nnx on NumPy vs nnx on JAX eager vs the same step compiled by nnx.compile (jax.jit)
    python scripts/bench.py --distributed        # MPI data-parallel: compute vs allreduce, 1-2 ranks
    python scripts/bench.py --augment            # nnx.augment crops/flips on a CIFAR-sized batch

Workload: an MLP 784-512-256-10 with ReLU, softmax cross-entropy and SGD with momentum 0.9 on
60,000 synthetic float32 samples, one shuffled epoch per measurement. The contenders run
interleaved after a warm-up, in an order that rotates every repetition (nnx, README loop,
Trainer.fit, reference, torch; then README loop, Trainer.fit, reference, torch, nnx; ...), and
the median of the repetitions is reported with ratios against the reference and against torch.
GFLOP/s counts 6 x parameters x samples per epoch (forward 2, backward 4 flops per weight and sample); the
matrix-multiply ceiling is the best float32 GEMM rate measured in the same run.
Peak memory is measured per contender in a fresh subprocess: RSS, and on a GPU also the
high-water mark of CuPy's memory pool (PyTorch's allocator for torch) and its growth.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

try:
    import nnx
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import nnx
from nnx.data import ArrayDataset, DataLoader
from nnx.optim import SGD

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


CONTENDERS = {
    "nnx": NnxLoop,
    "readme": ReadmeLoop,
    "trainer": NnxTrainer,
    "reference": Reference,
    "torch": Torch,
}


# ---------------------------------------------------------------------------- JAX: eager vs compiled


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
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
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
            for k in names[rep % len(names) :] + names[: rep % len(names)]:
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


def _raw_namespace(backend) -> Any:
    if backend.name == "cupy":
        import cupy

        return cupy
    return np


def synchronize(backend) -> None:
    if backend.name == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()
    elif backend.name == "torch" and backend.is_gpu:
        import torch

        torch.cuda.synchronize()


def sync_torch(contender) -> None:
    if isinstance(contender, Torch) and contender.device.type == "cuda":
        contender.torch.cuda.synchronize()


# ---------------------------------------------------------------------------- measurements


def timed_epoch(contender, backend) -> float:
    synchronize(backend)
    sync_torch(contender)
    start = time.perf_counter()
    losses = contender.run_epoch()
    _ = float(nnx.to_numpy(losses[-1])) if not isinstance(losses[-1], float) else losses[-1]
    synchronize(backend)
    sync_torch(contender)
    return time.perf_counter() - start


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
    backend = nnx.get_backend(args.device)
    x, y = make_data(args.samples, args.features, args.classes)
    weights = initial_weights(layer_sizes(args))
    if args.probe == "torch":
        import torch  # noqa: F401  (the library itself is not the contender's working memory)
    gpu = gpu_memory_meter(backend, args.probe)
    _reset_peak_rss()
    baseline = _status_kb("VmRSS")  # the data is in; the model, its state and the steps are not
    contender = CONTENDERS[args.probe](backend, x, y, weights, args.lr, args.probe_batch)
    after, after_gpu = [], []
    for _ in range(3):
        timed_epoch(contender, backend)
        after.append(_status_kb("VmRSS"))
        if gpu:
            after_gpu.append(gpu["in_use"]())
    result = {
        "peak_rss_mb": (_status_kb("VmHWM") - baseline) / 1024,
        "growth_mb": (after[-1] - after[0]) / 1024,
    }
    if gpu:  # the device copy of the data counts here: every contender holds one
        result["gpu_peak_mb"] = gpu["peak"]() / 2**20
        result["gpu_growth_mb"] = (after_gpu[-1] - after_gpu[0]) / 2**20
    return result


def gpu_memory_meter(backend, probe: str) -> dict[str, Any] | None:
    """Byte counters of GPU memory for one contender: in use now, and the high-water mark.

    PyTorch has its own caching allocator (peak = ``max_memory_allocated``); CuPy's memory pool
    keeps freed blocks, so the bytes it holds (``total_bytes``) are its high-water mark.
    """
    if not backend.is_gpu:
        return None
    if probe == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return {"in_use": torch.cuda.memory_allocated, "peak": torch.cuda.max_memory_allocated}
    import cupy

    pool = cupy.get_default_memory_pool()
    return {"in_use": pool.used_bytes, "peak": pool.total_bytes}


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux >= 4.0).

    ``ru_maxrss`` cannot be used: it is never reset and survives exec, so a child started by a
    large parent reports the parent's peak.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_memory(args: argparse.Namespace, name: str) -> dict[str, Any] | None:
    if not Path("/proc/self/clear_refs").exists():
        return None
    command = [
        sys.executable,
        __file__,
        "--probe",
        name,
        "--probe-batch",
        str(args.memory_batch),
        "--device",
        args.device,
        "--samples",
        str(args.samples),
        "--features",
        str(args.features),
        "--classes",
        str(args.classes),
        "--hidden",
        ",".join(map(str, args.hidden)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        print(
            f"bench: memory probe for {name} failed: {done.stderr.strip()[-300:]}", file=sys.stderr
        )
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


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
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
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
        "batches": {},
    }
    for batch_size in args.batch_sizes:
        contenders = {n: CONTENDERS[n](backend, x, y, weights, args.lr, batch_size) for n in names}
        for c in contenders.values():  # warm-up: caches, BLAS threads, CUDA kernels
            c.run_epoch(max_batches=args.warmup_batches)
        times: dict[str, list[float]] = {n: [] for n in names}
        for rep in range(args.repeats):
            # interleaved, and the order rotates every repetition: what ran just before a
            # contender (torch's spinning worker threads, a cache another one just filled)
            # then falls on every contender alike
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for n in order:
                times[n].append(timed_epoch(contenders[n], backend))
        median = {n: statistics.median(t) for n, t in times.items()}
        row: dict[str, Any] = {}
        for n in names:
            row[n] = {
                "seconds": median[n],
                "samples_per_s": args.samples / median[n],
                "gflops": flops_per_epoch / median[n] / 1e9,
                "all_seconds": times[n],
            }
        row["ratio_nnx_vs_reference"] = median["nnx"] / median["reference"]
        row["ratio_readme_vs_reference"] = median["readme"] / median["reference"]
        row["ratio_trainer_vs_nnx"] = median["trainer"] / median["nnx"]
        if "torch" in median:
            row["ratio_nnx_vs_torch"] = median["nnx"] / median["torch"]
        row["nnx_fraction_of_matmul_ceiling"] = (
            row["nnx"]["gflops"] / results["matmul_ceiling_gflops"]
        )
        results["batches"][str(batch_size)] = row
        print(f"bench: batch {batch_size} done", file=sys.stderr)
    if not args.no_memory:
        results["memory_batch"] = args.memory_batch
        results["memory"] = {n: measure_memory(args, n) for n in names}
    return results


def machine_description(backend) -> dict[str, Any]:
    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    if backend.name == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(backend.device.id)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["cupy"] = cupy.__version__
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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
    header = f"{'batch':>6} {'contender':<16} {'s/epoch':>9} {'samples/s':>11} {'GFLOP/s':>8}"
    print(header)
    for batch, row in results["batches"].items():
        for name in ("nnx", "readme", "trainer", "reference", "torch"):
            if name in row:
                r = row[name]
                label = CONTENDERS[name].name
                print(
                    f"{batch:>6} {label:<16} {r['seconds']:>9.3f} {r['samples_per_s']:>11,.0f} {r['gflops']:>8.1f}"
                )
        ratios = [
            f"nnx/reference {row['ratio_nnx_vs_reference']:.3f}",
            f"README loop/reference {row['ratio_readme_vs_reference']:.3f}",
            f"Trainer.fit/nnx {row['ratio_trainer_vs_nnx']:.3f}",
        ]
        if "ratio_nnx_vs_torch" in row:
            ratios.append(f"nnx/torch {row['ratio_nnx_vs_torch']:.3f}")
        ratios.append(
            f"nnx at {100 * row['nnx_fraction_of_matmul_ceiling']:.0f}% of the matmul ceiling"
        )
        print(f"{'':>6} " + ", ".join(ratios))
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="backend spec (default: cpu)")
    p.add_argument("--samples", type=int, default=60_000)
    p.add_argument("--features", type=int, default=784)
    p.add_argument("--hidden", default="512,256", type=lambda s: [int(v) for v in s.split(",")])
    p.add_argument("--classes", type=int, default=10)
    p.add_argument(
        "--batch-sizes", default="32,128,1024", type=lambda s: [int(v) for v in s.split(",")]
    )
    p.add_argument(
        "--repeats", type=int, default=8, help="timed epochs per contender (median; default 8)"
    )
    p.add_argument("--warmup-batches", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--memory-batch", type=int, default=128)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke run: checks that nnx and the reference compute the same loss",
    )
    p.add_argument(
        "--cnn",
        action="store_true",
        help="the convolutional workloads (LeNet-like, small ResNet) against torch; see bench_cnn.py",
    )
    p.add_argument("--cnn-batch", type=int, default=128, help="--cnn: batch size (default 128)")
    p.add_argument("--cnn-steps", type=int, default=20, help="--cnn: steps per measurement")
    p.add_argument(
        "--cnn-workload",
        choices=("lenet", "resnet"),
        action="append",
        help="--cnn: run only this workload (repeatable; default both)",
    )
    p.add_argument(
        "--pause",
        type=float,
        default=1.0,
        help="--cnn, --sequence: seconds of pause before each contender (default 1)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="--cnn, --sequence: limit torch and NumPy's BLAS to this many threads (threadpoolctl)",
    )
    p.add_argument("--cnn-probe", help=argparse.SUPPRESS)
    p.add_argument(
        "--jax",
        action="store_true",
        help="compare nnx on NumPy, on JAX eager and compiled by nnx.compile (needs JAX)",
    )
    p.add_argument(
        "--sequence",
        action="store_true",
        help="time a transformer encoder block and an LSTM (forward + backward + SGD step) "
        "against torch eager CPU instead of the MLP",
    )
    p.add_argument(
        "--seq-memory-steps",
        type=int,
        default=20,
        help="--sequence: nnx steps after the timing over which RSS growth is measured",
    )
    p.add_argument("--probe", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    p.add_argument("--probe-batch", type=int, default=128, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick and not args.cnn:
        args.samples, args.features, args.hidden = 512, 32, [16, 8]
        args.batch_sizes, args.repeats, args.warmup_batches = [32, 128], 1, 2
        args.memory_batch = 32
    return args


# ---------------------------------------------------------------------------- sequence models


def _rss_mb() -> float:
    return _status_kb("VmRSS") / 1024.0


def _sequence_workloads(quick: bool) -> dict[str, dict[str, int]]:
    if quick:
        return {
            "transformer": {"d_model": 16, "heads": 4, "seq": 8, "batch": 4, "ff": 32},
            "lstm": {"input": 16, "hidden": 16, "seq": 8, "batch": 4},
        }
    return {
        "transformer": {"d_model": 256, "heads": 4, "seq": 128, "batch": 32, "ff": 1024},
        "lstm": {"input": 256, "hidden": 256, "seq": 64, "batch": 64},
    }


def _blas_threads() -> int | None:
    """NumPy's BLAS thread count (threadpoolctl), or None when it cannot be read."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


def _sequence_case(
    torch: Any, name: str, cfg: dict[str, int], repeats: int, pause: float, memory_steps: int
) -> dict[str, Any]:
    """One workload: nnx and torch steps interleaved (order alternating, a pause before each
    so that BLAS or OpenMP threads still spinning from the other contender are asleep), medians,
    ratio, and the nnx process's RSS over ``memory_steps`` further nnx steps."""
    rng = np.random.default_rng(0)
    if name == "transformer":
        shape = (cfg["batch"], cfg["seq"], cfg["d_model"])
        mine = nnx.TransformerEncoderLayer(
            cfg["d_model"], cfg["heads"], cfg["ff"], dropout=0.0, rng=0
        )
        ref = torch.nn.TransformerEncoderLayer(
            cfg["d_model"], cfg["heads"], cfg["ff"], dropout=0.0, batch_first=True
        )
    else:
        shape = (cfg["batch"], cfg["seq"], cfg["input"])
        mine = nnx.LSTM(cfg["input"], cfg["hidden"], rng=0)
        ref = torch.nn.LSTM(cfg["input"], cfg["hidden"], batch_first=True)
    x = rng.standard_normal(shape, dtype=np.float32)
    out_shape = shape if name == "transformer" else (*shape[:2], cfg["hidden"])
    g = rng.standard_normal(out_shape, dtype=np.float32)
    opt = SGD(mine.parameters(), lr=1e-4)
    topt = torch.optim.SGD(ref.parameters(), lr=1e-4)
    tx, tg = torch.tensor(x), torch.tensor(g)  # float32 like x and g, and like both models
    assert all(p.dtype == torch.float32 for p in ref.parameters())
    assert all(p.value.dtype == np.float32 for p in mine.parameters())

    def nnx_step() -> None:
        opt.zero_grad()
        mine(x)
        mine.backward(g)
        opt.step()

    def torch_step() -> None:
        topt.zero_grad()
        y = ref(tx)
        y = y if name == "transformer" else y[0]
        y.backward(tg)
        topt.step()

    nnx_step(), torch_step()  # warm-up
    times: dict[str, list[float]] = {"nnx": [], "torch": []}
    for r in range(repeats):
        order = [("nnx", nnx_step), ("torch", torch_step)]
        for label, fn in order if r % 2 == 0 else order[::-1]:
            time.sleep(pause)
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    # memory: RSS after every nnx step; growth is last minus the first (after warm-up)
    rss = []
    for _ in range(memory_steps):
        nnx_step()
        rss.append(_rss_mb())
    t_nnx, t_torch = (statistics.median(times[k]) for k in ("nnx", "torch"))
    return {
        "config": cfg,
        "nnx_ms": 1e3 * t_nnx,
        "torch_ms": 1e3 * t_torch,
        "nnx_over_torch": t_nnx / t_torch,
        "all_ms": {k: [1e3 * t for t in v] for k, v in times.items()},
        "rss_mb": rss,
        "rss_growth_mb": rss[-1] - rss[0] if rss else 0.0,
        "memory_steps": memory_steps,
        "repeats": repeats,
    }


def run_sequence(
    repeats: int,
    quick: bool = False,
    threads: int | None = None,
    pause: float = 1.0,
    memory_steps: int = 20,
) -> dict[str, Any]:
    """Forward + backward + SGD step of a transformer encoder block and an LSTM, nnx (NumPy)
    and torch eager CPU interleaved (order alternating), both float32 and on the same number
    of threads (``threads``, or each library's default), median step time and ratio, and the
    resident memory of the nnx process over ``memory_steps`` more steps."""
    import torch

    if threads:
        from bench_cnn import limit_threads  # scripts/ is on sys.path when bench.py runs

        limit_threads(threads)
    results: dict[str, Any] = {
        name: _sequence_case(torch, name, cfg, repeats, pause, memory_steps)
        for name, cfg in _sequence_workloads(quick).items()
    }
    results["load_average"] = os.getloadavg()
    results["torch_threads"] = torch.get_num_threads()
    results["numpy_blas_threads"] = _blas_threads()
    results["pause_s"] = pause
    return results


def main(argv: list[str] | None = None) -> int:
    if "--distributed" in (sys.argv[1:] if argv is None else argv):  # scripts/bench_distributed.py
        import importlib.util

        path = Path(__file__).resolve().parent / "bench_distributed.py"
        spec = importlib.util.spec_from_file_location("bench_distributed", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main(argv)
    if "--augment" in (sys.argv[1:] if argv is None else argv):  # scripts/bench_augment.py
        from bench_augment import main_augment  # scripts/ is on sys.path when bench.py runs

        return main_augment(argv)
    args = parse_args(argv)
    if args.cnn or args.cnn_probe:
        from bench_cnn import main_cnn  # scripts/ is on sys.path when bench.py runs

        return main_cnn(args)
    if args.sequence:
        results = run_sequence(
            args.repeats if not args.quick else 2,
            quick=args.quick,
            threads=args.threads,
            pause=args.pause if not args.quick else 0.0,
            memory_steps=args.seq_memory_steps if not args.quick else 3,
        )
        for name in ("transformer", "lstm"):
            r = results[name]
            print(
                f"{name:<12} {r['config']}  nnx {r['nnx_ms']:.1f} ms  torch {r['torch_ms']:.1f} ms"
                f"  nnx/torch {r['nnx_over_torch']:.2f}  RSS growth {r['rss_growth_mb']:.1f} MB"
                f" over {r['memory_steps']} more steps"
            )
        print(
            f"load average {tuple(round(v, 2) for v in results['load_average'])}, torch threads "
            f"{results['torch_threads']}, NumPy BLAS threads {results['numpy_blas_threads']}, "
            f"pause {results['pause_s']} s"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return 0
    if args.probe:
        print(json.dumps(memory_probe(args)))
        return 0
    if args.jax:
        ok, why = nnx.backend.backend_available("jax")
        if not ok:
            print(f"bench.py: error: {why}", file=sys.stderr)
            return 2
        results = run_jax(args)
        print_jax_table(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        worst = max(r["loss_difference_compiled_vs_numpy"] for r in results["batches"].values())
        if worst > 1e-4:
            print(
                f"bench.py: error: compiled and NumPy losses differ by {worst:.2e}", file=sys.stderr
            )
            return 1
        return 0
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
    results = run(args, backend)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    difference = results["loss_difference_nnx_vs_reference"]
    if difference > 1e-5:
        print(
            f"bench.py: error: nnx and the reference disagree: loss difference {difference:.2e}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
