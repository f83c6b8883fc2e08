"""DataLoader, ArrayDataset, train_val_split and Standardizer on every backend."""

import numpy as np
import pytest

import nnx
from nnx.data import ArrayDataset, DataLoader, Standardizer, train_val_split


def _data(backend, n=23):
    x = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    return ArrayDataset(x, np.arange(n)).to(backend, dtype="float64")


def _labels_seen(loader):
    return [nnx.to_numpy(y).tolist() for _, y in loader]


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_exactly_once_per_epoch(backend, shuffle):
    loader = DataLoader(_data(backend), batch_size=5, shuffle=shuffle, seed=3)
    for epoch in range(3):
        loader.set_epoch(epoch)
        batches = list(loader)
        assert [int(x.shape[0]) for x, _ in batches] == [5, 5, 5, 5, 3]
        seen = sorted(v for b in _labels_seen(loader) for v in b)
        assert seen == list(range(23))
        for x, y in batches:  # features and targets stay paired, on the backend's device
            assert backend.owns(x) and backend.owns(y)
            np.testing.assert_array_equal(nnx.to_numpy(x)[:, 0], 2 * nnx.to_numpy(y))


def test_shuffles_differ_across_epochs_and_repeat_across_runs(backend):
    a = DataLoader(_data(backend), batch_size=4, seed=7)
    b = DataLoader(_data(backend), batch_size=4, seed=7)
    orders = []
    for epoch in range(3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert _labels_seen(a) == _labels_seen(b)
        orders.append(_labels_seen(a))
    assert orders[0] != orders[1] != orders[2]
    other_seed = DataLoader(_data(backend), batch_size=4, seed=8)
    assert _labels_seen(other_seed) != orders[0]


def test_drop_last(backend):
    loader = DataLoader(_data(backend), batch_size=5, drop_last=True)
    assert len(loader) == 4
    assert [int(x.shape[0]) for x, _ in loader] == [5, 5, 5, 5]
    with pytest.raises(ValueError, match="leaves no batch"):
        DataLoader(_data(backend, n=3), batch_size=5, drop_last=True)


def test_no_per_batch_host_copies(monkeypatch):
    """The permutation goes to the device once per epoch; batches are gathered there."""
    calls = []
    real = nnx.Backend.asarray
    monkeypatch.setattr(
        nnx.Backend, "asarray", lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
    )
    loader = DataLoader(_data("strict:device1", n=100), batch_size=10, seed=0)
    calls.clear()
    assert len(list(loader)) == 10
    assert len(calls) == 1


def test_bad_arguments():
    data = _data("numpy")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        DataLoader(data, batch_size=0)
    with pytest.raises(TypeError, match="ArrayDataset"):
        DataLoader((np.zeros(3), np.zeros(3)), batch_size=2)
    with pytest.raises(ValueError, match="10 samples of features but targets of shape"):
        ArrayDataset(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(TypeError, match="expected an array"):
        ArrayDataset([[1.0, 2.0]])


def test_dataset_to_keeps_integer_labels_and_casts_floats(backend):
    moved = ArrayDataset(np.zeros((4, 2)), np.arange(4)).to(backend, dtype="float32")
    assert moved.x.dtype == backend.xp.float32
    assert backend.xp.isdtype(moved.y.dtype, "integral")
    regression = ArrayDataset(np.zeros((4, 2)), np.zeros((4, 1))).to(backend, dtype="float32")
    assert regression.y.dtype == backend.xp.float32


def test_train_val_split_is_seeded_and_disjoint(backend):
    data = _data(backend, n=50)
    train, val = train_val_split(data, 0.2, seed=1)
    again, _ = train_val_split(data, 0.2, seed=1)
    other, _ = train_val_split(data, 0.2, seed=2)
    t, v = nnx.to_numpy(train.y).tolist(), nnx.to_numpy(val.y).tolist()
    assert len(v) == 10 and sorted(t + v) == list(range(50))
    assert nnx.to_numpy(again.y).tolist() == t and nnx.to_numpy(other.y).tolist() != t
    assert backend.owns(train.x) and backend.owns(val.y)
    assert train_val_split(data, 0.0)[1] is None
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(data, 1.5)


def test_standardizer_is_fitted_on_the_training_split_only(backend):
    rng = np.random.default_rng(0)
    train = backend.asarray(rng.normal(5.0, 2.0, size=(200, 3)))
    test = backend.asarray(rng.normal(50.0, 9.0, size=(20, 3)))
    scaler = Standardizer().fit(train)
    z = nnx.to_numpy(scaler.transform(train))
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-12)
    expected = (nnx.to_numpy(test) - nnx.to_numpy(train).mean(0)) / nnx.to_numpy(train).std(0)
    np.testing.assert_allclose(nnx.to_numpy(scaler.transform(test)), expected, rtol=1e-12)
    constant = Standardizer().fit(backend.asarray(np.ones((4, 2))))
    assert np.isfinite(nnx.to_numpy(constant.transform(backend.asarray(np.ones((1, 2)))))).all()
    with pytest.raises(RuntimeError, match="call fit"):
        Standardizer().transform(train)


@pytest.mark.parametrize("world_size", [2, 3, 5])
@pytest.mark.parametrize("shuffle", [True, False])
def test_rank_shards_cut_every_global_batch_in_rank_order(backend, world_size, shuffle):
    data = _data(backend, n=23)
    whole = [nnx.to_numpy(yb).tolist() for _, yb in DataLoader(data, 7, shuffle, seed=4)]
    shards = [
        DataLoader(data, 7, shuffle, seed=4, rank=r, world_size=world_size)
        for r in range(5)[:world_size]
    ]
    for shard in shards:
        shard.set_epoch(0)
        assert len(shard) == len(whole)
    parts = [[nnx.to_numpy(yb).tolist() for _, yb in shard] for shard in shards]
    for b, batch in enumerate(whole):
        assert sum((p[b] for p in parts), []) == batch  # disjoint, contiguous, in rank order
        sizes = [len(p[b]) for p in parts]
        assert max(sizes) - min(sizes) <= 1
        assert [s.batch_rows(b)[2] for s in shards] == [len(batch)] * world_size


@pytest.mark.parametrize("rank", [-1, 2, 1.0, True])
def test_rank_outside_the_world_is_refused(rank):
    data = ArrayDataset(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 1\]"):
        DataLoader(data, 2, rank=rank, world_size=2)
    with pytest.raises(ValueError, match="world_size"):
        DataLoader(data, 2, world_size=0)
