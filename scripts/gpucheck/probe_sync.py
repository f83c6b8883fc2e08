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
    python scripts/gpucheck/probe_sync.py --device strict --emulate

``--emulate`` (a CPU backend) stands in for a GPU's detector: while guarded, every host read of
an array of that backend's type raises (``bool()``, ``float()``, ``int()``, ``operator.index``,
``.item()``, ``.tolist()``, ``__array__``, ``__dlpack__``, and torch's ``.cpu()``, ``.numpy()``
and ``.nonzero()``), which is what a GPU step would wait for. On array-api-strict it checks the
portable code CuPy runs; on torch CPU the code torch:cuda runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from probe_models import CONFIGS, EXPECTED_SYNC, last_nnx_frame, make_step, report  # noqa: E402

import nnx  # noqa: E402
from nnx.backend import backend_available  # noqa: E402
from nnx.data import ArrayDataset  # noqa: E402

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


class EmulatedSync(RuntimeError):
    """A host read of an array under the emulated detector (``--emulate``)."""


HOST_READS = ("__bool__", "__float__", "__int__", "__index__", "__complex__", "__array__",
              "__dlpack__", "item", "tolist", "cpu", "numpy", "nonzero")  # fmt: skip


def emulated_detector(array_type: type) -> object:
    """A context in which every host read of an ``array_type`` raises :class:`EmulatedSync`
    (the class's methods are replaced while it lasts, then put back)."""
    names = [n for n in HOST_READS if hasattr(array_type, n)]
    own = {n: array_type.__dict__[n] for n in names if n in array_type.__dict__}

    def refuse(name: str) -> object:
        def read(self: object, *args: object, **kwargs: object) -> None:
            raise EmulatedSync(f"host read {array_type.__name__}.{name} (emulated detector)")

        return read

    @contextlib.contextmanager
    def guard():
        for name in names:
            setattr(array_type, name, refuse(name))
        try:
            yield
        finally:
            for name in names:
                if name in own:
                    setattr(array_type, name, own[name])
                else:
                    delattr(array_type, name)

    return guard


def sync_guard(backend: nnx.Backend, emulate: bool = False) -> tuple[object, str]:
    """``(a context that raises at a host sync, "")`` or ``(nullcontext, why there is none)``."""
    if emulate and not backend.is_gpu:
        array_type = type(backend.asarray([0.0]))
        if array_type is np.ndarray:  # a built-in type: its methods cannot be replaced
            return (
                contextlib.nullcontext,
                "--emulate needs strict or torch (NumPy's array type cannot be patched)",
            )
        return emulated_detector(array_type), ""
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
    """CuPy's DeviceSynchronized, PyTorch's "called a synchronizing CUDA operation", or the
    emulated detector's :class:`EmulatedSync`."""
    return (
        isinstance(err, EmulatedSync)
        or type(err).__name__ == "DeviceSynchronized"
        or (isinstance(err, RuntimeError) and "synchronizing CUDA operation" in str(err))
    )


FIT = "trainer-fit-adam-accuracy"  # Trainer.fit's batch loop (the configuration's name)


class GuardBatches(nnx.Callback):
    """The guard around Trainer.fit's steady batch loop: entered after each epoch's first batch
    (an epoch's start copies its permutation to the device, a host-to-device copy that torch's
    detector counts), left after its last batch (the epoch's end reads the losses and metrics
    back: its one sync by design)."""

    def __init__(self, guard: object):
        self.guard, self.active, self.batches = guard, None, 0

    def on_batch_end(self, trainer: object, batch: int) -> None:
        last = trainer.batches_per_epoch - 1
        if batch == 0 and self.active is None and last > 0:
            self.active = self.guard()
            self.active.__enter__()
        elif self.active is not None:
            self.batches += 1
            if batch == last:
                self.close()

    def close(self) -> None:
        if self.active is not None:
            active, self.active = self.active, None
            active.__exit__(None, None, None)


def check_fit(backend: nnx.Backend, guard: object, unchecked: str) -> dict:
    """Two epochs of Trainer.fit (Adam, accuracy metric, data on the device) with every batch
    but each epoch's first under the guard."""
    model = nnx.Sequential(nnx.Linear(64, 64, rng=0), nnx.ReLU(), nnx.Linear(64, 10, rng=1))
    model = model.to(backend)
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.standard_normal((1024, 64)).astype(np.float32))
    y = backend.asarray(rng.integers(0, 10, 1024).astype(np.int64))
    cb = GuardBatches(guard)
    optimizer = nnx.optim.Adam(list(model.parameters()), lr=1e-3)
    trainer = nnx.Trainer(
        model, nnx.CrossEntropyLoss(), optimizer, device=backend, callbacks=[cb], progress=False
    )
    try:
        trainer.fit(ArrayDataset(x, y), epochs=2, batch_size=128)
    except Exception as err:
        sync = is_sync_error(err)
        found = {
            "sync" if sync else "error": f"{type(err).__name__}: {str(err)[:300]}",
            "step": cb.batches + 1,
            "at": last_nnx_frame(err),
        }
        print(f"  {FIT}: {'SYNC' if sync else 'ERROR'} at guarded batch {cb.batches + 1}: "
              f"{found['at']}")  # fmt: skip
        return found
    finally:
        cb.close()
    print(f"  {FIT}: {'ran (not checked for syncs)' if unchecked else 'no host sync'} in "
          f"{cb.batches} guarded batches")  # fmt: skip
    return {"sync": None, "steps": cb.batches, "checked": not unchecked}


def check(backend: nnx.Backend, emulate: bool = False) -> dict:
    guard, unchecked = sync_guard(backend, emulate)
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
    found[FIT] = check_fit(backend, guard, unchecked)
    return {"checked": not unchecked, "why_unchecked": unchecked or None, "configs": found}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="gpu", help="backend spec (default gpu: CuPy, torch:cuda)")
    p.add_argument("--emulate", action="store_true", help="a CPU backend: host reads raise")
    args = p.parse_args()
    device = args.device
    specs = ["cupy", "torch:cuda"] if device == "gpu" else [device]
    out = {}
    for spec in specs:
        ok, why = backend_available(spec)
        if not ok:
            out[spec] = {"skipped": why}
            print(f"  {spec}: skipped: {why}")
            continue
        print(f"  {spec}:")
        out[spec] = check(nnx.get_backend(spec), args.emulate)
    report(out)


if __name__ == "__main__":
    main()
