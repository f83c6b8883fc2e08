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
  another's; :func:`reset_peak_rss` and :func:`status_kb` read the kernel's counters.

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
