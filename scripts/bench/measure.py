"""Measuring helpers shared by every benchmark: contender order, threads, memory, the machine.

Fairness rules every workload follows (and why):

* Contenders are timed **interleaved**, not one after the other, and the order changes every
  repetition (:func:`rotated` for several contenders, :func:`alternated` for two): whatever ran
  just before a contender (spinning BLAS or OpenMP threads, a cache another one just filled, a
  load spike on a shared machine) then falls on every contender alike.
* The **median** of the repetitions is reported, with every repetition kept in the JSON.
* :func:`limit_threads` puts torch's intra-op pool and NumPy's BLAS on the same number of
  threads, so that a ratio compares code, not thread counts; CPU time (``time.process_time``)
  is reported where it varies less than wall time on a loaded machine.
* Peak memory is measured in a **fresh process** per contender (:func:`run_probe` re-runs
  ``scripts/bench.py`` with a hidden probe flag), so one contender's allocations cannot hide
  another's; :func:`reset_peak_rss` and :func:`status_kb` read the kernel's counters, and
  :func:`gpu_memory_meter` the GPU allocator's.
* On a GPU every timing starts and ends with :func:`synchronize` (the work is queued
  asynchronously, so a clock read without it times the queueing), and :func:`full_float32`
  turns TF32 off, so both libraries do float32 products in float32 and the first losses agree.

This module imports nothing from the workload modules (they import it).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The documented entry: memory probes and MPI ranks re-run it with a hidden flag.
ENTRY = Path(__file__).resolve().parent.parent / "bench.py"


def rotated(names: Sequence[str], rep: int) -> list[str]:
    """Repetition ``rep``'s order: ``names`` rotated left by ``rep`` (a, b, c; b, c, a; ...)."""
    k = rep % len(names)
    return [*names[k:], *names[:k]]


def alternated(names: Sequence[str], rep: int) -> list[str]:
    """Repetition ``rep``'s order for two contenders: as given on even, reversed on odd ones."""
    return list(names) if rep % 2 == 0 else list(names)[::-1]


def limit_threads(n: int | None) -> None:
    """Every contender on ``n`` threads: NumPy's BLAS, XLA's CPU pool (one thread: Eigen's
    multi-threading off, when JAX is not started yet) and, when PyTorch is installed, torch's
    intra-op pool (the loader benchmark runs without PyTorch)."""
    if not n:
        return
    if "jax" not in sys.modules:  # XLA's CPU thread pool, read when JAX starts
        flags = f"--xla_cpu_multi_thread_eigen={'false' if n == 1 else 'true'}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print(
            "bench.py: threadpoolctl is missing; set OPENBLAS_NUM_THREADS instead", file=sys.stderr
        )
        return
    threadpool_limits(n)


class Timer:
    """Wall and process CPU time of a ``with`` block: ``wall`` and ``cpu`` in seconds.

    CPU time (``time.process_time``: every thread of this process) is the work done; with one
    thread per library (``--threads 1``) it hardly moves with the load of a shared machine,
    while the wall time does."""

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages (``uptime``), or [] where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return []


def blas_threads() -> int | None:
    """NumPy's BLAS thread count (threadpoolctl), or None when it cannot be read."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux >= 4.0).

    ``ru_maxrss`` cannot be used: it is never reset and survives exec, so a child started by a
    large parent reports the parent's peak.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (``VmRSS``: resident now, ``VmHWM``: its peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_mb() -> float:
    return status_kb("VmRSS") / 1024.0


def can_measure_memory() -> bool:
    """Whether the peak-RSS counter can be reset here (Linux): the memory probes need it."""
    return Path("/proc/self/clear_refs").exists()


def run_probe(flags: list[str], label: str) -> dict[str, Any] | None:
    """Run ``scripts/bench.py`` with ``flags`` in a fresh process; the JSON object its last
    output line holds, or None (with one line on stderr) when the probe fails."""
    command = [sys.executable, str(ENTRY), *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        print(f"bench: memory probe {label} failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def command_line() -> str:
    """The command as typed: ``bench.py`` and its arguments."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def machine_description(backend: Any) -> dict[str, Any]:
    """Python, NumPy, CPU, cores and date; torch's version and threads when installed, the GPU
    and CuPy's version on the CuPy backend."""
    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    if backend.name == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(backend.device.id)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["cupy"] = cupy.__version__
    return info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_json(path: str | None, results: Any) -> None:
    """Write ``results`` to ``path`` (``--json FILE``), when one was given."""
    if path:
        Path(path).write_text(json.dumps(results, indent=2) + "\n")


# ---------------------------------------------------------------------------- GPU


def synchronize(backend: Any, arrays: Sequence[Any] = ()) -> None:
    """Wait until the GPU has done the work queued so far (nothing on a CPU backend): CuPy's
    device, and PyTorch's CUDA queue whenever CUDA is started in this process (torch is the
    contender on a GPU backend). JAX has no device-wide wait: it waits for ``arrays`` (the
    results of the last work queued, e.g. a model's parameters after an optimizer step)."""
    if backend.name == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()
    elif backend.name == "jax" and arrays:
        import jax

        jax.block_until_ready(list(arrays))
    if backend.is_gpu and "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()


def torch_device(backend: Any) -> str:
    """Where torch eager, the contender, runs beside nnx on ``backend``: ``cuda`` for a GPU
    backend (whichever library nnx runs on), else ``cpu``."""
    return "cuda" if backend.is_gpu else "cpu"


def full_float32(backend: Any) -> dict[str, str]:
    """On a GPU backend, float32 products in float32; what was set (for the JSON), {} on a CPU.

    PyTorch: TF32 (a 10-bit mantissa) off for matmuls and cuDNN's convolutions and RNNs, through
    ``fp32_precision = "ieee"`` where PyTorch has it (2.9 and later, which warn about the old
    flags), else ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``
    set to False. JAX: the default matmul precision ``highest`` (JAX uses TF32 for float32 dots
    and convolutions on A100/H100 by default). CuPy leaves TF32 off unless ``CUPY_TF32=1``."""
    if not backend.is_gpu:
        return {}
    done: dict[str, str] = {}
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cudnn.rnn.fp32_precision = "ieee"
        done["torch"] = "fp32_precision ieee (matmul, cuDNN conv and rnn)"
    elif torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        done["torch"] = "allow_tf32 False (matmul, cuDNN)"
    if backend.name == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")
        done["jax"] = "default matmul precision highest"
    return done


def gpu_memory_meter(backend: Any, torch_allocator: bool = False) -> dict[str, Any] | None:
    """Byte counters of GPU memory for one contender: ``in_use()`` now and ``peak()``, the
    high-water mark; None on a CPU backend.

    PyTorch has its own caching allocator (peak = ``max_memory_allocated``; used for the torch
    contender, ``torch_allocator``, and for nnx on torch CUDA tensors); CuPy's memory pool keeps
    freed blocks, so the bytes it holds (``total_bytes``) are its high-water mark; JAX reports
    ``bytes_in_use`` and ``peak_bytes_in_use`` of its device.
    """
    if not backend.is_gpu:
        return None
    if torch_allocator or backend.name == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return {"in_use": torch.cuda.memory_allocated, "peak": torch.cuda.max_memory_allocated}
    if backend.name == "jax":
        device = backend.device

        def stat(key: str) -> int:
            return int((device.memory_stats() or {}).get(key, 0))

        return {"in_use": lambda: stat("bytes_in_use"), "peak": lambda: stat("peak_bytes_in_use")}
    import cupy

    pool = cupy.get_default_memory_pool()
    return {"in_use": pool.used_bytes, "peak": pool.total_bytes}


def gpu_name(backend: Any) -> str | None:
    """The GPU's model name on a GPU backend (None on a CPU backend or when it cannot be read)."""
    if not backend.is_gpu:
        return None
    try:
        if backend.name == "cupy":
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(backend.device.id)
            name = props["name"]
            return name.decode() if isinstance(name, bytes) else name
        if backend.name == "torch":
            import torch

            return torch.cuda.get_device_name(backend.device)
        return str(getattr(backend.device, "device_kind", backend.device))
    except Exception:  # noqa: BLE001  a description only: never fail the benchmark for it
        return None


def open_backend(spec: str) -> Any:
    """``nnx.get_backend(spec)``, or None after one line on stderr saying why it is unusable
    (``--device gpu`` without a GPU): the caller exits with status 2."""
    import nnx

    try:
        return nnx.get_backend(spec)
    except nnx.BackendUnavailableError as err:
        print(f"bench.py: error: {err}", file=sys.stderr)
        return None
