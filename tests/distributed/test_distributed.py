"""Data-parallel training under MPI: ``mpiexec -n 2`` (and 3) subprocesses, each bounded by a
timeout, compared with one process. Skipped with the reason when mpi4py or mpiexec is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nnx.io.checkpoint import read_checkpoint

from . import mpi_worker

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(mpi_worker.__file__)


def _mpiexec() -> str:
    pytest.importorskip("mpi4py", reason="needs mpi4py: pip install 'nnx-trainer[mpi]'")
    found = shutil.which("mpiexec") or shutil.which(
        "mpiexec", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.skip("needs an MPI launcher (mpiexec) on PATH: pip install 'nnx-trainer[mpi]'")
    return found


def mpirun(n: int, *args, timeout: float = 120, env: dict | None = None):
    """``mpiexec -n n python -m mpi4py ARGS`` with one BLAS thread per rank."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    command = [_mpiexec(), "-n", str(n), sys.executable, "-m", "mpi4py", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT
    )


def one_process(
    epochs: int = mpi_worker.EPOCHS, problem=mpi_worker.problem, augment=None, **options
):
    """The reference: the same problem trained by one process with the same global batch."""
    import nnx

    (x, y), model, loss, optimizer = problem(seed=0)
    trainer = nnx.Trainer(
        model, loss, optimizer, device="cpu", seed=7, progress=False, augment=augment, **options
    )
    val = (mpi_worker.first_rows(x, 13), y[:13])
    trainer.fit((x, y), val=val, epochs=epochs, batch_size=mpi_worker.BATCH)
    return model.state_dict(), trainer.history.records


def assert_matches_one_process(
    out: Path, problem=mpi_worker.problem, augment=None, atol=1e-6, loss_atol=1e-9, **options
) -> None:
    """OUT/params.npz and OUT/history.json (rank 0) equal :func:`one_process`'s."""
    expected, history = one_process(problem=problem, augment=augment, **options)
    got = np.load(out / "params.npz")
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=0, atol=atol, err_msg=name)
    records = json.loads((out / "history.json").read_text())
    for mine, theirs in zip(records, history, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert mine[key] == pytest.approx(theirs[key], abs=loss_atol), key


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_match_one_process_with_adam_dropout_and_empty_shards(tmp_path, ranks):
    # 41 samples, batch 8: shards of 4/4 (3/3/2) and a last batch of 1 sample whose other shards
    # are empty; ranks start from different weights until rank 0's are broadcast.
    done = mpirun(ranks, WORKER, "train", tmp_path)
    assert done.returncode == 0, done.stderr
    assert_matches_one_process(tmp_path)
    expected = one_process()[0]
    assert (
        np.abs(expected["0.weight"] - mpi_worker.problem(seed=1)[1].state_dict()["0.weight"]).max()
        > 0.1
    )


@pytest.mark.parametrize("ranks", [2, 3])
def test_sync_batchnorm_ranks_match_one_process_batchnorm(tmp_path, ranks):
    # the global batch's statistics on every rank: N ranks train exactly like one process with
    # BatchNorm2d, also with uneven shards (3/3/2) and the empty shards of the last batch, whose
    # ranks still join the SyncBatchNorm allreduces
    done = mpirun(ranks, WORKER, "syncbn", tmp_path)
    assert done.returncode == 0, done.stderr
    assert_matches_one_process(tmp_path, mpi_worker.image_problem)


def test_a_tuple_of_inputs_trains_like_one_process(tmp_path):
    done = mpirun(2, WORKER, "tuple", tmp_path)
    assert done.returncode == 0, done.stderr
    assert_matches_one_process(tmp_path, mpi_worker.tuple_problem)


@pytest.mark.parametrize("ranks", [2, 3])
def test_augmented_batches_train_like_one_process(tmp_path, ranks):
    # the crops and flips of the global batch are drawn once from (seed, epoch, batch) and each
    # rank applies its rows' share, so N ranks see exactly one process's augmented batches
    done = mpirun(ranks, WORKER, "augment", tmp_path)
    assert done.returncode == 0, done.stderr
    assert_matches_one_process(tmp_path, mpi_worker.augment_problem, mpi_worker.augmentation())
    plain, _ = one_process(problem=mpi_worker.augment_problem)  # the augmentation matters
    got = np.load(tmp_path / "params.npz")
    assert max(np.abs(got[k] - v).max() for k, v in plain.items()) > 1e-3


@pytest.mark.parametrize("ranks", [2, 3])
def test_gradient_accumulation_on_ranks_matches_one_process(tmp_path, ranks):
    # groups of 3 global batches weighted by the global sample counts; the last group is one
    # batch of 1 sample, empty on every rank but one; dropout rows and Adam as in "train"
    done = mpirun(ranks, WORKER, "accumulate", tmp_path)
    assert done.returncode == 0, done.stderr
    assert_matches_one_process(tmp_path, **mpi_worker.OPTIONS["accumulate"])
    plain, _ = one_process()  # accumulation changes the run
    got = np.load(tmp_path / "params.npz")
    assert max(np.abs(got[k] - v).max() for k, v in plain.items()) > 1e-3


def test_classification_metrics_on_ranks_match_one_process(tmp_path):
    # F1 and precision from confusion matrices summed over the ranks, AUROC from every rank's
    # scores gathered: each epoch's values equal one process's; uneven shards (3/3/2), and in
    # the last evaluate (2 rows) a rank with nothing, which sends zeros of the matrix's size
    options = mpi_worker.OPTIONS["metrics"]
    done = mpirun(3, WORKER, "metrics", tmp_path)
    assert done.returncode == 0, done.stderr
    assert_matches_one_process(tmp_path, **options)
    records = json.loads((tmp_path / "history.json").read_text())
    for mine, theirs in zip(records, one_process(**options)[1], strict=True):
        for name in options["metrics"]:
            for key in (f"train_{name}", f"val_{name}"):
                assert mine[key] == pytest.approx(theirs[key], abs=1e-12), key
    import nnx

    trainer = nnx.Trainer(*mpi_worker.problem()[1:], device="cpu", progress=False, **options)
    trainer.model.load_state_dict(dict(np.load(tmp_path / "params.npz")))
    (x, y), _, _, _ = mpi_worker.problem()
    expected = trainer.evaluate((x[:2], y[:2]))
    assert json.loads((tmp_path / "evaluate.json").read_text()) == pytest.approx(
        expected, abs=1e-12
    )


def test_mixed_precision_on_ranks_matches_one_process(tmp_path):
    # float16 compute, float32 masters: the allreduce sums float32 unscaled gradients, so two
    # ranks take the steps one process takes, to float16 rounding (each rank's loss gradient,
    # 1/n_r instead of 1/N per sample, rounds differently in float16)
    done = mpirun(2, WORKER, "mixed", tmp_path)
    assert done.returncode == 0, done.stderr
    assert_matches_one_process(
        tmp_path, mpi_worker.mixed_problem, atol=2e-3, loss_atol=2e-3, **mpi_worker.OPTIONS["mixed"]
    )


def test_hand_written_loop_with_the_public_api(tmp_path):
    import nnx

    done = mpirun(2, WORKER, "loop", tmp_path)
    assert done.returncode == 0, done.stderr
    (x, y), model, loss, optimizer = mpi_worker.problem(seed=0)
    loader = nnx.data.DataLoader(nnx.data.ArrayDataset(x, y), mpi_worker.BATCH, seed=0)
    model.eval()
    for epoch in range(mpi_worker.EPOCHS):
        loader.set_epoch(epoch)
        for xb, yb in loader:
            model.zero_grad()
            loss.forward(model(xb), yb)
            model.backward(loss.backward())
            optimizer.step()
    got = np.load(tmp_path / "params.npz")
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-6, err_msg=name)
    # (2 samples x gradient 2 + 1 sample x no gradient) / 3 samples; a mean of means would be 1
    np.testing.assert_allclose(np.load(tmp_path / "uneven.npy"), np.full(3, 4.0 / 3.0))


def _assert_fault_handled(done, seconds, out):
    assert done.returncode != 0
    assert seconds < 30, f"took {seconds:.1f} s"
    meta, _ = read_checkpoint(out / "last.npz")  # still a whole, loadable checkpoint
    assert meta["components"]["counters"]["epoch"] == 1


def test_a_rank_that_raises_stops_every_rank(tmp_path):
    start = time.monotonic()
    done = mpirun(2, WORKER, "raise", tmp_path, timeout=60)
    _assert_fault_handled(done, time.monotonic() - start, tmp_path)
    assert "RuntimeError: injected fault on rank 1" in done.stderr
    notice = [line for line in done.stderr.splitlines() if line.startswith("nnx.distributed:")]
    assert notice == [
        "nnx.distributed: rank 0 stops: rank 1 failed: RuntimeError: injected fault on rank 1"
    ], done.stderr


def test_a_killed_rank_stops_every_rank(tmp_path):
    start = time.monotonic()
    done = mpirun(2, WORKER, "kill", tmp_path, timeout=60)
    _assert_fault_handled(done, time.monotonic() - start, tmp_path)
    # the launcher kills the survivors at once (SIGKILL: they cannot print) and names the signal
    assert "signal 9" in done.stdout + done.stderr


def test_a_hanging_rank_is_detected_by_the_timeout(tmp_path):
    start = time.monotonic()
    done = mpirun(2, WORKER, "hang", tmp_path, timeout=60, env={"NNX_DIST_TIMEOUT": "4"})
    _assert_fault_handled(done, time.monotonic() - start, tmp_path)
    assert (
        "nnx.distributed: rank 0 stops: no answer from the other ranks for 4 s in "
        "allreduce_gradients; a rank died or hangs" in done.stderr
    ), done.stderr


CLI = ["--dataset", "vertical", "--device", "cpu", "--hidden", "16", "--dtype", "float64"]
CLI += ["--dropout", "0.2", "--batch-size", "25", "--quiet"]


def test_command_line_resume_with_other_ranks_equals_one_straight_run(tmp_path):
    from nnx.cli.main import main

    run, straight = tmp_path / "run", tmp_path / "straight"
    done = mpirun(2, "scripts/train.py", "--distributed", *CLI, "--epochs", "2", "--out", run)
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "config.json").read_text())["ranks"] == 2
    # resumed on 3 ranks, detected from the MPI environment (no --distributed)
    done = mpirun(3, "scripts/train.py", "--resume", run / "last.npz", "--epochs", "4")
    assert done.returncode == 0, done.stderr
    # --quiet: one line per epoch, and nothing from the other ranks
    assert [line.split("  ")[0] for line in done.stdout.splitlines()] == ["epoch 3/4", "epoch 4/4"]
    assert main([*CLI, "--epochs", "4", "--out", str(straight)]) == 0
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in straight.iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["ranks"] == 3 and config["settings"]["distributed"] is True
    _, got = read_checkpoint(run / "last.npz")
    _, expected = read_checkpoint(straight / "last.npz")
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-6, err_msg=key)
    mine = json.loads((run / "summary.json").read_text())
    theirs = json.loads((straight / "summary.json").read_text())
    for key in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
        assert mine[key] == pytest.approx(theirs[key], abs=1e-9), key


def test_distributed_without_mpi4py_is_a_one_line_error(tmp_path):
    code = (
        "import sys; sys.modules['mpi4py'] = None; from nnx.cli.main import main; "
        f"sys.exit(main(['--distributed', '--dataset', 'vertical', '--out', {str(tmp_path)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("train.py: error: distributed training needs mpi4py")
    assert "pip install 'nnx-trainer[mpi]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_distributed_trainer_needs_a_mean_loss():
    import nnx

    _, model, _, optimizer = mpi_worker.problem()
    loss = nnx.CrossEntropyLoss(reduction="sum")
    with pytest.raises(ValueError, match="reduction='mean', got 'sum'"):
        nnx.Trainer(model, loss, optimizer, device="cpu", distributed=True)


def test_batchnorm_statistics_end_every_epoch_equal_on_every_rank(tmp_path):
    done = mpirun(2, WORKER, "batchnorm", tmp_path)
    assert done.returncode == 0, done.stderr
    first, second = np.load(tmp_path / "rank0.npz"), np.load(tmp_path / "rank1.npz")
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_allclose(first[name], second[name], rtol=0, atol=1e-12, err_msg=name)
    assert np.abs(first["1.running_mean"]).max() > 1e-3  # the statistics did move


def test_command_line_sync_batchnorm_on_two_ranks_equals_one_process(tmp_path):
    from nnx.cli.main import main

    cli = ["--model", "cnn", "--dataset", "digits", "--dtype", "float64", "--epochs", "1"]
    cli += ["--sync-batchnorm", "--quiet", "--batch-size", "100"]
    run, single = tmp_path / "run", tmp_path / "single"
    done = mpirun(2, "scripts/train.py", *cli, "--out", run)
    assert done.returncode == 0, done.stderr
    assert main([*cli, "--out", str(single)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["ranks"] == 2 and config["settings"]["sync_batchnorm"] is True
    meta, got = read_checkpoint(run / "last.npz")
    assert "SyncBatchNorm" in json.dumps(meta)  # the model file names the converted layers
    _, expected = read_checkpoint(single / "last.npz")
    for key, value in expected.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-6, err_msg=key)
