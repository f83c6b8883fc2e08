"""--model in the training command: presets and the user's package.module:function."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--dataset", "vertical", "--device", "cpu", "--epochs", "1", "--quiet"]

NETS = """
import nnx

def small(input_shape, num_classes):
    return nnx.Sequential(nnx.Linear(input_shape[0], 6, rng=0), nnx.Tanh(),
                          nnx.Linear(6, num_classes, rng=1))

def wide(input_shape, num_classes, *, hidden=(32,), seed=0):
    return nnx.models.get_preset("mlp")(input_shape, num_classes, hidden=hidden, seed=seed)

def not_a_model(input_shape, num_classes):
    return "model"
"""


def _run(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "nnx.train", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _one_line_error(done, message):
    assert done.returncode == 2, done.stdout
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_user_function_from_the_current_folder(tmp_path):
    (tmp_path / "mynets.py").write_text(NETS)
    done = _run(*FAST, "--model", "mynets:small", "--out", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["settings"]["model"] == "mynets:small"
    assert "in_features=2, out_features=6" in config["model"]
    # a builder taking hidden= gets --hidden; one that does not is told it does not apply
    done = _run(*FAST, "--model", "mynets:wide", "--hidden", "5", "--out", "w", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "out_features=5" in json.loads((tmp_path / "w" / "config.json").read_text())["model"]
    _one_line_error(
        _run(*FAST, "--model", "mynets:small", "--hidden", "5", cwd=tmp_path),
        "--hidden does not apply to --model mynets:small",
    )


def test_bad_model_specs_are_one_line_errors(tmp_path):
    (tmp_path / "mynets.py").write_text(NETS)
    _one_line_error(
        _run(*FAST, "--model", "mynets:not_a_model", cwd=tmp_path),
        "--model mynets:not_a_model returned str, not an nnx.Module",
    )
    _one_line_error(_run(*FAST, "--model", "resnet", cwd=tmp_path), "unknown model preset 'resnet'")
    _one_line_error(_run(*FAST, "--model", "nowhere:build", cwd=tmp_path), "cannot import nowhere")
    _one_line_error(
        _run(*FAST, "--model", "mynets:missing", cwd=tmp_path), "has no attribute 'missing'"
    )
