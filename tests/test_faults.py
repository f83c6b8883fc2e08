"""Fault injection: the training command under kills, signals, races and crafted files.

Each test asserts the outcome a user sees: the exit status, a one-line message, and the files
left in the run folder. The slow part (repeated ``kill -9``) runs with ``python -m pytest -m slow``.
"""

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nnx.io.checkpoint import read_checkpoint, read_record

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "train.py"
FAST = ["--dataset", "vertical", "--device", "cpu", "--hidden", "16", "--quiet"]
TIMING = ("seconds", "samples_per_s")

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX signals and locks")


def _run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _start(*args):
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _history(folder):
    rows = list(csv.DictReader((Path(folder) / "history.csv").read_text().splitlines()))
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _one_line_error(done, status, message):
    err = done.stderr if hasattr(done, "stderr") else done
    assert done.returncode == status, err
    assert message in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def _check_consistent(out):
    """A checkpoint left in ``out`` is readable and agrees with itself."""
    if (out / "last.npz").exists():
        record = read_record(out / "last.npz")
        assert record["epoch"] == len(record["history"]) >= 1


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_matches_a_straight_run(tmp_path):
    """kill -9 a run at random moments, resume each time; the finished run equals one that was
    never interrupted (history and final weights), and no checkpoint is ever unreadable."""
    epochs = 400  # a few seconds of training, so that kills land mid-run
    args = [*FAST, "--dropout", "0.2", "--schedule", "cosine", "--epochs", epochs]
    straight = _run(*args, "--out", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "killed"
    rng = random.Random(0)
    for _ in range(6):
        last = out / "last.npz"
        if last.exists():
            proc = _start("--resume", last, "--epochs", epochs, "--quiet")
        else:
            proc = _start(*args, "--out", out, "--overwrite")
        time.sleep(rng.uniform(1.0, 5.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        _check_consistent(out)
    last = out / "last.npz"
    if last.exists():
        done = _run("--resume", last, "--epochs", epochs, "--quiet")
    else:
        done = _run(*args, "--out", out, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert _history(out) == _history(tmp_path / "straight")
    _, a = read_checkpoint(tmp_path / "straight" / "last.npz")
    _, b = read_checkpoint(out / "last.npz")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not list(out.glob(".*.tmp"))


# ---------------------------------------------------------------- in-process command runs


def _main(capsys, *args):
    """Run the command in this process (fast); returns (status, stdout, stderr)."""
    from nnx.cli.main import main

    capsys.readouterr()
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def _fails(capsys, status, message, *args):
    code, _, err = _main(capsys, *args)
    assert code == status, err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _config(folder):
    import json

    return json.loads((Path(folder) / "config.json").read_text())


def test_resume_applies_new_hyperparameters_from_the_resumed_epoch(tmp_path, capsys):
    out = tmp_path / "r"
    assert _main(capsys, *FAST, "--optimizer", "sgd", "--epochs", 2, "--out", out)[0] == 0
    code, stdout, err = _main(
        capsys,
        "--resume", out / "last.npz", "--epochs", 3, "--lr", 0.5, "--momentum", 0.9,
        "--weight-decay", 0.001, "--no-quiet",
    )  # fmt: skip
    assert code == 0, err
    assert "lr: 0.05 -> 0.5" in stdout and "momentum: 0.0 -> 0.9" in stdout  # --no-quiet worked
    assert [float(r["lr"]) for r in _history(out)] == [0.05, 0.05, 0.5]
    config = _config(out)
    assert config["settings"]["lr"] == 0.5 and config["settings"]["momentum"] == 0.9
    changed = config["resumes"][-1]
    assert changed["after_epoch"] == 2
    assert changed["changed"]["weight_decay"] == {"from": 0.0, "to": 0.001}
    optimizer = read_checkpoint(out / "last.npz")[0]["components"]["optimizer"]
    assert optimizer["lr"] == 0.5
    assert optimizer["hyperparameters"]["momentum"] == 0.9
    assert optimizer["hyperparameters"]["weight_decay"] == 0.001


@pytest.mark.parametrize(
    "flag, value",
    [("--seed", 3), ("--val-fraction", 0.3), ("--dtype", "float64"), ("--dataset", "spiral")],
)
def test_resume_refuses_settings_that_change_the_data(tmp_path, capsys, flag, value):
    out = tmp_path / "r"
    assert _main(capsys, *FAST, "--epochs", 1, "--out", out)[0] == 0
    before = (out / "last.npz").read_bytes()
    _fails(
        capsys, 2, f"{flag} cannot change when resuming",
        "--resume", out / "last.npz", "--epochs", 2, flag, value,
    )  # fmt: skip
    assert (out / "last.npz").read_bytes() == before and len(_history(out)) == 1


def test_an_older_checkpoint_never_overwrites_newer_results(tmp_path, capsys):
    out = tmp_path / "r"
    assert _main(capsys, *FAST, "--epochs", 1, "--out", out)[0] == 0
    old = out / "epoch1.npz"
    old.write_bytes((out / "last.npz").read_bytes())
    assert _main(capsys, "--resume", out / "last.npz", "--epochs", 3, "--quiet")[0] == 0
    newest = (out / "last.npz").read_bytes()
    _fails(
        capsys, 2, f"--resume {old} is from epoch 1, but {out / 'last.npz'} already holds epoch 3",
        "--resume", old, "--epochs", 2,
    )  # fmt: skip
    assert (out / "last.npz").read_bytes() == newest and len(_history(out)) == 3
    # into a new folder it is fine, and --overwrite says the user means it
    assert _main(capsys, "--resume", old, "--epochs", 2, "--out", tmp_path / "b")[0] == 0
    assert _main(capsys, "--resume", old, "--epochs", 2, "--overwrite")[0] == 0
    assert len(_history(out)) == 2


def test_a_locked_run_folder_is_refused_and_a_stale_lock_is_not(tmp_path, capsys):
    from nnx.cli.runfolder import LOCK_NAME, lock_run_folder

    out = tmp_path / "r"
    out.mkdir()
    with lock_run_folder(out):
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
        _fails(
            capsys, 2, f"--out folder {out} is in use by another run (pid {os.getpid()})",
            *FAST, "--epochs", 1, "--out", out,
        )  # fmt: skip
    assert not (out / LOCK_NAME).exists()
    # a killed run leaves its lock file behind, holding a dead pid but no lock
    (out / LOCK_NAME).write_text("999999\n")
    (out / ".last.npz.x1y2.tmp").write_bytes(b"PK half written")
    assert _main(capsys, *FAST, "--epochs", 1, "--out", out)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "best.npz", "config.json", "confusion.png", "curves.png", "history.csv", "last.npz",
        "summary.json",
    ]  # fmt: skip


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_nan_training_loss_writes_no_checkpoint_and_says_so(tmp_path, capsys):
    out = tmp_path / "r"
    err = _fails(
        capsys, 1, "training loss became",
        *FAST, "--optimizer", "sgd", "--lr", 1e30, "--epochs", 3, "--out", out,
    )  # fmt: skip
    assert "No checkpoint was written" in err
    assert not (out / "last.npz").exists() and not (out / "best.npz").exists()


def test_output_files_get_the_umask_permissions(tmp_path, capsys):
    out = tmp_path / "r"
    old = os.umask(0o022)
    try:
        assert _main(capsys, *FAST, "--epochs", 1, "--out", out)[0] == 0
    finally:
        os.umask(old)
    for p in out.iterdir():
        assert p.stat().st_mode & 0o777 == 0o644, p.name


def test_curves_png_replaces_a_symlink_instead_of_writing_through_it(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "r"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "curves.png").symlink_to(victim)
    assert _main(capsys, *FAST, "--epochs", 1, "--out", out, "--overwrite")[0] == 0
    assert victim.read_text() == "precious"
    assert not (out / "curves.png").is_symlink()
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- processes and signals


@pytest.mark.parametrize("sig, status", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_signal_keeps_the_last_epoch_and_a_second_run_is_locked_out(tmp_path, sig, status):
    out = tmp_path / "r"
    proc = _start(*FAST, "--epochs", 1000000, "--out", out)
    deadline = time.monotonic() + 120
    while not (out / "last.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if sig == "SIGTERM":  # two processes on one run folder: the second fails at once
        rival = _run(*FAST, "--epochs", 2, "--out", out, "--overwrite")
        _one_line_error(rival, 2, f"is in use by another run (pid {proc.pid})")
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    name = "" if sig == "SIGINT" else f" by {sig}"
    _one_line_error(
        subprocess.CompletedProcess([], proc.returncode, "", err),
        status,
        f"interrupted{name}: the last completed epoch is saved in {out / 'last.npz'}",
    )
    record = read_record(out / "last.npz")
    # the log is never ahead of last.npz (a resume would refuse it); it may lag by the epoch
    # whose row the signal stopped, which the checkpoint's own history holds
    # (so after the first epoch history.csv may not exist yet)
    rows = len(_history(out)) if (out / "history.csv").exists() else 0
    assert record["epoch"] >= 1 and record["epoch"] - 1 <= rows <= record["epoch"]
    assert not list(out.glob(".*.tmp")) and not (out / ".nnx.lock").exists()


# ---------------------------------------------------------------- one line, never a traceback


def _tracebacks_cases(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "huge.json").write_text("{" + " " * (2 << 20) + "}")
    (tmp_path / "latin1.json").write_bytes('{"optimizer": "adam"} # caf\xe9'.encode("latin-1"))
    (tmp_path / "overflow.toml").write_text("epochs = 1e400\n")
    (tmp_path / "overflow.json").write_text('{"batch_size": 1e999}')
    return [
        (["--out", "/proc/nnx-run"], "--out /proc/nnx-run: cannot create the folder"),
        (["--out", tmp_path / "file" / "run"], "cannot create the folder"),
        (["--config", tmp_path / "huge.json"], "is larger than 1024 KiB"),
        (["--config", "/dev/zero"], "config file /dev/zero is not a regular file"),
        (["--config", tmp_path / "latin1.json"], "latin1.json is not UTF-8 text"),
        (["--config", tmp_path / "overflow.toml"], "--epochs must be an integer, got inf"),
        (["--config", tmp_path / "overflow.json"], "--batch-size must be an integer, got inf"),
        (["--hidden", "100000,100000", "--out", tmp_path / "big"], "parameters that needs about"),
        (["--seed", "-3"], "--seed must be >= 0"),
    ]


def test_user_mistakes_are_one_line_errors_with_exit_2(tmp_path, capsys):
    for args, message in _tracebacks_cases(tmp_path):
        _fails(capsys, 2, message, "--dataset", "vertical", "--device", "cpu", "--quiet", *args)
    assert not (tmp_path / "big").exists()


def test_a_crafted_checkpoint_is_a_one_line_error(tmp_path, capsys):
    import json

    out = tmp_path / "r"
    assert _main(capsys, *FAST, "--epochs", 1, "--out", out)[0] == 0
    with np.load(out / "last.npz") as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    del meta["components"]["optimizer"]["state"][0]["step"]
    meta["components"]["counters"]["epoch"] = "one"  # used to be a KeyError or TypeError traceback
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(out / "crafted.npz", **arrays)
    _fails(capsys, 2, "epoch must be an integer >= 0, got 'one'", "--resume", out / "crafted.npz")


def test_ctrl_c_during_start_up_is_one_line_and_130(tmp_path):
    proc = _start(*FAST, "--epochs", 5, "--out", tmp_path / "r")
    time.sleep(0.4)  # the interpreter is up and loading NumPy and nnx
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # pragma: no cover - a very fast machine finished first
        pytest.skip("the run finished before the signal")
    _one_line_error(subprocess.CompletedProcess([], proc.returncode, "", err), 130, "interrupted")


# ---------------------------------------------------------------- API messages that fit the case


@pytest.mark.torch
@pytest.mark.parametrize("spec", ["strict:device1", "torch"])
def test_a_numpy_input_to_a_model_on_another_library_says_so(spec):
    import nnx

    if spec == "torch":
        pytest.importorskip("torch")
    model = nnx.Sequential(nnx.Linear(3, 2, rng=0)).to(nnx.get_backend(spec))
    with pytest.raises(TypeError, match="the input is a numpy array but the parameters are"):
        model(np.ones((2, 3), dtype=np.float32))


def test_a_new_lr_on_resume_becomes_the_schedules_base_rate(tmp_path, capsys):
    out = tmp_path / "r"
    args = ("--optimizer", "sgd", "--lr", 0.1, "--schedule", "exponential")
    assert _main(capsys, *FAST, *args, "--epochs", 2, "--out", out)[0] == 0
    assert _main(capsys, "--resume", out / "last.npz", "--epochs", 3, "--lr", 0.2)[0] == 0
    lrs = [float(r["lr"]) for r in _history(out)]
    assert lrs[:2] == pytest.approx([0.1, 0.1 * 0.95])
    assert lrs[2] == pytest.approx(0.2 * 0.95**2)  # the schedule goes on from the new base
