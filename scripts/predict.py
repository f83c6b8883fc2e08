#!/usr/bin/env python3
"""Predict with a model trained by scripts/train.py: ``python scripts/predict.py --help``.

    python scripts/predict.py runs/<run> --input new.csv                # CSV to stdout
    python scripts/predict.py runs/<run>/best.npz --input x.npy --output preds.csv

The same command runs as ``nnx-predict``; it lives in ``nnx/cli/predict.py``.
"""

import sys
from pathlib import Path

try:
    from nnx.cli.predict import main
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from nnx.cli.predict import main

if __name__ == "__main__":
    sys.exit(main(prog="predict.py"))
