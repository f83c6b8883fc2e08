"""Hidden host syncs: ~20 training steps of small nnx models on CuPy inside
``cupyx.allow_synchronize(False)``, which raises at the first device-to-host wait. Reports, per
configuration, the first sync's step and last nnx frame, or that there was none.

    python scripts/gpucheck/probe_sync.py              # CuPy (the GPU check's part "sync")
    python scripts/gpucheck/probe_sync.py --device cpu # the same steps on NumPy, no sync check
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from probe_models import CONFIGS, EXPECTED_SYNC, last_nnx_frame, make_step, parse_device, report  # noqa: E402

import nnx  # noqa: E402

STEPS, WARMUP = 20, 3


def main() -> None:
    backend = nnx.get_backend(parse_device(__doc__.split("\n\n")[0]))
    if backend.name == "cupy":
        import cupyx

        def guard():
            return cupyx.allow_synchronize(False)
    else:
        guard = contextlib.nullcontext
        print(f"  {backend.name}: no sync check off CuPy; the steps only run")
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
        except Exception as err:  # cupyx.DeviceSynchronized, or a real failure
            sync = type(err).__name__ == "DeviceSynchronized"
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
            checked = backend.name == "cupy"
            found[config] = {"sync": None, "steps": STEPS, "checked": checked}
            said = "no host sync" if checked else "ran (not checked for syncs)"
            print(f"  {config}: {said} in {STEPS} steps")
    report({"backend": backend.name, "configs": found})


if __name__ == "__main__":
    main()
