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
        [sys.executable, "-m", "nnx.cli", *map(str, args)],
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


def test_checkpoints_embed_the_architecture(tmp_path):
    """--resume and nnx.load_model rebuild the model from the checkpoint: no --hidden, and no
    importable mynets (--resume still reads the data settings from the run's config.json)."""
    import shutil

    import numpy as np

    import nnx
    from nnx.io.checkpoint import read_checkpoint

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "mynets.py").write_text(NETS)
    done = _run(*FAST, "--model", "mynets:small", "--out", "r", cwd=work)
    assert done.returncode == 0, done.stderr
    done = _run(*FAST, "--hidden", "7,5", "--dropout", "0.1", "--out", "m", cwd=work)
    assert done.returncode == 0, done.stderr
    for run in ("r", "m"):
        shutil.copytree(work / run, elsewhere / run)
        checkpoint = elsewhere / run / "last.npz"
        meta, arrays = read_checkpoint(checkpoint)
        model = nnx.load_model(checkpoint)
        assert repr(model) == json.loads((work / run / "config.json").read_text())["model"]
        for name, value in model.state_dict().items():
            np.testing.assert_array_equal(value, arrays[f"model/{name}"])
        done = _run(
            *FAST, "--epochs", "2", "--resume", checkpoint, "--out", f"{run}2", cwd=elsewhere
        )
        assert done.returncode == 0, done.stderr
        resumed = json.loads((elsewhere / f"{run}2" / "config.json").read_text())["model"]
        assert resumed == repr(model)
    # a model flag given with --resume builds from the flags: a change is refused
    _one_line_error(
        _run(*FAST, "--epochs", "2", "--resume", "m/last.npz", "--hidden", "7", cwd=elsewhere),
        "--hidden cannot change when resuming",
    )


def test_checkpoint_of_an_unregistered_model_says_why_it_cannot_be_loaded(tmp_path):
    import numpy as np
    import pytest

    import nnx
    from nnx.io.checkpoint import read_checkpoint

    class Mine(nnx.Module):
        def __init__(self):
            self.inner = nnx.Linear(2, 2, rng=0)

        def forward(self, x):
            return self.inner(x)

    nnx.save_checkpoint(tmp_path / "c.npz", Mine())
    assert "Mine" in read_checkpoint(tmp_path / "c.npz")[0]["model_error"]
    with pytest.raises(nnx.ModelFileError, match=r"holds no model architecture \(cannot save"):
        nnx.load_model(tmp_path / "c.npz")
    nnx.save_checkpoint(tmp_path / "s.npz", nnx.Sequential(nnx.Linear(2, 3, rng=0)))
    loaded = nnx.load_model(tmp_path / "s.npz", device="strict:device1")
    assert np.asarray(nnx.to_numpy(loaded[0].weight.value)).shape == (2, 3)


def test_the_command_prints_the_model_summary_unless_quiet(tmp_path):
    args = ["--dataset", "vertical", "--device", "cpu", "--epochs", "1", "--hidden", "6"]
    done = _run(*args, "--out", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Layer (type)" in done.stdout and "0 (Linear)" in done.stdout
    assert "Total params: 39 (156 B)" in done.stdout  # 2*6+6 + 6*3+3
    done = _run(*args, "--out", "q", "--quiet", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("epoch 1/1  train loss")
    assert len(done.stdout.splitlines()) == 1  # --quiet: only the epoch line
