"""The training command's --schedule plateau / onecycle / cosine-restarts and --find-lr."""

import csv
import json
from pathlib import Path

import pytest

import nnx
from nnx.cli import run as cli_run
from nnx.cli.main import main

FAST = [
    "--dataset",
    "vertical",
    "--device",
    "cpu",
    "--hidden",
    "16",
    "--quiet",
    "--batch-size",
    "64",
]
TIMING = ("seconds", "samples_per_s")


def _main(capsys, *args):
    capsys.readouterr()
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def _history(folder):
    rows = list(csv.DictReader((Path(folder) / "history.csv").read_text().splitlines()))
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


class _StopAfter(nnx.Callback):
    """Ctrl-C after an epoch (once last.npz holds it)."""

    order = 30

    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    "options",
    [
        ("--schedule", "plateau", "--plateau-patience", 0, "--plateau-factor", 0.5, "--lr", 1.0),
        pytest.param(
            (
                "--schedule",
                "cosine-restarts",
                "--restart-epochs",
                1,
                "--restart-mult",
                2,
                "--min-lr",
                1e-4,
            ),
            marks=pytest.mark.slow,  # the Trainer-level test covers its resume in the default run
        ),
        ("--schedule", "onecycle", "--optimizer", "sgd", "--lr", 0.2),
    ],
)
def test_two_epochs_then_three_more_on_resume_equal_five_straight(
    tmp_path, capsys, monkeypatch, options
):
    assert _main(capsys, *FAST, *options, "--epochs", 5, "--out", tmp_path / "straight")[0] == 0
    out = tmp_path / "resumed"
    if "onecycle" in options:  # its cycle is planned over --epochs: interrupt a 5-epoch run
        made = cli_run.run_callbacks
        monkeypatch.setattr(cli_run, "run_callbacks", lambda *a: [*made(*a), _StopAfter(2)])
        assert _main(capsys, *FAST, *options, "--epochs", 5, "--out", out)[0] != 0
        monkeypatch.setattr(cli_run, "run_callbacks", made)
    else:
        assert _main(capsys, *FAST, *options, "--epochs", 2, "--out", out)[0] == 0
    assert len(_history(out)) == 2
    status, _, err = _main(capsys, "--resume", out / "last.npz", "--epochs", 5)
    assert status == 0, err
    straight, resumed = _history(tmp_path / "straight"), _history(out)
    assert [r["lr"] for r in resumed] == [r["lr"] for r in straight]
    assert resumed == straight
    lrs = [float(r["lr"]) for r in straight]
    assert len(set(lrs)) > 1  # the schedule did change the rate
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["schedule"] == options[1]


def test_schedule_options_are_refused_where_they_do_not_apply(capsys):
    cases = [
        (("--plateau-patience", 3), "--plateau-patience applies to --schedule plateau, not none"),
        (("--schedule", "cosine", "--min-lr", 0.1), "--min-lr applies to --schedule plateau or"),
        (("--schedule", "plateau", "--restart-mult", 2), "--restart-mult applies to --schedule co"),
        (
            ("--schedule", "onecycle", "--optimizer", "sgd", "--momentum", 0.9),
            "cycles the momentum",
        ),
        (("--schedule", "plateau", "--plateau-factor", 1.0), "--plateau-factor must be < 1.0"),
        # cosine-restarts annealed from --lr 0.001 up to 0.5 and back, each cycle
        (
            ("--schedule", "cosine-restarts", "--min-lr", 0.5),
            "--min-lr 0.5 must be below the learning rate 0.001 (--lr) for --schedule cosine-r",
        ),
        (("--schedule", "plateau", "--lr", 0.1, "--min-lr", 0.1), "--min-lr 0.1 must be below"),
    ]
    for args, message in cases:
        status, _, err = _main(capsys, *FAST, *args)
        assert status != 0 and message in err and "Traceback" not in err, err


def test_onecycle_refuses_other_epochs_on_resume(tmp_path, capsys):
    out = tmp_path / "r"
    assert _main(capsys, *FAST, "--schedule", "onecycle", "--epochs", 2, "--out", out)[0] == 0
    status, _, err = _main(capsys, "--resume", out / "last.npz", "--epochs", 3)
    assert status != 0 and "planned over 2 epochs; resume with --epochs 2" in err, err


def test_find_lr_writes_the_curve_and_the_suggestion_and_does_not_train(tmp_path, capsys):
    out = tmp_path / "f"
    loud = [a for a in FAST if a != "--quiet"]
    status, said, err = _main(capsys, *loud, "--optimizer", "sgd", "--find-lr", "--out", out)
    assert status == 0, err
    found = json.loads((out / "lr_find.json").read_text())
    assert found["suggestion"] in found["lrs"] and len(found["lrs"]) == len(found["smoothed"])
    assert f"--lr {found['suggestion']:.3g}" in said + err
    assert not (out / "last.npz").exists() and not (out / "history.csv").exists()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (out / "lr_find.png").exists()
    else:
        assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    status, _, err = _main(capsys, "--find-lr", "--resume", tmp_path / "nothing.npz")
    assert status != 0 and "Traceback" not in err


def test_find_lr_refuses_training_flags_it_would_ignore(tmp_path, capsys):
    # --schedule onecycle, --metrics, --tensorboard... were accepted and had no effect
    for args in (("--schedule", "onecycle"), ("--metrics", "f1"), ("--clip-norm", 1)):
        status, _, err = _main(capsys, *FAST, "--find-lr", *args, "--out", tmp_path / "f")
        assert status == 2 and f"{args[0]} does not apply with --find-lr" in err, err
        assert not (tmp_path / "f").exists()


def test_find_lr_prints_its_suggestion_with_quiet(tmp_path, capsys):
    # --quiet drops the model table, not the one result of the command
    status, said, err = _main(capsys, *FAST, "--find-lr", "--out", tmp_path / "q")
    found = json.loads((tmp_path / "q" / "lr_find.json").read_text())
    assert status == 0 and f"--lr {found['suggestion']:.3g}" in said, said + err
    assert "Layer (type)" not in said
