#!/usr/bin/env python3
"""Train a model with nnx: ``python scripts/train.py --help`` lists the options.

    python scripts/train.py                         # digits, --device auto
    python scripts/train.py --device gpu --epochs 50 --hidden 256,128
    python scripts/train.py --resume runs/<run>/last.npz

The same command runs as ``python -m nnx.cli`` and ``nnx-train``; it lives in ``nnx/cli/``.
"""

import sys
from pathlib import Path

try:
    try:
        from nnx.cli.main import main
    except ImportError:  # run from a source checkout without installing
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from nnx.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: one line, like any other time
    print(
        "train.py: interrupted: no epoch had completed, so there is nothing to resume",
        file=sys.stderr,
    )
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main(prog="train.py"))
