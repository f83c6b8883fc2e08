"""The transformer and lstm presets: character-level language models, trained through the
Trainer by the training command (text windows, bits per character, resume, early stopping, the
run-folder lock, atomic outputs) and generating text after nnx.load_model."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.cli.main import main
from nnx.datasets.text import CharacterText, bigram_bits, default_text
from nnx.metrics import BitsPerCharacter
from nnx.models import generate, get_preset

TEXT = "the cat sat on the mat. " * 40
TIMING = ("seconds", "samples_per_s")


def _text(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TEXT)
    return path


def _args(tmp_path, name, out, *extra):
    return [
        "--model", name, "--text", str(_text(tmp_path)), "--epochs", "2",
        "--steps-per-epoch", "3", "--seq-len", "8", "--batch-size", "4", "--device", "cpu",
        "--out", str(out), *map(str, extra),
    ]  # fmt: skip


def _history(out):
    rows = list(csv.DictReader((Path(out) / "history.csv").read_text().splitlines()))
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


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
    # ids handed over as whole floats (the Trainer casts inputs to the model's dtype) agree
    np.testing.assert_array_equal(model(ids.astype(np.float64)), logits)
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


def test_a_vocabulary_must_fit_the_model():
    with pytest.raises(ValueError, match="vocab must be a string of 3 distinct characters"):
        get_preset("lstm")((6,), 3, vocab="ab")


def test_bigram_baseline_by_hand():
    train = np.array([0, 1, 0, 1, 0])  # 0->1 twice, 1->0 twice
    held = np.array([0, 1])
    # add-0.1 smoothing over 2 symbols: p(1 | 0) = (2 + 0.1) / (2 + 0.2)
    assert bigram_bits(train, held, 2) == pytest.approx(-math.log2(2.1 / 2.2))


def test_default_text_is_fixed_and_real():
    text, source = default_text()
    assert len(text) > 100_000 and "def " in text and "argparse.py" in source
    assert default_text()[0] == text


def test_text_windows_are_seeded_per_epoch():
    text = CharacterText(TEXT)
    assert text.vocab == "".join(sorted(set(TEXT))) and text.decode(text.encode("cat")) == "cat"
    assert len(text.train) == int(len(TEXT) * 0.9) and len(text.held) == len(TEXT) - len(text.train)
    x0, y0 = text.train_windows(0, 5, 8, seed=3)
    again, _ = text.train_windows(0, 5, 8, seed=3)
    x1, _ = text.train_windows(1, 5, 8, seed=3)
    np.testing.assert_array_equal(x0, again)  # the same epoch and seed: the same windows
    assert not np.array_equal(x0, x1)  # each epoch its own
    np.testing.assert_array_equal(x0[:, 1:], y0[:, :-1])  # targets: the next character
    hx, hy = text.held_windows(8)
    assert text.decode(hx[0]) == TEXT[len(text.train) : len(text.train) + 8]
    assert hx.shape == hy.shape == ((len(text.held) - 9) // 8 + 1, 8)
    with pytest.raises(nnx.datasets.DatasetError, match="too few for windows of seq_len 500"):
        text.train_windows(0, 1, 500, seed=0)
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        text.encode("zebra")


def test_bits_per_character_is_cross_entropy_in_bits():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((3, 5, 4)), rng.integers(0, 5, (3, 4))
    metric = BitsPerCharacter()
    metric.update(logits, labels)
    expected = float(nnx.CrossEntropyLoss()(logits, labels)) / math.log(2.0)
    assert metric.compute() == pytest.approx(expected, rel=1e-12)
    assert nnx.metrics.get_metric("bits_per_char").name == "bits_per_char"


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_cli_trains_reports_bits_and_writes_a_sample(tmp_path, name, capsys):
    out = tmp_path / "run"
    assert main(_args(tmp_path, name, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert math.isfinite(summary["held_out_bits_per_char"]) and summary["bigram_bits_per_char"] > 0
    sample = (out / "sample.txt").read_text()
    assert len(sample) == 400 and set(sample) <= set(TEXT)
    assert "bits/char" in capsys.readouterr().out
    # through the Trainer: checkpoints, history and curves like the classifier's
    names = {p.name for p in out.iterdir()}
    assert {"last.npz", "best.npz", "history.csv", "config.json", "summary.json"} <= names
    rows = _history(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for r in rows:
        assert float(r["val_bits_per_char"]) == pytest.approx(float(r["val_loss"]) / math.log(2))
        assert float(r["train_bits_per_char"]) == pytest.approx(
            float(r["train_loss"]) / math.log(2), rel=1e-5
        )
    assert summary["steps"] == 6 and summary["epochs"] == 2
    again = tmp_path / "again"
    assert main([*_args(tmp_path, name, again), "--quiet"]) == 0
    assert (again / "sample.txt").read_text() == sample  # seeded
    assert _history(again) == rows


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, capsys):
    whole, part = tmp_path / "whole", tmp_path / "part"
    # (the last --epochs of a command line wins: 4 here, 2 from _args for the first part)
    assert (
        main([*_args(tmp_path, "lstm", whole), "--schedule", "exponential", "--epochs", "4"]) == 0
    )
    assert main([*_args(tmp_path, "lstm", part), "--schedule", "exponential"]) == 0
    assert len(_history(part)) == 2
    status = main(["--resume", str(part / "last.npz"), "--epochs", "4", "--quiet"])
    assert status == 0, capsys.readouterr().err
    assert _history(part) == _history(whole)  # the same losses, bits and learning rates
    assert (part / "sample.txt").read_text() == (whole / "sample.txt").read_text()
    config = json.loads((part / "config.json").read_text())
    assert config["resumes"][0]["after_epoch"] == 2


def test_resume_refuses_another_text_or_window(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(tmp_path, "lstm", out)) == 0
    capsys.readouterr()
    assert main(["--resume", str(out / "last.npz"), "--seq-len", "6", "--epochs", "3"]) == 2
    assert "--seq-len cannot change when resuming" in capsys.readouterr().err
    _text(tmp_path).write_text(TEXT + "XYZ" * 30)  # the same file, other characters
    assert main(["--resume", str(out / "last.npz"), "--epochs", "3"]) == 2
    assert "resume with the same text" in capsys.readouterr().err


def test_early_stopping_ends_a_language_model_run(tmp_path, capsys):
    out = tmp_path / "run"
    # a step far below float32 resolution: the held-out loss cannot improve after epoch 1
    extra = ("--optimizer", "sgd", "--lr", 1e-12, "--early-stopping", 1, "--epochs", 6)
    assert main([*_args(tmp_path, "lstm", out), *map(str, extra)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] and summary["epochs"] == 2
    assert len(_history(out)) == 2
    assert "stopped early" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["transformer", "lstm"])
def test_a_loaded_model_generates_the_runs_sample(tmp_path, name):
    out = tmp_path / "run"
    assert main([*_args(tmp_path, name, out), "--quiet"]) == 0
    model = nnx.load_model(out / "last.npz")  # the final weights; the vocabulary comes along
    assert model.vocab == "".join(sorted(set(TEXT)))
    held = TEXT[int(len(TEXT) * 0.9) :]
    text = generate(model, None, held[:8], 400, seed=0)
    assert text == (out / "sample.txt").read_text()
    best = nnx.load_model(out / "best.npz")
    more = generate(best, None, "the ", 30, seed=1)
    assert len(more) == 30 and set(more) <= set(TEXT)
    with pytest.raises(ValueError, match="prompt character 'Z' is not in the vocabulary"):
        generate(best, None, "Zoo", 5)


def test_outputs_replace_a_symlink_instead_of_writing_through_it(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    outside = {}
    for name in ("sample.txt", "summary.json", "config.json", "history.csv"):
        target = tmp_path / f"outside-{name}"
        target.write_text("precious\n")
        (out / name).symlink_to(target)
        outside[name] = target
    assert main([*_args(tmp_path, "lstm", out), "--overwrite", "--quiet"]) == 0
    for name, target in outside.items():
        assert target.read_text() == "precious\n"  # untouched
        assert not (out / name).is_symlink() and (out / name).is_file()
    assert len((out / "sample.txt").read_text()) == 400


def test_two_language_model_runs_into_one_folder_hit_the_lock(tmp_path, capsys):
    out = tmp_path / "run"
    log = tmp_path / "first.err"
    with open(log, "w") as err_file:
        first = subprocess.Popen(
            [sys.executable, "-m", "nnx.cli", *_args(tmp_path, "lstm", out), "--epochs", "100000"],
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
    try:
        lock = out / ".nnx.lock"
        deadline = time.monotonic() + 120
        while not (lock.is_file() and lock.read_text().strip() == str(first.pid)):
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the first run never locked its folder"
            time.sleep(0.1)
        status = main([*_args(tmp_path, "lstm", out), "--overwrite"])
        assert status == 2
        err = capsys.readouterr().err
        assert f"--out folder {out} is in use by another run (pid {first.pid})" in err, err
        assert len(err.strip().splitlines()) == 1
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    assert first.returncode == 128 + signal.SIGTERM


@pytest.mark.parametrize(
    "flags",
    [
        ["--val-fraction", "0.1"],
        ["--dataset", "mnist"],
        ["--sync-batchnorm"],
        ["--precision", "float16"],
        ["--jit"],
    ],
)
def test_flags_without_meaning_for_text_are_refused_not_ignored(tmp_path, flags, capsys):
    status = main(["--model", "lstm", "--out", str(tmp_path / "run"), *flags])
    assert status == 2
    err = capsys.readouterr().err
    assert f"{flags[0]} does not apply to --model lstm" in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags", [["--accumulate", "3"], ["--schedule", "step"]])
def test_trainer_flags_apply_to_language_models(tmp_path, flags):
    out = tmp_path / "run"
    assert main([*_args(tmp_path, "lstm", out), "--quiet", *flags]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["settings"][flags[0][2:]] == (int(flags[1]) if flags[1].isdigit() else flags[1])
    rows = _history(out)
    if flags[0] == "--schedule":  # step: x0.1 every third of the run (every epoch of 2)
        assert float(rows[1]["lr"]) == pytest.approx(float(rows[0]["lr"]) * 0.1)
