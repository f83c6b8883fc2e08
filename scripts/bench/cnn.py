"""Convolutional workloads (``scripts/bench.py --cnn``): nnx against PyTorch eager.

    python scripts/bench.py --cnn                 # both workloads, batch 128, on the CPU
    python scripts/bench.py --cnn --device gpu --cnn-batch 128,1024   # CuPy vs torch CUDA
    python scripts/bench.py --cnn --quick         # tiny smoke run: same initial loss as torch
    python scripts/bench.py --cnn --cnn-workload resnet --threads 1   # one workload
    python scripts/bench.py --cnn --cnn-workload conv3d --threads 1   # the 3-d net (not default)
    python scripts/bench.py --cnn --cnn-native --cnn-workload lenet --threads 1
        # also nnx on torch tensors and nnx compiled on JAX (the native kernels of nnx._native)

Workloads (SGD with momentum 0.9, batch 128, synthetic float32 images):

- ``lenet``: a LeNet-5-like net on 1x28x28 inputs: Conv(6, 5x5, pad 2)-ReLU-MaxPool(2),
  Conv(16, 5x5)-ReLU-MaxPool(2), Linear 400-120-84-10 with ReLU.
- ``resnet``: a small residual net on 3x32x32 inputs: a 3x3 stem (16 channels, BatchNorm, ReLU),
  two stages of two residual blocks (3x3 conv-BN-ReLU-3x3 conv-BN plus the shortcut, then ReLU;
  16 then 32 channels, the second stage starting with stride 2 and a 1x1 conv-BN shortcut),
  global average pooling and a Linear to 10 classes.
- ``conv3d`` (only on request): a small 3-d net on 1x8x16x16 volumes: Conv3d(8, 3x3x3, pad 1)-
  ReLU, Conv3d(16, 3x3x3, stride 2, pad 1)-ReLU, Linear 4096-10.

Both contenders start from the same weights and see the same batches. Each measurement is
``--steps`` training steps; the contenders alternate (the order flips every repetition) with a
pause of ``--pause`` seconds before each, so BLAS threads still spinning from the previous one do
not slow the next; the median of ``--repeats`` is reported with the ratio nnx/torch. Peak memory
(RSS above the baseline with the data loaded) and its growth over three rounds are measured per
contender in a fresh subprocess.

``--device`` puts nnx's model and data on that backend (``gpu``: CuPy; ``torch``, ``torch:cuda``,
``jax``, ``jax:gpu``, ...); torch eager runs on CUDA when the backend is a GPU one, on the CPU
otherwise. On a GPU every measurement is synchronized (measure.synchronize), TF32 is off on
both sides (measure.full_float32), there is no pause (no BLAS threads to wait for; the contenders
still alternate), and the memory probes also read the GPU allocator's high-water mark.
``--cnn-batch 128,1024`` runs each batch size in turn.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

import nnx
from nnx.optim import SGD

from .measure import (
    alternated,
    full_float32,
    gpu_memory_meter,
    gpu_name,
    limit_threads,
    open_backend,
    reset_peak_rss,
    rotated,
    run_probe,
    status_kb,
    synchronize,
    torch_device,
    write_json,
)

MOMENTUM = 0.9
SHAPES = {"lenet": (1, 28, 28), "resnet": (3, 32, 32), "conv3d": (1, 8, 16, 16)}
# largest first-loss difference nnx vs torch, relative to max(1, |torch's loss|): float32 on the
# CPU; on a GPU (TF32 off) the convolution algorithms (cuDNN's, nnx's products) sum in other orders
FIRST_LOSS_RTOL = {"cpu": 1e-4, "gpu": 1e-3}


# ---------------------------------------------------------------------------- nnx models


def res_block(cin: int, cout: int, stride: int, rng: np.random.Generator) -> nnx.Module:
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` from nnx.Residual; the shortcut
    is the identity, or a strided 1x1 conv with BatchNorm where the shape changes."""
    block = nnx.Sequential(
        nnx.Conv2d(cin, cout, 3, stride, 1, bias=False, rng=rng),
        nnx.BatchNorm2d(cout),
        nnx.ReLU(),
        nnx.Conv2d(cout, cout, 3, 1, 1, bias=False, rng=rng),
        nnx.BatchNorm2d(cout),
    )
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = nnx.Sequential(
            nnx.Conv2d(cin, cout, 1, stride, bias=False, rng=rng), nnx.BatchNorm2d(cout)
        )
    return nnx.Sequential(nnx.Residual(block, shortcut), nnx.ReLU())


def nnx_model(name: str, seed: int = 0) -> nnx.Module:
    rng = np.random.default_rng(seed)
    if name == "conv3d":
        return nnx.Sequential(
            nnx.Conv3d(1, 8, 3, padding=1, rng=rng),
            nnx.ReLU(),
            nnx.Conv3d(8, 16, 3, stride=2, padding=1, rng=rng),
            nnx.ReLU(),
            nnx.Flatten(),
            nnx.Linear(4096, 10, rng=rng),
        )
    if name == "lenet":
        return nnx.Sequential(
            nnx.Conv2d(1, 6, 5, padding=2, rng=rng),
            nnx.ReLU(),
            nnx.MaxPool2d(2),
            nnx.Conv2d(6, 16, 5, rng=rng),
            nnx.ReLU(),
            nnx.MaxPool2d(2),
            nnx.Flatten(),
            nnx.Linear(400, 120, rng=rng),
            nnx.ReLU(),
            nnx.Linear(120, 84, rng=rng),
            nnx.ReLU(),
            nnx.Linear(84, 10, rng=rng),
        )
    return nnx.Sequential(
        nnx.Conv2d(3, 16, 3, padding=1, bias=False, rng=rng),
        nnx.BatchNorm2d(16),
        nnx.ReLU(),
        res_block(16, 16, 1, rng),
        res_block(16, 16, 1, rng),
        res_block(16, 32, 2, rng),
        res_block(32, 32, 1, rng),
        nnx.AdaptiveAvgPool2d(1),
        nnx.Flatten(),
        nnx.Linear(32, 10, rng=rng),
    )


# ---------------------------------------------------------------------------- torch twins


def torch_model(name: str, reference: nnx.Module):
    """The same network in PyTorch, with the nnx model's initial weights (Linear transposed)."""
    import torch
    from torch import nn

    class TorchBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(h + (x if self.shortcut is None else self.shortcut(x)))

    if name == "conv3d":
        model = nn.Sequential(
            nn.Conv3d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4096, 10),
        )
    elif name == "lenet":
        model = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )
    else:
        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            TorchBlock(16, 16, 1),
            TorchBlock(16, 16, 1),
            TorchBlock(16, 32, 2),
            TorchBlock(32, 32, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        )
    ours = list(reference.parameters())
    theirs = list(model.parameters())
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    with torch.no_grad():
        for p, t in zip(ours, theirs, strict=True):
            value = np.asarray(nnx.to_numpy(p.value))
            if value.shape != tuple(t.shape):
                value = value.T  # Linear: nnx (in, out), torch (out, in)
            t.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return model


# ---------------------------------------------------------------------------- contenders


def make_data(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *SHAPES[name]), dtype=np.float32)
    return x, rng.integers(0, 10, size=n).astype(np.int64)


class NnxSteps:
    """nnx's training step on ``backend`` (None: NumPy, the arrays as given)."""

    def __init__(
        self, name: str, x: np.ndarray, y: np.ndarray, lr: float, batch: int, backend=None
    ):
        self.model = nnx_model(name)
        # on a GPU the label check would read two numbers back every step (a device sync that
        # torch's loss does not make); the labels are valid by construction (make_data)
        self.loss = nnx.CrossEntropyLoss(check_labels=not (backend and backend.is_gpu))
        self.backend = backend
        if backend is not None and backend.name != "numpy":
            self.model.to(backend)
            # JAX keeps 32-bit integers unless x64 is on: int32 labels, as nnx.compile's
            y = y.astype(np.int32) if backend.name == "jax" else y
            x, y = backend.asarray(x), backend.asarray(y)
        self.opt = SGD(self.model.parameters(), lr=lr, momentum=MOMENTUM)
        self.x, self.y, self.batch = x, y, batch

    def run(self, steps: int) -> float:
        model, loss, opt, b = self.model, self.loss, self.opt, self.batch
        n = len(self.x)
        value = 0.0
        for i in range(steps):
            lo = (i * b) % (n - b + 1)
            opt.zero_grad()
            value = loss(model(self.x[lo : lo + b]), self.y[lo : lo + b])
            model.backward(loss.backward(), need_input_grad=False)
            opt.step()
        if self.backend is not None and self.backend.is_gpu:  # the last update done, too
            synchronize(self.backend, [p.value for p in model.parameters()])
        return float(value)


class NnxTorchSteps(NnxSteps):
    """nnx on PyTorch tensors (CPU): its convolutions and poolings run PyTorch's kernels and
    their gradient kernels inside nnx's explicit backward (nnx._native)."""

    def __init__(self, name: str, x: np.ndarray, y: np.ndarray, lr: float, batch: int):
        super().__init__(name, x, y, lr, batch)
        be = nnx.get_backend("torch")
        self.model.to(be)
        self.opt = SGD(self.model.parameters(), lr=lr, momentum=MOMENTUM)
        self.x, self.y = be.asarray(x), be.asarray(y)


class NnxJaxCompiledSteps(NnxSteps):
    """nnx on JAX (CPU), each step compiled by ``nnx.compile``: the convolutions are
    ``lax.conv_general_dilated`` calls inside the traced explicit backward (nnx._native)."""

    def __init__(self, name: str, x: np.ndarray, y: np.ndarray, lr: float, batch: int):
        super().__init__(name, x, y, lr, batch)
        be = nnx.get_backend("jax")
        self.model.to(be)
        self.opt = SGD(self.model.parameters(), lr=lr, momentum=MOMENTUM)
        self.step = nnx.compile(self.model, self.loss, self.opt)
        n = len(x)
        # every batch the loop takes, made once: slicing a JAX array is a dispatch of its own
        starts = sorted({(i * batch) % (n - batch + 1) for i in range(n)})
        self.batches = {
            lo: (be.asarray(x[lo : lo + batch]), be.asarray(y[lo : lo + batch].astype(np.int32)))
            for lo in starts
        }

    def run(self, steps: int) -> float:
        n, b = len(self.x), self.batch
        value = None
        for i in range(steps):
            value = self.step(*self.batches[(i * b) % (n - b + 1)])[0]
        return float(nnx.to_numpy(value))  # waits for JAX's asynchronous dispatch


class TorchSteps:
    """PyTorch eager: on CUDA when ``backend`` is a GPU one, on the CPU otherwise."""

    def __init__(
        self, name: str, x: np.ndarray, y: np.ndarray, lr: float, batch: int, backend=None
    ):
        import torch

        self.torch = torch
        self.model = torch_model(name, nnx_model(name))
        self.x, self.y, self.batch = torch.from_numpy(x), torch.from_numpy(y), batch
        if backend is not None and backend.is_gpu:
            device = torch_device(backend)
            self.model.to(device)
            self.x, self.y = self.x.to(device), self.y.to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=MOMENTUM)

    def run(self, steps: int) -> float:
        torch, model, opt, b = self.torch, self.model, self.opt, self.batch
        n = len(self.x)
        value = None
        for i in range(steps):
            lo = (i * b) % (n - b + 1)
            opt.zero_grad(set_to_none=True)
            value = torch.nn.functional.cross_entropy(
                model(self.x[lo : lo + b]), self.y[lo : lo + b]
            )
            value.backward()
            opt.step()
        if self.x.is_cuda:
            torch.cuda.synchronize()
        return float(value.detach())


CONTENDERS = {
    "nnx": NnxSteps,
    "torch": TorchSteps,
    "nnx-torch": NnxTorchSteps,  # only with --cnn-native
    "nnx-jax-compiled": NnxJaxCompiledSteps,  # only with --cnn-native
}
NATIVE = ("nnx-torch", "nnx-jax-compiled")


# ---------------------------------------------------------------------------- measurement


def memory_probe(
    workload: str, contender: str, batch: int, steps: int, lr: float, backend=None
) -> dict:
    """In a fresh process: peak RSS above the baseline (data loaded, torch imported) over three
    rounds of ``steps`` steps, and the RSS growth from the first round to the third; on a GPU
    backend also the GPU allocator's high-water mark and growth (``gpu_peak_mb``,
    ``gpu_growth_mb``: torch's allocator for torch, CuPy's pool for nnx on CuPy)."""
    x, y = make_data(workload, batch * 4)
    import torch  # noqa: F401  (the library is not the contender's working memory)

    gpu = gpu_memory_meter(backend, torch_allocator=contender == "torch") if backend else None
    reset_peak_rss()
    baseline = status_kb("VmRSS")
    kwargs = {"backend": backend} if contender in ("nnx", "torch") else {}
    runner = CONTENDERS[contender](workload, x, y, lr, batch, **kwargs)
    after, after_gpu = [], []
    for _ in range(3):
        runner.run(steps)
        after.append(status_kb("VmRSS"))
        if gpu:
            after_gpu.append(gpu["in_use"]())
    result = {
        "peak_rss_mb": (status_kb("VmHWM") - baseline) / 1024,
        "growth_mb": (after[-1] - after[0]) / 1024,
    }
    if gpu:  # the device copy of the data counts here: both contenders hold one
        result["gpu_peak_mb"] = gpu["peak"]() / 2**20
        result["gpu_growth_mb"] = (after_gpu[-1] - after_gpu[0]) / 2**20
    return result


def measure_memory(workload: str, contender: str, args, batch: int) -> dict | None:
    """:func:`memory_probe` of one contender on one workload, in a fresh process."""
    flags = ["--cnn-probe", f"{workload}:{contender}", "--cnn-batch", str(batch)]
    flags += ["--cnn-steps", str(args.cnn_steps)]
    if args.device != "cpu":
        flags += ["--device", args.device]
    if args.threads:
        flags += ["--threads", str(args.threads)]
    return run_probe(flags, f"{workload}:{contender}")


def run_workload(name: str, args, batch: int, backend=None) -> dict[str, Any]:
    """One workload at one batch size: nnx on ``backend`` (None: NumPy) against torch eager."""
    x, y = make_data(name, batch * 4)
    names = [k for k in CONTENDERS if k not in NATIVE or args.cnn_native]
    on = {"backend": backend} if backend is not None else {}
    runners = {
        k: CONTENDERS[k](name, x, y, args.lr, batch, **(on if k not in NATIVE else {}))
        for k in names
    }
    first = {k: r.run(1) for k, r in runners.items()}  # warm-up, and the same first loss
    for r in runners.values():  # a compiled step traces again once the momentum buffers exist
        r.run(2)
    times: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    order = list(runners)
    for rep in range(args.repeats):
        for k in alternated(order, rep) if len(order) == 2 else rotated(order, rep):
            time.sleep(args.pause)
            start, start_cpu = time.perf_counter(), time.process_time()
            runners[k].run(args.cnn_steps)  # synchronized on a GPU before it returns
            times[k].append((time.perf_counter() - start) / args.cnn_steps)
            cpu[k].append((time.process_time() - start_cpu) / args.cnn_steps)
    result: dict[str, Any] = {"first_loss": first}
    for k, ts in times.items():
        result[k] = {
            "step_ms": statistics.median(ts) * 1e3,
            "all_ms": [t * 1e3 for t in ts],
            # CPU time of this process: with --threads 1 it is the work done, and it varies far
            # less than the wall time on a machine shared with other busy processes
            "cpu_ms": statistics.median(cpu[k]) * 1e3,
        }
    result["ratio_nnx_vs_torch"] = result["nnx"]["step_ms"] / result["torch"]["step_ms"]
    result["cpu_ratio_nnx_vs_torch"] = result["nnx"]["cpu_ms"] / result["torch"]["cpu_ms"]
    for k in NATIVE:
        if k in result:
            result[f"cpu_ratio_{k}_vs_torch"] = result[k]["cpu_ms"] / result["torch"]["cpu_ms"]
    if not args.no_memory:
        for k in runners:
            result[k]["memory"] = measure_memory(name, k, args, batch)
    return result


def run_batch(args, batch: int, backend) -> tuple[dict[str, Any], int]:
    """Every workload at one batch size; the results (the JSON of a one-batch run) and the
    exit status (1 when a contender's first loss differs from torch's)."""
    import torch

    results: dict[str, Any] = {
        "machine": {
            "torch_threads": torch.get_num_threads(),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "load_average": os.getloadavg(),
        },
        "batch": batch,
        "steps": args.cnn_steps,
        "workloads": {},
    }
    on_cpu = backend.name == "numpy"
    if not on_cpu:  # the CPU run's JSON is as it always was
        results["device"] = args.device
        results["backend"] = f"{backend.name} ({backend.device})"
        results["torch_device"] = torch_device(backend)
        if backend.is_gpu:
            results["machine"]["gpu"] = gpu_name(backend)
            results["machine"]["float32"] = full_float32(backend)  # what TF32 switch was set
    rtol = FIRST_LOSS_RTOL["gpu" if backend.is_gpu else "cpu"]
    status = 0
    for name in args.cnn_workload or ("lenet", "resnet"):
        r = results["workloads"][name] = run_workload(name, args, batch, backend)
        b = r["first_loss"]["torch"]
        for k in (k for k in r["first_loss"] if k != "torch"):
            a = r["first_loss"][k]
            if abs(a - b) > rtol * max(1.0, abs(b)):
                print(
                    f"bench.py: error: {name}: first loss {k} {a:.6f} vs torch {b:.6f}",
                    file=sys.stderr,
                )
                status = 1
        print(  # progress, so that a run stopped at a time limit still shows the rows done
            f"bench: {name} batch {batch} done: nnx/torch {r['ratio_nnx_vs_torch']:.2f}",
            file=sys.stderr,
        )
    return results, status


def print_table(results: dict[str, Any], args) -> None:
    """The table of one batch size."""
    where = ""
    if "backend" in results:
        gpu = results["machine"].get("gpu")
        where = f" on {results['backend']}{f', {gpu}' if gpu else ''}, torch on "
        where += results["torch_device"]
    print(
        f"CNN workloads, batch {results['batch']}, SGD momentum {MOMENTUM}, "
        f"median of {args.repeats} x {args.cnn_steps} steps; load {os.getloadavg()[0]:.1f}" + where
    )
    print(
        f"{'workload':10s} {'nnx ms/step':>12s} {'torch ms/step':>14s} {'nnx/torch':>10s} "
        f"{'CPU ms nnx/torch':>17s} {'CPU ratio':>10s} "
        f"{'peak MB nnx/torch':>20s} {'growth MB nnx/torch':>20s}"
    )
    for name, r in results["workloads"].items():
        mem = [r[k].get("memory") or {} for k in ("nnx", "torch")]
        peak = "/".join(f"{m.get('peak_rss_mb', float('nan')):.0f}" for m in mem)
        growth = "/".join(f"{m.get('growth_mb', float('nan')):.1f}" for m in mem)
        print(
            f"{name:10s} {r['nnx']['step_ms']:12.1f} {r['torch']['step_ms']:14.1f} "
            f"{r['ratio_nnx_vs_torch']:10.2f} "
            f"{r['nnx']['cpu_ms']:>8.1f}/{r['torch']['cpu_ms']:<8.1f} "
            f"{r['cpu_ratio_nnx_vs_torch']:10.2f} {peak:>20s} {growth:>20s}"
        )
        if any("gpu_peak_mb" in m for m in mem):
            gpu_peak = "/".join(f"{m.get('gpu_peak_mb', float('nan')):.0f}" for m in mem)
            gpu_growth = "/".join(f"{m.get('gpu_growth_mb', float('nan')):.1f}" for m in mem)
            print(f"{'':10s} GPU memory nnx/torch: peak {gpu_peak} MB, growth {gpu_growth} MB")
        for k in NATIVE:
            if k in r:
                print(
                    f"{'':10s} {k}: {r[k]['step_ms']:.1f} ms/step, CPU {r[k]['cpu_ms']:.1f} ms, "
                    f"CPU ratio vs torch {r[f'cpu_ratio_{k}_vs_torch']:.2f}, "
                    f"first loss {r['first_loss'][k]:.6f}"
                )


def main_cnn(args) -> int:
    """``--cnn``: every workload at every ``--cnn-batch``; exit status 1 when a first loss
    differs from torch's, 2 for an unusable ``--device`` or flags that do not go together."""
    limit_threads(args.threads)
    backend = open_backend(args.device)
    if backend is None:
        return 2
    full_float32(backend)  # TF32 off on a GPU, before anything runs there
    batches = args.cnn_batch or [8 if args.quick else 128]
    if args.cnn_probe:
        workload, contender = args.cnn_probe.split(":")
        probe = memory_probe(workload, contender, batches[0], args.cnn_steps, args.lr, backend)
        print(json.dumps(probe))
        return 0
    if args.cnn_native and backend.name != "numpy":
        print(
            f"bench.py: error: --cnn-native adds nnx on torch CPU tensors and compiled on JAX "
            f"beside nnx on NumPy; with --device {args.device} leave it out",
            file=sys.stderr,
        )
        return 2
    if args.quick:
        args.cnn_steps, args.repeats, args.pause = 1, 1, 0.0
    if args.pause is None:  # BLAS threads spinning on are a CPU matter
        args.pause = 0.0 if backend.is_gpu else 1.0
    runs, status = {}, 0
    for batch in batches:
        runs[batch], failed = run_batch(args, batch, backend)
        status = max(status, failed)
    for results in runs.values():
        print_table(results, args)
    if len(runs) == 1:
        write_json(args.json, runs[batches[0]])
    else:  # each batch size as a one-batch run writes it
        write_json(args.json, {"batches": {str(b): r for b, r in runs.items()}})
    return status
