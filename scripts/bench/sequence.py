"""Sequence models: a transformer encoder block, an LSTM, an RNN, a GRU and a transformer decoder
layer, nnx (NumPy) against torch eager CPU.

Each step is forward + backward (with a fixed upstream gradient) + an SGD step, both libraries
in float32 and, with ``--threads``, on the same number of threads. The two run interleaved
(order alternating, a pause before each), the median step time and the ratio are reported, and
the nnx process's resident memory over a few more steps shows whether it grows.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from typing import Any

import numpy as np

import nnx
from nnx.optim import SGD

from .measure import alternated, blas_threads, limit_threads, rss_mb, write_json


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
    torch: Any, name: str, cfg: dict[str, int], repeats: int, pause: float, memory_steps: int
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

    steps = {"nnx": nnx_step, "torch": torch_step}
    if name == "transformer":  # also nnx on torch tensors: torch's fused attention kernels
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
    rss = []
    for _ in range(memory_steps):
        nnx_step()
        rss.append(rss_mb())
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
    torch: Any, cfg: dict[str, int], repeats: int, pause: float, memory_steps: int
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
    tgt = rng.standard_normal((n, cfg["tgt"], d), dtype=np.float32)
    mem = rng.standard_normal((n, cfg["memory"], d), dtype=np.float32)
    g = rng.standard_normal(tgt.shape, dtype=np.float32)
    causal = np.triu(np.ones((cfg["tgt"], cfg["tgt"]), dtype=bool), k=1)
    opt = SGD(mine.parameters(), lr=1e-4)
    topt = torch.optim.SGD(ref.parameters(), lr=1e-4)
    ttgt, tmem, tg = (torch.tensor(a, requires_grad=True) for a in (tgt, mem, g))
    tcausal = torch.tensor(causal)
    assert all(p.dtype == torch.float32 for p in ref.parameters())
    assert all(p.value.dtype == np.float32 for p in mine.parameters())

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
    rss = []
    for _ in range(memory_steps):
        nnx_step()
        rss.append(rss_mb())
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
    }


def run_sequence(
    repeats: int,
    quick: bool = False,
    threads: int | None = None,
    pause: float = 1.0,
    memory_steps: int = 20,
) -> dict[str, Any]:
    """Forward + backward + SGD step of a transformer encoder block, an LSTM, an RNN and a GRU, nnx (NumPy)
    and torch eager CPU interleaved (order alternating), both float32 and on the same number
    of threads (``threads``, or each library's default), median step time and ratio, and the
    resident memory of the nnx process over ``memory_steps`` more steps."""
    import torch

    limit_threads(threads)
    results: dict[str, Any] = {
        name: _sequence_case(torch, name, cfg, repeats, pause, memory_steps)
        for name, cfg in _sequence_workloads(quick).items()
    }
    results["transformer_decoder"] = _decoder_case(
        torch, _decoder_workload(quick), repeats, pause, memory_steps
    )
    results["load_average"] = os.getloadavg()
    results["torch_threads"] = torch.get_num_threads()
    results["numpy_blas_threads"] = blas_threads()
    results["pause_s"] = pause
    return results


def main_sequence(args: argparse.Namespace) -> int:
    """Both workloads (``--quick``: tiny ones, 2 repeats, no pause), one line each."""
    results = run_sequence(
        args.repeats if not args.quick else 2,
        quick=args.quick,
        threads=args.threads,
        pause=args.pause if not args.quick else 0.0,
        memory_steps=args.seq_memory_steps if not args.quick else 3,
    )
    for name in _sequence_workloads(args.quick):
        r = results[name]
        print(
            f"{name:<12} {r['config']}  nnx {r['nnx_ms']:.1f} ms  torch {r['torch_ms']:.1f} ms"
            f"  nnx/torch {r['nnx_over_torch']:.2f} (CPU time {r['nnx_cpu_ms']:.1f} / "
            f"{r['torch_cpu_ms']:.1f} ms = {r['cpu_nnx_over_torch']:.2f})  RSS growth {r['rss_growth_mb']:.1f} MB"
            f" over {r['memory_steps']} more steps"
        )
        if "nnx_torch_cpu_ms" in r:
            print(
                f"{'':<12} nnx on torch tensors: CPU time {r['nnx_torch_cpu_ms']:.1f} ms, "
                f"nnx-torch/torch {r['cpu_nnx_torch_over_torch']:.2f}"
            )
    r = results["transformer_decoder"]
    print(
        f"{'decoder':<12} {r['config']}  CPU nnx {r['nnx_cpu_ms']:.1f} ms  torch "
        f"{r['torch_cpu_ms']:.1f} ms  nnx/torch {r['nnx_over_torch']:.2f} (wall "
        f"{r['wall_nnx_over_torch']:.2f})  RSS growth {r['rss_growth_mb']:.1f} MB"
    )
    print(
        f"load average {tuple(round(v, 2) for v in results['load_average'])}, torch threads "
        f"{results['torch_threads']}, NumPy BLAS threads {results['numpy_blas_threads']}, "
        f"pause {results['pause_s']} s"
    )
    write_json(args.json, results)
    return 0
