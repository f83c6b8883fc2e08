"""Benchmark nnx against a hand-written array reference and PyTorch eager, in one run.

    python scripts/bench.py                      # CPU, NumPy backend, batches 32,128,1024
    python scripts/bench.py --device gpu         # CuPy backend vs a CuPy reference vs torch CUDA
    python scripts/bench.py --quick              # tiny smoke run: nnx and reference losses agree
    python scripts/bench.py --json results.json  # machine-readable output as well
    python scripts/bench.py --cnn                # convolutional workloads vs torch (bench/cnn.py)
    python scripts/bench.py --cnn --device gpu --cnn-batch 128,1024   # CuPy vs torch CUDA
    python scripts/bench.py --jax --samples 8192 --batch-sizes 128,1024
        # nnx on NumPy vs nnx on JAX eager vs the same step compiled by nnx.compile (jax.jit)
    python scripts/bench.py --sequence           # a transformer block and an LSTM vs torch
    python scripts/bench.py --sequence --device gpu --seq-batch 128,1024   # on a GPU
    python scripts/bench.py --distributed        # MPI data-parallel: compute vs allreduce, 1-2 ranks
    python scripts/bench.py --augment            # nnx.augment crops/flips on a CIFAR-sized batch
    python scripts/bench.py --loader             # a loader-bound epoch, with and without prefetch
    python scripts/bench.py --native-layers      # layers on torch tensors: native vs portable

Without a workload flag it runs the MLP workload (bench/mlp.py: an MLP 784-512-256-10 on 60,000
synthetic float32 samples, SGD with momentum 0.9, one shuffled epoch per measurement). Every
workload times its contenders interleaved, in an order that changes every repetition, and
reports medians (bench/measure.py says why). ``--distributed``, ``--augment`` and ``--loader``
take their own flags (see ``--distributed --help``, ``--augment --help``, ``--loader --help``).
"""

from __future__ import annotations

import argparse
import json
import sys

from .augment import main_augment
from .cnn import main_cnn
from .compiled import main_jax
from .distributed import main_distributed
from .loader import main_loader
from .mlp import CONTENDERS, main_mlp, memory_probe
from .native_layers import main_native_layers
from .sequence import main_sequence


def _int_list(text: str) -> list[int]:
    """``128,1024`` -> [128, 1024] (each a positive integer)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device",
        default="cpu",
        help="backend spec (default: cpu); the MLP, --cnn and --sequence workloads: nnx's model "
        "and data on this backend (gpu: CuPy; torch:cuda, jax:gpu, torch, jax, ...), torch eager "
        "on CUDA when it is a GPU backend",
    )
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
    p.add_argument(
        "--no-memory",
        action="store_true",
        help="no memory measurements (the MLP's and --cnn's probes, --sequence's RSS steps)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke run: checks that nnx and the reference compute the same loss",
    )
    p.add_argument(
        "--cnn",
        action="store_true",
        help="the convolutional workloads (LeNet-like, small ResNet) against torch; see bench/cnn.py",
    )
    p.add_argument(
        "--cnn-batch",
        type=_int_list,
        help="--cnn: batch size, or several comma-separated (128,1024: one run each; default 128)",
    )
    p.add_argument("--cnn-steps", type=int, default=20, help="--cnn: steps per measurement")
    p.add_argument(
        "--cnn-workload",
        choices=("lenet", "resnet", "conv3d"),
        action="append",
        help="--cnn: run only this workload (repeatable; default lenet and resnet)",
    )
    p.add_argument(
        "--pause",
        type=float,
        help="--cnn, --sequence: seconds of pause before each contender (default 1; 0 on a GPU)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="limit torch and NumPy's BLAS to this many threads (threadpoolctl); the MLP, --cnn "
        "and --sequence workloads",
    )
    p.add_argument(
        "--cnn-native",
        action="store_true",
        help="--cnn: also nnx on torch tensors and nnx compiled on JAX (native kernels)",
    )
    p.add_argument(
        "--with-torch",
        action="store_true",
        help="--jax: also PyTorch eager on the same batches (CPU time ratios against it)",
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
    p.add_argument(
        "--seq-batch",
        type=_int_list,
        help="--sequence: every workload's batch size, or several comma-separated (128,1024: "
        "one run each; default each workload's own: 32 for the transformer layers, 64 for the "
        "recurrent ones)",
    )
    p.add_argument("--probe", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    p.add_argument("--probe-batch", type=int, default=128, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick and not args.cnn:
        args.samples, args.features, args.hidden = 512, 32, [16, 8]
        args.batch_sizes, args.repeats, args.warmup_batches = [32, 128], 1, 2
        args.memory_batch = 32
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the flags select; the exit status of ``scripts/bench.py``."""
    given = sys.argv[1:] if argv is None else argv
    if "--distributed" in given:  # its own flags (bench/distributed.py)
        return main_distributed(argv)
    if "--augment" in given:  # its own flags (bench/augment.py)
        return main_augment(argv)
    if "--loader" in given:  # its own flags (bench/loader.py)
        return main_loader(argv)
    if "--native-layers" in given:  # its own flags (bench/native_layers.py)
        return main_native_layers(given)
    args = parse_args(argv)
    needs_torch = "--cnn" if args.cnn or args.cnn_probe else "--sequence" if args.sequence else ""
    if needs_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print(
                f"bench.py: error: {needs_torch} compares nnx with PyTorch, which is not "
                f"installed: pip install torch",
                file=sys.stderr,
            )
            return 2
    if args.cnn or args.cnn_probe:
        return main_cnn(args)
    if args.sequence:
        return main_sequence(args)
    if args.probe:
        print(json.dumps(memory_probe(args)))
        return 0
    if args.jax:
        return main_jax(args)
    return main_mlp(args)


if __name__ == "__main__":
    sys.exit(main())
