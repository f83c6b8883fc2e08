"""The environment part of the GPU check: nvidia-smi, Python and library versions, which GPU
backends work. Prints ``  name: value`` lines and one ``RESULT {json}`` line; never fails on a
missing library (that is a finding)."""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import warnings

# what the GPU machine may lack and --wheels carries (and nnx itself: which copy is imported)
CARRIED = ("array_api_compat", "array_api_strict", "tqdm", "threadpoolctl", "nnx")
facts: dict = {"python": f"{platform.python_version()} ({sys.executable})"}


def run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"(failed: {err})"
    return (done.stdout + done.stderr).strip()


def version(module: str, key: str | None = None) -> object:
    key = key or module
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            mod = importlib.import_module(module)
    except Exception as err:  # ImportError, or a broken install raising anything
        facts[key] = False
        facts[f"{key}_error"] = f"{type(err).__name__}: {err}"
        return None
    if said:  # the test suite's filterwarnings=error turns these into errors where they recur
        facts[f"{key}_import_warnings"] = [f"{w.category.__name__}: {w.message}" for w in said]
    facts[key] = str(getattr(mod, "__version__", "installed"))
    if facts[key] in ("installed", "UNKNOWN"):  # tqdm from a --target install, say
        try:
            from importlib.metadata import version as dist_version

            facts[key] = dist_version(module)
        except Exception:
            pass
    if module in CARRIED:  # from the carried wheels (--wheels) or installed
        facts[f"{key}_path"] = str(getattr(mod, "__file__", ""))
    return mod


def nccl_pip_library() -> str:
    """The folder of ``libnccl.so.2`` from the ``nvidia-nccl-cu*`` wheel (PyTorch's dependency),
    or "" when there is none."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("nvidia.nccl")
    except (ImportError, ValueError):
        return ""
    for where in getattr(spec, "submodule_search_locations", None) or []:
        lib = os.path.join(where, "lib")
        if os.path.isfile(os.path.join(lib, "libnccl.so.2")):
            return lib
    return ""


def main() -> None:
    facts["cpu_count"] = os.cpu_count()
    if shutil.which("nvidia-smi"):
        print(run(["nvidia-smi"]))
        query = run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                     "--format=csv,noheader"])  # fmt: skip
        facts["nvidia_smi_query"] = query
        first = query.splitlines()[0].split(", ") if query else []
        if len(first) == 3:
            facts["gpu"], facts["gpu_memory"], facts["driver"] = first
    else:
        facts["gpu_reason"] = "nvidia-smi is not on PATH"
    for module in ("numpy", "array_api_compat", "array_api_strict", "mpi4py", "pytest"):
        version(module)
    # nnx's own dependencies besides NumPy and array-api-compat: scripts/train.py's progress
    # bar imports tqdm (the GPU machine may lack it: carry its wheel); threadpoolctl is optional
    for module in ("tqdm", "threadpoolctl"):
        version(module)
    version("nnx")  # which copy is imported, or what it lacks
    version("xdist", "xdist")
    version("sklearn")
    cupy = version("cupy")
    facts["cupy_usable"] = False
    if cupy is not None:
        try:
            count = cupy.cuda.runtime.getDeviceCount()
            (cupy.zeros(4, dtype=cupy.float32) + 1).sum().get()
            facts["cupy_usable"] = count > 0
            facts["cupy_devices"] = count
            facts["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        except Exception as err:
            facts["cupy_reason"] = f"{type(err).__name__}: {err}"
        try:
            from cupy.cuda import nccl

            facts["nccl"] = str(nccl.get_version())
        except Exception as err:
            facts["nccl"] = False
            facts["nccl_reason"] = f"{type(err).__name__}: {err}"
            lib = nccl_pip_library()
            if lib:  # PyTorch's NCCL wheel (nvidia-nccl-cu12): the part "nccl" tries it
                facts["nccl_lib_dir"] = lib
    else:
        facts["cupy_reason"] = facts.get("cupy_error", "CuPy is not installed")
        facts["nccl"], facts["nccl_reason"] = False, "needs CuPy"
    torch = version("torch")
    facts["torch_cuda"] = False
    if torch is not None:
        try:
            facts["torch_cuda"] = bool(torch.cuda.is_available())
            if facts["torch_cuda"]:
                facts["torch_device"] = torch.cuda.get_device_name(0)
                facts["torch_cuda_version"] = torch.version.cuda
        except Exception as err:
            facts["torch_cuda_error"] = f"{type(err).__name__}: {err}"
    jax = version("jax")
    facts["jax_gpu"] = False
    if jax is not None:
        try:
            devices = jax.devices()
            facts["jax_devices"] = [str(d) for d in devices]
            facts["jax_gpu"] = any(d.platform == "gpu" for d in devices)
        except Exception as err:
            facts["jax_devices"] = f"{type(err).__name__}: {err}"
    if not (facts["cupy_usable"] or facts["torch_cuda"] or facts["jax_gpu"]):
        facts.setdefault("gpu_reason", facts.get("cupy_reason", "no backend sees a GPU"))
    for key, value in facts.items():
        print(f"  {key}: {value}")
    print("RESULT " + json.dumps(facts, default=str))


if __name__ == "__main__":
    main()
