"""scripts/gpu_check.py without a GPU: the dry run lists every part with the command it would
run, and a real run on a machine without a GPU skips the GPU parts with a reason and still
writes both reports."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"
sys.path.insert(0, str(ROOT / "scripts"))

from gpucheck.__main__ import main  # noqa: E402
from gpucheck.parts import Context, all_parts  # noqa: E402

PARTS = [p.name for p in all_parts()]
PYTEST_PARTS = {"pytest_cupy", "pytest_torch_cuda", "pytest_jax_gpu"}
GPU_PARTS = PYTEST_PARTS | {
    "train_mlp", "train_cnn", "train_transformer", "bench_mlp", "mixed16", "sync",
    "memory", "nccl",
}  # fmt: skip


def read_reports(outdir: Path) -> dict:
    data = json.loads((outdir / "gpu_report.json").read_text())
    md = (outdir / "gpu_report.md").read_text()
    assert [p["name"] for p in data["parts"]] == PARTS
    for i, name in enumerate(PARTS, 1):
        assert f"## {i}. {name}:" in md
    for part in data["parts"]:
        assert part["status"] in ("ok", "failed", "skipped")
        assert part["status"] == "ok" or part["reason"], part
    return data


def test_dry_run_lists_every_part_with_its_command(tmp_path, capsys):
    assert main([str(tmp_path / "out"), "--dry-run"]) == 0
    data = read_reports(tmp_path / "out")
    assert data["dry_run"] is True
    parts = {p["name"]: p for p in data["parts"]}
    assert all(p["status"] == "skipped" for p in parts.values())
    for name in GPU_PARTS | {"environment"}:
        assert parts[name]["reason"] == f"dry run; would run: {parts[name]['command']}"
    assert "--device gpu" in parts["train_mlp"]["command"]
    assert "--model transformer" in parts["train_transformer"]["command"]
    assert "--precision mixed16" in parts["mixed16"]["command"]
    assert "--batch-sizes 128,1024" in parts["bench_mlp"]["command"]
    for name, test_id in zip(sorted(PYTEST_PARTS), ("cupy", "jax-gpu", "torch-cuda"), strict=True):
        command = parts[name]["command"]
        assert f" -m 'gpu and not slow' -k {test_id} --maxfail=5 " in command, command
        assert f"--junitxml={tmp_path / 'out' / name}.xml" in command, command
        assert command.startswith("NVIDIA_TF32_OVERRIDE=0 JAX_DEFAULT_MATMUL_PRECISION=highest ")
    nccl = parts["nccl"]["command"]
    assert nccl.startswith("mpiexec -n 1 ") or nccl.endswith("probe_nccl.py --no-mpi"), nccl
    assert parts["wheels"]["reason"].startswith("no --wheels DIR given")
    assert parts["bench_cnn"]["reason"].startswith("not supported:")
    assert "gpu_report.md" in capsys.readouterr().out


def test_wheels_are_installed_with_pip_offline(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "array_api_strict-2.6.1-py3-none-any.whl").write_bytes(b"")
    assert main([str(tmp_path / "out"), "--dry-run", "--wheels", str(tmp_path / "w")]) == 0
    wheels = json.loads((tmp_path / "out" / "gpu_report.json").read_text())["parts"][0]
    assert " -m pip install --no-index --no-deps --target " in wheels["command"]
    assert wheels["command"].endswith("array_api_strict-2.6.1-py3-none-any.whl")


def test_without_scikit_learn_the_training_parts_get_synthetic_data(tmp_path):
    ctx = Context(tmp_path, tmp_path / "work", facts={"sklearn": False}, probed=True)
    assert ctx.dataset_flags() == ["--dataset", str(tmp_path / "work/data/synthetic_digits.npz")]
    ctx.facts["sklearn"] = "1.5"
    assert ctx.dataset_flags() == []


def test_unknown_part_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--only", "pytest,nope"])
    assert "unknown part(s) nope" in capsys.readouterr().err


# the no-GPU runs below would run the GPU parts for real on a machine that may have a GPU
MAYBE_GPU = pytest.mark.skipif(
    shutil.which("nvidia-smi") is not None or importlib.util.find_spec("cupy") is not None,
    reason="this machine may have a GPU (nvidia-smi or CuPy); these tests check the no-GPU path",
)


def run_script(out: Path, *flags: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *flags],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=out.parent,
    )
    assert done.returncode == 0, done.stderr
    return {p["name"]: p for p in read_reports(out)["parts"]}


@MAYBE_GPU
def test_without_a_gpu_the_gpu_parts_are_skipped_with_a_reason(tmp_path):
    """The real script on this machine, without the (slow) environment probe: every part that
    needs a GPU is skipped saying why, and the report is written."""
    parts = run_script(tmp_path / "out", "--only", ",".join(sorted(GPU_PARTS)))
    assert parts["environment"]["reason"] == "not in --only"
    for name in GPU_PARTS:
        assert parts[name]["status"] == "skipped", parts[name]
        assert "no usable CUDA GPU" in parts[name]["reason"], parts[name]


@MAYBE_GPU
@pytest.mark.slow
def test_a_tiny_budget_times_parts_out_and_still_writes_the_report(tmp_path):
    """Every part, with a budget too small for the environment probe on a loaded machine: it
    ends ok or timed out (interrupted, its output kept), the GPU parts are skipped, and the
    report is written."""
    parts = run_script(tmp_path / "out", "--budget-s", "28")
    env = parts["environment"]
    assert env["status"] in ("ok", "failed"), env
    if env["status"] == "failed":
        assert env["reason"].startswith("timed out after"), env
    for name in GPU_PARTS:
        part = parts[name]
        assert part["status"] == "skipped", part
        assert "GPU" in part["reason"] or "CuPy" in part["reason"] or "budget" in part["reason"]
    assert (tmp_path / "out" / "logs" / "environment.log").is_file()


def probed(**facts: object) -> Context:
    """A context as after the environment probe on a machine with CuPy and nnx importable."""
    base = {"array_api_compat": "1.16.0", "nnx": "0.1.0", "tqdm": "4.67", "cupy_usable": True}
    return Context(Path("out"), Path("work"), facts={**base, **facts}, probed=True)


def test_needs_name_what_the_gpu_machine_lacks():
    parts = {p.name: p for p in all_parts()}
    train = [n for n in parts if n.startswith("train_")] + ["mixed16"]
    ctx = probed(tqdm=False)
    for name in train:
        why = ctx.missing(parts[name].needs)
        assert "tqdm is not importable" in why and "--wheels DIR" in why, (name, why)
    assert ctx.missing(parts["bench_mlp"].needs) == ""  # bench.py shows no progress bar
    ctx = probed(torch_cuda=False, torch_cuda_error="RuntimeError: no driver")
    assert all(ctx.missing(parts[n].needs) == "" for n in train)
    assert ctx.missing(parts["pytest_cupy"].needs) == ""
    assert "no driver" in ctx.missing(parts["pytest_torch_cuda"].needs)
    assert "JAX has no GPU" in ctx.missing(parts["pytest_jax_gpu"].needs)
    ctx = probed(nnx=False, nnx_error="ModuleNotFoundError: No module named 'tqdm'")
    assert "nnx cannot be imported (ModuleNotFoundError" in ctx.missing(parts["sync"].needs)
    assert "CuPy has no NCCL" in probed(nccl=False).missing(parts["nccl"].needs)


def test_pytest_slow_runs_the_slow_sweeps_too(tmp_path):
    assert main([str(tmp_path / "out"), "--dry-run", "--pytest-slow", "--pytest-maxfail", "1"]) == 0
    parts = {p["name"]: p for p in read_reports(tmp_path / "out")["parts"]}
    command = parts["pytest_cupy"]["command"]
    assert " -m gpu -k cupy -x " in command, command


@pytest.mark.slow  # the emulated-sync tests below run the same probe by default
def test_cpu_smoke_runs_the_probes_and_reads_their_results(tmp_path):
    """--cpu-smoke runs the sync and memory probes on NumPy in their own processes; the report
    carries each probe's RESULT (every training configuration ran, none was checked for
    syncs: NumPy has no device)."""
    assert main([str(tmp_path / "out"), "--cpu-smoke", "--only", "sync,memory"]) == 0
    data = read_reports(tmp_path / "out")
    assert data["cpu_smoke"] is True
    assert "CPU smoke run" in (tmp_path / "out" / "gpu_report.md").read_text()
    parts = {p["name"]: p for p in data["parts"]}
    sync, memory = parts["sync"], parts["memory"]
    assert sync["status"] == "ok" and sync["command"].endswith("probe_sync.py --device cpu"), sync
    configs = sync["details"]["cpu"]["configs"]
    assert set(configs) == {"mlp-sgd", "mlp-adam-clip", "mlp-sgd-labels-checked", "cnn-adam",
                            "mlp-sgd-mixed16", "trainer-fit-adam-accuracy"}  # fmt: skip
    fit = configs.pop("trainer-fit-adam-accuracy")
    assert fit == {"sync": None, "steps": 14, "checked": False}  # 2 epochs of 8 batches, less 2
    assert all(c == {"sync": None, "steps": 20, "checked": False} for c in configs.values())
    assert memory["status"] == "ok" and memory["details"] == {
        "cpu": {"steps": 50, "measured": False}
    }
    assert parts["nccl"]["reason"] == "not in --only"


@pytest.mark.slow
def test_cpu_smoke_runs_every_part_end_to_end(tmp_path):
    """Every part on the CPU, as the GPU machine would run it: the test suite's CPU twins, the
    three presets and mixed16 for one epoch, the MLP benchmark, the probes; the digests find
    the accuracy lines, the benchmark table and the pytest summary in the real output."""
    parts = run_script(tmp_path / "out", "--cpu-smoke", "--budget-s", "400")
    not_run = {"wheels", "bench_cnn", "bench_sequence", "nccl"}
    for name, part in parts.items():
        assert part["status"] == ("skipped" if name in not_run else "ok"), part
    assert "--cpu-smoke: NCCL needs CuPy" in parts["nccl"]["reason"]
    for name in PYTEST_PARTS:
        assert any(" passed" in line for line in parts[name]["highlights"]), parts[name]
    for name in ("train_mlp", "train_cnn", "mixed16"):
        assert any("test " in line and "accuracy" in line for line in parts[name]["highlights"])
        assert parts[name]["details"]["summary"], parts[name]
    assert any("bits/char" in line for line in parts["train_transformer"]["highlights"])
    assert any(line.startswith("machine:") for line in parts["bench_mlp"]["highlights"])
    assert (tmp_path / "out" / "bench_mlp.json").is_file()


def test_sigterm_kills_the_running_part_and_reports_the_parts_run_so_far(tmp_path, monkeypatch):
    """SIGTERM (as a runner's time limit sends) while a part runs: the part's process group is
    killed, the report says which part was running and that the later ones did not run, the
    exit status is 130; a report is also written after every part that ended."""
    import os
    import signal
    import threading
    import time

    import gpucheck.__main__ as entry
    from gpucheck.parts import Part

    class Sleeper(Part):
        def __init__(self, name: str, seconds: float):
            self.name, self.title, self.seconds = name, f"sleeps {seconds} s", seconds

        def command(self, ctx: Context) -> list[str]:
            code = f"import os, time; print(os.getpid(), flush=True); time.sleep({self.seconds})"
            return [sys.executable, "-c", code]

    parts = [Sleeper("quick", 0), Sleeper("slow", 60), Sleeper("later", 0)]
    monkeypatch.setattr(entry, "all_parts", lambda: parts)
    log = tmp_path / "out" / "logs" / "slow.log"

    def stop_once_slow_runs() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.is_file() and log.read_text().strip()):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=stop_once_slow_runs, daemon=True).start()
    assert entry.main([str(tmp_path / "out")]) == 130
    assert signal.getsignal(signal.SIGTERM) is before
    pid = int(log.read_text().split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    data = json.loads((tmp_path / "out" / "gpu_report.json").read_text())
    assert data["state"] == "stopped"
    quick, slow, later = data["parts"]
    assert quick["status"] == "ok"
    assert slow["status"] == "failed" and "stopped" in slow["reason"], slow
    assert later["status"] == "skipped" and "stopped" in later["reason"], later
    assert "**Stopped**" in (tmp_path / "out" / "gpu_report.md").read_text()


def test_training_falls_back_to_torch_cuda_when_cupy_is_broken():
    parts = {p.name: p for p in all_parts()}
    ctx = probed(cupy_usable=False, cupy_reason="CUDARuntimeError", torch_cuda=True)
    assert ctx.missing(parts["train_cnn"].needs) == ""
    command = parts["train_cnn"].command(ctx)
    assert command[command.index("--device") + 1] == "torch:cuda"
    assert "CuPy cannot use" in ctx.missing(parts["bench_mlp"].needs)  # the reference is CuPy's
    ctx = probed(cupy_usable=False, torch_cuda=False, jax_gpu=False)
    assert "no usable CUDA GPU" in ctx.missing(parts["train_cnn"].needs)


def emulated_sync_check(device: str) -> dict:
    """The sync probe on a CPU backend with every host read of its arrays refused (--emulate):
    what a GPU would wait for in each training configuration."""
    from gpucheck.runner import probe_result

    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gpucheck/probe_sync.py"), "--device", device,
         "--emulate"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = probe_result(done.stdout)[device]
    assert result["checked"] is True, result
    return result["configs"]


def assert_no_hidden_sync(configs: dict) -> None:
    """Only the configurations that read the device by design do; every other one ran its
    steps (and Trainer.fit its batch loop) without a host read."""
    for name, found in configs.items():
        if name in ("mlp-sgd-labels-checked", "mlp-sgd-mixed16") and found.get("sync"):
            assert found["step"] == 1 and found["expected"], (name, found)
        else:
            assert found["sync"] is None and found["checked"], (name, found)


def test_a_training_step_reads_nothing_back_on_the_portable_path():
    """array-api-strict runs the code CuPy runs: the steps and Trainer.fit's batch loop make no
    host read but CrossEntropyLoss's label check (it reads the label range; Trainer.fit checks
    once and turns it off)."""
    pytest.importorskip("array_api_strict")
    configs = emulated_sync_check("strict")
    assert "to_numpy" in configs["mlp-sgd-labels-checked"]["at"], configs
    assert "float16' is not available" in configs.pop("mlp-sgd-mixed16")["error"]  # no float16
    assert configs["trainer-fit-adam-accuracy"]["steps"] == 14  # 2 epochs of 8 batches, less 2
    assert_no_hidden_sync(configs)


@pytest.mark.torch
def test_a_training_step_reads_nothing_back_on_torch():
    """The same on torch tensors (the code torch:cuda runs, native kernels included); mixed
    precision's finite check is its one read per step."""
    pytest.importorskip("torch")
    configs = emulated_sync_check("torch")
    assert "precision.py" in configs["mlp-sgd-mixed16"]["at"], configs
    assert_no_hidden_sync(configs)


def test_nccl_from_pytorchs_wheel_when_cupy_cannot_load_it():
    nccl = next(p for p in all_parts() if p.name == "nccl")
    ctx = probed(nccl=False, nccl_reason="ImportError: libnccl.so.2", nccl_lib_dir="/site/lib")
    assert ctx.missing(nccl.needs) == ""
    assert nccl.env_for(ctx)["LD_LIBRARY_PATH"].split(":")[0] == "/site/lib"
    assert nccl.env_for(probed(nccl="2.21.5")) == {}


def test_a_warning_at_import_is_shown_with_the_library():
    """filterwarnings=error makes a library's import warning fail tests that import it again:
    the report puts it next to the library's version."""
    from gpucheck.report import markdown

    meta = {"started": "now", "seconds": 1, "budget_s": 450, "dry_run": False, "command": "x"}
    facts = {"cupy": "13.3.0", "cupy_import_warnings": ["UserWarning: CUDA path not detected"]}
    md = markdown([], meta, facts)
    assert (
        "| CuPy | 13.3.0 |\n| CuPy: warning at import | UserWarning: CUDA path not detected |" in md
    )
