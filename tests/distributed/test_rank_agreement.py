"""World.agree: ranks started with different settings or data stop with one line on every rank."""

from __future__ import annotations

import textwrap

import pytest

from .test_distributed import WORKER, mpirun

# Each rank writes its outcome to its own file: lines printed by several ranks through the
# launcher may interleave.
SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import nnx.distributed as dist

    world = dist.init()
    lr = 0.1 if world.rank == 0 or sys.argv[1] == "same" else 0.2
    try:
        world.agree({"lr": lr, "x.shape": [100, 4]})
    except dist.RankMismatchError as err:
        outcome = str(err)
    else:
        outcome = "agreed"
    Path(sys.argv[2], f"rank{world.rank}.txt").write_text(outcome)
    """
)


def _run(tmp_path, how):
    script = tmp_path / "agree.py"
    script.write_text(SCRIPT)
    done = mpirun(3, script, how, tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    return [(tmp_path / f"rank{r}.txt").read_text() for r in range(3)]


def test_ranks_with_the_same_facts_agree(tmp_path):
    assert _run(tmp_path, "same") == ["agreed"] * 3


def test_a_rank_with_another_setting_is_named_on_every_rank(tmp_path):
    expected = (
        "the ranks disagree on lr: rank 0 has 0.1, rank 1 has 0.2; start every rank with "
        "the same settings and data"
    )
    assert _run(tmp_path, "differ") == [expected] * 3


@pytest.mark.parametrize(
    ("scenario", "fact"),
    [
        ("mismatch-data", "the training data (SHA-256): rank 0 has '"),
        ("mismatch-lr", "lr: rank 0 has 0.05, rank 1 has 0.04;"),
        ("mismatch-count", "the training sample count: rank 0 has 41, rank 1 has 40;"),
    ],
)
def test_a_trainer_whose_ranks_differ_stops_in_one_line(tmp_path, scenario, fact):
    """Other data of the same shape, another learning rate, or another sample count on one
    rank: Trainer.fit stops every rank before training, one line on rank 0, non-zero exit."""
    done = mpirun(2, WORKER, scenario, tmp_path, timeout=60)
    assert done.returncode != 0
    # besides rank 0's line, only the launcher's one-line notice of the exit status (as the
    # command line's exit under MPI gives)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith("Abort(")]
    assert len(lines) == 1 and lines[0].startswith("error: the ranks disagree on "), done.stderr
    assert fact in lines[0], lines[0]
    assert "Traceback" not in done.stderr + done.stdout and "MPICH" not in done.stderr
    assert not (tmp_path / "last.npz").exists()  # nothing was trained
