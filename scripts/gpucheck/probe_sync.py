"""Hidden host syncs: ~20 training steps of small nnx models per GPU backend, each step under a
guard that raises at the first device-to-host wait, and per configuration the first sync's step
and last nnx frame, or that there was none.

- CuPy: ``cupyx.allow_synchronize(False)`` (deprecated since CuPy 10 and warning when used; it
  sees CuPy's own waits such as ``.get()``, ``float()``/``bool()``/``.item()`` of an array and
  ``Device.synchronize()``, with the false negatives CuPy documents);
- torch CUDA: ``torch.cuda.set_sync_debug_mode("error")`` (PyTorch's supported detector: it also
  sees ``.item()``, ``nonzero``, boolean-mask indexing and device-to-host copies).

    python scripts/gpucheck/probe_sync.py              # CuPy and torch:cuda (part "sync")
    python scripts/gpucheck/probe_sync.py --device cpu # the same steps on NumPy, no sync check
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_models import CONFIGS, EXPECTED_SYNC, last_nnx_frame, make_step, parse_device, report  # noqa: E402

import nnx  # noqa: E402
from nnx.backend import backend_available  # noqa: E402

STEPS, WARMUP = 20, 3


@contextlib.contextmanager
def _cupy_guard():
    import cupyx

    with warnings.catch_warnings():  # "allow_synchronize will be removed in future releases"
        warnings.simplefilter("ignore")
        guard = cupyx.allow_synchronize(False)
        guard.__enter__()
    try:
        yield
    finally:
        guard.__exit__(None, None, None)


@contextlib.contextmanager
def _torch_guard():
    import torch

    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def sync_guard(backend: nnx.Backend) -> tuple[object, str]:
    """``(a context that raises at a host sync, "")`` or ``(nullcontext, why there is none)``."""
    if backend.name == "cupy":
        import cupyx

        if not hasattr(cupyx, "allow_synchronize"):
            return contextlib.nullcontext, "this CuPy has no cupyx.allow_synchronize"
        return _cupy_guard, ""
    if backend.name == "torch" and backend.is_gpu:
        import torch

        if not hasattr(torch.cuda, "set_sync_debug_mode"):
            return contextlib.nullcontext, "this PyTorch has no torch.cuda.set_sync_debug_mode"
        return _torch_guard, ""
    return contextlib.nullcontext, f"no sync detector for {backend.name} on {backend.device}"


def is_sync_error(err: BaseException) -> bool:
    """CuPy's DeviceSynchronized, or PyTorch's "called a synchronizing CUDA operation"."""
    return type(err).__name__ == "DeviceSynchronized" or (
        isinstance(err, RuntimeError) and "synchronizing CUDA operation" in str(err)
    )


def check(backend: nnx.Backend) -> dict:
    guard, unchecked = sync_guard(backend)
    if unchecked:
        print(f"  {backend.name}: {unchecked}; the steps only run")
    found = {}
    for config in CONFIGS:
        try:
            step, x, y = make_step(config, backend)
            for _ in range(WARMUP):  # first calls may set things up (kernels, lazy state)
                step(x, y)
        except Exception as err:
            found[config] = {"error": f"{type(err).__name__}: {err}", "at": last_nnx_frame(err)}
            print(f"  {config}: setup failed: {found[config]}")
            continue
        done = 0
        try:
            with guard():
                while done < STEPS:
                    done += 1
                    step(x, y)
        except Exception as err:  # a detected sync, or a real failure
            sync = is_sync_error(err)
            found[config] = {
                "sync" if sync else "error": f"{type(err).__name__}: {str(err)[:300]}",
                "step": done,
                "at": last_nnx_frame(err),
            }
            label = "ERROR"
            if sync:
                label = "SYNC (expected)" if config in EXPECTED_SYNC else "SYNC"
                found[config]["expected"] = EXPECTED_SYNC.get(config)
            print(f"  {config}: {label} at step {done}: {found[config]['at']}")
        else:
            found[config] = {"sync": None, "steps": STEPS, "checked": not unchecked}
            said = "ran (not checked for syncs)" if unchecked else "no host sync"
            print(f"  {config}: {said} in {STEPS} steps")
    return {"checked": not unchecked, "why_unchecked": unchecked or None, "configs": found}


def main() -> None:
    device = parse_device(__doc__.split("\n\n")[0])
    specs = ["cupy", "torch:cuda"] if device == "gpu" else [device]
    out = {}
    for spec in specs:
        ok, why = backend_available(spec)
        if not ok:
            out[spec] = {"skipped": why}
            print(f"  {spec}: skipped: {why}")
            continue
        print(f"  {spec}:")
        out[spec] = check(nnx.get_backend(spec))
    report(out)


if __name__ == "__main__":
    main()
