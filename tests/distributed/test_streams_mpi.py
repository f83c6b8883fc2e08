"""Map-style datasets and memory maps under MPI: each rank reads only its rows of every batch,
and two ranks train to the weights of one process."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from .test_distributed import mpirun

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import nnx
    from nnx.data import ArrayDataset

    folder = sys.argv[1]
    x = np.load(folder + "/x.npy", mmap_mode="r")
    y = np.load(folder + "/y.npy")

    class Rows:  # map-style, recording what this rank reads
        read = []
        def __len__(self):
            return len(x)
        def __getitem__(self, i):
            self.read.append(int(i))
            return np.array(x[i]), y[i]

    results = {}
    for name, data in (("map", Rows()), ("memmap", ArrayDataset(x, y))):
        model = nnx.Sequential(nnx.Linear(3, 3, rng=0))
        trainer = nnx.Trainer(model, nnx.CrossEntropyLoss(), nnx.optim.SGD(model.parameters()),
                              progress=False, distributed=len(sys.argv) > 2, seed=3)
        trainer.fit(data, epochs=2, batch_size=8)
        results[name] = nnx.to_numpy(model[0].weight.value).tolist()
    results["read"] = Rows.read
    results["rank"] = trainer.rank
    with open(f"{folder}/out{trainer.rank}{len(sys.argv)}.json", "w") as f:
        json.dump(results, f)
    """
)


@pytest.mark.slow
def test_two_ranks_read_their_rows_and_train_as_one(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(30, 3)).astype(np.float32))
    np.save(tmp_path / "y.npy", (np.arange(30) % 3).astype(np.int64))
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    import subprocess
    import sys

    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=120)
    proc = mpirun(2, script, tmp_path, "distributed")
    assert proc.returncode == 0, proc.stderr[-2000:]
    one = json.loads((tmp_path / "out02.json").read_text())
    ranks = [json.loads((tmp_path / f"out{r}3.json").read_text()) for r in range(2)]
    for name in ("map", "memmap"):
        for r in ranks:
            np.testing.assert_allclose(r[name], one[name], rtol=1e-5, atol=1e-6)
    # each rank first reads sample 0 (the ranks agree on the sample layout), then its own
    # 15 rows of each of the two epochs: disjoint, together every sample
    reads = [r["read"] for r in ranks]
    assert reads[0][0] == reads[1][0] == 0
    epoch1 = [set(r[1:16]) for r in reads]
    assert not epoch1[0] & epoch1[1] and epoch1[0] | epoch1[1] == set(range(30))
    assert len(reads[0]) + len(reads[1]) - 2 == len(one["read"]) == 60
