"""World.agree: ranks started with different settings or data stop with one line on every rank."""

from __future__ import annotations

import textwrap

from .test_distributed import mpirun

SCRIPT = textwrap.dedent(
    """
    import sys
    import nnx.distributed as dist

    world = dist.init()
    lr = 0.1 if world.rank == 0 or sys.argv[1] == "same" else 0.2
    try:
        world.agree({"lr": lr, "x.shape": [100, 4]})
    except dist.RankMismatchError as err:
        print(f"rank {world.rank}: {err}", flush=True)
    else:
        print(f"rank {world.rank}: agreed", flush=True)
    """
)


def test_ranks_with_the_same_facts_agree(tmp_path):
    script = tmp_path / "agree.py"
    script.write_text(SCRIPT)
    done = mpirun(3, script, "same", timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split("\n"))[1:] == [f"rank {r}: agreed" for r in range(3)]


def test_a_rank_with_another_setting_is_named_on_every_rank(tmp_path):
    script = tmp_path / "agree.py"
    script.write_text(SCRIPT)
    done = mpirun(3, script, "differ", timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.split("\n") if line]
    assert len(lines) == 3
    for line in lines:
        assert line.endswith(
            "the ranks disagree on lr: rank 0 has 0.1, rank 1 has 0.2; start every rank with "
            "the same settings and data"
        ), line
