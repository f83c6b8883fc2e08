"""``python -m nnx.cli``: the training command (see :mod:`nnx.cli.main`)."""

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m nnx.cli"))
