"""The parts of the GPU check, in the order they run.

Each :class:`Part` says what it needs (``Context.missing`` turns an unmet need into a skip
reason), the command it runs (:meth:`Part.command`, the exact argv the dry run prints) and what
to lift from its output into the report (:meth:`Part.digest`). Weights share out the time budget
(runner.Budget): the test suite gets the most.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .runner import Result, probe_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the repository (scripts/gpucheck/ -> .)


class Skip(Exception):
    """A part cannot run here; the message is the reason."""


@dataclass
class Context:
    """What every part's command needs to know."""

    outdir: Path
    work: Path  # scratch space outside OUTDIR (run folders, installed wheels)
    python: str = sys.executable
    wheels: Path | None = None
    facts: dict = field(default_factory=dict)  # the environment probe's RESULT
    probed: bool = False  # whether the environment probe ran and reported
    pytest_maxfail: int = 5  # per backend: one run on a lent GPU should show more than one
    pytest_workers: int = 0
    pytest_slow: bool = False
    # --cpu-smoke: every part that can runs on the CPU (NumPy, torch CPU, JAX CPU) with small
    # sizes, to prove the plumbing (commands, timeouts, output digests, reports) without a GPU
    smoke: bool = False

    @property
    def device(self) -> str:
        """The ``--device`` of the scripts: ``gpu``, or ``cpu`` in a smoke run."""
        return "cpu" if self.smoke else "gpu"

    def train_device(self) -> str:
        """``--device`` of the training runs: ``gpu`` (CuPy) unless the probe found CuPy
        unusable and another library's GPU usable (then ``torch:cuda`` or ``jax:gpu``), so a
        broken CuPy (built for another CUDA, say) still leaves the presets a GPU run."""
        if self.smoke:
            return "cpu"
        if not self.probed or self.has("cupy_usable"):
            return "gpu"
        return next((s for s in ("torch:cuda", "jax:gpu") if self.has(_FACT[s])), "gpu")

    # ------------------------------------------------------------------ what the machine has
    def has(self, name: str) -> bool | None:
        """The environment probe's answer for ``name`` (None before it ran)."""
        if not self.probed:
            return None
        return bool(self.facts.get(name))

    def missing(self, needs: tuple[str, ...]) -> str:
        """The reason the first unmet need gives, or ""."""
        for need in needs:
            if self.smoke and need in _GPU_NEEDS:
                continue
            why = _NEEDS[need](self)
            if why:
                return why
        return ""

    def dataset_flags(self) -> list[str]:
        """``--dataset`` for the image/classification runs: the digits when scikit-learn can
        load them, else a synthetic 8x8 image set written into the scratch folder."""
        if self.facts.get("sklearn") or (not self.probed and _importable("sklearn")):
            return []  # the default: digits
        return ["--dataset", str(self.work / "data" / "synthetic_digits.npz")]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _no_gpu_reason(ctx: Context) -> str:
    if ctx.probed:
        return f"no usable CUDA GPU: {ctx.facts.get('gpu_reason') or 'the environment probe found none'}"
    return "no usable CUDA GPU: no nvidia-smi on PATH and CuPy is not installed"


_CARRY = "carry its wheel with --wheels DIR (docs/benchmarks.md, 'Running the GPU check')"


def _need_nnx(ctx: Context) -> str:
    if ctx.has("array_api_compat") is False:
        return f"array-api-compat is not importable, so nnx cannot be imported; {_CARRY}"
    if ctx.has("nnx") is False:
        return f"nnx cannot be imported ({ctx.facts.get('nnx_error', 'unknown')})"
    return ""


def _need_cli(ctx: Context) -> str:
    """scripts/train.py: nnx, and tqdm for its progress bar (an nnx dependency that a machine
    with only the array libraries lacks)."""
    if ctx.has("tqdm") is False:
        return f"tqdm is not importable (scripts/train.py's progress bar needs it); {_CARRY}"
    return _need_nnx(ctx)


def _need_cupy(ctx: Context) -> str:
    usable = ctx.has("cupy_usable")
    if usable is None:  # the probe did not report: guess cheaply
        return "" if shutil.which("nvidia-smi") or _importable("cupy") else _no_gpu_reason(ctx)
    if not usable:
        return f"CuPy cannot use a GPU here ({ctx.facts.get('cupy_reason', 'unknown')})"
    return ""


def _need_torch_cuda(ctx: Context) -> str:
    if not ctx.probed:
        return _need_cupy(ctx)  # no probe (--only): guess as for CuPy
    if ctx.has("torch_cuda"):
        return ""
    why = ctx.facts.get("torch_cuda_error") or ctx.facts.get("torch_error")
    return f"PyTorch cannot use a GPU here ({why or 'torch.cuda.is_available() is False'})"


def _need_jax_gpu(ctx: Context) -> str:
    if not ctx.probed:
        return _need_cupy(ctx)
    if ctx.has("jax_gpu"):
        return ""
    return f"JAX has no GPU device here (jax.devices(): {ctx.facts.get('jax_devices', 'no JAX')})"


def _need_any_gpu(ctx: Context) -> str:
    if not ctx.probed:
        return _need_cupy(ctx)
    if ctx.has("cupy_usable") or ctx.has("torch_cuda") or ctx.has("jax_gpu"):
        return ""
    return _no_gpu_reason(ctx)


def _need_mpi(ctx: Context) -> str:
    if shutil.which("mpiexec") is None:
        return "mpiexec is not on PATH (install an MPI library, e.g. MPICH or Open MPI)"
    if ctx.has("mpi4py") is False or (not ctx.probed and not _importable("mpi4py")):
        return "mpi4py is not importable (pip install mpi4py)"
    return ""


def _need_nccl(ctx: Context) -> str:
    if ctx.has("nccl") is False and not ctx.facts.get("nccl_lib_dir"):
        return f"CuPy has no NCCL here ({ctx.facts.get('nccl_reason', 'cupy.cuda.nccl failed')})"
    return ""


_FACT = {"torch:cuda": "torch_cuda", "jax:gpu": "jax_gpu"}  # the probe's fact per backend
_GPU_NEEDS = ("cupy", "torch:cuda", "jax:gpu", "gpu")  # waived by --cpu-smoke
_NEEDS = {
    "nnx": _need_nnx,
    "cli": _need_cli,
    "cupy": _need_cupy,
    "torch:cuda": _need_torch_cuda,
    "jax:gpu": _need_jax_gpu,
    "gpu": _need_any_gpu,
    "nccl": _need_nccl,
}


# --------------------------------------------------------------------------------- the parts


class Part:
    name = ""
    title = ""
    weight = 1.0
    needs: tuple[str, ...] = ()
    env: dict[str, str] = {}  # environment variables of this part (unless already set)

    def env_for(self, ctx: Context) -> dict[str, str]:
        """This part's environment variables here (``env`` unless a part needs more)."""
        return self.env

    def command(self, ctx: Context) -> list[str]:
        raise NotImplementedError

    def digest(self, ctx: Context, result: Result, output: str) -> None:
        """Fill ``result.highlights`` and ``result.details`` from the output."""
        result.details.update(probe_result(output))


class Wheels(Part):
    name, title, weight = "wheels", "Install the carried wheels (--wheels)", 0.5

    def command(self, ctx: Context) -> list[str]:
        if ctx.wheels is None:
            raise Skip("no --wheels DIR given (the libraries already installed are used)")
        found = sorted(str(p) for p in Path(ctx.wheels).glob("*.whl"))
        if not found:
            raise Skip(f"no *.whl files in {ctx.wheels}")
        return [
            ctx.python, "-m", "pip", "install", "--no-index", "--no-deps", "--target",
            str(ctx.work / "site"), *found,
        ]  # fmt: skip


class Environment(Part):
    name, title, weight = "environment", "nvidia-smi, library versions", 2.0

    def command(self, ctx: Context) -> list[str]:
        return [ctx.python, str(HERE / "probe_env.py")]

    def digest(self, ctx: Context, result: Result, output: str) -> None:
        super().digest(ctx, result, output)
        result.highlights = [line for line in output.splitlines() if line.startswith("  ")][:30]


class Pytest(Part):
    """The backend-parametrized tests on one GPU backend, in a process of their own: a failure
    (``-x``) or a crash on one backend leaves the others their run and their time."""

    # The tests compare float32 results with float64 references at float32 tolerances: TF32
    # (10-bit mantissa) products would fail them. cuBLAS/cuDNN default to TF32 for some float32
    # work (torch's cuDNN convolutions), JAX on A100/H100 for every float32 dot and convolution.
    env = {"NVIDIA_TF32_OVERRIDE": "0", "JAX_DEFAULT_MATMUL_PRECISION": "highest"}

    def __init__(self, spec: str, weight: float):
        self.spec = spec
        self.name = "pytest_" + spec.replace(":", "_")
        self.title = f"Test suite on {spec} (-m gpu -k {self.test_id})"
        self.weight = weight
        self.needs = ("nnx", spec)

    @property
    def test_id(self) -> str:
        return self.spec.replace(":", "-")  # the parameter id tests/conftest.py gives it

    def command(self, ctx: Context) -> list[str]:
        stop = ["-x"] if ctx.pytest_maxfail <= 1 else [f"--maxfail={ctx.pytest_maxfail}"]
        # addopts (pyproject) holds -n auto, which fails where pytest-xdist is missing; one
        # process by default (under xdist a collection error would stop the run at once)
        workers = ["-n", str(ctx.pytest_workers)] if ctx.pytest_workers > 0 else []
        marks = "gpu" if ctx.pytest_slow else "gpu and not slow"
        test_id, where = self.test_id, "tests"
        if ctx.smoke:  # the same backend's CPU twin, one test file
            marks, where = "not gpu and not slow", "tests/test_backend.py"
            test_id = {"cupy": "numpy", "torch:cuda": "torch", "jax:gpu": "jax"}[self.spec]
        return [
            ctx.python, "-m", "pytest", "-m", marks, "-k", test_id, *stop, "-q",
            "-p", "no:cacheprovider", "-o", "addopts=-ra --strict-markers", *workers,
            "--durations=5", f"--junitxml={ctx.outdir / (self.name + '.xml')}",
            "-p", "gpucheck.pytest_collect", "--continue-on-collection-errors", where,
        ]  # fmt: skip

    def digest(self, ctx: Context, result: Result, output: str) -> None:
        summary = [
            line
            for line in output.splitlines()
            if re.match(r"^(=+ .*(passed|failed|skipped|error).* =+|FAILED |ERROR |!+ )", line)
            or re.match(r"^\d+ (passed|failed|skipped|deselected|error)", line)
        ]
        result.highlights = summary[-20:]


class Train(Part):
    needs = ("cli", "gpu")

    def __init__(self, name: str, title: str, weight: float, flags: list[str], data: bool):
        self.name, self.title, self.weight = name, title, weight
        self.flags, self.data = flags, data

    def command(self, ctx: Context) -> list[str]:
        data = ctx.dataset_flags() if self.data else []
        out = ["--out", str(ctx.work / "runs" / self.name), "--overwrite"]
        flags = [ctx.train_device() if prev == "--device" else v
                 for prev, v in zip(["", *self.flags[:-1]], self.flags, strict=True)]  # fmt: skip
        if ctx.smoke:  # one short epoch on the CPU
            smaller = {"--epochs": "1", "--steps-per-epoch": "10"}
            flags = [smaller.get(prev, v) for prev, v in zip(["", *flags[:-1]], flags, strict=True)]
        return [ctx.python, str(ROOT / "scripts" / "train.py"), *flags, *data, *out]

    def digest(self, ctx: Context, result: Result, output: str) -> None:
        keep = re.compile(r"accuracy|bits/char|per epoch|trained on|nnx: held-out")
        result.highlights = [line for line in output.splitlines() if keep.search(line)][-8:]
        device = ctx.train_device()
        if device not in ("gpu", "cpu"):
            result.highlights.insert(0, f"CuPy cannot use the GPU here: trained on {device}")
        summary = ctx.work / "runs" / self.name / "summary.json"
        if summary.is_file():
            try:
                result.details["summary"] = json.loads(summary.read_text())
            except ValueError:
                pass


class BenchMLP(Part):
    name, title, weight, needs = (
        "bench_mlp",
        "MLP benchmark vs torch CUDA eager",
        3.0,
        ("nnx", "cupy"),
    )

    def command(self, ctx: Context) -> list[str]:
        # --no-memory: the per-contender memory probes are five more processes, each starting
        # CUDA (about 35 s in all), and bench.py prints nothing until every one has run, so a
        # timeout would lose the timings too; the part "memory" measures nnx's growth instead
        sizes = ["--samples", "30000", "--repeats", "3", "--no-memory"]
        if ctx.smoke:
            sizes = ["--samples", "3000", "--repeats", "1", "--warmup-batches", "2", "--no-memory"]
        return [
            ctx.python, str(ROOT / "scripts" / "bench.py"), "--device", ctx.device,
            "--batch-sizes", "128,1024", *sizes, "--json", str(ctx.outdir / "bench_mlp.json"),
        ]  # fmt: skip

    def digest(self, ctx: Context, result: Result, output: str) -> None:
        lines = output.splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("machine:")), 0)
        result.highlights = lines[start:][:30]
        path = ctx.outdir / "bench_mlp.json"
        if path.is_file():
            result.details["json"] = path.name


class BenchTorch(Part):
    """``scripts/bench.py --cnn`` or ``--sequence`` on the GPU: nnx against torch CUDA eager at
    batch 128 and 1024, TF32 off on both sides, the first losses (outputs) checked equal. nnx
    runs on CuPy, or on torch CUDA tensors where the probe found CuPy unusable (as the training
    parts do); torch CUDA is the contender, so it is needed either way. ``--no-memory``: the
    memory probes are more processes starting CUDA (the part ``memory`` measures growth)."""

    needs = ("nnx", "torch:cuda")

    def __init__(self, name: str, title: str, weight: float, flags: list[str], smoke: list[str]):
        self.name, self.title, self.weight = name, title, weight
        self.flags, self.smoke = flags, smoke

    def command(self, ctx: Context) -> list[str]:
        return [
            ctx.python, str(ROOT / "scripts" / "bench.py"), "--device", ctx.train_device(),
            *(self.smoke if ctx.smoke else self.flags), "--no-memory",
            "--json", str(ctx.outdir / f"{self.name}.json"),
        ]  # fmt: skip

    def digest(self, ctx: Context, result: Result, output: str) -> None:
        lines = [line for line in output.splitlines() if line.strip()]
        table = [line for line in lines if not line.startswith("bench: ")]
        # the tables (and any first-loss error); without them (a timeout) the progress lines
        result.highlights = (table or lines)[-30:]
        device = ctx.train_device()
        if device not in ("gpu", "cpu"):
            result.highlights.insert(0, f"CuPy cannot use the GPU here: nnx on {device}")
        path = ctx.outdir / f"{self.name}.json"
        if path.is_file():
            result.details["json"] = path.name


class Probe(Part):
    def __init__(self, name: str, title: str, weight: float, script: str, needs: tuple[str, ...]):
        self.name, self.title, self.weight, self.script, self.needs = (
            name,
            title,
            weight,
            script,
            needs,
        )

    def command(self, ctx: Context) -> list[str]:
        return [ctx.python, str(HERE / self.script), *(["--device", "cpu"] * ctx.smoke)]

    def digest(self, ctx: Context, result: Result, output: str) -> None:
        super().digest(ctx, result, output)
        result.highlights = [line for line in output.splitlines() if line.startswith("  ")][-20:]


class Nccl(Probe):
    """``mpiexec -n 1`` of the NCCL probe (nnx.distributed's path included); without MPI
    (no mpiexec or mpi4py, as on a machine with only the array libraries) the probe runs
    alone and checks nnx.backend's NCCL communicator and allreduce on one rank."""

    def command(self, ctx: Context) -> list[str]:
        if ctx.smoke:
            raise Skip("--cpu-smoke: NCCL needs CuPy and a GPU")
        why = _need_mpi(ctx)
        if why:
            return [ctx.python, str(HERE / self.script), "--no-mpi"]
        return ["mpiexec", "-n", "1", ctx.python, str(HERE / self.script)]

    def env_for(self, ctx: Context) -> dict[str, str]:
        """CuPy could not load NCCL but PyTorch's NCCL wheel is there: put it on the path."""
        lib = ctx.facts.get("nccl_lib_dir") if ctx.has("nccl") is False else None
        if not lib:
            return {}
        return {
            "LD_LIBRARY_PATH": os.pathsep.join(
                filter(None, [lib, os.environ.get("LD_LIBRARY_PATH")])
            )
        }

    def digest(self, ctx: Context, result: Result, output: str) -> None:
        super().digest(ctx, result, output)
        why = _need_mpi(ctx)
        if why:
            result.highlights.insert(0, f"without MPI ({why}): nnx.distributed not checked")


def all_parts() -> list[Part]:
    """Every part, in the order they run. The weights cap each part's share of the time left
    (runner.Budget); what a part does not use goes to the later ones. The test suite comes
    last: the parts before it are short and bounded, the suite could use any time, so it takes
    all that is left. The first training run weighs most: its process compiles CuPy's kernels
    (NVRTC, cached for the later parts)."""
    return [
        Wheels(),
        Environment(),
        Train("train_mlp", "Train the MLP preset on the GPU", 2.0,
              ["--device", "gpu", "--epochs", "5"], data=True),
        Train("train_cnn", "Train the cnn preset on the GPU", 1.5,
              ["--device", "gpu", "--model", "cnn", "--epochs", "3"], data=True),
        Train("train_transformer", "Train the transformer preset on the GPU", 1.5,
              ["--device", "gpu", "--model", "transformer", "--epochs", "2",
               "--steps-per-epoch", "100"], data=False),
        BenchMLP(),
        BenchTorch("bench_cnn", "LeNet and ResNet benchmark vs torch CUDA eager", 2.0,
                   ["--cnn", "--cnn-batch", "128,1024", "--cnn-steps", "10", "--repeats", "3"],
                   ["--cnn", "--quick", "--cnn-batch", "4,8"]),
        BenchTorch("bench_sequence", "Transformer, LSTM, RNN and GRU benchmark vs torch CUDA eager",
                   1.5, ["--sequence", "--seq-batch", "128,1024", "--repeats", "5"],
                   ["--sequence", "--quick", "--seq-batch", "2,4"]),
        Train("mixed16", "Mixed precision (mixed16) on CuPy", 1.0,
              ["--device", "gpu", "--precision", "mixed16", "--epochs", "3"], data=True),
        Probe("sync", "Hidden host syncs in a training step (CuPy, torch CUDA)",
              1.0, "probe_sync.py", ("nnx", "gpu")),
        Probe("memory", "GPU memory growth over 50 steps", 0.8, "probe_memory.py",
              ("nnx", "gpu")),
        Nccl("nccl", "NCCL allreduce under mpiexec -n 1", 0.6, "probe_nccl.py",
             ("nnx", "cupy", "nccl")),
        Pytest("cupy", 2.0),
        Pytest("torch:cuda", 1.25),
        Pytest("jax:gpu", 0.75),
    ]  # fmt: skip
