"""GPU memory growth: 50 training steps of an MLP, memory in use after step 5 and after step 50,
on CuPy (its default memory pool's used bytes) and on torch CUDA (torch.cuda.memory_allocated).

    python scripts/gpucheck/probe_memory.py              # every GPU backend that works here
    python scripts/gpucheck/probe_memory.py --device cpu # the steps on NumPy, no measurement
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_models import last_nnx_frame, make_step, parse_device, report  # noqa: E402

import nnx  # noqa: E402
from nnx.backend import backend_available  # noqa: E402

STEPS, EARLY = 50, 5


def used_bytes(backend: nnx.Backend) -> int | None:
    if backend.name == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()
        return int(cupy.get_default_memory_pool().used_bytes())
    if backend.name == "torch" and backend.is_gpu:
        import torch

        torch.cuda.synchronize()
        return int(torch.cuda.memory_allocated())
    return None


def measure(spec: str) -> dict:
    backend = nnx.get_backend(spec)
    step, x, y = make_step("mlp-adam-clip", backend, batch=256)
    early = None
    for i in range(1, STEPS + 1):
        step(x, y)
        if i == EARLY:
            early = used_bytes(backend)
    late = used_bytes(backend)
    if early is None or late is None:
        return {"steps": STEPS, "measured": False}
    return {"after_step_5": early, "after_step_50": late, "growth_bytes": late - early}


def main() -> None:
    device = parse_device(__doc__.split("\n\n")[0])
    specs = ["cupy", "torch:cuda"] if device == "gpu" else [device]
    out = {}
    for spec in specs:
        ok, why = backend_available(spec)
        if not ok:
            out[spec] = {"skipped": why}
        else:
            try:
                out[spec] = measure(spec)
            except Exception as err:
                out[spec] = {"error": f"{type(err).__name__}: {err}", "at": last_nnx_frame(err)}
        print(f"  {spec}: {out[spec]}")
    report(out)


if __name__ == "__main__":
    main()
