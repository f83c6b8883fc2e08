"""The transformer and lstm presets: character-level language models through the CLI."""

import json
import math

import numpy as np
import pytest

import nnx
from nnx.cli.train import main
from nnx.models import charlm, get_preset


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_preset_shapes_and_gradients(name):
    opts = (
        {"d_model": 8, "nhead": 2, "dim_feedforward": 8}
        if name == "transformer"
        else {"embedding_dim": 4, "hidden_size": 5}
    )
    model = get_preset(name)((6,), 7, **opts).to(dtype="float64")
    ids = np.random.default_rng(0).integers(0, 7, size=(2, 6))
    logits = model(ids)
    assert logits.shape == (2, 7, 6)
    loss = nnx.CrossEntropyLoss()
    value = float(loss(logits, ids))
    model.backward(loss.backward())
    assert all(p.grad is not None and np.all(np.isfinite(p.grad)) for p in model.parameters())
    assert math.isfinite(value)


def test_transformer_is_causal():
    model = get_preset("transformer")((6,), 7, d_model=8, nhead=2, dim_feedforward=8)
    ids = np.random.default_rng(0).integers(0, 7, size=(1, 6))
    changed = ids.copy()
    changed[0, 4:] = (changed[0, 4:] + 1) % 7
    a, b = model(ids), model(changed)
    np.testing.assert_allclose(a[..., :4], b[..., :4], rtol=1e-6)  # earlier positions unaffected
    assert not np.allclose(a[..., 4:], b[..., 4:])


def test_bigram_baseline_by_hand():
    train = np.array([0, 1, 0, 1, 0])  # 0->1 twice, 1->0 twice
    held = np.array([0, 1])
    # add-0.1 smoothing over 2 symbols: p(1 | 0) = (2 + 0.1) / (2 + 0.2)
    assert charlm.bigram_bits(train, held, 2) == pytest.approx(-math.log2(2.1 / 2.2))


def test_default_text_is_fixed_and_real():
    text, source = charlm.default_text()
    assert len(text) > 100_000 and "def " in text and "argparse.py" in source
    assert charlm.default_text()[0] == text


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_cli_trains_reports_bits_and_writes_a_sample(tmp_path, name, capsys):
    text = tmp_path / "tiny.txt"
    text.write_text("the cat sat on the mat. " * 40)
    out = tmp_path / "run"
    status = main(
        [
            "--model",
            name,
            "--text",
            str(text),
            "--epochs",
            "2",
            "--steps-per-epoch",
            "3",
            "--seq-len",
            "8",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert math.isfinite(summary["held_out_bits_per_char"]) and summary["bigram_bits_per_char"] > 0
    sample = (out / "sample.txt").read_text()
    assert len(sample) == 400 and set(sample) <= set("the cat sat on the mat. ")
    assert "bits/char" in capsys.readouterr().out
    again = tmp_path / "again"
    main(
        [
            "--model",
            name,
            "--text",
            str(text),
            "--epochs",
            "2",
            "--steps-per-epoch",
            "3",
            "--seq-len",
            "8",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--out",
            str(again),
            "--quiet",
        ]
    )
    assert (again / "sample.txt").read_text() == sample  # seeded


@pytest.mark.parametrize(
    "flags",
    [
        ["--schedule", "cosine"],
        ["--val-fraction", "0.1"],
        ["--early-stopping", "3"],
        ["--accumulate", "2"],
        ["--dataset", "mnist"],
        ["--sync-batchnorm"],
        ["--resume", "__checkpoint__"],
    ],
)
def test_classifier_flags_are_refused_not_ignored(tmp_path, flags, capsys):
    (tmp_path / "last.npz").write_bytes(b"")
    flags = [str(tmp_path / "last.npz") if f == "__checkpoint__" else f for f in flags]
    (tmp_path / "config.json").write_text(json.dumps({"settings": {"model": "lstm"}}))
    status = main(["--model", "lstm", "--out", str(tmp_path / "run"), *flags])
    assert status == 2
    err = capsys.readouterr().err
    assert f"{flags[0]} does not apply to --model lstm" in err, err
    assert not (tmp_path / "run").exists()
