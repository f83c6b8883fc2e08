"""The NCCL allreduce path under MPI (``mpiexec -n 1``): nnx.backend's nccl_communicator and
nccl_allreduce_sum directly, then nnx.distributed's own NCCL path (World._nccl_allreduce, which
allreduce_sum takes for CuPy arrays with more than one rank), each checked against the input
times the number of ranks.

    mpiexec -n 1 python scripts/gpucheck/probe_nccl.py   # the GPU check's part "nccl"
    python scripts/gpucheck/probe_nccl.py --no-mpi       # one rank without MPI: nnx.backend only
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from probe_models import last_nnx_frame, report  # noqa: E402

import nnx  # noqa: E402
from nnx.backend import nccl_allreduce_sum, nccl_communicator  # noqa: E402

DTYPES = ("float32", "float64", "float16")


def check(name: str, call, x, size: int, out: dict) -> None:
    try:
        got = call(x)
        want = np.asarray(x.get()) * size
        ok = bool(np.allclose(got.get(), want, rtol=1e-3 if x.dtype == "float16" else 1e-7))
        out[name] = {"ok": ok, "dtype": str(got.dtype)}
    except Exception as err:
        out[name] = {"error": f"{type(err).__name__}: {err}", "at": last_nnx_frame(err)}
    print(f"  {name}: {out[name]}")


def main() -> None:
    import cupy

    no_mpi = "--no-mpi" in sys.argv[1:]
    if no_mpi:
        world = None
        size, rank = 1, 0
        backend = nnx.get_backend("gpu")
    else:
        import nnx.distributed as dist

        world = dist.init()
        size, rank = world.size, world.rank
        backend = nnx.get_backend(dist.device_spec("gpu"))
    out: dict = {"ranks": size, "rank": rank, "device": str(backend.device), "mpi": not no_mpi}
    print(f"  ranks {size}, rank {rank}, {backend.device}, {'no MPI' if no_mpi else 'MPI'}")
    with backend.device:
        try:
            share = (lambda uid: uid) if world is None else (lambda uid: world.comm.bcast(uid, 0))
            comm = nccl_communicator(size, rank, share)
        except Exception as err:
            out["nccl_communicator"] = {"error": f"{type(err).__name__}: {err}"}
            print(f"  nccl_communicator: {out['nccl_communicator']}")
            report(out)
            return
        for dtype in DTYPES:
            x = cupy.arange(1000, dtype=dtype) / 7
            check(f"nccl_allreduce_sum {dtype}", lambda a: nccl_allreduce_sum(comm, a), x,
                  size, out)  # fmt: skip
        if world is not None:
            import nnx.distributed as dist

            x = cupy.arange(1000, dtype="float32") / 7
            check("World._nccl_allreduce", lambda a: world._nccl_allreduce(a, "gpu check"), x,
                  size, out)  # fmt: skip
            check("nnx.distributed.allreduce_sum", dist.allreduce_sum, x, size, out)
    report(out)


if __name__ == "__main__":
    main()
