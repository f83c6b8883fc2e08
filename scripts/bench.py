#!/usr/bin/env python3
"""Benchmark nnx against a hand-written array reference and PyTorch eager: ``--help`` lists the
flags; the code is the package ``scripts/bench/`` (one module per workload).

    python scripts/bench.py                      # the MLP workload: CPU, batches 32,128,1024
    python scripts/bench.py --quick              # tiny smoke run: nnx and reference losses agree
    python scripts/bench.py --cnn                # convolutional workloads vs torch
    python scripts/bench.py --sequence           # a transformer block and an LSTM vs torch
    python scripts/bench.py --jax                # NumPy vs JAX eager vs nnx.compile
    python scripts/bench.py --distributed        # MPI data-parallel: compute vs allreduce
    python scripts/bench.py --augment            # nnx.augment crops/flips on a CIFAR-sized batch
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `python -m mpi4py scripts/bench.py` does not add it
    sys.path.insert(0, str(HERE))
try:
    import nnx  # noqa: F401
except ImportError:  # a source checkout that is not installed
    sys.path.insert(0, str(HERE.parent))

from bench.__main__ import main  # noqa: E402  (the package bench/ next to this file)

if __name__ == "__main__":
    sys.exit(main())
