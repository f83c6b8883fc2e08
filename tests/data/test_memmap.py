"""Memory-mapped arrays are read per batch, never whole; each rank reads only its rows."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.data import ArrayDataset, DataLoader
from nnx.data.gather import gather_rows


def test_gather_rows_reads_sorted_and_returns_in_order(tmp_path):
    a = np.arange(40.0).reshape(20, 2)
    np.save(tmp_path / "a.npy", a)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    idx = np.array([7, 2, 19, 2, 0])
    np.testing.assert_array_equal(gather_rows(mm, idx), a[idx])
    assert type(gather_rows(mm, idx)) is np.ndarray  # an in-memory copy, not a view of the file
    assert gather_rows(mm, np.array([], dtype=np.int64)).shape == (0, 2)
    view = mm[5:]  # a view starts inside the file: its rows are found there too
    np.testing.assert_array_equal(gather_rows(view, np.array([3, 0, 14])), a[5:][[3, 0, 14]])
    with pytest.raises(IndexError):
        gather_rows(mm, np.array([20]))


def test_gather_rows_reads_column_slices_of_a_memmap_with_pread(tmp_path, monkeypatch):
    import os

    a = np.arange(60, dtype=np.float32).reshape(12, 5)
    np.save(tmp_path / "a.npy", a)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    reads = []
    plain = os.preadv
    monkeypatch.setattr(os, "preadv", lambda *args: reads.append(1) or plain(*args))
    idx = np.array([11, 0, 3, 4, 5, 11])  # the last row: a read must stop at its own bytes
    for view in (mm[:, 1:], mm[:, :-1], mm[:, 2:3], mm[::2, 1:]):
        reads.clear()
        rows = idx[idx < len(view)]
        np.testing.assert_array_equal(gather_rows(view, rows), np.asarray(view)[rows])
        assert reads  # read from the file, not through the mapping


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's RssFile")
def test_gathering_a_memmap_does_not_leave_the_file_resident(tmp_path):
    def rss_file_kb():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssFile:"):
                return int(line.split()[1])
        pytest.skip("no RssFile line")

    np.save(tmp_path / "x.npy", np.ones((4096, 1024), np.float32))  # 16 MiB
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    before = rss_file_kb()
    order = np.random.default_rng(0).permutation(4096)
    for i in range(0, 4096, 256):
        gather_rows(mm, order[i : i + 256])
    assert rss_file_kb() - before < 4096  # KiB: the 16 MiB file is not mapped in


def test_training_on_a_memmap_keeps_memory_near_a_few_batches(tmp_path):
    rows, width, batch = 4096, 256, 128  # a 4 MiB file; a batch is 128 KiB
    x = np.random.default_rng(0).normal(size=(rows, width)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    y = (np.arange(rows) % 2).astype(np.int64)
    del x
    data = ArrayDataset(np.load(tmp_path / "x.npy", mmap_mode="r"), y)
    model = nnx.Sequential(nnx.Linear(width, 2, rng=0))
    trainer = nnx.Trainer(
        model, nnx.CrossEntropyLoss(), nnx.optim.SGD(model.parameters()), progress=False
    )
    tracemalloc.start()
    try:
        trainer.fit(data, epochs=1, batch_size=batch)
        trainer.evaluate(data, batch_size=batch)
        out = trainer.predict(data.x, batch_size=batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (rows, 2)
    # the file is 4 MiB: reading it whole would trace at least that much
    assert peak < 1 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"


def test_each_rank_reads_only_its_rows():
    class Recording:
        def __init__(self):
            self.read = []

        def __len__(self):
            return 23

        def __getitem__(self, i):
            self.read.append(i)
            return np.array([float(i)]), i

    seen = []
    for rank in range(3):
        data = Recording()
        loader = DataLoader(data, 5, seed=1, rank=rank, world_size=3)
        got = [int(v) for _, y in loader for v in y]
        assert sorted(data.read) == sorted(got)
        seen += got
    assert sorted(seen) == list(range(23))  # the shards are disjoint and cover every sample


def test_splitting_a_memmap_reads_nothing_and_trains_as_in_memory(tmp_path):
    from nnx.data import Subset, train_val_split

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3)).astype(np.float32)
    y = (np.arange(30) % 3).astype(np.int64)
    np.save(tmp_path / "x.npy", x)
    lazy = ArrayDataset(np.load(tmp_path / "x.npy", mmap_mode="r"), y)
    train, val = train_val_split(lazy, 0.2, seed=1)
    assert isinstance(train, Subset) and isinstance(val, Subset)
    ref_train, ref_val = train_val_split(ArrayDataset(x, y), 0.2, seed=1)
    np.testing.assert_array_equal(x[train.indices], ref_train.x)
    weights = []
    for t, v in ((train, val), (ref_train, ref_val)):
        model = nnx.Sequential(nnx.Linear(3, 3, rng=0))
        trainer = nnx.Trainer(
            model, nnx.CrossEntropyLoss(), nnx.optim.SGD(model.parameters()), progress=False
        )
        history = trainer.fit(t, v, epochs=2, batch_size=4)
        weights.append((nnx.to_numpy(model[0].weight.value), history.last["val_loss"]))
    np.testing.assert_array_equal(weights[0][0], weights[1][0])
    assert weights[0][1] == weights[1][1]
