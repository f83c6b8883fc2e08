"""The NCCL allreduce path under MPI (``mpiexec -n 1``): nnx.backend's nccl_communicator and
nccl_allreduce_sum directly, then nnx.distributed's own NCCL path (World._nccl_allreduce, which
allreduce_sum takes for CuPy arrays with more than one rank), each checked against the input
times the number of ranks."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from probe_models import last_nnx_frame, report  # noqa: E402

import nnx  # noqa: E402
import nnx.distributed as dist  # noqa: E402
from nnx.backend import nccl_allreduce_sum, nccl_communicator  # noqa: E402


def check(name: str, call, x, size: int, out: dict) -> None:
    try:
        got = call(x)
        want = np.asarray(x.get()) * size
        ok = bool(np.allclose(got.get(), want))
        out[name] = {"ok": ok, "dtype": str(got.dtype)}
    except Exception as err:
        out[name] = {"error": f"{type(err).__name__}: {err}", "at": last_nnx_frame(err)}
    print(f"  {name}: {out[name]}")


def main() -> None:
    import cupy

    world = dist.init()
    backend = nnx.get_backend(dist.device_spec("gpu"))
    out: dict = {"ranks": world.size, "rank": world.rank, "device": str(backend.device)}
    print(f"  ranks {world.size}, rank {world.rank}, {backend.device}")
    with backend.device:
        comm = nccl_communicator(world.size, world.rank, lambda uid: world.comm.bcast(uid, 0))
        for dtype in ("float32", "float64"):
            x = cupy.arange(1000, dtype=dtype) / 7
            check(f"nccl_allreduce_sum {dtype}", lambda a: nccl_allreduce_sum(comm, a), x,
                  world.size, out)  # fmt: skip
        x = cupy.arange(1000, dtype="float32") / 7
        check("World._nccl_allreduce", lambda a: world._nccl_allreduce(a, "gpu check"), x,
              world.size, out)  # fmt: skip
        check("nnx.distributed.allreduce_sum", dist.allreduce_sum, x, world.size, out)
    report(out)


if __name__ == "__main__":
    main()
