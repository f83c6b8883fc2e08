"""The cnn preset and image-shaped data sets in the training command."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.datasets import load_dataset
from nnx.models import PRESETS, ModelSpecError, build_model

ROOT = Path(__file__).resolve().parent.parent


def test_cnn_preset_is_registered_and_builds_for_image_shapes():
    assert PRESETS["cnn"] is nnx.models.cnn.build
    for shape in [(1, 8, 8), (1, 28, 28), (3, 32, 32), (2, 1, 5)]:
        model = build_model("cnn", shape, 10, channels=[4, 6])
        x = np.zeros((3, *shape), np.float32)
        assert model(x).shape == (3, 10)
    avg = build_model("cnn", (3, 32, 32), 5, channels=[4], head="avg", dropout=0.2)
    kinds = [type(m).__name__ for m in avg]
    assert kinds[-4:] == ["AdaptiveAvgPool2d", "Flatten", "Dropout", "Linear"]
    assert nnx.gradcheck(build_model("cnn", (1, 4, 4), 3, channels=[2]), np.ones((2, 1, 4, 4))).ok


def test_cnn_preset_rejects_flat_inputs_and_bad_options():
    with pytest.raises(ModelSpecError, match=r"input_shape must be an image shape \(C, H, W\)"):
        build_model("cnn", (64,), 10)
    with pytest.raises(ModelSpecError, match="head must be 'flatten' or 'avg'"):
        build_model("cnn", (1, 8, 8), 10, head="max")
    with pytest.raises(ModelSpecError, match="channels must be positive integers"):
        build_model("cnn", (1, 8, 8), 10, channels=[])


def test_image_data_sets_give_image_shaped_samples():
    data = load_dataset("digits")
    assert data.image_shape == (1, 8, 8)
    images = data.images()
    assert images.train[0].shape == (len(data.train[0]), 1, 8, 8)
    np.testing.assert_array_equal(images.test[0].reshape(len(data.test[0]), -1), data.test[0])
    assert images.images() is images
    assert load_dataset("spiral").images().train[0].ndim == 2  # no image shape: unchanged


def test_train_command_with_the_cnn_preset(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nnx.cli",
            "--model",
            "cnn",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert "Conv2d(1, 32" in config["model"] and "BatchNorm2d" in config["model"]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.8, summary
    state = np.load(tmp_path / "r" / "last.npz")
    assert any(k.endswith("running_var") for k in state.files), state.files
