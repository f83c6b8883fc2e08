"""Data-parallel step time on MPI: compute against allreduce, for 1 and 2 ranks (or more).

    python scripts/bench.py --distributed                 # MLP 784-512-256-10, ranks 1,2
    python scripts/bench.py --distributed --ranks 1,2,4 --batch-sizes 128,1024
    python scripts/bench.py --distributed --model cnn     # the cnn preset on 1x28x28 images
    python scripts/bench.py --distributed --quick         # tiny smoke run

For each rank count N and global batch B the parent launches
``mpiexec -n N python -m mpi4py scripts/bench.py --distributed --worker ...`` with one BLAS thread
per rank. Each rank trains the bench MLP (or the cnn preset; float32, SGD) on its B/N-sample shard and times every
step in two parts: compute (forward, backward, optimizer step) and the gradient allreduce of
:func:`nnx.distributed.allreduce_gradients` (packing, MPI_Allreduce, unpacking; it includes any
wait for a slower rank). The allreduce bandwidth is measured apart, with MPI_Allreduce on a buffer
of the gradients' size after a barrier: algorithm bandwidth = bytes / time, and bus bandwidth =
2 (N - 1) / N x bytes / time (the bytes each rank moves in a ring or Rabenseifner allreduce).
Medians over the timed steps; rank 0's figures (the slowest rank's allreduce is similar).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import nnx

from .measure import ENTRY, write_json

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One rank: time ``args.steps`` data-parallel steps after ``args.warmup``."""
    import nnx.distributed as dist
    from nnx.data import ArrayDataset, DataLoader
    from nnx.optim import SGD

    world = dist.init()
    rng = np.random.default_rng(0)
    if args.model == "cnn":  # the cnn preset on MNIST-shaped images
        shape: tuple[int, ...] = (1, 28, 28)
        model = nnx.models.build_model("cnn", shape, args.classes)
    else:
        shape = (args.features,)
        model = nnx.models.build_model("mlp", shape, args.classes, hidden=args.hidden)
    model = model.to("cpu", dtype="float32")
    x = rng.standard_normal((args.batch * 4, *shape), dtype=np.float32)
    y = rng.integers(0, args.classes, size=len(x))
    dist.broadcast_parameters(model)
    loss = nnx.CrossEntropyLoss(check_labels=False)
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(
        ArrayDataset(x, y), args.batch, rank=world.rank, world_size=world.size, drop_last=True
    )
    params = list(model.parameters())
    compute, reduce = [], []
    step = 0
    while step < args.warmup + args.steps:
        loader.set_epoch(step)
        for xb, yb in loader:
            world.barrier()  # every step starts together: the split is not blurred by drift
            t0 = time.perf_counter()
            optimizer.zero_grad()
            loss.forward(model(xb), yb)
            model.backward(loss.backward(), need_input_grad=False)
            t1 = time.perf_counter()
            dist.allreduce_gradients(params, int(xb.shape[0]))
            t2 = time.perf_counter()
            optimizer.step()
            t3 = time.perf_counter()
            if step >= args.warmup:
                compute.append((t1 - t0) + (t3 - t2))
                reduce.append(t2 - t1)
            step += 1
            if step >= args.warmup + args.steps:
                break
    n_params = sum(int(np.prod(p.shape)) for p in params)
    buf = np.ones(n_params + len(params) + 1, dtype=np.float32)
    transfer = []
    if world.size > 1:
        for i in range(args.warmup + args.steps):
            world.comm.Barrier()
            t0 = time.perf_counter()
            world.comm.Allreduce(world.MPI.IN_PLACE, buf)
            if i >= args.warmup:
                transfer.append(time.perf_counter() - t0)
    result = {
        "model": args.model,
        "ranks": world.size,
        "global_batch": args.batch,
        "rank_batch": int(loader.batch_rows(0)[1] - loader.batch_rows(0)[0]),
        "parameters": n_params,
        "allreduce_bytes": int(buf.nbytes),
        "compute_ms": 1e3 * statistics.median(compute),
        "allreduce_ms": 1e3 * statistics.median(reduce),
    }
    result["step_ms"] = result["compute_ms"] + result["allreduce_ms"]
    result["samples_per_s"] = args.batch / (result["step_ms"] / 1e3)
    if transfer:
        t = statistics.median(transfer)
        result["mpi_allreduce_ms"] = 1e3 * t
        result["algorithm_gb_per_s"] = buf.nbytes / t / 1e9
        result["bus_gb_per_s"] = 2 * (world.size - 1) / world.size * buf.nbytes / t / 1e9
    return result


def launch(args: argparse.Namespace, ranks: int, batch: int) -> dict[str, Any]:
    mpiexec = shutil.which("mpiexec") or shutil.which(
        "mpiexec", path=str(Path(sys.executable).parent)
    )
    if mpiexec is None:
        raise RuntimeError("no mpiexec on PATH: pip install 'nnx-trainer[mpi]'")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [
            mpiexec, "-n", str(ranks), sys.executable, "-m", "mpi4py", str(ENTRY),
            "--distributed", "--worker",
            "--batch", str(batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--features", str(args.features), "--hidden", ",".join(map(str, args.hidden)),
            "--classes", str(args.classes), "--out", str(out), "--model", args.model,
        ]  # fmt: skip
        done = subprocess.run(
            command, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"mpiexec -n {ranks} failed: {done.stderr.strip()[-500:]}")
        return json.loads(out.read_text())


def print_table(rows: list[dict[str, Any]], load: str) -> None:
    print(
        f"data-parallel {rows[0]['model']}, float32, one BLAS thread per rank; load average {load}"
    )
    print(
        f"{'ranks':>5} {'batch':>6} {'/rank':>6} {'step ms':>8} {'compute':>8} {'allreduce':>9} "
        f"{'share':>6} {'samples/s':>10} {'speed-up':>8} {'bus GB/s':>8}"
    )
    single = {r["global_batch"]: r for r in rows if r["ranks"] == 1}
    for r in rows:
        base = single.get(r["global_batch"])
        speedup = r["samples_per_s"] / base["samples_per_s"] if base else float("nan")
        bw = f"{r['bus_gb_per_s']:.2f}" if "bus_gb_per_s" in r else "-"
        print(
            f"{r['ranks']:>5} {r['global_batch']:>6} {r['rank_batch']:>6} {r['step_ms']:>8.2f} "
            f"{r['compute_ms']:>8.2f} {r['allreduce_ms']:>9.2f} "
            f"{r['allreduce_ms'] / r['step_ms']:>6.1%} {r['samples_per_s']:>10.0f} "
            f"{speedup:>8.2f} {bw:>8}"
        )
    r = rows[0]
    print(f"parameters {r['parameters']:,}; allreduce buffer {r['allreduce_bytes'] / 1e6:.2f} MB")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ranks", default="1,2", type=ints, help="rank counts (default 1,2)")
    p.add_argument("--batch-sizes", default="128,1024", type=ints, help="global batch sizes")
    p.add_argument("--steps", type=int, default=40, help="timed steps (median; default 40)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp", help="mlp (default) or cnn")
    p.add_argument("--features", type=int, default=784)
    p.add_argument("--hidden", default="512,256", type=ints)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args, _ = p.parse_known_args(argv)
    if args.quick:
        args.features, args.hidden, args.batch_sizes = 32, [16], [32]
        args.steps, args.warmup = 3, 1
    return args


def main_distributed(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = worker(args)
        if result["ranks"] == 1 or nnx.distributed.rank() == 0:
            Path(args.out).write_text(json.dumps(result))
        return 0
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        print(
            "bench.py: error: --distributed needs mpi4py: pip install 'nnx-trainer[mpi]'",
            file=sys.stderr,
        )
        return 2
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    try:
        for batch in args.batch_sizes:
            for ranks in args.ranks:
                rows.append(launch(args, ranks, batch))
    except RuntimeError as err:
        print(f"bench.py: error: {err}", file=sys.stderr)
        return 1
    print_table(rows, load)
    write_json(args.json, {"load": load, "rows": rows})
    return 0
