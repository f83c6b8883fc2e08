"""--activation takes every element-wise activation of the mlp preset by name, --help lists them,
and an unknown name is a one-line error."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.cli.main import build_parser, main
from nnx.cli.settings import ACTIVATIONS, SETTINGS, ConfigError
from nnx.models import get_preset
from nnx.models.mlp import ACTIVATIONS as MLP_ACTIVATIONS

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "train.py"
NEW = (
    "relu6", "prelu", "rrelu", "elu", "celu", "selu", "silu", "mish", "softplus", "hardtanh",
    "hardsigmoid", "hardswish", "logsigmoid", "softsign", "tanhshrink", "hardshrink", "softshrink",
)  # fmt: skip


def test_the_flag_offers_every_mlp_activation():
    assert ACTIVATIONS == tuple(MLP_ACTIVATIONS)
    assert set(NEW) <= set(ACTIVATIONS)
    convert = SETTINGS["activation"][1]
    assert convert("Hard-Swish".replace("-", ""), "--activation") == "hardswish"
    assert convert("RELU6", "--activation") == "relu6"
    with pytest.raises(ConfigError, match="unknown activation 'swishy'; choose one of relu"):
        convert("swishy", "--activation")


def test_help_lists_the_activation_names():
    text = build_parser("train.py").format_help().replace("\n", " ")
    for name in NEW:
        assert name in text, name


@pytest.mark.parametrize("name", NEW)
def test_each_name_builds_an_mlp_that_trains_one_step(name):
    model = get_preset("mlp")((4,), 3, hidden=[5], activation=name)
    layer = model[1]
    assert type(layer) is type(MLP_ACTIVATIONS[name]())
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    loss = nnx.CrossEntropyLoss()
    loss(model(x), np.array([0, 1, 2, 0, 1, 2]))
    model.backward(loss.backward())
    assert all(np.all(np.isfinite(p.grad)) for p in model.parameters())


def test_an_unknown_name_is_a_one_line_error(tmp_path, capsys):
    code = main(["--activation", "hardswishh", "--device", "cpu", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert "unknown activation 'hardswishh'; choose one of relu" in err and "softshrink" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_run_with_a_new_activation_and_an_unknown_one(tmp_path):
    base = [sys.executable, str(SCRIPT), "--dataset", "vertical", "--device", "cpu"]
    done = subprocess.run(
        [*base, "--hidden", "8", "--epochs", "1", "--activation", "hardswish", "--quiet",
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "last.npz").is_file()
    done = subprocess.run(
        [*base, "--activation", "hardswishh", "--out", str(tmp_path / "bad")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "unknown activation 'hardswishh'; choose one of relu" in done.stderr
    assert "softshrink" in done.stderr
