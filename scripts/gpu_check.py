#!/usr/bin/env python3
"""Check nnx on a machine with an NVIDIA GPU in one command and write a report: ``--help`` lists
the flags; the code is the package ``scripts/gpucheck/`` (docs/benchmarks.md, "Running the GPU
check", gives the two steps for a machine without network).

    python scripts/gpu_check.py OUTDIR                      # every part, about 7.5 minutes at most
    python scripts/gpu_check.py OUTDIR --wheels wheels      # install carried wheels first
    python scripts/gpu_check.py OUTDIR --dry-run            # only the report of what would run
    python scripts/gpu_check.py OUTDIR --only pytest,sync   # some parts (names in the report)
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from gpucheck.__main__ import main  # noqa: E402  (the package gpucheck/ next to this file)

if __name__ == "__main__":
    sys.exit(main())
