"""scripts/train.py as a user runs it: a subprocess."""

import subprocess
import sys
from pathlib import Path

import pytest

from nnx.backend import backend_available

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "train.py"


def _run(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def test_trains_the_spiral_on_cpu():
    done = _run("--device", "cpu", "--epochs", "150", "--samples", "100")
    assert done.returncode == 0, done.stderr
    assert "numpy" in done.stdout and "epoch  150" in done.stdout
    accuracy = float(done.stdout.rsplit("final accuracy", 1)[1])
    assert accuracy > 0.9, done.stdout


def test_gpu_without_a_gpu_is_a_one_line_error():
    if backend_available("gpu")[0]:
        pytest.skip("a GPU is usable here")
    done = _run("--device", "gpu", "--epochs", "1")
    assert done.returncode == 2
    assert done.stderr.startswith("train.py: error: a CUDA GPU was requested")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "tpu"], "unknown backend spec 'tpu'"),
        (["--hidden", "64,x"], "--hidden must be comma-separated integers"),
        (["--lr", "-1"], "must be a positive number"),
        (["--epochs", "0"], "--epochs must be positive"),
    ],
)
def test_bad_arguments(args, message):
    done = _run(*args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
