"""World.agree: ranks started with different settings or data stop with one line on every rank."""

from __future__ import annotations

import textwrap

from .test_distributed import mpirun

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
