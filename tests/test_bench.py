"""scripts/bench.py (the package scripts/bench/): smoke tests only (benchmarks are never timed
tests)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


def _bench(*args: str, timeout: float | None = 300) -> subprocess.CompletedProcess:
    """``python scripts/bench.py *args`` in a new process, its output captured as text."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout
    )


def test_quick_benchmark_runs_and_nnx_matches_the_reference(tmp_path):
    out = tmp_path / "bench.json"
    done = _bench("--quick", "--threads", "1", "--json", str(out))
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["loss_difference_nnx_vs_reference"] <= 1e-5
    assert results["matmul_ceiling_gflops"] > 0
    assert results["threads"] == 1 and results["blas_threads"] in (1, None)
    assert len(results["load_average_before"]) == len(results["load_average_after"]) == 3
    for row in results["batches"].values():
        assert row["ratio_nnx_vs_reference"] > 0 and row["ratio_trainer_vs_nnx"] > 0
        assert row["cpu_ratio_readme_vs_reference"] > 0 and row["readme"]["cpu_seconds"] > 0
        assert row["nnx"]["samples_per_s"] > 0
    assert "nnx/reference" in done.stdout and "matmul ceiling" in done.stdout
    assert "CPU  nnx/reference" in done.stdout and "threads: 1" in done.stdout


def test_a_backend_without_a_hand_written_reference_is_refused():
    done = _bench("--quick", "--device", "strict", timeout=120)
    assert done.returncode == 2
    assert "array_api_strict backend" in done.stderr and "NumPy (--device cpu)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.torch
def test_quick_cnn_benchmark_runs_and_starts_from_torchs_loss(tmp_path):
    out = tmp_path / "cnn.json"
    done = _bench("--cnn", "--quick", "--threads", "1", "--no-memory", "--json", str(out))
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    for name in ("lenet", "resnet"):
        row = results["workloads"][name]
        assert abs(row["first_loss"]["nnx"] - row["first_loss"]["torch"]) < 1e-4
        assert row["ratio_nnx_vs_torch"] > 0 and row["cpu_ratio_nnx_vs_torch"] > 0
    assert "nnx/torch" in done.stdout


@pytest.mark.torch
def test_cnn_workload_option_runs_only_that_workload(tmp_path):
    out = tmp_path / "cnn.json"
    args = ["--cnn", "--quick", "--threads", "1", "--no-memory", "--json", str(out)]
    done = _bench(*args, "--cnn-workload", "lenet")
    assert done.returncode == 0, done.stderr
    assert list(json.loads(out.read_text())["workloads"]) == ["lenet"]


@pytest.mark.torch
def test_cnn_native_contenders_start_from_torchs_loss(tmp_path):
    """--cnn-native: nnx on torch tensors and nnx compiled on JAX (native kernels) run LeNet
    from torch's weights to torch's first loss (the run fails otherwise)."""
    pytest.importorskip("jax")
    out = tmp_path / "cnn.json"
    args = ["--cnn", "--cnn-native", "--quick", "--threads", "1", "--no-memory"]
    done = _bench(*args, "--cnn-workload", "lenet", "--json", str(out))
    assert done.returncode == 0, done.stderr
    row = json.loads(out.read_text())["workloads"]["lenet"]
    for name in ("nnx-torch", "nnx-jax-compiled"):
        assert abs(row["first_loss"][name] - row["first_loss"]["torch"]) < 1e-4
        assert row[f"cpu_ratio_{name}_vs_torch"] > 0


def test_jax_comparison_smoke_run(tmp_path):
    """--jax: nnx on NumPy, JAX eager and JAX compiled run the same steps (a smoke test)."""
    import pytest

    pytest.importorskip("jax")
    out = tmp_path / "jax.json"
    args = ["--jax", "--samples", "128", "--features", "8", "--hidden", "8", "--batch-sizes", "32"]
    args += ["--repeats", "1", "--warmup-batches", "1", "--json", str(out)]
    with_torch = importlib.util.find_spec("torch") is not None
    args += ["--with-torch"] * with_torch
    done = _bench(*args)
    assert done.returncode == 0, done.stderr
    row = json.loads(out.read_text())["batches"]["32"]
    assert row["loss_difference_compiled_vs_numpy"] <= 1e-4
    assert row["jax compiled"]["samples_per_s"] > 0 and row["ratio_jax_compiled_vs_jax_eager"] > 0
    if with_torch:  # the same batches: torch's first losses are the compiled step's
        assert row["cpu_ratio_jax_compiled_vs_torch"] > 0
        first = row["first_losses"]
        pairs = zip(first["torch eager"], first["jax compiled"], strict=True)
        assert max(abs(a - b) for a, b in pairs) < 1e-4


def test_quick_distributed_benchmark_splits_compute_and_allreduce(tmp_path):
    import pytest

    pytest.importorskip("mpi4py", reason="needs mpi4py: pip install 'nnx-trainer[mpi]'")
    out = tmp_path / "dist.json"
    done = _bench("--distributed", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["ranks"] for r in rows] == [1, 2]
    for r in rows:
        assert r["compute_ms"] > 0 and r["allreduce_ms"] > 0
        assert r["step_ms"] == r["compute_ms"] + r["allreduce_ms"]
    assert rows[1]["rank_batch"] == rows[0]["rank_batch"] // 2 and rows[1]["bus_gb_per_s"] > 0
    assert "allreduce" in done.stdout and "bus GB/s" in done.stdout


@pytest.mark.torch
def test_sequence_quick_run_reports_both_workloads(tmp_path):
    out = tmp_path / "seq.json"
    done = _bench("--sequence", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert {"transformer", "lstm"} <= set(results)
    assert all(results[k]["nnx_over_torch"] > 0 for k in ("transformer", "lstm"))
    assert "nnx/torch" in done.stdout
    for k in ("transformer", "lstm", "rnn", "gru", "transformer_decoder"):  # nnx's weights
        assert results[k]["first_output_max_diff"] < 1e-5, (k, results[k])
    assert results["transformer"]["cpu_nnx_torch_over_torch"] > 0  # nnx on torch tensors too
    assert "nnx-torch/torch" in done.stdout


@pytest.mark.torch
def test_quick_native_layers_benchmark_runs(tmp_path):
    out = tmp_path / "native.json"
    done = _bench("--native-layers", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert set(results) == {"conv_transpose", "attention"}
    assert all(r["native_over_torch"] > 0 for r in results.values())


def test_help_lists_every_workload_and_the_own_flags_of_distributed_and_augment():
    def help_of(*args):
        done = _bench(*args, "--help", timeout=None)
        assert done.returncode == 0, done.stderr
        return done.stdout

    text = help_of()
    for flag in ("--quick", "--json", "--device", "--cnn", "--cnn-workload", "--jax", "--sequence"):
        assert flag in text, flag
    assert "--ranks" in help_of("--distributed") and "--augment-devices" in help_of("--augment")
    assert "--calls" in help_of("--native-layers")


def test_quick_augment_benchmark_runs(tmp_path):
    out = tmp_path / "augment.json"
    args = ["--augment", "--quick", "--augment-devices", "numpy", "--augment-batch", "8"]
    done = _bench(*args, "--json", str(out))
    assert done.returncode == 0, done.stderr
    row = json.loads(out.read_text())["backends"]["numpy"]
    assert set(row["median_ms"]) == {"crop", "flip", "crop+flip", "loop", "copy"}
    assert "crop/loop" in done.stdout


def test_torch_workloads_without_pytorch_are_one_line():
    """``--cnn`` and ``--sequence`` need PyTorch as their contender: without it, one line."""
    hide = "import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[1:]; "
    hide += "runpy.run_path(sys.argv[0], run_name='__main__')"
    for flag in ("--cnn", "--sequence"):
        done = subprocess.run(
            [sys.executable, "-c", hide, str(SCRIPT), flag, "--quick"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            f"bench.py: error: {flag} compares nnx with PyTorch, which is not installed: "
            f"pip install torch"
        ], done.stderr


def bench_module(name: str):
    """``scripts/bench/NAME.py`` as the package ``bench`` imports it."""
    import importlib

    sys.path.insert(0, str(SCRIPT.parent))
    try:
        return importlib.import_module(f"bench.{name}")
    finally:
        sys.path.remove(str(SCRIPT.parent))


def run_in_process(*args: str) -> int:
    """``scripts/bench.py ARGS`` in this process (no interpreter and torch start: a fraction of
    the time of a subprocess); never with --threads, which would limit this process's threads."""
    return bench_module("__main__").main(list(args))


@pytest.mark.torch
def test_cnn_on_another_backend_starts_from_torchs_loss_at_each_batch(tmp_path, capsys):
    """--cnn --device torch: nnx's model and data on torch CPU tensors against torch; each
    --cnn-batch is a run of its own, with the same first loss as torch (or exit status 1)."""
    pytest.importorskip("torch")
    out = tmp_path / "cnn.json"
    args = ["--cnn", "--quick", "--device", "torch", "--cnn-batch", "4,6", "--no-memory"]
    args += ["--cnn-workload", "lenet"]  # LeNet only: the ResNet's first steps take seconds
    assert run_in_process(*args, "--json", str(out)) == 0
    batches = json.loads(out.read_text())["batches"]
    assert list(batches) == ["4", "6"]
    for batch, run in batches.items():
        assert run["batch"] == int(batch) and run["backend"] == "torch (cpu)"
        assert run["torch_device"] == "cpu"
        first = run["workloads"]["lenet"]["first_loss"]
        assert abs(first["nnx"] - first["torch"]) < 1e-4, (batch, first)
    assert capsys.readouterr().out.count("on torch (cpu), torch on cpu") == 2


@pytest.mark.torch
def test_sequence_on_another_backend_agrees_with_torch_at_each_batch(tmp_path, capsys):
    """--sequence --device torch --seq-batch: every workload at each batch size, nnx on torch
    CPU tensors, its first outputs equal to torch's."""
    pytest.importorskip("torch")
    out = tmp_path / "seq.json"
    args = ["--sequence", "--quick", "--device", "torch", "--seq-batch", "2,3", "--no-memory"]
    assert run_in_process(*args, "--json", str(out)) == 0
    batches = json.loads(out.read_text())["batches"]
    assert list(batches) == ["2", "3"]
    for batch, run in batches.items():
        assert run["backend"] == "torch (cpu)"
        for k in ("transformer", "lstm", "rnn", "gru", "transformer_decoder"):
            assert run[k]["config"]["batch"] == int(batch)
            assert run[k]["first_output_max_diff"] < 1e-5, (batch, k, run[k])
            assert run[k]["memory_steps"] == 0
    assert "memory not measured" in capsys.readouterr().out


@pytest.mark.torch
@pytest.mark.skipif(
    importlib.util.find_spec("cupy") is not None, reason="CuPy is installed: there may be a GPU"
)
def test_gpu_device_without_a_gpu_is_one_line(capsys):
    pytest.importorskip("torch")
    for flag in ("--cnn", "--sequence"):
        assert run_in_process(flag, "--quick", "--device", "gpu") == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bench.py: error: a CUDA GPU was requested")


@pytest.mark.torch
def test_cnn_native_is_refused_on_another_device(capsys):
    pytest.importorskip("torch")
    assert run_in_process("--cnn", "--cnn-native", "--quick", "--device", "torch") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "bench.py: error: --cnn-native adds nnx on torch CPU tensors and compiled on JAX beside "
        "nnx on NumPy; with --device torch leave it out"
    ]


@pytest.mark.torch
def test_the_gpu_branches_on_a_stand_in_gpu_backend(tmp_path, monkeypatch, capsys):
    """What only a GPU run does (synchronized steps, no per-step label check, no pause, the GPU
    fields of the JSON and the tables, the GPU memory steps), on a stand-in: nnx on torch CPU
    tensors through a backend that says it is a GPU, torch eager left on the CPU, TF32 switches
    and GPU memory counters faked (each reading 1 MiB above the last)."""
    pytest.importorskip("torch")
    import nnx

    cnn, seq = bench_module("cnn"), bench_module("sequence")
    real = nnx.get_backend("torch")
    gpu = nnx.Backend("torch", real.xp, real.device, is_gpu=True)
    for module in (cnn, seq):
        monkeypatch.setattr(module, "open_backend", lambda spec: gpu)
        monkeypatch.setattr(module, "torch_device", lambda backend: "cpu")
        monkeypatch.setattr(module, "full_float32", lambda backend: {"torch": "stand-in"})
    readings = iter(range(0, 2**40, 2**20))
    meter = {"in_use": lambda: next(readings), "peak": lambda: 0}
    monkeypatch.setattr(seq, "gpu_memory_meter", lambda backend: meter)
    monkeypatch.setattr(cnn, "gpu_memory_meter", lambda backend, torch_allocator: meter)

    out = tmp_path / "cnn.json"
    args = ["--cnn", "--quick", "--device", "gpu", "--cnn-workload", "lenet", "--no-memory"]
    assert run_in_process(*args, "--json", str(out)) == 0
    run = json.loads(out.read_text())
    assert run["device"] == "gpu" and run["torch_device"] == "cpu"
    assert run["machine"]["float32"] == {"torch": "stand-in"}
    first = run["workloads"]["lenet"]["first_loss"]
    assert abs(first["nnx"] - first["torch"]) < 1e-4
    assert "on torch (cpu), torch on cpu" in capsys.readouterr().out
    if Path("/proc/self/clear_refs").exists():  # the memory probe (a fresh process, run here)
        for contender in ("nnx", "torch"):
            probe = cnn.memory_probe("lenet", contender, 4, 1, 0.01, gpu)
            assert probe["gpu_growth_mb"] == 2.0, probe  # three rounds, three readings

    out = tmp_path / "seq.json"
    assert run_in_process("--sequence", "--quick", "--device", "gpu", "--json", str(out)) == 0
    run = json.loads(out.read_text())
    assert run["gpu_backend"] is True and run["pause_s"] == 0.0
    for k in ("transformer", "lstm", "rnn", "gru", "transformer_decoder"):
        assert run[k]["gpu_growth_mb"] == 2.0 and len(run[k]["gpu_mb"]) == 3, run[k]
        assert run[k]["first_output_max_diff"] < 1e-5
    text = capsys.readouterr().out
    assert text.count("GPU memory growth 2.0 MB") == 5, text
    assert "decoder" in text and "(CPU time " in text.split("decoder")[1], text
