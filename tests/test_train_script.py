"""The training command as a user runs it: a subprocess (scripts/train.py and python -m nnx.cli)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nnx.backend import backend_available
from nnx.io.checkpoint import read_checkpoint, read_record

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "train.py"
FAST = ["--dataset", "vertical", "--device", "cpu", "--hidden", "16"]
TIMING = ("seconds", "samples_per_s")


def _run(*args, cwd=None, module=False):
    command = [sys.executable, "-m", "nnx.cli"] if module else [sys.executable, str(SCRIPT)]
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def _history(folder):
    rows = list(csv.DictReader((Path(folder) / "history.csv").read_text().splitlines()))
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _one_line_error(done, message):
    assert done.returncode != 0, done.stdout
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_default_dataset_run_writes_every_output(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    done = _run("--epochs", "3", "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (out,) = (tmp_path / "runs").iterdir()  # default: runs/<timestamp>
    assert sorted(p.name for p in out.iterdir()) == [
        "best.npz",
        "config.json",
        "confusion.png",
        "curves.png",
        "history.csv",
        "last.npz",
        "summary.json",
    ]
    assert "trained on numpy (cpu), dataset digits, 3 epochs" in done.stdout
    assert (
        "test   loss" in done.stdout and "samples/s" in done.stdout and str(out.name) in done.stdout
    )
    config = json.loads((out / "config.json").read_text())
    assert config["backend"] == "numpy" and config["settings"]["hidden"] == [128, 64]
    assert config["settings"]["lr"] == 0.001 and config["dataset"]["test"] == 359
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["test_accuracy"] > 0.8
    assert {"train_loss", "val_loss", "val_accuracy", "seconds_per_epoch"} <= set(summary)
    rows = _history(out)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(rows[0])


def test_module_entry_point_and_quiet(tmp_path):
    done = _run(*FAST, "--epochs", "2", "--out", tmp_path / "r", "--quiet", module=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()  # --quiet: only one plain line per epoch
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("train loss" in line and "val acc" in line for line in lines)
    assert (tmp_path / "r" / "last.npz").is_file()


def test_gpu_without_a_gpu_is_a_one_line_error(tmp_path):
    if backend_available("gpu")[0]:
        pytest.skip("a GPU is usable here")
    done = _run("--device", "gpu", "--epochs", "1", cwd=tmp_path)
    _one_line_error(done, "train.py: error: a CUDA GPU was requested")
    assert "--device auto" in done.stderr and "nnx-trainer[gpu]" in done.stderr
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "tpu"], "unknown backend spec 'tpu'"),
        (["--dataset", "cifar"], "unknown dataset 'cifar'; choose one of digits"),
        (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
        (["--activation", "swish"], "unknown activation 'swish'"),
        (["--hidden", "64,x"], "--hidden must be comma-separated positive integers"),
        (["--hidden", "64,0"], "--hidden sizes must be positive"),
        (["--lr", "-1"], "--lr must be > 0.0, got '-1'"),
        (["--epochs", "0"], "--epochs must be > 0"),
        (["--accumulate", "0"], "--accumulate must be > 0"),
        (["--dropout", "1.5"], "--dropout must be < 1.0"),
        (["--momentum", "0.9"], "--momentum applies to sgd and rmsprop, not adam"),
        (
            ["--dataset", "mnist", "--data-dir", "/nonexistent/mnist"],
            "data folder /nonexistent/mnist does not exist",
        ),
        (["--config", "/nonexistent/cfg.toml"], "config file /nonexistent/cfg.toml does not exist"),
        (["--resume", "/nonexistent/last.npz"], "checkpoint /nonexistent/last.npz does not exist"),
        (["--precision", "half"], "unknown precision 'half'"),
        (["--precision", "bfloat16"], "bfloat16 needs PyTorch, JAX or CuPy"),
        (["--precision", "float16", "--dtype", "float64"], "it needs --dtype float32"),
        (["--jit"], "jit=True compiles the step with jax.jit and needs a JAX backend"),
        (["--sync-batchnorm"], "--sync-batchnorm: the mlp model has no BatchNorm layer"),
    ],
)
def test_bad_settings(tmp_path, args, message):
    _one_line_error(_run(*FAST, *args, cwd=tmp_path), message)


def test_missing_mnist_files_name_what_is_expected(tmp_path):
    done = _run("--dataset", "mnist", "--data-dir", tmp_path, "--device", "cpu", cwd=tmp_path)
    _one_line_error(done, "expected train-images-idx3-ubyte.gz")


def test_bad_config_files(tmp_path):
    (tmp_path / "bad.json").write_text("{epochs: 3")
    _one_line_error(_run(*FAST, "--config", tmp_path / "bad.json"), "is not valid JSON")
    (tmp_path / "bad.toml").write_text("epochs = [")
    _one_line_error(_run(*FAST, "--config", tmp_path / "bad.toml"), "is not valid TOML")
    (tmp_path / "unknown.toml").write_text("epoch = 3\n")
    _one_line_error(_run(*FAST, "--config", tmp_path / "unknown.toml"), "unknown setting 'epoch'")


def test_config_file_with_command_line_override(tmp_path):
    (tmp_path / "cfg.toml").write_text(
        'dataset = "vertical"\nepochs = 2\nhidden = [8, 4]\nlr = 0.01\noptimizer = "sgd"\n'
        "batch-size = 16\n"
    )
    done = _run(
        "--config",
        tmp_path / "cfg.toml",
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--out",
        tmp_path / "r",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    settings = json.loads((tmp_path / "r" / "config.json").read_text())["settings"]
    assert settings["epochs"] == 3 and settings["hidden"] == [8, 4]
    assert (
        settings["lr"] == 0.01 and settings["optimizer"] == "sgd" and settings["batch_size"] == 16
    )
    assert len(_history(tmp_path / "r")) == 3
    (tmp_path / "cfg.json").write_text(json.dumps({"dataset": "sine", "epochs": 2}))
    done = _run("--config", tmp_path / "cfg.json", "--device", "cpu", "--out", tmp_path / "s")
    assert done.returncode == 0 and "mae" in done.stdout, done.stderr


def test_accumulate_flag_reaches_the_trainer(tmp_path):
    done = _run(*FAST, "--epochs", "1", "--accumulate", "3", "--out", tmp_path / "r", "--quiet")
    assert done.returncode == 0, done.stderr
    settings = json.loads((tmp_path / "r" / "config.json").read_text())["settings"]
    assert settings["accumulate"] == 3 and len(_history(tmp_path / "r")) == 1


def test_non_empty_out_needs_overwrite(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("mine")
    _one_line_error(
        _run(*FAST, "--out", tmp_path / "r"), "exists and is not empty; pass --overwrite"
    )
    done = _run(*FAST, "--epochs", "1", "--out", tmp_path / "r", "--overwrite", "--quiet")
    assert done.returncode == 0 and (tmp_path / "r" / "keep.txt").read_text() == "mine"


def test_resume_continues_exactly(tmp_path):
    args = [*FAST, "--dropout", "0.2", "--schedule", "exponential", "--quiet"]
    assert _run(*args, "--epochs", "4", "--out", tmp_path / "straight").returncode == 0
    assert _run(*args, "--epochs", "2", "--out", tmp_path / "split").returncode == 0
    done = _run("--resume", tmp_path / "split" / "last.npz", "--epochs", "4", "--quiet")
    assert done.returncode == 0, done.stderr
    assert _history(tmp_path / "split") == _history(tmp_path / "straight")
    _, a = read_checkpoint(tmp_path / "straight" / "last.npz")
    _, b = read_checkpoint(tmp_path / "split" / "last.npz")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_resume_refuses_another_architecture(tmp_path):
    assert _run(*FAST, "--epochs", "1", "--out", tmp_path / "r", "--quiet").returncode == 0
    done = _run("--resume", tmp_path / "r" / "last.npz", "--hidden", "32", "--epochs", "2")
    _one_line_error(done, "--hidden cannot change when resuming (the run used 16)")


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *FAST, "--epochs", "1000000", "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (out / "history.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: the last completed epoch is saved in" in err and "Traceback" not in err
    record = read_record(out / "last.npz")
    assert record["epoch"] >= 1 and len(record["history"]) == record["epoch"]
    done = _run("--resume", out / "last.npz", "--epochs", record["epoch"] + 1, "--quiet")
    assert done.returncode == 0, done.stderr
    assert len(_history(out)) == record["epoch"] + 1


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_help_lists_every_flag():
    done = _run("--help")
    assert done.returncode == 0
    for flag in (
        "--device",
        "--dataset",
        "--data-dir",
        "--hidden",
        "--activation",
        "--dropout",
        "--epochs",
        "--batch-size",
        "--optimizer",
        "--lr",
        "--momentum",
        "--weight-decay",
        "--schedule",
        "--clip-norm",
        "--val-fraction",
        "--early-stopping",
        "--seed",
        "--dtype",
        "--out",
        "--resume",
        "--quiet",
        "--config",
        "--overwrite",
    ):
        assert flag in done.stdout, flag


def test_float16_precision_and_compiled_jax_runs(tmp_path):
    done = _run(*FAST, "--epochs", "2", "--precision", "float16", "--out", tmp_path / "f16")
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "f16" / "config.json").read_text())
    assert config["settings"]["precision"] == "float16"
    if not backend_available("jax")[0]:
        pytest.skip("JAX is not installed")
    args = ["--dataset", "vertical", "--device", "jax", "--hidden", "16", "--epochs", "2"]
    done = _run(*args, "--jit", "--out", tmp_path / "jit")
    assert done.returncode == 0, done.stderr
    assert "trained on jax" in done.stdout
