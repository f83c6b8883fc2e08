"""``--threads N``: the number of threads NumPy's BLAS (through threadpoolctl) and PyTorch's
intra-op pool use in this process, set once by the commands (``nnx-train``, ``nnx-predict``)
at start-up. Library code never changes thread counts globally: it only narrows BLAS to one
thread inside its own scoped :func:`nnx.backend.one_blas_thread` blocks.

Without ``--threads`` nothing is changed: BLAS and PyTorch keep their defaults, which use every
core. On a machine shared with other jobs, fewer threads than cores avoid threads waiting for
each other at every product (docs/benchmarks.md, "Choosing threads").
"""

from __future__ import annotations

import sys
from typing import Any


def set_threads(count: int | None) -> dict[str, Any]:
    """Limit BLAS and, when PyTorch is already imported (the torch backend), PyTorch to
    ``count`` threads for the rest of the process; None changes nothing. Returns what was set
    (``{"blas": n, "torch": n}``, the keys only of the libraries present)."""
    if count is None:
        return {}
    done: dict[str, Any] = {}
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        pass
    else:
        threadpool_limits(limits=count)  # kept: the command owns its process
        done["blas"] = count
    torch = sys.modules.get("torch")  # imported by the torch backend; never imported here
    if torch is not None:
        torch.set_num_threads(count)
        done["torch"] = count
    return done
