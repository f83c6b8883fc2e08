"""The training command's promises about what it leaves behind: a saved model predicts on raw
data what the run reported; a resume continues the same data and model or refuses; a received
run folder never runs code; nothing the user owns is deleted."""

import json

import numpy as np
import pytest

import nnx
from nnx.cli.main import main
from nnx.datasets.files import load_file


def _train(capsys, *args):
    status = main(["--device", "cpu", "--quiet", *map(str, args)], prog="train.py")
    captured = capsys.readouterr()
    return status, captured.err


def _one_line(capsys, message, *args):
    status, err = _train(capsys, *args)
    assert status != 0
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def _features(n=240, seed=0):
    """Two classes separable only after standardizing: features of very different scales."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(size=(n, 4))
    x[:, 0] += 2.5 * y
    x = x * np.array([1.0, 3.0, 1000.0, 0.001]) + np.array([50.0, -7.0, 4000.0, 2.0])
    return x.astype(np.float32), y


def _csv(path, x, y, bom=False):
    lines = ["a,b,c,d,label"] + [
        ",".join(f"{v:.6f}" for v in r) + f",{t}" for r, t in zip(x, y, strict=True)
    ]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def _accuracy(path, x, y):
    model = nnx.load_model(path)
    model.eval()
    predicted = np.asarray(model(x)).argmax(axis=1)
    return float((predicted == y).mean())


def _test_split(dataset, seed=0):
    if dataset.endswith((".csv", ".npz")):
        data = load_file(dataset, "label" if dataset.endswith(".csv") else None, seed=seed)
    else:
        pytest.importorskip("sklearn")
        from nnx.datasets import load_dataset

        data = load_dataset(dataset, None, seed=seed).images()
    return data.test[0].astype(np.float32), data.test[1]


@pytest.mark.parametrize("kind", ["csv", "npz", "digits"])
def test_a_saved_model_predicts_on_raw_data_what_the_run_reported(tmp_path, capsys, kind):
    if kind == "digits":
        pytest.importorskip("sklearn")
        dataset = "digits"
    else:
        x, y = _features()
        if kind == "csv":
            dataset = str(_csv(tmp_path / "d.csv", x, y))
        else:
            dataset = str(tmp_path / "d.npz")
            np.savez(dataset, x_train=x, y_train=y)
    extra = ["--label-column", "label"] if kind == "csv" else []
    out = tmp_path / "run"
    status, err = _train(capsys, "--dataset", dataset, *extra, "--epochs", 3, "--out", out)
    assert status == 0, err
    reported = json.loads((out / "summary.json").read_text())["test_accuracy"]
    x_test, y_test = _test_split(dataset)
    assert _accuracy(out / "last.npz", x_test, y_test) == pytest.approx(reported, abs=1e-12)
    best = nnx.load_model(out / "best.npz")
    assert isinstance(best[0], nnx.Standardize)
    assert float(np.abs(np.asarray(best[0].std.value) - 1).max()) > 1e-3  # fitted, not identity

    # a resume continues the same standardized model and its files keep the statistics
    status, err = _train(capsys, "--resume", out / "last.npz", "--epochs", 4)
    assert status == 0, err
    resumed = nnx.load_model(out / "last.npz")
    np.testing.assert_array_equal(np.asarray(resumed[0].mean.value), best[0].mean.value)
    reported = json.loads((out / "summary.json").read_text())["test_accuracy"]
    assert _accuracy(out / "last.npz", x_test, y_test) == pytest.approx(reported, abs=1e-12)


def _npz_run(tmp_path, capsys, *args, name="run"):
    x, y = _features()
    data = tmp_path / "d.npz"
    if not data.exists():
        np.savez(data, x_train=x, y_train=y)
    out = tmp_path / name
    status, err = _train(capsys, "--dataset", data, "--epochs", 1, "--out", out, *args)
    assert status == 0, err
    return data, out


def test_a_checkpoint_without_the_standardize_layer_is_refused_on_resume(tmp_path, capsys):
    _, out = _npz_run(tmp_path, capsys, "--hidden", 8)
    # an older nnx's checkpoint: the same run, its model without the Standardize in front
    inner = nnx.load_model(out / "last.npz")[1]
    trainer = nnx.Trainer(inner, nnx.CrossEntropyLoss(), nnx.optim.Adam(inner.parameters()))
    trainer.save_checkpoint(out / "last.npz")
    (out / "history.csv").unlink()
    _one_line(capsys, "does not standardize its inputs", "--resume", out / "last.npz")
    _one_line(
        capsys,
        "does not standardize its inputs",
        *("--resume", out / "last.npz", "--hidden", 8, "--epochs", 2),
    )


def test_a_resume_keeps_the_label_column(tmp_path, capsys):
    x, y = _features()
    data = _csv(tmp_path / "d.csv", x, y)
    out = tmp_path / "run"
    args = ("--dataset", data, "--label-column", "label", "--epochs", 1, "--out", out)
    assert _train(capsys, *args)[0] == 0
    _one_line(
        capsys,
        "--label-column cannot change when resuming",
        *("--resume", out / "last.npz", "--label-column", "a", "--epochs", 2),
    )


def test_a_changed_data_file_is_refused_on_resume_unless_allowed(tmp_path, capsys):
    data, out = _npz_run(tmp_path, capsys)
    inputs = json.loads((out / "config.json").read_text())["inputs"]
    assert (
        inputs["dataset"]["size"] == data.stat().st_size and len(inputs["dataset"]["sha256"]) == 64
    )
    x, y = _features(seed=1)  # same shapes, other numbers
    np.savez(data, x_train=x, y_train=y)
    _one_line(capsys, f"--dataset {data} has changed", "--resume", out / "last.npz", "--epochs", 2)
    status, err = _train(
        capsys, "--resume", out / "last.npz", "--epochs", 2, "--allow-changed-data"
    )
    assert status == 0, err
    after = json.loads((out / "config.json").read_text())["inputs"]["dataset"]["sha256"]
    assert after != inputs["dataset"]["sha256"]  # the data the run continued on


def test_a_checkpoint_of_another_architecture_or_seed_is_refused(tmp_path, capsys):
    _, narrow = _npz_run(tmp_path, capsys, "--hidden", 16, name="narrow")
    _, wide = _npz_run(tmp_path, capsys, "--hidden", 32, name="wide")
    _, seeded = _npz_run(tmp_path, capsys, "--hidden", 16, "--seed", 5, name="seeded")
    (wide / "last.npz").write_bytes((narrow / "last.npz").read_bytes())
    _one_line(
        capsys,
        "is not the one the run's settings build",
        "--resume",
        wide / "last.npz",
        "--epochs",
        2,
    )
    (narrow / "last.npz").write_bytes((seeded / "last.npz").read_bytes())
    _one_line(
        capsys,
        "trained with seed 5, but the run's config.json says 0",
        "--resume",
        narrow / "last.npz",
        "--epochs",
        2,
    )


def test_resume_refuses_epochs_the_checkpoint_has_reached(tmp_path, capsys):
    _, out = _npz_run(tmp_path, capsys)
    config = (out / "config.json").read_text()
    _one_line(capsys, "has already completed epoch 1", "--resume", out / "last.npz")
    _one_line(capsys, "--epochs 1:", "--resume", out / "last.npz", "--epochs", 1)
    assert (out / "config.json").read_text() == config  # nothing rewritten


CUSTOM = """
import nnx

class Custom(nnx.Module):  # not registered: checkpoints hold no architecture for it
    def __init__(self, n_in, n_out):
        self.lin = nnx.Linear(n_in, n_out)

    def forward(self, x):
        return self.lin(x)

    def backward(self, grad):
        return self.lin.backward(grad)

def build(input_shape, n_out):
    return Custom(input_shape[0], n_out)
"""


def test_resuming_a_received_run_folder_never_imports_its_code(tmp_path):
    import subprocess
    import sys

    x, y = _features()
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    src = tmp_path / "src"
    src.mkdir()
    (src / "nnx_helpers.py").write_text(CUSTOM)
    command = [sys.executable, "-m", "nnx.cli", "--device", "cpu", "--quiet"]
    done = subprocess.run(
        [
            *command,
            "--dataset",
            "../d.npz",
            "--model",
            "nnx_helpers:build",
            "--epochs",
            "1",
            "--out",
            "../run",
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    # the folder as received: a planted module of the name config.json gives
    (run / "nnx_helpers.py").write_text(
        f"open({str(tmp_path / 'MARKER')!r}, 'w').close()\n" + CUSTOM
    )
    done = subprocess.run(
        [*command, "--resume", "last.npz", "--epochs", "2"],
        cwd=run,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "give --model nnx_helpers:build again" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "MARKER").exists()
    # named on the command line, the user's code is the user's choice
    done = subprocess.run(
        [*command, "--resume", "../run/last.npz", "--epochs", "2", "--model", "nnx_helpers:build"],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def test_only_nnx_own_leftovers_are_removed_from_out(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".draft.tmp").write_text("mine")
    x, y = _features()
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    args = ("--dataset", tmp_path / "d.npz", "--epochs", 1, "--out", out)
    _one_line(capsys, "exists and is not empty; pass --overwrite", *args)
    assert (out / ".draft.tmp").read_text() == "mine"
    (out / ".draft.tmp").unlink()
    (out / ".last.npz.abc123_x.tmp").write_text("left by a killed write")
    assert _train(capsys, *args)[0] == 0
    assert not (out / ".last.npz.abc123_x.tmp").exists()
    (out / ".draft.tmp").write_text("mine")
    assert _train(capsys, "--resume", out / "last.npz", "--epochs", 2)[0] == 0
    assert (out / ".draft.tmp").read_text() == "mine"  # a resume removes only nnx's leftovers


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    import datetime

    from nnx.cli import runfolder

    moment = datetime.datetime(2026, 1, 2, 3, 4, 5)

    class Frozen:
        @staticmethod
        def now():
            return moment

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runfolder._dt, "datetime", Frozen)
    settings = {"out": None, "overwrite": False}
    folders = [runfolder.prepare_out(settings, None) for _ in range(3)]
    assert [f.name for f in folders] == [
        "20260102-030405",
        "20260102-030405-2",
        "20260102-030405-3",
    ]


def test_an_interrupt_before_the_first_epoch_does_not_claim_an_epoch_is_saved(tmp_path, capsys):
    import signal

    from nnx.cli.main import _interrupted

    model = nnx.Sequential(nnx.Linear(2, 2))
    trainer = nnx.Trainer(model, nnx.CrossEntropyLoss(), nnx.optim.SGD(model.parameters(), lr=0.1))
    trainer.save_checkpoint(tmp_path / "last.npz")  # what SIGTERM before epoch 1 leaves
    assert _interrupted("train.py", signal.SIGTERM, tmp_path) == 143
    err = capsys.readouterr().err
    assert "no epoch had completed" in err and "the last completed epoch is saved" not in err


def test_text_problems_name_the_flag_and_the_file(tmp_path, capsys, monkeypatch):
    from nnx.datasets import text

    lm = ("--model", "lstm", "--epochs", 1, "--out", tmp_path / "lm")
    _one_line(capsys, "--text: text /dev/zero is not a file", *lm, "--text", "/dev/zero")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello \xff\xfe")
    _one_line(capsys, f"--text: text file {bad} is not UTF-8", *lm, "--text", bad)
    big = tmp_path / "big.txt"
    big.write_text("abc" * 100)
    monkeypatch.setattr(text, "MAX_TEXT_BYTES", 100)
    _one_line(capsys, f"--text: text file {big} is larger than", *lm, "--text", big)


def test_resume_of_what_is_not_a_checkpoint_says_what_it_is(tmp_path, capsys):
    _one_line(capsys, f"--resume {tmp_path} is a folder; give its checkpoint", "--resume", tmp_path)
    pt = tmp_path / "model.pt"  # what torch.save writes: a zip of pickles
    import zipfile

    with zipfile.ZipFile(pt, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x04N.")
    (tmp_path / "config.json").write_text("{}")
    _one_line(capsys, f"--resume {pt} is not an nnx checkpoint", "--resume", pt)


def test_a_csv_header_with_a_byte_order_mark_reads(tmp_path, capsys):
    x, y = _features(n=60)
    data = _csv(tmp_path / "d.csv", x, y, bom=True)
    status, err = _train(
        capsys, "--dataset", data, "--label-column", "a", "--epochs", 1, "--out", tmp_path / "r"
    )
    assert status == 0 and "no column" not in err, err
    x_all = load_file(data, "a").train[0]
    assert x_all.shape[1] == 4  # a is the label, b, c, d and label the features


def test_a_csv_header_naming_a_column_twice_is_refused(tmp_path, capsys):
    # columns are picked by name (the label, and nnx-predict's features): two 'a' are ambiguous
    x, y = _features(n=20)
    data = _csv(tmp_path / "d.csv", x, y)
    data.write_text(data.read_text().replace("a,b,c,d,", "a,b,a,d,", 1))
    out = tmp_path / "r"
    _one_line(capsys, "names column 'a' more than once", "--dataset", data, "--label-column",
              "label", "--out", out)  # fmt: skip
    assert not (out / "last.npz").exists()


def test_settings_problems_are_found_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "r"
    err = _one_line(capsys, "--jit: jit=True", "--jit", "--epochs", 1, "--out", out)
    assert not out.exists()  # refused before the summary, the data and the folder
    _one_line(
        capsys,
        "--random-crop 20 pads the 8x8 images",
        *("--random-crop", 20, "--epochs", 1, "--out", out),
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text('batch_size = "x"\n')
    err = _one_line(capsys, f"config file {cfg}: --batch-size", "--config", cfg)
    assert err


def test_generating_from_diverged_weights_says_so():
    from nnx.models import generate
    from nnx.models.lstm import build

    model = build((8,), 3, vocab="abc")
    for p in model.parameters():
        p.value = np.full_like(p.value, np.nan)
    with pytest.raises(FloatingPointError, match="logits are NaN or infinite"):
        generate(model, "abc", "ab", 3)


def test_releasing_the_run_lock_removes_the_temp_files_of_interrupted_writes(tmp_path):
    """A signal can strike between an atomic write's mkstemp and its clean-up block: the lock's
    release (in the command's ``finally``) still leaves only complete files behind."""
    from nnx.cli.runfolder import lock_run_folder

    lock = lock_run_folder(tmp_path)
    (tmp_path / ".last.npz.k2j4_x9a.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".draft.tmp").write_text("the user's own")
    lock.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".draft.tmp"]
