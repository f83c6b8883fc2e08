#!/usr/bin/env python3
"""Train an MLP classifier on the built-in spiral data set with nnx.

    python scripts/train.py                      # --device auto: CuPy on a GPU, else NumPy
    python scripts/train.py --device cpu --epochs 50 --hidden 64,64

Interim command: the full training tool (digits data set, progress bar, checkpoints, plots,
resume) replaces it once the Trainer lands.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import nnx
from nnx.datasets import spiral
from nnx.optim import Adam


def hidden_sizes(text: str) -> list[int]:
    """``"64,32"`` -> ``[64, 32]``."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden must be comma-separated integers such as 64,32, got {text!r}"
        ) from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"--hidden sizes must be positive, got {text!r}")
    return sizes


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, gpu, cuda:N, torch, strict, ... (default: auto)",
    )
    parser.add_argument(
        "--epochs", type=int, default=300, help="passes over the data (default: 300)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="samples per step (default: 64)")
    parser.add_argument(
        "--lr", type=positive_float, default=0.02, help="Adam learning rate (default: 0.02)"
    )
    parser.add_argument(
        "--hidden", type=hidden_sizes, default=[64, 64], help="hidden layer sizes (default: 64,64)"
    )
    parser.add_argument(
        "--samples", type=int, default=300, help="spiral samples per class (default: 300)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for data, weights and shuffling (default: 0)"
    )
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "samples"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        backend = nnx.get_backend(args.device)
    except (nnx.BackendUnavailableError, ValueError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    xp = backend.xp
    x_host, y_host = spiral(args.samples, 3, seed=args.seed)
    x, y = backend.asarray(x_host), backend.asarray(y_host)  # moved to the device once

    rng = np.random.default_rng(args.seed)
    layers: list[nnx.Module] = []
    width = 2
    for size in args.hidden:
        layers += [nnx.Linear(width, size, init="he_normal", rng=rng), nnx.ReLU()]
        width = size
    model = nnx.Sequential(*layers, nnx.Linear(width, 3, rng=rng)).to(backend)
    loss_fn = nnx.CrossEntropyLoss()
    optimizer = Adam(model.parameters(), lr=args.lr)
    print(
        f"nnx: training {sum(int(np.prod(p.shape)) for p in model.parameters())} parameters on {backend.name} ({backend.device})"
    )

    n = x_host.shape[0]
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = backend.asarray(rng.permutation(n))
        epoch_loss = 0.0
        for first in range(0, n, args.batch_size):
            idx = order[first : first + args.batch_size]
            xb, yb = xp.take(x, idx, axis=0), xp.take(y, idx, axis=0)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            model.backward(loss_fn.backward())
            optimizer.step()
            epoch_loss = epoch_loss + loss * idx.shape[0]  # stays on the device
        if epoch == 1 or epoch % max(1, args.epochs // 10) == 0 or epoch == args.epochs:
            model.eval()
            accuracy = float(
                nnx.to_numpy(xp.mean(xp.astype(xp.argmax(model(x), axis=1) == y, xp.float32)))
            )
            model.train()
            print(
                f"epoch {epoch:4d}  loss {float(nnx.to_numpy(epoch_loss)) / n:.4f}  accuracy {accuracy:.3f}"
            )
    seconds = time.perf_counter() - start
    print(
        f"done: {args.epochs} epochs in {seconds:.1f} s ({args.epochs * n / seconds:,.0f} samples/s), final accuracy {accuracy:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
