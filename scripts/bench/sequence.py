"""Sequence models: a transformer encoder block, an LSTM, an RNN, a GRU and a transformer decoder
layer, nnx (NumPy) against torch eager CPU.

Each step is forward + backward (with a fixed upstream gradient) + an SGD step, both libraries
in float32 and, with ``--threads``, on the same number of threads. The two run interleaved
(order alternating, a pause before each), the median step time and the ratio are reported, and
the nnx process's resident memory over a few more steps shows whether it grows. Both start from
the same weights (nnx's, loaded into torch's twin), and their first outputs must agree.

``--device`` puts nnx's model and data on that backend (``gpu``: CuPy; ``torch:cuda``,
``jax:gpu``, ``torch``, ...); torch eager runs on CUDA when it is a GPU backend, on the CPU
otherwise. On a GPU each step is synchronized before the clock is read, TF32 is off on both
sides, there is no pause, and the memory steps also read the GPU allocator's bytes in use.
``--seq-batch 128,1024`` runs every workload at each batch size in turn.
"""

from __future__ import annotations

import argparse
import copy
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
    blas_threads,
    full_float32,
    gpu_memory_meter,
    gpu_name,
    limit_threads,
    open_backend,
    rss_mb,
    synchronize,
    torch_device,
    write_json,
)

# largest difference of the first outputs nnx vs torch, relative to max(1, max |torch's|):
# float32 on the CPU; on a GPU (TF32 off) the products and reductions sum in other orders
FIRST_OUTPUT_RTOL = {"cpu": 1e-4, "gpu": 1e-3}


def _on_device(torch: Any, backend: Any, mine: Any, ref: Any) -> str:
    """Give torch's twin nnx's weights (nnx.torch_state_dict), then put nnx's model on
    ``backend`` and the twin on CUDA when that is a GPU backend; the twin's device."""
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in nnx.torch_state_dict(mine).items()})
    device = torch_device(backend)
    ref.to(device)
    if backend.name != "numpy":
        mine.to(backend)
    return device


def _first_outputs(y_nnx: Any, y_torch: Any, g: np.ndarray) -> dict[str, Any]:
    """The first forward of both contenders compared: the largest difference, the scale it is
    relative to, and the surrogate loss ``sum(y * g)`` of each (``g`` is its gradient)."""
    a = np.asarray(nnx.to_numpy(y_nnx[0] if isinstance(y_nnx, tuple) else y_nnx), np.float64)
    y_torch = y_torch[0] if isinstance(y_torch, tuple) else y_torch
    b = y_torch.detach().cpu().numpy().astype(np.float64)
    return {
        "first_output_max_diff": float(np.max(np.abs(a - b))),
        "first_output_scale": max(1.0, float(np.max(np.abs(b)))),
        "first_loss": {"nnx": float(np.sum(a * g)), "torch": float(np.sum(b * g))},
    }


def _synchronized(step: Any, backend: Any, arrays: Any = ()) -> Any:
    """``step`` that returns only once the GPU has done its work (``step`` itself on a CPU)."""
    if not backend.is_gpu:
        return step

    def run() -> None:
        step()
        synchronize(backend, [p.value for p in arrays])

    return run


def _gpu_memory(backend: Any, in_use: list[int]) -> dict[str, Any]:
    """The GPU bytes in use after each memory step, in MB, and their growth ({} on a CPU)."""
    if not backend.is_gpu:
        return {}
    mb = [v / 2**20 for v in in_use]
    return {"gpu_mb": mb, "gpu_growth_mb": mb[-1] - mb[0] if mb else 0.0}


def _sequence_workloads(quick: bool) -> dict[str, dict[str, int]]:
    if quick:
        return {
            "transformer": {"d_model": 16, "heads": 4, "seq": 8, "batch": 4, "ff": 32},
            "lstm": {"input": 16, "hidden": 16, "seq": 8, "batch": 4},
            "rnn": {"input": 16, "hidden": 16, "seq": 8, "batch": 4},
            "gru": {"input": 16, "hidden": 16, "seq": 8, "batch": 4},
        }
    return {
        "transformer": {"d_model": 256, "heads": 4, "seq": 128, "batch": 32, "ff": 1024},
        "lstm": {"input": 256, "hidden": 256, "seq": 64, "batch": 64},
        "rnn": {"input": 256, "hidden": 256, "seq": 64, "batch": 64},
        "gru": {"input": 256, "hidden": 256, "seq": 64, "batch": 64},
    }


def _sequence_case(
    torch: Any,
    name: str,
    cfg: dict[str, int],
    repeats: int,
    pause: float,
    memory_steps: int,
    backend: Any = None,
) -> dict[str, Any]:
    """One workload: nnx and torch steps interleaved (order alternating, a pause before each
    so that BLAS or OpenMP threads still spinning from the other contender are asleep), medians,
    ratio, and the nnx process's RSS over ``memory_steps`` further nnx steps."""
    rng = np.random.default_rng(0)
    if name == "transformer":
        shape = (cfg["batch"], cfg["seq"], cfg["d_model"])
        mine = nnx.TransformerEncoderLayer(
            cfg["d_model"], cfg["heads"], cfg["ff"], dropout=0.0, batch_first=True, rng=0
        )
        ref = torch.nn.TransformerEncoderLayer(
            cfg["d_model"], cfg["heads"], cfg["ff"], dropout=0.0, batch_first=True
        )
    elif name == "rnn":  # a tanh Elman RNN, batch first like the LSTM
        shape = (cfg["batch"], cfg["seq"], cfg["input"])
        mine = nnx.RNN(cfg["input"], cfg["hidden"], batch_first=True, rng=0)
        ref = torch.nn.RNN(cfg["input"], cfg["hidden"], batch_first=True)
    elif name == "gru":
        shape = (cfg["batch"], cfg["seq"], cfg["input"])
        mine = nnx.GRU(cfg["input"], cfg["hidden"], batch_first=True, rng=0)
        ref = torch.nn.GRU(cfg["input"], cfg["hidden"], batch_first=True)
    else:
        shape = (cfg["batch"], cfg["seq"], cfg["input"])
        mine = nnx.LSTM(cfg["input"], cfg["hidden"], batch_first=True, rng=0)
        ref = torch.nn.LSTM(cfg["input"], cfg["hidden"], batch_first=True)
    backend = backend or nnx.get_backend("cpu")
    device = _on_device(torch, backend, mine, ref)
    x = rng.standard_normal(shape, dtype=np.float32)
    out_shape = shape if name == "transformer" else (*shape[:2], cfg["hidden"])
    g = rng.standard_normal(out_shape, dtype=np.float32)
    opt = SGD(mine.parameters(), lr=1e-4)
    topt = torch.optim.SGD(ref.parameters(), lr=1e-4)
    tx, tg = torch.tensor(x), torch.tensor(g)  # float32 like x and g, and like both models
    assert all(p.dtype == torch.float32 for p in ref.parameters())
    assert all(str(p.value.dtype).endswith("float32") for p in mine.parameters())
    tx, tg = tx.to(device), tg.to(device)
    first = _first_outputs(mine(backend.asarray(x)), ref(tx), g)
    if backend.name != "numpy":
        x, g = backend.asarray(x), backend.asarray(g)

    def nnx_step() -> None:
        opt.zero_grad()
        mine(x)
        # like torch's step (tx does not require grad): no gradient of the input, as
        # Sequential asks of a model's first trainable layer
        mine.backward(g, need_input_grad=False)
        opt.step()

    def torch_step() -> None:
        topt.zero_grad()
        y = ref(tx)
        y = y if name == "transformer" else y[0]
        y.backward(tg)
        topt.step()

    nnx_step = _synchronized(nnx_step, backend, list(mine.parameters()))
    torch_step = _synchronized(torch_step, backend)
    steps = {"nnx": nnx_step, "torch": torch_step}
    if name == "transformer" and backend.name == "numpy":
        # also nnx on torch tensors: torch's fused attention kernels (with --device, the nnx
        # contender itself is on that backend)
        steps["nnx-torch"] = _nnx_torch_step(mine, x, g)
    for fn in steps.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    cpu: dict[str, list[float]] = {k: [] for k in steps}  # process CPU time: robust to load
    for r in range(repeats):
        for label in alternated(list(steps), r):
            fn = steps[label]
            time.sleep(pause)
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[label].append(time.perf_counter() - start)
            cpu[label].append(time.process_time() - start_cpu)
    # memory: RSS after every nnx step; growth is last minus the first (after warm-up)
    rss, gpu = [], gpu_memory_meter(backend) if memory_steps else None
    in_use = []
    for _ in range(memory_steps):
        nnx_step()
        rss.append(rss_mb())
        in_use += [gpu["in_use"]()] if gpu else []
    t_nnx, t_torch = (statistics.median(times[k]) for k in ("nnx", "torch"))
    c_nnx, c_torch = (statistics.median(cpu[k]) for k in ("nnx", "torch"))
    extra = {}
    if "nnx-torch" in cpu:
        extra["nnx_torch_cpu_ms"] = 1e3 * statistics.median(cpu["nnx-torch"])
        extra["cpu_nnx_torch_over_torch"] = extra["nnx_torch_cpu_ms"] / (1e3 * c_torch)
    return {
        **extra,
        "config": cfg,
        "nnx_ms": 1e3 * t_nnx,
        "torch_ms": 1e3 * t_torch,
        "nnx_over_torch": t_nnx / t_torch,
        "nnx_cpu_ms": 1e3 * c_nnx,
        "torch_cpu_ms": 1e3 * c_torch,
        "cpu_nnx_over_torch": c_nnx / c_torch,
        "all_ms": {k: [1e3 * t for t in v] for k, v in times.items()},
        "rss_mb": rss,
        "rss_growth_mb": rss[-1] - rss[0] if rss else 0.0,
        "memory_steps": memory_steps,
        "repeats": repeats,
        **first,
        **_gpu_memory(backend, in_use),
    }


def _nnx_torch_step(model: Any, x: np.ndarray, g: np.ndarray) -> Any:
    """A step of a copy of ``model`` on PyTorch tensors (its attention runs PyTorch's fused
    kernels, nnx._native)."""
    be = nnx.get_backend("torch")
    mine = copy.deepcopy(model).to(be)
    opt = SGD(mine.parameters(), lr=1e-4)
    tx, tg = be.asarray(x), be.asarray(g)

    def step() -> None:
        opt.zero_grad()
        mine(tx)
        mine.backward(tg, need_input_grad=False)  # as the NumPy step: torch input needs none
        opt.step()

    return step


# ---------------------------------------------------------------- transformer decoder layer


def _decoder_workload(quick: bool) -> dict[str, int]:
    if quick:
        return {"d_model": 16, "heads": 4, "tgt": 8, "memory": 8, "batch": 4, "ff": 32}
    return {"d_model": 256, "heads": 4, "tgt": 128, "memory": 128, "batch": 32, "ff": 1024}


def _decoder_case(
    torch: Any,
    cfg: dict[str, int],
    repeats: int,
    pause: float,
    memory_steps: int,
    backend: Any = None,
) -> dict[str, Any]:
    """``TransformerDecoderLayer`` (post-norm, ReLU, causal target mask, no dropout): forward on
    ``(tgt, memory)``, backward of a fixed gradient into both inputs, SGD step; nnx (NumPy)
    against torch eager, interleaved as :func:`_sequence_case`, with the CPU time
    (``time.process_time``) of each step beside its wall time: the ratio of CPU times is the
    figure, as it varies less on a shared machine."""
    rng = np.random.default_rng(0)
    d, n = cfg["d_model"], cfg["batch"]
    mine = nnx.TransformerDecoderLayer(
        d, cfg["heads"], cfg["ff"], dropout=0.0, batch_first=True, rng=0
    )
    ref = torch.nn.TransformerDecoderLayer(
        d, cfg["heads"], cfg["ff"], dropout=0.0, batch_first=True
    )
    backend = backend or nnx.get_backend("cpu")
    device = _on_device(torch, backend, mine, ref)
    tgt = rng.standard_normal((n, cfg["tgt"], d), dtype=np.float32)
    mem = rng.standard_normal((n, cfg["memory"], d), dtype=np.float32)
    g = rng.standard_normal(tgt.shape, dtype=np.float32)
    causal = np.triu(np.ones((cfg["tgt"], cfg["tgt"]), dtype=bool), k=1)
    opt = SGD(mine.parameters(), lr=1e-4)
    topt = torch.optim.SGD(ref.parameters(), lr=1e-4)
    ttgt, tmem, tg = (torch.tensor(a, requires_grad=True, device=device) for a in (tgt, mem, g))
    tcausal = torch.tensor(causal, device=device)
    assert all(p.dtype == torch.float32 for p in ref.parameters())
    assert all(str(p.value.dtype).endswith("float32") for p in mine.parameters())
    host = (tgt, mem, g)
    tgt, mem, causal = (backend.asarray(a) for a in (tgt, mem, causal))
    first = _first_outputs(mine(tgt, mem, tgt_mask=causal), ref(ttgt, tmem, tgt_mask=tcausal), g)
    if backend.name != "numpy":
        g = backend.asarray(g)
    else:  # the NumPy arrays themselves, as always
        tgt, mem, g = host

    def nnx_step() -> None:
        opt.zero_grad()
        mine(tgt, mem, tgt_mask=causal)
        mine.backward(g)  # returns (d_tgt, d_memory)
        opt.step()

    def torch_step() -> None:
        topt.zero_grad()
        ttgt.grad = tmem.grad = None
        ref(ttgt, tmem, tgt_mask=tcausal).backward(tg.detach())
        topt.step()

    nnx_step = _synchronized(nnx_step, backend, list(mine.parameters()))
    torch_step = _synchronized(torch_step, backend)
    nnx_step(), torch_step()  # warm-up
    wall: dict[str, list[float]] = {"nnx": [], "torch": []}
    cpu: dict[str, list[float]] = {"nnx": [], "torch": []}
    for r in range(repeats):
        steps = {"nnx": nnx_step, "torch": torch_step}
        for label in alternated(list(steps), r):
            time.sleep(pause)
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[label]()
            wall[label].append(time.perf_counter() - start)
            cpu[label].append(time.process_time() - start_cpu)
    rss, gpu = [], gpu_memory_meter(backend) if memory_steps else None
    in_use = []
    for _ in range(memory_steps):
        nnx_step()
        rss.append(rss_mb())
        in_use += [gpu["in_use"]()] if gpu else []
    w_nnx, w_torch = (statistics.median(wall[k]) for k in ("nnx", "torch"))
    c_nnx, c_torch = (statistics.median(cpu[k]) for k in ("nnx", "torch"))
    return {
        "config": cfg,
        "nnx_ms": 1e3 * w_nnx,
        "torch_ms": 1e3 * w_torch,
        "nnx_cpu_ms": 1e3 * c_nnx,
        "torch_cpu_ms": 1e3 * c_torch,
        "nnx_over_torch": c_nnx / c_torch,  # CPU time
        "wall_nnx_over_torch": w_nnx / w_torch,
        "all_ms": {k: [1e3 * t for t in v] for k, v in wall.items()},
        "all_cpu_ms": {k: [1e3 * t for t in v] for k, v in cpu.items()},
        "rss_mb": rss,
        "rss_growth_mb": rss[-1] - rss[0] if rss else 0.0,
        "memory_steps": memory_steps,
        "repeats": repeats,
        **first,
        **_gpu_memory(backend, in_use),
    }


def run_sequence(
    repeats: int,
    quick: bool = False,
    threads: int | None = None,
    pause: float = 1.0,
    memory_steps: int = 20,
    backend: Any = None,
    batch: int | None = None,
) -> dict[str, Any]:
    """Forward + backward + SGD step of a transformer encoder block, an LSTM, an RNN and a GRU, nnx (NumPy)
    and torch eager CPU interleaved (order alternating), both float32 and on the same number
    of threads (``threads``, or each library's default), median step time and ratio, and the
    resident memory of the nnx process over ``memory_steps`` more steps. ``backend``: nnx on
    that backend instead of NumPy (torch on CUDA when it is a GPU one); ``batch``: every
    workload's batch size instead of its own."""
    import torch

    limit_threads(threads)
    backend = backend or nnx.get_backend("cpu")
    workloads = _sequence_workloads(quick)
    decoder = _decoder_workload(quick)
    if batch is not None:
        workloads = {name: {**cfg, "batch": batch} for name, cfg in workloads.items()}
        decoder = {**decoder, "batch": batch}
    results: dict[str, Any] = {
        name: _sequence_case(torch, name, cfg, repeats, pause, memory_steps, backend)
        for name, cfg in workloads.items()
    }
    results["transformer_decoder"] = _decoder_case(
        torch, decoder, repeats, pause, memory_steps, backend
    )
    results["load_average"] = os.getloadavg()
    results["torch_threads"] = torch.get_num_threads()
    results["numpy_blas_threads"] = blas_threads()
    results["pause_s"] = pause
    if backend.name != "numpy":  # the CPU run's JSON is as it always was
        results["backend"] = f"{backend.name} ({backend.device})"
        results["torch_device"] = torch_device(backend)
        results["gpu_backend"] = backend.is_gpu
        results["gpu"] = gpu_name(backend)
        results["float32"] = full_float32(backend)  # what TF32 switch was set (set already)
    return results


def first_output_errors(results: dict[str, Any], rtol: float) -> list[str]:
    """One line per workload whose first outputs differ between nnx and torch by more than
    ``rtol`` times their scale."""
    return [
        f"bench.py: error: {name}: first outputs differ by {r['first_output_max_diff']:.2e} "
        f"(scale {r['first_output_scale']:.2f}); first loss sum(y*g) nnx "
        f"{r['first_loss']['nnx']:.6f} vs torch {r['first_loss']['torch']:.6f}"
        for name, r in results.items()
        if isinstance(r, dict)
        and "first_output_max_diff" in r
        and r["first_output_max_diff"] > rtol * r["first_output_scale"]
    ]


def _memory_note(r: dict[str, Any]) -> str:
    """A workload's memory growth for its line: the GPU's bytes in use on a GPU, else RSS."""
    if not r["memory_steps"]:
        return "  memory not measured"
    if "gpu_growth_mb" in r:
        return f"  GPU memory growth {r['gpu_growth_mb']:.1f} MB"
    return f"  RSS growth {r['rss_growth_mb']:.1f} MB"


def print_sequence(results: dict[str, Any], quick: bool) -> None:
    """One line per workload; on a GPU wall times lead (the host's CPU time is not the work)."""
    on_gpu = results.get("gpu_backend", False)
    if "backend" in results:
        gpu = f", {results['gpu']}" if results.get("gpu") else ""
        print(f"nnx on {results['backend']}{gpu}, torch on {results['torch_device']}")
    for name in _sequence_workloads(quick):
        r = results[name]
        memory = _memory_note(r)
        print(
            f"{name:<12} {r['config']}  nnx {r['nnx_ms']:.1f} ms  torch {r['torch_ms']:.1f} ms"
            f"  nnx/torch {r['nnx_over_torch']:.2f} (CPU time {r['nnx_cpu_ms']:.1f} / "
            f"{r['torch_cpu_ms']:.1f} ms = {r['cpu_nnx_over_torch']:.2f}){memory}"
            + (f" over {r['memory_steps']} more steps" if r["memory_steps"] else "")
        )
        if "nnx_torch_cpu_ms" in r:
            print(
                f"{'':<12} nnx on torch tensors: CPU time {r['nnx_torch_cpu_ms']:.1f} ms, "
                f"nnx-torch/torch {r['cpu_nnx_torch_over_torch']:.2f}"
            )
    r = results["transformer_decoder"]
    memory = _memory_note(r)
    if on_gpu:
        print(
            f"{'decoder':<12} {r['config']}  nnx {r['nnx_ms']:.1f} ms  torch "
            f"{r['torch_ms']:.1f} ms  nnx/torch {r['wall_nnx_over_torch']:.2f} (CPU time "
            f"{r['nnx_over_torch']:.2f})" + memory
        )
    else:
        print(
            f"{'decoder':<12} {r['config']}  CPU nnx {r['nnx_cpu_ms']:.1f} ms  torch "
            f"{r['torch_cpu_ms']:.1f} ms  nnx/torch {r['nnx_over_torch']:.2f} (wall "
            f"{r['wall_nnx_over_torch']:.2f})" + memory
        )
    print(
        f"load average {tuple(round(v, 2) for v in results['load_average'])}, torch threads "
        f"{results['torch_threads']}, NumPy BLAS threads {results['numpy_blas_threads']}, "
        f"pause {results['pause_s']} s"
    )


def main_sequence(args: argparse.Namespace) -> int:
    """Every workload (``--quick``: tiny ones, 2 repeats, no pause), one line each, at each
    ``--seq-batch``; exit status 1 when nnx's first outputs differ from torch's, 2 for an
    unusable ``--device``."""
    backend = open_backend(args.device)
    if backend is None:
        return 2
    full_float32(backend)
    pause = args.pause if args.pause is not None else 0.0 if backend.is_gpu else 1.0
    memory_steps = 0 if args.no_memory else args.seq_memory_steps if not args.quick else 3
    rtol = FIRST_OUTPUT_RTOL["gpu" if backend.is_gpu else "cpu"]
    runs, errors = {}, []
    for batch in args.seq_batch or [None]:
        runs[batch] = results = run_sequence(
            args.repeats if not args.quick else 2,
            quick=args.quick,
            threads=args.threads,
            pause=pause if not args.quick else 0.0,
            memory_steps=memory_steps,
            backend=backend,
            batch=batch,
        )
        print_sequence(results, args.quick)
        errors += first_output_errors(results, rtol)
    if len(runs) == 1:
        write_json(args.json, next(iter(runs.values())))
    else:  # each batch size as a one-batch run writes it
        write_json(args.json, {"batches": {str(b): r for b, r in runs.items()}})
    for line in errors:
        print(line, file=sys.stderr)
    return 1 if errors else 0
